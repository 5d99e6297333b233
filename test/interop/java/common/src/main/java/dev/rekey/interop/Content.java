package dev.rekey.interop;

import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.SplittableRandom;

/** Test plaintext: {@code size} bytes fixed by {@code seed}, so a writer and a checker agree without sharing files. */
final class Content {
  private Content() {}

  static byte[] generate(long size, long seed) {
    /* Precondition: a test object fits in one array. */
    if (size < 0 || size > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("size must be 0.." + (Integer.MAX_VALUE - 8));
    byte[] out = new byte[(int) size];
    new SplittableRandom(seed).nextBytes(out);
    return out;
  }

  static String sha256(byte[] data) throws Exception {
    return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
  }
}
