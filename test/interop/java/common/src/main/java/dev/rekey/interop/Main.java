package dev.rekey.interop;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * The driver's command loop: a JSON array of {@link Job}s on standard input, one JSON line per job on
 * standard output, in input order: {"id", "ok": true, ...} or {"id", "ok": false, "error"}. A JVM starts
 * once for many objects; jobs run on REKEY_JAVA_THREADS threads (default 4). A failed job does not stop
 * the others. Exit 0 when the input was read, 2 when it was not valid. Nothing printed holds plaintext or
 * a data key: bodies are reported by size and SHA-256 only.
 */
public final class Main {
  private static final ObjectMapper JSON = new ObjectMapper();

  private Main() {}

  public static void main(String[] args) throws Exception {
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    List<Job> jobs;
    try {
      jobs = JSON.readValue(System.in, new TypeReference<List<Job>>() {});
    } catch (Exception e) {
      System.err.println("rekey-java-interop: error: standard input is not a JSON array of jobs: " + oneLine(e));
      System.exit(2);
      return;
    }
    int threads = Integer.parseInt(System.getenv().getOrDefault("REKEY_JAVA_THREADS", "4"));
    ExecutorService pool = Executors.newFixedThreadPool(Math.max(1, threads));
    try (Family family = ServiceLoader.load(Family.class).findFirst().orElseThrow()) {
      List<Future<Map<String, Object>>> results = new ArrayList<>();
      for (Job job : jobs) results.add(pool.submit(() -> run(family, job)));
      for (Future<Map<String, Object>> r : results) out.println(JSON.writeValueAsString(r.get()));
    } finally {
      pool.shutdown();
    }
    // S3EC leaves a non-daemon executor thread behind; the answers are out, so the JVM ends here.
    System.exit(0);
  }

  private static Map<String, Object> run(Family family, Job job) {
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("id", job.id());
    try {
      if (!"envelope".equals(job.op()) && !family.clients().contains(job.client())) {
        throw new IllegalArgumentException("client " + job.client() + " is not in this jar; it has " + family.clients());
      }
      switch (job.op()) {
        case "put" -> {
          byte[] plain = Content.generate(job.size(), job.seed());
          family.put(job, plain);
          out.put("bytes", plain.length);
          out.put("sha256", Content.sha256(plain));
        }
        case "get" -> {
          byte[] plain = family.get(job);
          out.put("bytes", plain.length);
          out.put("sha256", Content.sha256(plain));
        }
        case "envelope" -> out.putAll(Envelope.describe(family.raw(), job.bucket(), job.key()));
        default -> out.putAll(family.other(job));
      }
      out.put("ok", true);
    } catch (Throwable e) {
      out.put("ok", false);
      out.put("error", oneLine(e));
    }
    return out;
  }

  /** The exception and its causes on one line: the client's own words are the evidence a test keeps. */
  static String oneLine(Throwable e) {
    StringBuilder sb = new StringBuilder();
    for (Throwable t = e; t != null && sb.length() < 2000; t = t.getCause() == t ? null : t.getCause()) {
      if (sb.length() > 0) sb.append(" <- ");
      sb.append(t.getClass().getSimpleName()).append(": ").append(t.getMessage());
    }
    return sb.toString().replaceAll("\\s+", " ");
  }
}
