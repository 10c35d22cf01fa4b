/**
 * HTTP(S) delivery with undici: Splunk HEC, Elasticsearch `_bulk`, a generic NDJSON POST, and the
 * alert webhook (one JSON document per POST) — one transport for the SIEM feed and for alerts.
 *
 * Status handling (the engine retries with backoff, honouring Retry-After):
 *   2xx                      delivered (for _bulk: per-item results, see below)
 *   408, 429, 5xx, network   retried
 *   401, 403                 retried: a rotated token is fixed by an operator, the data must wait
 *   413                      the batch is split in halves
 *   other 4xx                rejected for good (counted as dropped, lastError says why)
 * `_bulk` answers 200 with per-item statuses: 429/5xx items are retried (only those), a 409 on
 * `create` means the document (deterministic _id) is already there from an earlier attempt, other
 * item errors are rejections. An answer that cannot be read item by item is a rejection too:
 * retrying the same batch would get the same answer, forever.
 *
 * A receiver cannot hold a send or the memory: the whole request (connect, upload, answer) has one
 * deadline, `timeoutMs`, however slowly the answer trickles in, and at most MAX_ANSWER bytes of an
 * answer are read (the rest is cut off with the connection).
 */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { type Dispatcher, Pool } from 'undici';
import type { SinkRecord } from '../formats/common.js';
import { type SendOutcome, type Transport, TransportError } from './types.js';
import { errorMessage, parseRetryAfter } from './util.js';
import { basicForms, headerSecrets, scrub, secretForms, urlSecrets } from '../config/secrets.js';
import { deadlineSignal, MAX_TIMER_MS } from '../util/timers.js';
import { formatDurationValue } from '../config/units.js';

const gzip = promisify(gzipCb);

export type HttpApi = 'splunk-hec' | 'elasticsearch' | 'ndjson' | 'webhook';

/** Bytes of an answer read: enough for any error object; the rest is not read. */
export const MAX_ANSWER = 64 << 10;
/** A `_bulk` answer lists every item (filter_path keeps each to ~40 bytes): read more of it. */
export const MAX_BULK_ANSWER = 4 << 20;

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
  /** names of `headers` whose values are credentials (besides those named or looking like one,
   * see headerSecrets): scrubbed from every error like `auth` */
  secretHeaders?: readonly string[];
  gzip?: boolean;
  /** zlib level (default 1: JSON compresses ~8x at level 1 and the collector must stay cheap) */
  gzipLevel?: number;
  /** deadline for a whole request, answer included; default 30 000 */
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

/** `{ "create": { "status": 201, ... } }`: one operation with a numeric status. */
function isBulkItem(w: unknown): w is Record<string, BulkItem> {
  if (w === null || typeof w !== 'object' || Array.isArray(w)) return false;
  const e = Object.values(w);
  return e.length === 1 && e[0] !== null && typeof e[0] === 'object' && Number.isInteger((e[0] as BulkItem).status);
}

/**
 * A 2xx `_bulk` answer that does not say what happened to each item. Not retried: the same batch
 * would get the same answer, for ever; the records are counted as failed and lastError says why.
 */
function unreadable(why: string): TransportError {
  return new TransportError(`unreadable _bulk answer (${why}): cannot tell which records were stored`, { retryable: false });
}

/** Reads at most `limit` bytes of an answer; past it, stops reading and drops the connection. */
async function readBounded(body: Dispatcher.ResponseData['body'], limit: number): Promise<{ text: string; cut: boolean }> {
  const chunks: Buffer[] = [];
  let got = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    if (got + b.length > limit) {
      chunks.push(b.subarray(0, limit - got));
      body.destroy();
      return { text: Buffer.concat(chunks).toString('utf8'), cut: true };
    }
    chunks.push(b);
    got += b.length;
  }
  return { text: Buffer.concat(chunks).toString('utf8'), cut: false };
}

export class HttpTransport implements Transport {
  readonly description: string;
  private readonly url: URL;
  private readonly pool: Pool;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  /** every form of every credential this transport sends, for scrubbing */
  readonly secrets: readonly string[];

  constructor(private readonly o: HttpTransportOptions) {
    this.url = endpoint(o.api, o.url);
    const secrets = urlSecrets(this.url);
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
    // a webhook's path often is its token (chat and paging services): the origin only
    this.description = o.api === 'webhook' ? `webhook ${this.url.origin}` : `${o.api} ${this.url.origin}${this.url.pathname}`;
    if (auth) secrets.push(...(auth.scheme === 'basic' ? basicForms(auth.username ?? '', auth.secret) : secretForms(auth.secret)));
    secrets.push(...headerSecrets(o.headers ?? {}, o.secretHeaders));
    if (o.api === 'webhook' && this.url.pathname.length > 1) secrets.push(this.url.pathname, this.url.pathname.slice(1));
    this.secrets = secrets;
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.headers = {
      'content-type': o.api === 'splunk-hec' || o.api === 'webhook' ? 'application/json' : 'application/x-ndjson',
      'user-agent': 'ctwatch',
      ...o.headers,
    };
    if (auth) this.headers.authorization = authHeader(auth);
    if (o.gzip) this.headers['content-encoding'] = 'gzip';
    const t = o.tls ?? {};
    this.pool = new Pool(this.url.origin, {
      connections: 2,
      pipelining: 1,
      // per-chunk timers (a trickle resets them); the deadline in send() bounds the whole request
      headersTimeout: Math.min(this.timeoutMs, MAX_TIMER_MS),
      bodyTimeout: Math.min(this.timeoutMs, MAX_TIMER_MS),
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
    const api = this.o.api;
    const text =
      api === 'webhook' ? (batch.length === 1 ? batch[0] : `[${batch.join(',')}]`) : api === 'splunk-hec' ? batch.join('\n') : batch.join('\n') + '\n';
    let body: Buffer = Buffer.from(text, 'utf8');
    if (this.o.gzip) body = await gzip(body, { level: this.o.gzipLevel ?? 1 });
    let status: number;
    let headers: Record<string, string | string[] | undefined>;
    let answer: string;
    let cut: boolean;
    const deadline = deadlineSignal(this.timeoutMs, signal);
    try {
      const res = await this.pool.request({
        origin: this.url.origin,
        path: this.url.pathname + this.url.search,
        method: 'POST',
        headers: this.headers,
        body,
        signal: deadline.signal,
      });
      status = res.statusCode;
      headers = res.headers;
      ({ text: answer, cut } = await readBounded(res.body, api === 'elasticsearch' && status < 300 ? MAX_BULK_ANSWER : MAX_ANSWER));
    } catch (err) {
      if (deadline.expired()) {
        throw new TransportError(`no complete answer within ${formatDurationValue(this.timeoutMs / 1000)} (timeout): the receiver is slow, or trickling its answer`, { retryable: true });
      }
      throw new TransportError(this.scrub(errorMessage(err)), { retryable: true, cause: err });
    } finally {
      deadline.clear();
    }
    const retryAfterMs = parseRetryAfter(headers['retry-after'] as string | undefined);
    if (status >= 200 && status < 300) {
      if (api === 'elasticsearch') {
        if (cut) throw new TransportError(`_bulk answered more than ${MAX_BULK_ANSWER >> 20} MiB: cannot read per-item results (does a proxy drop filter_path?)`, { retryable: false });
        return this.bulkOutcome(answer, batch.length, retryAfterMs);
      }
      return;
    }
    // an API's error object (JSON) or a line of text says why; an HTML error page is noise
    const type = String(headers['content-type'] ?? '');
    // scrubbed before it is cut: a secret cut in two would leave its head unscrubbed
    const quoted = /json|text\/plain/i.test(type) ? this.scrub(answer).slice(0, 300).replace(/\s+/g, ' ').trim() : '';
    const msg = `HTTP ${status}${quoted ? `: ${quoted}` : ''}`;
    if (status === 413) throw new TransportError(msg, { retryable: true, split: true });
    if (status === 408 || status === 429 || status >= 500) throw new TransportError(msg, { retryable: true, retryAfterMs });
    if (status === 401 || status === 403) {
      // a rotated credential gets fixed by an operator: retried like any failure, within the retry policy
      throw new TransportError(`${msg} (check the credentials)`, { retryable: true, retryAfterMs });
    }
    throw new TransportError(msg, { retryable: false });
  }

  private bulkOutcome(answer: string, n: number, retryAfterMs?: number): SendOutcome | void {
    let parsed: { errors?: boolean; items?: Record<string, BulkItem>[] };
    try {
      parsed = JSON.parse(answer);
    } catch {
      throw unreadable('not JSON');
    }
    if (parsed === null || typeof parsed !== 'object') throw unreadable('not an object');
    if (!parsed.errors) return;
    const items = Array.isArray(parsed.items) ? parsed.items : [];
    if (items.length !== n) throw unreadable(`${items.length} items for ${n}`);
    const bad = items.findIndex((w) => !isBulkItem(w));
    if (bad >= 0) throw unreadable(`item ${bad} is ${JSON.stringify(items[bad])?.slice(0, 60)}, not { op: { status } }`);
    const retry: number[] = [];
    const rejected: number[] = [];
    let duplicates = 0;
    let firstRejected: string | undefined;
    let firstRetry: string | undefined;
    items.forEach((wrapper, i) => {
      const [op, item] = Object.entries(wrapper)[0];
      const st = item.status!;
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
        `_bulk ${rejected.length} rejected, ${retry.length} to retry` +
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
