import type { ObjectOutcome } from '../rotate/outcome.js';

export type ReportFormat = 'csv' | 'jsonl';
export const REPORT_FORMATS: readonly ReportFormat[] = ['csv', 'jsonl'];

/**
 * The columns of an S3 Batch Operations completion report (Bucket, Key, VersionId, TaskStatus,
 * ErrorCode, HTTPStatusCode, ResultMessage), then rekey's own.
 */
const COLUMNS = [
  'Bucket',
  'Key',
  'VersionId',
  'TaskStatus',
  'ErrorCode',
  'HTTPStatusCode',
  'ResultMessage',
  'Outcome',
  'Reason',
  'Mode',
  'Format',
  'NewFormat',
  'SourceAuthenticated',
  'OldKeyId',
  'NewKeyId',
  'OldETag',
  'NewETag',
  'InstructionFileOldETag',
  'InstructionFileNewETag',
  'NewVersionId',
  'PurgedVersions',
  'BytesRead',
  'BytesWritten',
  'DurationMs',
] as const;

function row(o: ObjectOutcome): Record<(typeof COLUMNS)[number], string | number> {
  return {
    Bucket: o.ref.bucket,
    Key: o.ref.key,
    VersionId: o.ref.versionId ?? '',
    // A skipped object needed nothing or belongs to another writer now: the task did what it should.
    TaskStatus: o.outcome === 'failed' ? 'failed' : 'succeeded',
    // As S3 Batch Operations reports them: the failed call's status and code; a failure no call made
    // (an authentication check, a wrong key told by the data) is a PermanentFailure of a task whose
    // calls answered 200, or a TemporaryFailure when it was still being retried.
    ErrorCode: o.outcome !== 'failed' ? '' : (o.errorCode ?? (o.retryable ? 'TemporaryFailure' : 'PermanentFailure')),
    HTTPStatusCode: o.outcome === 'failed' ? (o.httpStatus ?? 200) : 200,
    ResultMessage: o.message,
    Outcome: o.outcome,
    Reason: o.reason ?? '',
    Mode: o.mode,
    Format: o.format ?? '',
    NewFormat: o.newFormat ?? '',
    // Whether the source's content was authenticated (GCM) or legacy CBC taken on the campaign's opt-in.
    SourceAuthenticated: o.sourceAuthenticated === undefined ? '' : String(o.sourceAuthenticated),
    OldKeyId: o.oldKeyId ?? '',
    NewKeyId: o.newKeyId ?? '',
    OldETag: o.oldEtag ?? '',
    NewETag: o.newEtag ?? '',
    InstructionFileOldETag: o.instructionFileOldEtag ?? '',
    InstructionFileNewETag: o.instructionFileNewEtag ?? '',
    NewVersionId: o.newVersionId ?? '',
    // `key?versionId=…` of each version the rotation replaced and deleted, space-separated.
    PurgedVersions: (o.purgedVersions ?? []).map((v) => `${v.key}?versionId=${v.versionId}`).join(' '),
    BytesRead: o.bytesRead,
    BytesWritten: o.bytesWritten,
    DurationMs: o.durationMs,
  };
}

/** RFC 4180 quoting; keys may hold commas, quotes and line breaks. */
function csvField(value: string | number): string {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** Report lines, streamed: one per object, a header first for CSV. */
export async function* reportLines(outcomes: AsyncIterable<ObjectOutcome>, format: ReportFormat): AsyncGenerator<string> {
  if (format === 'csv') yield `${COLUMNS.join(',')}\n`;
  for await (const outcome of outcomes) {
    const r = row(outcome);
    yield format === 'csv' ? `${COLUMNS.map((c) => csvField(r[c])).join(',')}\n` : `${JSON.stringify(r)}\n`;
  }
}
