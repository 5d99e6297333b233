package dev.rekey.interop.s3ec3;

import dev.rekey.interop.Job;
import dev.rekey.interop.s3ec.S3ecFamily;
import software.amazon.encryption.s3.S3EncryptionClient;

/** S3EC Java 3.x: writes V2 (AES/GCM, kms+context); reads legacy V1 with the legacy switches on. */
public final class S3ec3Family extends S3ecFamily {
  public S3ec3Family() {
    super("s3ec3");
  }

  @Override
  protected S3EncryptionClient.Builder builder(Role role, Job job) {
    return S3EncryptionClient.builder().enableLegacyUnauthenticatedModes(role == Role.READ);
  }
}
