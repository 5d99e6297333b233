/**
 * S3 refuses a write whose user metadata passes 2 KB (400 MetadataTooLarge), measured as the UTF-8
 * bytes of every key and value, without the `x-amz-meta-` prefix (versitygw enforces the same count).
 */
export const MAX_USER_METADATA_BYTES = 2048;

export function userMetadataBytes(metadata: Readonly<Record<string, string>>): number {
  return Object.entries(metadata).reduce((sum, [key, value]) => sum + Buffer.byteLength(key) + Buffer.byteLength(value), 0);
}

export function fitsUserMetadata(metadata: Readonly<Record<string, string>>): boolean {
  return userMetadataBytes(metadata) <= MAX_USER_METADATA_BYTES;
}
