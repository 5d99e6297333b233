package dev.rekey.interop;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;

/** The S3EC envelope of an object as stored: its x-amz-* metadata and its instruction file, if any. */
final class Envelope {
  static final String INSTRUCTION_SUFFIX = ".instruction";
  private static final ObjectMapper JSON = new ObjectMapper();

  private Envelope() {}

  static Map<String, Object> describe(RawStore raw, String bucket, String key) throws Exception {
    Map<String, String> s3ec = new TreeMap<>();
    raw.userMetadata(bucket, key).forEach((k, v) -> {
      if (k.toLowerCase().startsWith("x-amz-")) s3ec.put(k.toLowerCase(), v);
    });
    Optional<byte[]> file = raw.body(bucket, key + INSTRUCTION_SUFFIX);
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("metadata", s3ec);
    out.put("instruction", file.isPresent() ? JSON.readTree(file.get()) : null);
    return out;
  }
}
