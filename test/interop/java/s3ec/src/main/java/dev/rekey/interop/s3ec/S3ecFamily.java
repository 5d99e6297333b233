package dev.rekey.interop.s3ec;

import dev.rekey.interop.Env;
import dev.rekey.interop.Family;
import dev.rekey.interop.Job;
import dev.rekey.interop.Parts;
import dev.rekey.interop.RawStore;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import javax.crypto.spec.SecretKeySpec;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.core.client.config.ClientOverrideConfiguration;
import software.amazon.awssdk.core.interceptor.Context;
import software.amazon.awssdk.core.interceptor.ExecutionAttributes;
import software.amazon.awssdk.core.interceptor.ExecutionInterceptor;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.http.SdkHttpRequest;
import software.amazon.awssdk.http.nio.netty.NettyNioAsyncHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.kms.KmsClient;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.CompletedMultipartUpload;
import software.amazon.awssdk.services.s3.model.CompletedPart;
import software.amazon.awssdk.services.s3.model.NoSuchKeyException;
import software.amazon.awssdk.services.s3.model.SdkPartType;
import software.amazon.encryption.s3.S3EncryptionClient;
import software.amazon.encryption.s3.internal.InstructionFileConfig;
import software.amazon.encryption.s3.internal.ReEncryptInstructionFileRequest;
import software.amazon.encryption.s3.materials.AesKeyring;
import software.amazon.encryption.s3.materials.KmsKeyring;
import software.amazon.encryption.s3.materials.Keyring;
import software.amazon.encryption.s3.materials.MaterialsDescription;

/**
 * Amazon S3 Encryption Client for Java 3.x / 4.x on the AWS SDK for Java 2.x. This source is compiled
 * into both jars, each against its own client version; {@link #builder} holds what the versions do
 * differently. A job's key is a KMS key ({@code kmsKeyId}: KmsKeyring) or a raw AES key
 * ({@code aesKey}, base64: AesKeyring, the only kind reEncryptInstructionFile takes). Readers enable the
 * legacy modes and wrapping algorithms, so a failed read means the client cannot read the format.
 */
public abstract class S3ecFamily implements Family {
  private final String client;
  public enum Role { WRITE, READ }

  private final Env env = Env.fromSystem();
  private final StaticCredentialsProvider credentials =
      StaticCredentialsProvider.create(AwsBasicCredentials.create(env.accessKeyId(), env.secretAccessKey()));
  private final KmsClient kms = KmsClient.builder()
      .endpointOverride(env.kms()).region(Region.of(env.region())).credentialsProvider(credentials).build();
  private final S3Client plain = S3Client.builder()
      .endpointOverride(env.s3()).region(Region.of(env.region())).credentialsProvider(credentials)
      .forcePathStyle(true).build();
  private final Map<String, S3EncryptionClient> clients = new ConcurrentHashMap<>();

  protected S3ecFamily(String client) {
    this.client = client;
  }

  @Override
  public Set<String> clients() {
    return Set.of(client);
  }

  /** A builder of this client version, set up for writing (its defaults) or for reading all it can. */
  protected abstract S3EncryptionClient.Builder builder(Role role, Job job);

  @Override
  public void put(Job job, byte[] plaintext) throws Exception {
    S3EncryptionClient s3ec = client(job, Role.WRITE);
    if (!job.multipart()) {
      s3ec.putObject(b -> b.bucket(job.bucket()).key(job.key()).overrideConfiguration(context(job)), RequestBody.fromBytes(plaintext));
      return;
    }
    String uploadId = s3ec.createMultipartUpload(b -> b.bucket(job.bucket()).key(job.key()).overrideConfiguration(context(job))).uploadId();
    List<CompletedPart> parts = Parts.each(plaintext.length, (number, offset, len, last) -> {
      String etag = s3ec.uploadPart(b -> b.bucket(job.bucket()).key(job.key()).uploadId(uploadId).partNumber(number)
              .sdkPartType(last ? SdkPartType.LAST : SdkPartType.DEFAULT).contentLength((long) len),
          RequestBody.fromBytes(Arrays.copyOfRange(plaintext, offset, offset + len))).eTag();
      return CompletedPart.builder().partNumber(number).eTag(etag).build();
    });
    s3ec.completeMultipartUpload(b -> b.bucket(job.bucket()).key(job.key()).uploadId(uploadId)
        .multipartUpload(CompletedMultipartUpload.builder().parts(parts).build()));
  }

  @Override
  public byte[] get(Job job) {
    return client(job, Role.READ)
        .getObjectAsBytes(b -> b.bucket(job.bucket()).key(job.key()).overrideConfiguration(context(job)))
        .asByteArray();
  }

  /**
   * reEncryptInstructionFile: re-wraps the data key in {@code <key>.instruction} from the job's AES key
   * to {@code newAesKey}, leaving the body alone. The client takes only raw keyrings (RawKeyring: AES or
   * RSA) as the new keyring, so there is no KMS form of this job.
   */
  @Override
  public Map<String, Object> other(Job job) {
    /* Precondition: the only other op is reEncryptInstructionFile, between raw AES keys. */
    if (!"reencrypt-instruction-file".equals(job.op()) || job.aesKey() == null || job.newAesKey() == null) {
      throw new IllegalArgumentException("op " + job.op() + " is unknown, or reencrypt-instruction-file lacks aesKey/newAesKey");
    }
    var out = client(job, Role.READ).reEncryptInstructionFile(ReEncryptInstructionFileRequest.builder()
        .bucket(job.bucket()).key(job.key()).newKeyring(aes(job.newAesKey())).build());
    return Map.of("instructionFileSuffix", out.instructionFileSuffix());
  }

  private static java.util.function.Consumer<software.amazon.awssdk.awscore.AwsRequestOverrideConfiguration.Builder> context(Job job) {
    return S3EncryptionClient.withAdditionalConfiguration(job.contextOrEmpty());
  }

  private S3EncryptionClient client(Job job, Role role) {
    String cacheKey = String.join("|", role.name(), String.valueOf(job.instructionFile()), String.valueOf(job.kmsKeyId()), String.valueOf(job.aesKey()));
    return clients.computeIfAbsent(cacheKey, k -> builder(role, job)
        .credentialsProvider(credentials).region(Region.of(env.region())).endpointOverride(env.s3()).forcePathStyle(true)
        .overrideConfiguration(ClientOverrideConfiguration.builder().addExecutionInterceptor(new NoExpectContinue()).build())
        // S3EC reads through the SDK's async (netty) client; on a loaded 2-core machine its default 10 s wait
        // for a connection ran out before the JVM got the CPU to open one.
        .asyncHttpClientBuilder(NettyNioAsyncHttpClient.builder().connectionAcquisitionTimeout(Duration.ofMinutes(2)))
        .keyring(keyring(job))
        .instructionFileConfig(InstructionFileConfig.builder()
            .instructionFileClient(plain).enableInstructionFilePutObject(job.instructionFile()).build())
        .build());
  }

  private Keyring keyring(Job job) {
    if (job.aesKey() != null) return aes(job.aesKey());
    /* Precondition: a job names its key. */
    if (job.kmsKeyId() == null) throw new IllegalArgumentException("job needs kmsKeyId or aesKey");
    return KmsKeyring.builder().kmsClient(kms).wrappingKeyId(job.kmsKeyId()).enableLegacyWrappingAlgorithms(true).build();
  }

  /**
   * A raw AES keyring. reEncryptInstructionFile tells keys apart by their materials description, so each
   * key carries one of its own: a fingerprint (a digest prefix, not the key).
   */
  private static AesKeyring aes(String base64) {
    byte[] key = Base64.getDecoder().decode(base64);
    String fingerprint;
    try {
      fingerprint = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(key), 0, 8);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
    return AesKeyring.builder().wrappingKey(new SecretKeySpec(key, "AES"))
        .materialsDescription(MaterialsDescription.builder().put("rekey-test-key", fingerprint).build())
        .enableLegacyWrappingAlgorithms(true).build();
  }

  /**
   * The SDK's async (netty) client sends PutObject and UploadPart with "Expect: 100-continue"; moto's
   * server answers with an interim 100 that the client takes for the response (S3Exception, status 100).
   */
  private static final class NoExpectContinue implements ExecutionInterceptor {
    @Override
    public SdkHttpRequest modifyHttpRequest(Context.ModifyHttpRequest context, ExecutionAttributes attributes) {
      return context.httpRequest().toBuilder().removeHeader("Expect").build();
    }
  }

  @Override
  public RawStore raw() {
    return new RawStore() {
      @Override
      public Map<String, String> userMetadata(String bucket, String key) {
        return plain.headObject(b -> b.bucket(bucket).key(key)).metadata();
      }

      @Override
      public Optional<byte[]> body(String bucket, String key) {
        try {
          return Optional.of(plain.getObjectAsBytes(b -> b.bucket(bucket).key(key)).asByteArray());
        } catch (NoSuchKeyException e) {
          return Optional.empty();
        }
      }
    };
  }

  @Override
  public void close() {
    clients.values().forEach(S3EncryptionClient::close);
    plain.close();
    kms.close();
  }
}
