/**
 * The HTTP side of the metrics endpoint: parsing the listen address, serving /metrics and /healthz,
 * and turning a failed bind into an error an operator can act on.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { CtwatchError, EXIT } from '../util/errors.js';

export interface ListenAddress {
  /** undefined: every interface (Node binds `::` dual-stack, or 0.0.0.0 without IPv6) */
  host: string | undefined;
  port: number;
}

/**
 * "127.0.0.1:9477", ":9477" (every interface), "[::1]:9477", "localhost:9477" or a bare "9477"
 * (loopback, 127.0.0.1: the metrics name the busiest destinations, so every interface has to be
 * asked for, with ":9477"). Port 0 asks the kernel for a free port. An unbracketed IPv6 address is refused: in
 * "::1:9477" nobody can tell where the address ends.
 */
export function parseListenAddress(address: string): ListenAddress {
  const text = address.trim();
  const bad = (why: string): CtwatchError =>
    new CtwatchError(
      'ERR_METRICS_ADDRESS',
      `metrics: bad listen address "${address}": ${why}; write HOST:PORT, PORT (loopback), :PORT (every interface) or [IPv6]:PORT, e.g. 127.0.0.1:9477`,
      { exitCode: EXIT.usage },
    );
  let host: string | undefined;
  let portText: string;
  if (/^\d+$/.test(text)) {
    host = '127.0.0.1';
    portText = text;
  } else if (text.startsWith('[')) {
    const m = /^\[([^\]]+)\]:(\d*)$/.exec(text);
    if (!m) throw bad('a bracketed IPv6 address must be followed by :PORT');
    if (isIP(m[1]) !== 6) throw bad(`"${m[1]}" is not an IPv6 address`);
    host = m[1];
    portText = m[2];
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) throw bad('the port is missing');
    host = text.slice(0, colon) || undefined;
    portText = text.slice(colon + 1);
    if (host?.includes(':')) throw bad('put an IPv6 address in brackets, e.g. [::1]:9477');
    if (host !== undefined && isIP(host) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host)) {
      throw bad(`"${host}" is neither an IP address nor a host name`);
    }
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw bad(`"${portText}" is not a port (0-65535)`);
  return { host, port: Number(portText) };
}

/** Formats a host and port the way parseListenAddress reads them, brackets for IPv6. */
export function formatListenAddress(host: string | undefined, port: number): string {
  if (host === undefined) return `:${port}`;
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The metrics endpoint could not be opened. `reason` is the system's code (EADDRINUSE, EACCES,
 * EADDRNOTAVAIL, ENOTFOUND, ...); the message names the address and what to do about it.
 */
export class MetricsListenError extends CtwatchError {
  declare readonly code: 'ERR_METRICS_LISTEN';
  readonly address: string;
  readonly reason: string;

  constructor(address: string, cause: unknown) {
    const e = cause as NodeJS.ErrnoException;
    const reason = typeof e?.code === 'string' ? e.code : 'UNKNOWN';
    const port = address.slice(address.lastIndexOf(':') + 1);
    const advice: Record<string, string> = {
      EADDRINUSE:
        `the port is already in use by another process (another ctwatch, or an exporter); ` +
        `\`ss -ltnp 'sport = :${port}'\` shows which. Stop it or choose another port`,
      EACCES: 'permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a port of 1024 or above',
      EADDRNOTAVAIL:
        'the address is not one of this machine\'s (see `ip addr`); use 127.0.0.1, [::1], or :PORT for every interface',
      ENOTFOUND: 'the host name does not resolve; use an IP address',
      EAI_AGAIN: 'the host name could not be resolved right now; use an IP address',
    };
    const why = advice[reason] ?? `${e?.message ?? String(cause)}`;
    const exitCode = reason === 'EACCES' ? EXIT.noPerm : reason === 'EADDRINUSE' ? EXIT.unavailable : EXIT.config;
    super('ERR_METRICS_LISTEN', `metrics: cannot listen on ${address}: ${why}`, {
      errno: typeof e?.errno === 'number' ? e.errno : undefined,
      exitCode,
      cause,
    });
    this.name = 'MetricsListenError';
    this.address = address;
    this.reason = reason;
  }
}

export interface MetricsServer {
  /** the bound port: the one asked for, or the kernel's pick for port 0 */
  readonly port: number;
  /** the bound address ('127.0.0.1', '::' for every interface, ...) */
  readonly host: string;
  /** Stops listening and drops open connections; safe to call twice. */
  close(): Promise<void>;
}

export interface MetricsSource {
  /** the exposition text */
  metrics(): Promise<string>;
  readonly contentType: string;
}

const TEXT = 'text/plain; charset=utf-8';

function reply(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': TEXT, 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

async function handle(source: MetricsSource, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (path !== '/metrics' && path !== '/healthz') return reply(res, 404, 'not found: try /metrics or /healthz\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
  if (path === '/healthz') return reply(res, 200, 'ok');
  let body: string;
  try {
    body = await source.metrics();
  } catch (err) {
    return reply(res, 500, `metrics: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  reply(res, 200, body, { 'content-type': source.contentType });
}

/** Binds the endpoint; rejects with MetricsListenError (or CtwatchError ERR_METRICS_ADDRESS). */
export async function serveMetrics(source: MetricsSource, address: string): Promise<MetricsServer> {
  const { host, port } = parseListenAddress(address);
  const server: Server = createServer((req, res) => {
    handle(source, req, res).catch(() => {
      if (!res.headersSent) reply(res, 500, 'internal error\n');
      else res.destroy();
    });
  });
  // a scraper that opens a connection and sends nothing must not hold a socket forever
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(new MetricsListenError(formatListenAddress(host, port), err));
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  // after a successful bind, errors are per connection; without a listener one would crash us
  server.on('error', () => {});
  const bound = server.address();
  const boundPort = typeof bound === 'object' && bound !== null ? bound.port : port;
  const boundHost = typeof bound === 'object' && bound !== null ? bound.address : host ?? '';
  let closing: Promise<void> | undefined;
  return {
    port: boundPort,
    host: boundHost,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Prometheus keeps its scrape connection open between scrapes; close() alone would wait
        // for the keep-alive to time out
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
