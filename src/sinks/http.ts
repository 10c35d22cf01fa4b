/**
 * HTTP(S) batch delivery with undici: Splunk HEC, Elasticsearch `_bulk`, and a generic NDJSON POST.
 *
 * Status handling (the engine retries with backoff, honouring Retry-After):
 *   2xx                      delivered (for _bulk: per-item results, see below)
 *   408, 429, 5xx, network   retried
 *   401, 403                 retried: a rotated token is fixed by an operator, the data must wait
 *   413                      the batch is split in halves
 *   other 4xx                rejected for good (counted as dropped, lastError says why)
 * `_bulk` answers 200 with per-item statuses: 429/5xx items are retried (only those), a 409 on
 * `create` means the document (deterministic _id) is already there from an earlier attempt, other
 * item errors are rejections.
 */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { Pool } from 'undici';
import type { SinkRecord } from '../formats/common.js';
import { type SendOutcome, type Transport, TransportError } from './types.js';
import { errorMessage, parseRetryAfter } from './util.js';
import { basicForms, scrub, secretForms } from '../config/secrets.js';

const gzip = promisify(gzipCb);

export type HttpApi = 'splunk-hec' | 'elasticsearch' | 'ndjson';

export interface HttpTlsOptions {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  servername?: string;
  rejectUnauthorized?: boolean;
}

export interface HttpAuth {
  /** 'splunk' -> `Splunk <token>`, 'bearer', 'apikey' (Elasticsearch `ApiKey <key>`), 'basic' */
  scheme: 'splunk' | 'bearer' | 'apikey' | 'basic';
  /** the secret: token / api key, or for basic the password */
  secret: string;
  username?: string;
}

export interface HttpTransportOptions {
  api: HttpApi;
  url: string;
  auth?: HttpAuth;
  headers?: Record<string, string>;
  /** names of `headers` whose values are credentials: scrubbed from every error like `auth` */
  secretHeaders?: readonly string[];
  gzip?: boolean;
  /** zlib level (default 1: JSON compresses ~8x at level 1 and the collector must stay cheap) */
  gzipLevel?: number;
  timeoutMs?: number;
  tls?: HttpTlsOptions;
  /** the formatted line is a JSON object (false for CEF) */
  lineIsJson: boolean;
  hec?: { index?: string; source?: string; sourcetype?: string; host?: string; fields?: Record<string, string> };
  elasticsearch?: {
    index: string;
    /** data streams accept `create` only; `create` + deterministic _id makes replays idempotent */
    op?: 'create' | 'index';
    pipeline?: string;
    /** a content hash as _id (default true) */
    deterministicIds?: boolean;
  };
}

function endpoint(api: HttpApi, raw: string): URL {
  const u = new URL(raw);
  const path = u.pathname.replace(/\/+$/, '');
  if (api === 'splunk-hec' && path === '') u.pathname = '/services/collector/event';
  if (api === 'elasticsearch' && !path.endsWith('/_bulk')) u.pathname = `${path}/_bulk`;
  if (api === 'elasticsearch' && !u.searchParams.has('filter_path')) {
    // the full _bulk answer repeats every document's metadata; we need statuses and errors
    u.searchParams.set('filter_path', 'errors,items.*.status,items.*.error.type,items.*.error.reason');
  }
  return u;
}

function authHeader(a: HttpAuth): string {
  switch (a.scheme) {
    case 'splunk':
      return `Splunk ${a.secret}`;
    case 'bearer':
      return `Bearer ${a.secret}`;
    case 'apikey':
      return `ApiKey ${a.secret}`;
    case 'basic':
      return `Basic ${Buffer.from(`${a.username ?? ''}:${a.secret}`).toString('base64')}`;
  }
}

interface BulkItem {
  status?: number;
  error?: { type?: string; reason?: string };
}

export class HttpTransport implements Transport {
  readonly description: string;
  private readonly url: URL;
  private readonly pool: Pool;
  private readonly headers: Record<string, string>;
  /** every form of every credential this transport sends, for scrubbing */
  readonly secrets: readonly string[];

  constructor(private readonly o: HttpTransportOptions) {
    this.url = endpoint(o.api, o.url);
    // credentials in the URL would end up in logs: move them to a header and out of the URL
    let auth = o.auth;
    if (this.url.username || this.url.password) {
      auth ??= {
        scheme: 'basic',
        username: decodeURIComponent(this.url.username),
        secret: decodeURIComponent(this.url.password),
      };
      this.url.username = '';
      this.url.password = '';
    }
    this.description = `${o.api} ${this.url.origin}${this.url.pathname}`;
    const secrets: string[] = [];
    if (auth) secrets.push(...(auth.scheme === 'basic' ? basicForms(auth.username ?? '', auth.secret) : secretForms(auth.secret)));
    for (const name of o.secretHeaders ?? []) {
      const v = o.headers?.[name];
      if (v) secrets.push(...secretForms(v));
    }
    this.secrets = secrets;
    this.headers = {
      'content-type': o.api === 'splunk-hec' ? 'application/json' : 'application/x-ndjson',
      'user-agent': 'ctwatch',
      ...o.headers,
    };
    if (auth) this.headers.authorization = authHeader(auth);
    if (o.gzip) this.headers['content-encoding'] = 'gzip';
    const t = o.tls ?? {};
    this.pool = new Pool(this.url.origin, {
      connections: 2,
      pipelining: 1,
      headersTimeout: o.timeoutMs ?? 30_000,
      bodyTimeout: o.timeoutMs ?? 30_000,
      connect: {
        ca: t.ca,
        cert: t.cert,
        key: t.key,
        servername: t.servername,
        rejectUnauthorized: t.rejectUnauthorized ?? true,
        timeout: 10_000,
      },
    });
  }

  encode(rec: SinkRecord, line: string): string {
    const o = this.o;
    if (o.api === 'splunk-hec') {
      const h = o.hec ?? {};
      const t = typeof rec.time === 'number' ? (rec.time / 1e6).toFixed(3) : undefined;
      let env = '{';
      if (t) env += `"time":${t},`;
      if (h.host) env += `"host":${JSON.stringify(h.host)},`;
      if (h.source) env += `"source":${JSON.stringify(h.source)},`;
      env += `"sourcetype":${JSON.stringify(h.sourcetype ?? 'ctwatch')},`;
      if (h.index) env += `"index":${JSON.stringify(h.index)},`;
      if (h.fields) env += `"fields":${JSON.stringify(h.fields)},`;
      // the line is already JSON: splice it in rather than parse and re-serialise it
      return `${env}"event":${o.lineIsJson ? line : JSON.stringify(line)}}`;
    }
    if (o.api === 'elasticsearch') {
      const es = o.elasticsearch!;
      const meta: Record<string, string> = { _index: es.index };
      if (es.deterministicIds !== false) {
        meta._id = createHash('sha1').update(line).digest('base64url');
      }
      if (es.pipeline) meta.pipeline = es.pipeline;
      const source = o.lineIsJson ? line : JSON.stringify({ message: line });
      return `${JSON.stringify({ [es.op ?? 'create']: meta })}\n${source}`;
    }
    return line;
  }

  async send(batch: readonly string[], signal: AbortSignal): Promise<SendOutcome | void> {
    const text = this.o.api === 'splunk-hec' ? batch.join('\n') : batch.join('\n') + '\n';
    let body: Buffer = Buffer.from(text, 'utf8');
    if (this.o.gzip) body = await gzip(body, { level: this.o.gzipLevel ?? 1 });
    let status: number;
    let headers: Record<string, string | string[] | undefined>;
    let answer: string;
    try {
      const res = await this.pool.request({
        origin: this.url.origin,
        path: this.url.pathname + this.url.search,
        method: 'POST',
        headers: this.headers,
        body,
        signal,
      });
      status = res.statusCode;
      headers = res.headers;
      answer = await res.body.text();
    } catch (err) {
      throw new TransportError(this.scrub(`${this.description}: ${errorMessage(err)}`), { retryable: true, cause: err });
    }
    const retryAfterMs = parseRetryAfter(headers['retry-after'] as string | undefined);
    const snippet = this.scrub(answer.slice(0, 300).replace(/\s+/g, ' '));
    if (status >= 200 && status < 300) {
      if (this.o.api === 'elasticsearch') return this.bulkOutcome(answer, batch.length, retryAfterMs);
      return;
    }
    const msg = `${this.description}: HTTP ${status}${snippet ? `: ${snippet}` : ''}`;
    if (status === 413) throw new TransportError(msg, { retryable: true, split: true });
    if (status === 408 || status === 429 || status >= 500) throw new TransportError(msg, { retryable: true, retryAfterMs });
    if (status === 401 || status === 403) {
      throw new TransportError(`${msg} (check the token; records are kept and retried)`, { retryable: true, retryAfterMs });
    }
    throw new TransportError(msg, { retryable: false });
  }

  private bulkOutcome(answer: string, n: number, retryAfterMs?: number): SendOutcome | void {
    let parsed: { errors?: boolean; items?: Record<string, BulkItem>[] };
    try {
      parsed = JSON.parse(answer);
    } catch {
      throw new TransportError(`${this.description}: unparseable _bulk response`, { retryable: true });
    }
    if (!parsed.errors) return;
    const items = parsed.items ?? [];
    if (items.length !== n) {
      throw new TransportError(`${this.description}: _bulk answered ${items.length} items for ${n}`, { retryable: true });
    }
    const retry: number[] = [];
    const rejected: number[] = [];
    let duplicates = 0;
    let firstRejected: string | undefined;
    let firstRetry: string | undefined;
    items.forEach((wrapper, i) => {
      const [op, item] = Object.entries(wrapper)[0] ?? ['', {}];
      const st = item.status ?? 0;
      if (st >= 200 && st < 300) return;
      if (st === 409 && op === 'create') {
        duplicates++;
        return;
      }
      const why = `item ${i}: ${st} ${item.error?.type ?? ''} ${item.error?.reason ?? ''}`.trim();
      if (st === 429 || st >= 500) {
        retry.push(i);
        firstRetry ??= why;
      } else {
        rejected.push(i);
        firstRejected ??= why;
      }
    });
    if (retry.length === 0 && rejected.length === 0) return { duplicates };
    return {
      retry,
      rejected,
      duplicates,
      retryAfterMs,
      // the rejection first: it is the one that needs a human (a mapping to fix)
      error: this.scrub(
        `${this.description}: _bulk ${rejected.length} rejected, ${retry.length} to retry` +
          (firstRejected ? `; ${firstRejected}` : '') +
          (firstRetry ? `; ${firstRetry}` : ''),
      ),
    };
  }

  private scrub(s: string): string {
    return scrub(s, this.secrets);
  }

  async close(): Promise<void> {
    await this.pool.close().catch(() => this.pool.destroy());
  }
}
