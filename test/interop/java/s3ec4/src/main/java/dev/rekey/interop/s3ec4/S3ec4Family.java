package dev.rekey.interop.s3ec4;

import dev.rekey.interop.Job;
import dev.rekey.interop.s3ec.S3ecFamily;
import software.amazon.encryption.s3.CommitmentPolicy;
import software.amazon.encryption.s3.S3EncryptionClient;

/**
 * S3EC Java 4.x: the default (builderV4) writes V3, the key-committing suite, and reads only committing
 * objects (REQUIRE_ENCRYPT_REQUIRE_DECRYPT). Readers here take REQUIRE_ENCRYPT_ALLOW_DECRYPT, the policy
 * of a 4.x estate still holding V1/V2 objects, with the legacy switches on.
 */
public final class S3ec4Family extends S3ecFamily {
  public S3ec4Family() {
    super("s3ec4");
  }

  @Override
  protected S3EncryptionClient.Builder builder(Role role, Job job) {
    S3EncryptionClient.Builder b = S3EncryptionClient.builderV4();
    if (role == Role.WRITE) return b;
    return b.commitmentPolicy(CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT).enableLegacyUnauthenticatedModes(true);
  }
}
