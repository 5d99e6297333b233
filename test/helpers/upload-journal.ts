import type { UploadJournal, UploadRef } from '../../src/s3/upload-journal.js';

/** An upload journal that keeps, in memory, the uploads it saw started and those not yet finished. */
export function recordingJournal(): UploadJournal & { readonly open: Map<string, UploadRef>; readonly seen: UploadRef[] } {
  const open = new Map<string, UploadRef>();
  const seen: UploadRef[] = [];
  return {
    open,
    seen,
    async starting() {},
    async started(u: UploadRef) {
      open.set(u.uploadId, u);
      seen.push(u);
    },
    async finished(u: UploadRef) {
      open.delete(u.uploadId);
    },
  };
}
