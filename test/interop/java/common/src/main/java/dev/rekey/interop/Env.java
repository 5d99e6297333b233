package dev.rekey.interop;

import java.net.URI;

/**
 * Where the clients talk to, from the AWS variables the rest of the stack uses: AWS_ENDPOINT_URL_S3 and
 * AWS_ENDPOINT_URL_KMS (falling back to AWS_ENDPOINT_URL), AWS_REGION (default us-east-1), and the static
 * credentials AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. S3 is always addressed path-style.
 */
public record Env(URI s3, URI kms, String region, String accessKeyId, String secretAccessKey) {
  public static Env fromSystem() {
    return new Env(
        URI.create(required("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")),
        URI.create(required("AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL")),
        first("AWS_REGION", "AWS_DEFAULT_REGION", "us-east-1"),
        required("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        required("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"));
  }

  private static String first(String a, String b, String fallback) {
    String v = System.getenv(a);
    if (v == null || v.isEmpty()) v = System.getenv(b);
    return v == null || v.isEmpty() ? fallback : v;
  }

  private static String required(String a, String b) {
    String v = first(a, b, null);
    if (v == null) throw new IllegalStateException(a + " is not set: the driver talks only to the endpoints it is given");
    return v;
  }
}
