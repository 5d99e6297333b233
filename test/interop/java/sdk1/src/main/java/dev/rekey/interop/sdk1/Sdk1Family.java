package dev.rekey.interop.sdk1;

import com.amazonaws.auth.AWSCredentialsProvider;
import com.amazonaws.auth.AWSStaticCredentialsProvider;
import com.amazonaws.auth.BasicAWSCredentials;
import com.amazonaws.client.builder.AwsClientBuilder.EndpointConfiguration;
import com.amazonaws.services.kms.AWSKMS;
import com.amazonaws.services.kms.AWSKMSClientBuilder;
import com.amazonaws.services.s3.AmazonS3;
import com.amazonaws.services.s3.AmazonS3ClientBuilder;
import com.amazonaws.services.s3.AmazonS3EncryptionClientBuilder;
import com.amazonaws.services.s3.AmazonS3EncryptionClientV2Builder;
import com.amazonaws.services.s3.model.AmazonS3Exception;
import com.amazonaws.services.s3.model.CompleteMultipartUploadRequest;
import com.amazonaws.services.s3.model.CryptoConfiguration;
import com.amazonaws.services.s3.model.CryptoConfigurationV2;
import com.amazonaws.services.s3.model.CryptoMode;
import com.amazonaws.services.s3.model.CryptoStorageMode;
import com.amazonaws.services.s3.model.EncryptedInitiateMultipartUploadRequest;
import com.amazonaws.services.s3.model.EncryptedPutObjectRequest;
import com.amazonaws.services.s3.model.KMSEncryptionMaterials;
import com.amazonaws.services.s3.model.KMSEncryptionMaterialsProvider;
import com.amazonaws.services.s3.model.ObjectMetadata;
import com.amazonaws.services.s3.model.PartETag;
import com.amazonaws.services.s3.model.S3Object;
import com.amazonaws.services.s3.model.UploadPartRequest;
import com.amazonaws.util.IOUtils;
import dev.rekey.interop.Env;
import dev.rekey.interop.Family;
import dev.rekey.interop.Job;
import dev.rekey.interop.Parts;
import dev.rekey.interop.RawStore;
import java.io.ByteArrayInputStream;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;

/**
 * AWS SDK for Java 1.12.x: {@code sdk1} is AmazonS3EncryptionClient (V1 envelopes; mode EncryptionOnly
 * writes AES/CBC, AuthenticatedEncryption AES/GCM; KMS wrap {@code kms} with kms_cmk_id in the
 * material description), {@code sdk1-v2} is AmazonS3EncryptionClientV2 (V2: {@code kms+context}). The
 * carrier picks CryptoStorageMode ObjectMetadata or InstructionFile. Readers run in
 * AuthenticatedEncryption, the mode that reads every format the client knows (CBC and GCM).
 */
public final class Sdk1Family implements Family {
  static {
    // SDK 1.x prints its end-of-support notice with a stack trace to stderr on first use.
    System.setProperty("aws.java.v1.disableDeprecationAnnouncement", "true");
  }

  private final Env env = Env.fromSystem();
  private final AWSCredentialsProvider credentials =
      new AWSStaticCredentialsProvider(new BasicAWSCredentials(env.accessKeyId(), env.secretAccessKey()));
  private final EndpointConfiguration s3Endpoint = new EndpointConfiguration(env.s3().toString(), env.region());
  private final AWSKMS kms = AWSKMSClientBuilder.standard()
      .withCredentials(credentials)
      .withEndpointConfiguration(new EndpointConfiguration(env.kms().toString(), env.region()))
      .build();
  private final AmazonS3 plain = AmazonS3ClientBuilder.standard()
      .withCredentials(credentials).withEndpointConfiguration(s3Endpoint).withPathStyleAccessEnabled(true).build();
  private final Map<String, AmazonS3> clients = new ConcurrentHashMap<>();

  @Override
  public Set<String> clients() {
    return Set.of("sdk1", "sdk1-v2");
  }

  @Override
  public void put(Job job, byte[] plaintext) throws Exception {
    AmazonS3 s3 = client(job, mode(job, CryptoMode.AuthenticatedEncryption), Map.of());
    if (job.multipart()) {
      putMultipart(s3, job, plaintext);
      return;
    }
    ObjectMetadata meta = new ObjectMetadata();
    meta.setContentLength(plaintext.length);
    EncryptedPutObjectRequest req = new EncryptedPutObjectRequest(job.bucket(), job.key(), new ByteArrayInputStream(plaintext), meta);
    if (job.context() != null) req.setMaterialsDescription(job.context());
    s3.putObject(req);
  }

  /** The client's own multipart API: parts encrypted in order, the last flagged so the client closes the cipher. */
  private void putMultipart(AmazonS3 s3, Job job, byte[] plaintext) throws Exception {
    EncryptedInitiateMultipartUploadRequest init = new EncryptedInitiateMultipartUploadRequest(job.bucket(), job.key());
    if (job.context() != null) init.setMaterialsDescription(job.context());
    String uploadId = s3.initiateMultipartUpload(init).getUploadId();
    List<PartETag> parts = Parts.each(plaintext.length, (number, offset, len, last) -> s3.uploadPart(new UploadPartRequest()
        .withBucketName(job.bucket()).withKey(job.key()).withUploadId(uploadId).withPartNumber(number)
        .withInputStream(new ByteArrayInputStream(plaintext, offset, len)).withPartSize(len).withLastPart(last))
        .getPartETag());
    s3.completeMultipartUpload(new CompleteMultipartUploadRequest(job.bucket(), job.key(), uploadId, parts));
  }

  @Override
  public byte[] get(Job job) throws Exception {
    try (S3Object obj = client(job, CryptoMode.AuthenticatedEncryption, job.contextOrEmpty()).getObject(job.bucket(), job.key())) {
      return IOUtils.toByteArray(obj.getObjectContent());
    }
  }

  private static CryptoMode mode(Job job, CryptoMode fallback) {
    return job.mode() == null ? fallback : CryptoMode.valueOf(job.mode());
  }

  /**
   * A client per configuration. Writers take the context per request (the material description of
   * the put). Readers carry it in their materials: the V2 client decrypts only when the materials'
   * description equals the object's, as a reader of context-bound objects is set up.
   */
  private AmazonS3 client(Job job, CryptoMode mode, Map<String, String> readContext) {
    /* Precondition: SDK 1.x clients wrap data keys with KMS here; raw AES keys are S3EC 3.x/4.x jobs. */
    if (job.kmsKeyId() == null) throw new IllegalArgumentException("sdk1 jobs need kmsKeyId");
    CryptoStorageMode storage = job.instructionFile() ? CryptoStorageMode.InstructionFile : CryptoStorageMode.ObjectMetadata;
    String cacheKey = String.join("|", job.client(), mode.name(), storage.name(), job.kmsKeyId(), new TreeMap<>(readContext).toString());
    return clients.computeIfAbsent(cacheKey, k -> build(job.client(), mode, storage, job.kmsKeyId(), readContext));
  }

  @SuppressWarnings("deprecation") // AmazonS3EncryptionClient (V1) is deprecated; estates still hold what it wrote.
  private AmazonS3 build(String client, CryptoMode mode, CryptoStorageMode storage, String kmsKeyId, Map<String, String> readContext) {
    KMSEncryptionMaterials kek = new KMSEncryptionMaterials(kmsKeyId);
    readContext.forEach(kek::addDescription);
    KMSEncryptionMaterialsProvider materials = new KMSEncryptionMaterialsProvider(kek);
    if ("sdk1-v2".equals(client)) {
      return AmazonS3EncryptionClientV2Builder.standard()
          .withCredentials(credentials).withEndpointConfiguration(s3Endpoint).withPathStyleAccessEnabled(true)
          .withEncryptionMaterialsProvider(materials)
          .withCryptoConfiguration(new CryptoConfigurationV2(mode).withStorageMode(storage))
          .withKmsClient(kms)
          .build();
    }
    return AmazonS3EncryptionClientBuilder.standard()
        .withCredentials(credentials).withEndpointConfiguration(s3Endpoint).withPathStyleAccessEnabled(true)
        .withEncryptionMaterials(materials)
        .withCryptoConfiguration(new CryptoConfiguration(mode).withStorageMode(storage))
        .withKmsClient(kms)
        .build();
  }

  @Override
  public RawStore raw() {
    return new RawStore() {
      @Override
      public Map<String, String> userMetadata(String bucket, String key) {
        return plain.getObjectMetadata(bucket, key).getUserMetadata();
      }

      @Override
      public Optional<byte[]> body(String bucket, String key) throws Exception {
        try (S3Object obj = plain.getObject(bucket, key)) {
          return Optional.of(IOUtils.toByteArray(obj.getObjectContent()));
        } catch (AmazonS3Exception e) {
          if (e.getStatusCode() == 404) return Optional.empty();
          throw e;
        }
      }
    };
  }

  @Override
  public void close() {
    clients.values().forEach(AmazonS3::shutdown);
    plain.shutdown();
    kms.shutdown();
  }
}
