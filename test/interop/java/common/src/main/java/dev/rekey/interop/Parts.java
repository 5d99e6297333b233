package dev.rekey.interop;

import java.util.ArrayList;
import java.util.List;

/** A multipart write's plaintext cut into parts: S3's minimum size, at least one part, the last flagged. */
public final class Parts {
  /** 5 MiB: S3's minimum part, and a multiple of the AES block that SDK 1.x's CBC parts require. */
  public static final int PART_BYTES = 5 * 1024 * 1024;

  /** Sends one part; the last one lets the client close its cipher (GCM tag, CBC padding). */
  public interface Upload<T> {
    T part(int number, int offset, int length, boolean last) throws Exception;
  }

  private Parts() {}

  /** Each part of {@code total} bytes, in order, through {@code upload}; what each returned. */
  public static <T> List<T> each(int total, Upload<T> upload) throws Exception {
    List<T> out = new ArrayList<>();
    int offset = 0;
    do {
      int len = Math.min(PART_BYTES, total - offset);
      out.add(upload.part(out.size() + 1, offset, len, offset + len >= total));
      offset += len;
    } while (offset < total);
    return out;
  }
}
