import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A fault-injecting HTTP proxy in front of a real server (moto, MinIO, local-kms): requests pass
 * through unchanged, Host header and SigV4 signature included, except those a fault rule picks, which
 * get a canned answer, a TCP reset, or a delay before they pass. Every request is recorded, so tests
 * can count what really went over the wire.
 */

export type Fault =
  | {
      readonly kind: 'respond';
      readonly status: number;
      readonly headers?: Readonly<Record<string, string>>;
      readonly body?: string;
    }
  | { readonly kind: 'reset' }
  | { readonly kind: 'delay'; readonly ms: number };

export type FaultKind = Fault['kind'];

/** A KMS error as it comes over the wire (AWS JSON 1.1): the code in a header and in `__type`. */
export function kmsError(code: string, options: { status?: number; message?: string } = {}): Fault {
  return {
    kind: 'respond',
    status: options.status ?? 400,
    headers: { 'x-amzn-errortype': code, 'content-type': 'application/x-amz-json-1.1' },
    body: JSON.stringify({ __type: code, message: options.message ?? `${code} injected by the fault proxy` }),
  };
}

/** What KMS answers when the account's request rate is exceeded. */
export function kmsThrottling(): Fault {
  return kmsError('ThrottlingException', { message: 'Rate exceeded' });
}

/** A bare server error with an empty body, as a load balancer in front of a service may send. */
export function serverError(status = 500): Fault {
  return { kind: 'respond', status };
}

export interface ProxiedRequest {
  readonly method: string;
  readonly path: string;
  /** Lowercased names, as node:http gives them. */
  readonly headers: IncomingHttpHeaders;
  /** The fault applied, or undefined when the request passed through untouched. */
  readonly fault: FaultKind | undefined;
}

export type RequestMatcher = (request: Omit<ProxiedRequest, 'fault'>) => boolean;

/** Matches one KMS operation by its `x-amz-target` header, e.g. `kmsOperation('ReEncrypt')`. */
export function kmsOperation(operation: string): RequestMatcher {
  return (request) => request.headers['x-amz-target'] === `TrentService.${operation}`;
}

export interface FaultRule {
  readonly fault: Fault;
  /** Only requests this accepts; default all. */
  readonly match?: RequestMatcher;
  /** Chance that a matching request gets the fault; default 1. */
  readonly probability?: number;
  /** How many requests get the fault before the rule retires; default unlimited. */
  readonly times?: number;
}

export interface FaultProxyOptions {
  /** The real server, e.g. `http://127.0.0.1:5055`. */
  readonly target: string;
  /** Source of randomness for `probability`; pass `seededRandom(n)` for a repeatable run. */
  readonly random?: () => number;
}

/** mulberry32: a tiny PRNG, so a test's fault pattern is the same on every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface ActiveRule {
  readonly rule: FaultRule;
  remaining: number;
}

export class FaultProxy {
  readonly url: string;
  private readonly server: http.Server;
  private readonly target: URL;
  private readonly random: () => number;
  private rules: ActiveRule[] = [];
  private readonly log: ProxiedRequest[] = [];
  private inFlight = 0;
  private peak = 0;

  private constructor(server: http.Server, target: URL, random: () => number) {
    this.server = server;
    this.target = target;
    this.random = random;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const target = new URL(options.target);
    /* Precondition: a plain-HTTP target; the proxy is for local servers. */
    if (target.protocol !== 'http:') throw new Error(`fault proxy forwards to http:// only, got ${options.target}`);
    const server = http.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const proxy = new FaultProxy(server, target, options.random ?? Math.random);
    server.on('request', (req, res) => proxy.handle(req, res));
    return proxy;
  }

  /** Adds a rule; rules are tried in the order added, and the first that fires decides. */
  inject(rule: FaultRule): void {
    this.rules.push({ rule, remaining: rule.times ?? Number.POSITIVE_INFINITY });
  }

  clearFaults(): void {
    this.rules = [];
  }

  get requests(): readonly ProxiedRequest[] {
    return this.log;
  }

  /** Requests seen that `match` accepts (all by default), optionally only those given `fault`. */
  count(match: RequestMatcher = () => true, fault?: FaultKind | 'none'): number {
    return this.log.filter(
      (r) => match(r) && (fault === undefined || (fault === 'none' ? r.fault === undefined : r.fault === fault)),
    ).length;
  }

  /** Most requests that were in flight through the proxy at one time. */
  get maxInFlight(): number {
    return this.peak;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // SDK clients keep connections alive; without this, close() would wait for their idle timeout.
    this.server.closeAllConnections();
    await closed;
  }

  private pick(request: Omit<ProxiedRequest, 'fault'>): Fault | undefined {
    for (const active of this.rules) {
      const { rule } = active;
      if (active.remaining <= 0 || (rule.match && !rule.match(request))) continue;
      if (this.random() >= (rule.probability ?? 1)) continue;
      active.remaining -= 1;
      return rule.fault;
    }
    return undefined;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const seen = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers };
    const fault = this.pick(seen);
    this.log.push({ ...seen, fault: fault?.kind });
    this.inFlight += 1;
    this.peak = Math.max(this.peak, this.inFlight);
    res.once('close', () => {
      this.inFlight -= 1;
    });
    void this.apply(fault, req, res);
  }

  private async apply(fault: Fault | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
    switch (fault?.kind) {
      case 'respond':
        req.resume();
        res.writeHead(fault.status, fault.headers ?? {});
        res.end(fault.body ?? '');
        return;
      case 'reset':
        req.socket.resetAndDestroy();
        return;
      case 'delay':
        await sleep(fault.ms);
        this.forward(req, res);
        return;
      case undefined:
        this.forward(req, res);
        return;
    }
  }

  private forward(req: IncomingMessage, res: ServerResponse): void {
    const upstream = http.request(
      {
        host: this.target.hostname,
        port: this.target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (res.headersSent) res.destroy();
      else res.writeHead(502).end();
    });
    req.pipe(upstream);
  }
}
