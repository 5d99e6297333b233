import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsServerOptions {
  /** 0 picks a free port; `MetricsServer.port` tells which. */
  readonly port: number;
  /** Loopback by default: metrics are for the local Prometheus unless the deployment says otherwise. */
  readonly host?: string;
  readonly registry: Registry;
  /** Answers /healthz, e.g. false once the worker lost Redis for good; healthy when left out. */
  readonly health?: () => boolean | Promise<boolean>;
}

export interface MetricsServer {
  readonly port: number;
  /** Where this process reaches the server, e.g. http://127.0.0.1:9464. */
  readonly url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { port, host = '127.0.0.1', registry, health = () => true } = options;
  const server = createServer((req, res) => {
    handle(req, res, registry, health).catch((err: unknown) => reply(res, 500, `${(err as Error).message}\n`));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    port: bound,
    url: `http://${hostForUrl(host)}:${bound}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Prometheus keeps its connection alive between scrapes; without this, close waits for it to time out.
        server.closeAllConnections();
      }),
  };
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  registry: Registry,
  health: () => boolean | Promise<boolean>,
): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return reply(res, 405, 'method not allowed\n');
  }
  switch (new URL(req.url ?? '/', 'http://localhost').pathname) {
    case '/metrics':
      return reply(res, 200, await registry.metrics(), registry.contentType);
    case '/healthz':
      return (await health()) ? reply(res, 200, 'ok\n') : reply(res, 503, 'unhealthy\n');
    default:
      return reply(res, 404, 'not found: try /metrics or /healthz\n');
  }
}

function reply(res: ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** A wildcard address is where the server listens, not where a client connects. */
function hostForUrl(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
