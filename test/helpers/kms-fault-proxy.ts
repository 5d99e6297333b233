import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A fault-injecting HTTP proxy in front of a real server (moto, MinIO, local-kms): requests pass
 * through unchanged, Host header and SigV4 signature included, except those a fault rule picks, which
 * get a canned answer, a TCP reset, a delay before they pass, a reset after the server acted (the
 * answer is lost), or are held until the test releases them (to kill a client at that exact moment).
 * Every request is recorded, so tests can count what really went over the wire.
 */

export type Fault =
  | {
      readonly kind: 'respond';
      readonly status: number;
      readonly headers?: Readonly<Record<string, string>>;
      readonly body?: string;
    }
  | { readonly kind: 'reset' }
  | { readonly kind: 'delay'; readonly ms: number }
  /** The request reaches the server, which acts on it; the client's connection is then reset unanswered. */
  | { readonly kind: 'drop-response' }
  /** The request waits in the proxy until {@link FaultProxy.release}; see {@link FaultProxy.nextHeld}. */
  | { readonly kind: 'hold' }
  /**
   * The server's answer with only the first `keep` bytes of its body, a Content-Length to match and no
   * `x-amz-checksum-*` headers (as for an object stored without a full-object checksum, which the SDK
   * then cannot validate): a body that ends early and cleanly, which only a length check can tell.
   */
  | { readonly kind: 'short-body'; readonly keep: number };

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

/** An S3 error as it comes over the wire: the code in an XML body (a HEAD gets the status alone). */
export function s3Error(code: string, status: number): Fault {
  return {
    kind: 'respond',
    status,
    headers: { 'content-type': 'application/xml' },
    body: `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code} injected by the fault proxy</Message></Error>`,
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
  /** The request body, only when the proxy was started with `inspectBodies`. */
  readonly body?: Buffer;
  /** The fault applied, or undefined when the request passed through untouched. */
  readonly fault: FaultKind | undefined;
}

/** A request parked by a `hold` fault; {@link FaultProxy.release} forwards or drops it. */
export interface HeldRequest {
  readonly request: Omit<ProxiedRequest, 'fault'>;
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
  /**
   * Buffer each request body before the rules see it, so a rule can match on content (a KMS call's
   * CiphertextBlob). For small-bodied APIs only: bodies are held in memory.
   */
  readonly inspectBodies?: boolean;
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

interface Parked {
  readonly held: HeldRequest;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly body: Buffer;
}

export class FaultProxy {
  readonly url: string;
  private readonly server: http.Server;
  private readonly target: URL;
  private readonly random: () => number;
  private readonly inspectBodies: boolean;
  private rules: ActiveRule[] = [];
  private readonly log: ProxiedRequest[] = [];
  private readonly parked = new Map<HeldRequest, Parked>();
  private heldWaiters: ((held: HeldRequest) => void)[] = [];
  private unclaimed: HeldRequest[] = [];
  private inFlight = 0;
  private peak = 0;

  private constructor(server: http.Server, target: URL, random: () => number, inspectBodies: boolean) {
    this.server = server;
    this.target = target;
    this.random = random;
    this.inspectBodies = inspectBodies;
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
    const proxy = new FaultProxy(server, target, options.random ?? Math.random, options.inspectBodies ?? false);
    server.on('request', (req, res) => void proxy.handle(req, res));
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

  /** Requests parked by a `hold` fault and not yet released. */
  get held(): readonly HeldRequest[] {
    return [...this.parked.keys()];
  }

  /** Resolves with the next request a `hold` fault parks (or one parked already and not yet handed out). */
  nextHeld(timeoutMs: number): Promise<HeldRequest> {
    const waiting = this.unclaimed.shift();
    if (waiting) return Promise.resolve(waiting);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.heldWaiters = this.heldWaiters.filter((w) => w !== waiter);
        reject(new Error(`no request was held within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (held: HeldRequest) => {
        clearTimeout(timer);
        resolve(held);
      };
      this.heldWaiters.push(waiter);
    });
  }

  /**
   * `forward`: the held request goes to the server as it was sent, even if its client died meanwhile
   * (a request already on the wire when the sender was killed). `drop`: it never reaches the server.
   */
  release(held: HeldRequest, how: 'forward' | 'drop'): void {
    const parked = this.parked.get(held);
    if (!parked) throw new Error('that request is not held (released already?)');
    this.parked.delete(held);
    this.unclaimed = this.unclaimed.filter((h) => h !== held);
    if (how === 'drop') parked.req.socket.destroy();
    else this.forward(parked.req, parked.res, parked.body);
  }

  async close(): Promise<void> {
    for (const held of this.held) this.release(held, 'drop');
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

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.inFlight += 1;
    this.peak = Math.max(this.peak, this.inFlight);
    res.once('close', () => {
      this.inFlight -= 1;
    });
    const body = this.inspectBodies ? await buffer(req).catch(() => Buffer.alloc(0)) : undefined;
    const seen = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers, ...(body ? { body } : {}) };
    const fault = this.pick(seen);
    this.log.push({ ...seen, fault: fault?.kind });
    await this.apply(fault, seen, req, res, body);
  }

  private async apply(
    fault: Fault | undefined,
    seen: Omit<ProxiedRequest, 'fault'>,
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer | undefined,
  ): Promise<void> {
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
        this.forward(req, res, body);
        return;
      case 'drop-response':
        this.forward(req, res, body, () => req.socket.resetAndDestroy());
        return;
      case 'hold':
        this.park(seen, req, res, body ?? (await buffer(req)));
        return;
      case 'short-body':
        this.forward(req, res, body, undefined, fault.keep);
        return;
      case undefined:
        this.forward(req, res, body);
        return;
    }
  }

  private park(request: Omit<ProxiedRequest, 'fault'>, req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const held: HeldRequest = { request };
    this.parked.set(held, { held, req, res, body });
    const waiter = this.heldWaiters.shift();
    if (waiter) waiter(held);
    else this.unclaimed.push(held);
  }

  /**
   * Sends the request on, from `body` when it was buffered; `answered` replaces passing the answer
   * back; `keep` cuts the answer's body to that many bytes.
   */
  private forward(req: IncomingMessage, res: ServerResponse, body?: Buffer, answered?: () => void, keep?: number): void {
    const upstream = http.request(
      {
        host: this.target.hostname,
        port: this.target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        if (answered) {
          answer.resume();
          answer.once('end', answered);
          return;
        }
        if (res.destroyed) {
          answer.resume();
          return;
        }
        if (keep !== undefined) {
          const headers = Object.fromEntries(Object.entries(answer.headers).filter(([name]) => !name.startsWith('x-amz-checksum-')));
          void buffer(answer).then((whole) => res.writeHead(answer.statusCode ?? 502, { ...headers, 'content-length': String(Math.min(keep, whole.length)) }).end(whole.subarray(0, keep)));
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    // A client that dies mid-exchange (a SIGKILLed worker) must not leave the upstream socket open
    // with an unread answer: it would keep the test process alive after its last test.
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    upstream.on('response', (answer) => answer.on('error', () => undefined));
    upstream.on('error', () => {
      if (res.destroyed) return;
      if (res.headersSent) res.destroy();
      else res.writeHead(502).end();
    });
    if (body) upstream.end(body);
    else req.pipe(upstream);
  }
}
