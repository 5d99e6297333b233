/**
 * Multipart uploads that rekey starts are recorded before any part is sent and cleared once completed
 * or aborted, so that a process killed between the two leaves a record from which the upload is
 * aborted later (docs/design.md §4.1: no orphaned multipart uploads).
 */
export interface UploadRef {
  readonly bucket: string;
  readonly key: string;
  readonly uploadId: string;
}

/**
 * Recorded just before CreateMultipartUpload is sent. A process killed while that request is on the
 * wire never learns the upload id S3 made; the intent says where to look for it.
 */
export interface UploadIntent {
  readonly bucket: string;
  readonly key: string;
  /** Milliseconds since the epoch, before the request left. */
  readonly at: number;
}

export interface UploadJournal {
  starting(intent: UploadIntent): Promise<void>;
  /** Also settles the intent of the same object. */
  started(upload: UploadRef): Promise<void>;
  finished(upload: UploadRef): Promise<void>;
}

export const noJournal: UploadJournal = {
  async starting() {},
  async started() {},
  async finished() {},
};

/** A journal that outlives the process that wrote it, read back to clean up after one that died. */
export interface DurableUploadJournal extends UploadJournal {
  open(): Promise<UploadRef[]>;
  /** Intents whose upload id never arrived (the request failed, or its sender died). */
  intents(): Promise<UploadIntent[]>;
  dropIntent(intent: UploadIntent): Promise<void>;
}
