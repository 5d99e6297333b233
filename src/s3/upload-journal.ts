/**
 * Multipart uploads that rekey starts are recorded before any part is sent and cleared once completed
 * or aborted, so that a process killed between the two leaves a record from which the upload is
 * aborted later (design.md invariant 1: no orphaned multipart uploads).
 */
export interface UploadRef {
  readonly bucket: string;
  readonly key: string;
  readonly uploadId: string;
}

export interface UploadJournal {
  started(upload: UploadRef): Promise<void>;
  finished(upload: UploadRef): Promise<void>;
}

export const noJournal: UploadJournal = {
  async started() {},
  async finished() {},
};
