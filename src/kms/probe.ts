import { ListKeysCommand, type KMSClient } from '@aws-sdk/client-kms';

/** Whether KMS answers these credentials at all (`rekey doctor`): resolves, or throws the SDK's error. */
export async function probeKms(kms: KMSClient): Promise<void> {
  await kms.send(new ListKeysCommand({ Limit: 1 }));
}
