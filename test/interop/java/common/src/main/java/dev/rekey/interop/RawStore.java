package dev.rekey.interop;

import java.util.Map;
import java.util.Optional;

/** The plain S3 reads an envelope print needs, over whichever SDK a family carries. */
public interface RawStore {
  /** User metadata of an object (keys without the x-amz-meta- prefix, lower case). */
  Map<String, String> userMetadata(String bucket, String key) throws Exception;

  /** The body of an object, or empty when there is no such key. */
  Optional<byte[]> body(String bucket, String key) throws Exception;
}
