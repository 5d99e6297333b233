package dev.rekey.interop;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import java.util.Map;

/**
 * One unit of work read from the driver's input. Which fields matter depends on {@code op}:
 * put: client, mode, carrier, bucket, key, kmsKeyId or aesKey, context, size, seed, multipart;
 * get: client, bucket, key, kmsKeyId or aesKey, context; envelope: bucket, key;
 * reencrypt-instruction-file: client, bucket, key, aesKey (the current one), newAesKey.
 */
@JsonIgnoreProperties(ignoreUnknown = false)
public record Job(
    String id,
    String op,
    String client,
    String mode,
    String carrier,
    String bucket,
    String key,
    String kmsKeyId,
    String aesKey,
    String newAesKey,
    Map<String, String> context,
    long size,
    long seed,
    boolean multipart) {

  public boolean instructionFile() {
    return "instruction-file".equals(carrier);
  }

  /** The encryption context as a client takes it; an absent one is an empty map. */
  public Map<String, String> contextOrEmpty() {
    return context == null ? Map.of() : context;
  }
}
