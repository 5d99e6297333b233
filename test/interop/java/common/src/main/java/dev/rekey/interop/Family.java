package dev.rekey.interop;

import java.util.Map;
import java.util.Set;

/**
 * The S3 Encryption Clients of one class path (one shaded jar). Found with {@link java.util.ServiceLoader},
 * so the shared command loop runs unchanged over each family.
 */
public interface Family extends AutoCloseable {
  /** The client names of {@link Job#client()} this family serves. */
  Set<String> clients();

  /** Encrypts {@code plaintext} with the job's client and stores it as the job's object. */
  void put(Job job, byte[] plaintext) throws Exception;

  /** Reads and decrypts the job's object with the job's client; throws when the client cannot. */
  byte[] get(Job job) throws Exception;

  /** Plain (not decrypting) S3 reads, for printing envelopes as stored. */
  RawStore raw();

  /** Operations only some clients have (S3EC's reEncryptInstructionFile); the result's fields. */
  default Map<String, Object> other(Job job) throws Exception {
    throw new UnsupportedOperationException("op " + job.op() + " is not supported by " + job.client());
  }

  @Override
  default void close() {}
}
