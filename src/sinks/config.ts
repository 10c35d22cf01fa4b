/**
 * Sinks from configuration: the sinks file read with the config reader (src/config/reader.ts), so a
 * problem reads `sinks.yaml:12: sinks[2].url: expected an http:// or https:// URL` like any rules
 * file problem; `parseSinkConfigs` validates the `sinks:` list into typed specs (./spec.ts),
 * reporting every problem; ./build.ts builds them and reads the token, key and CA files, once, at
 * start-up. Secrets follow src/config/secrets.ts: from files or the environment, never inline.
 * Here: the file, the list and the keys every sink shares; each type's own keys: ./config-keys.ts.
 *
 * Adding a sink type: a `SinkType` and its spec (./spec.ts), a `read<Type>(fields, common)` in
 * ./config-keys.ts that asks for each of its keys through `Fields` (unknown keys are then reported
 * for it), and a transport in ./build.ts.
 */
import { join } from 'node:path';
import { isScalar, type LineCounter } from 'yaml';
import { ConfigReader, parseConfigText, readConfigFile, toNode, type ConfigIssue, type Fields } from '../config/reader.js';
import { readHeaders, readSecretRef } from '../config/secrets.js';
import { formatDurationValue, formatSizeValue } from '../config/units.js';
import { FORMAT_NAMES } from '../formats/index.js';
import { SinkConfigError } from './errors.js';
import type { SpoolOptions } from './spool.js';
import type { OverflowPolicy } from './types.js';
import type { RetryOptions } from './util.js';
import { defined, httpUrl, readFile_, readHttp, readNats, readSyslog, readTls } from './config-keys.js';
import {
  DEFAULT_EVENTS,
  EVENT_KINDS,
  MAX_SINKS,
  NATS_DEFAULT_EVENTS,
  SINK_TYPES,
  WEBHOOK_POLICY,
  type CommonSpec,
  type EventKind,
  type HttpSinkSpec,
  type SinkSpec,
  type SinkType,
} from './spec.js';

export type { SecretRef } from '../config/secrets.js';
export { SinkConfigError } from './errors.js';
export * from './spec.js';

export type SinkConfigIssue = ConfigIssue;

/** A batch is one request body: past 64 MiB most receivers refuse it (Elasticsearch stops at 100 MB). */
const MAX_BATCH_BYTES = 64 << 20;
/** The memory queue lives in the JavaScript heap (about 4 GiB): a bigger bound would crash, not bound. */
const MAX_MEMORY_BYTES = 1 << 30;
/** The spool's smallest segment (src/sinks/spool.ts never writes smaller ones). */
const MIN_SEGMENT_BYTES = 4096;

function sanitizeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '_');
}

export interface ParseOptions {
  /** spool directories default to SPOOL_ROOT/<sink name> when a sink says `spool: true` */
  spoolRoot?: string;
  /** the key the list was found under, for error paths (default 'sinks') */
  path?: string;
  /** the file the list came from, and its line positions, for `file:line:` in errors */
  file?: string;
  lines?: LineCounter;
}

/** Reads a sinks file: a bounded read, then the whole `sinks:` list validated at once. */
export async function loadSinkConfig(path: string, opts: Omit<ParseOptions, 'file' | 'lines'> = {}): Promise<SinkSpec[]> {
  const text = await readConfigFile(path, 'sinks file', 'ERR_SINK_CONFIG');
  return parseSinkFile(text, path, opts);
}

/** A sinks file's text: a mapping with a `sinks:` list. `file` names it in errors. */
export function parseSinkFile(text: string, file = '<sinks>', opts: Omit<ParseOptions, 'file' | 'lines'> = {}): SinkSpec[] {
  const doc = parseConfigText(text);
  if (doc.issues.length) throw new SinkConfigError(doc.issues, file);
  const reader = new ConfigReader(doc.lines);
  const root = doc.root;
  const top = root === null || (isScalar(root) && root.value === null) ? undefined : reader.fields(root, '', "a mapping with a top-level 'sinks:' list");
  if (top && !top.has('sinks')) {
    const near = top.keys()[0];
    reader.fail(root, 'sinks', `expected a top-level 'sinks:' list${near ? `, not '${near}:'` : ''} (see docs/siem.md)`);
  } else if (!top && reader.issues.length === 0) {
    reader.fail(root, 'sinks', "expected a top-level 'sinks:' list (see docs/siem.md)");
  }
  let specs: SinkSpec[] = [];
  if (top?.has('sinks')) specs = readSinkList(reader, top.value('sinks'), { ...opts, path: 'sinks' });
  if (reader.issues.length) throw new SinkConfigError(reader.sorted(), file);
  return specs;
}

/**
 * Validates a `sinks:` list — parsed from a file (YAML nodes, with `opts.lines`) or built in code
 * (plain data) — and throws SinkConfigError listing every problem found.
 */
export function parseSinkConfigs(raw: unknown, opts: ParseOptions = {}): SinkSpec[] {
  if (raw === undefined || raw === null) return [];
  const reader = new ConfigReader(opts.lines);
  const specs = readSinkList(reader, toNode(raw), opts);
  if (reader.issues.length) throw new SinkConfigError(reader.sorted(), opts.file);
  return specs;
}

function readSinkList(reader: ConfigReader, node: unknown, opts: ParseOptions): SinkSpec[] {
  const base = opts.path ?? 'sinks';
  const items = reader.list(node, base, 'a list of sinks');
  if (!items) return [];
  if (items.length > MAX_SINKS) {
    reader.fail(node, base, `${items.length} sinks: at most ${MAX_SINKS} (one sink can take several kinds of events)`);
    return [];
  }
  const specs: SinkSpec[] = [];
  const names = new Set<string>();
  const spoolDirs = new Map<string, string>();
  items.forEach((item, i) => {
    const path = `${base}[${i}]`;
    const r = reader.fields(item, path);
    if (!r) return;
    const type = r.oneOf('type', SINK_TYPES);
    if (!type) {
      if (!r.has('type')) r.issue('type', `is required (${SINK_TYPES.join(', ')})`);
      return;
    }
    const common = readCommon(r, type, i, names, opts, spoolDirs);
    let spec: SinkSpec | undefined;
    if (type === 'syslog') spec = readSyslog(r, common);
    else if (type === 'file') spec = readFile_(r, common);
    else if (type === 'nats') spec = readNats(r, common);
    else spec = readHttp(r, type, common);
    r.unknown(`for type ${type}`);
    if (spec) specs.push(spec);
  });
  return specs;
}

function readCommon(
  r: Fields,
  type: SinkType,
  index: number,
  names: Set<string>,
  opts: ParseOptions,
  spoolDirs: Map<string, string>,
): CommonSpec {
  let name = r.str('name') ?? `${type}-${index}`;
  if (names.has(name)) {
    r.issue('name', `duplicate sink name "${name}"`);
    name = `${name}-${index}`;
  }
  names.add(name);
  const webhook = type === 'webhook';
  // a webhook posts the alert object itself (docs/alerts.md): no format to choose, alerts only
  const format = webhook ? 'jsonl' : r.oneOf('format', FORMAT_NAMES, type === 'elasticsearch' ? 'ecs' : 'jsonl')!;
  const kinds: readonly EventKind[] = webhook ? WEBHOOK_POLICY.events : EVENT_KINDS;
  let events = webhook ? WEBHOOK_POLICY.events : type === 'nats' ? NATS_DEFAULT_EVENTS : DEFAULT_EVENTS;
  const ev = r.list('events', `a non-empty list of: ${kinds.join(', ')}`);
  if (ev !== undefined) {
    if (ev.length === 0) {
      r.issue('events', `expected a non-empty list of: ${kinds.join(', ')}`);
    } else {
      events = [];
      ev.forEach((node, j) => {
        const k = isScalar(node) ? node.value : undefined;
        if (typeof k === 'string' && (kinds as readonly string[]).includes(k)) events.push(k as EventKind);
        else r.reader.fail(node, `${r.at('events')}[${j}]`, `unknown event kind ${JSON.stringify(k)} (one of ${kinds.join(', ')})`);
      });
    }
  }
  let batch: CommonSpec['batch'] = webhook ? { ...WEBHOOK_POLICY.batch } : {};
  if (!webhook) {
    const b = r.obj('batch');
    if (b) batch = { maxRecords: b.int('max_records', 1, 100_000), maxBytes: b.size('max_bytes', { positive: true, max: MAX_BATCH_BYTES }), maxWaitMs: b.duration('max_wait', { max: 600 }) };
    b?.unknown();
  }
  const retry: Partial<RetryOptions> = { ...(webhook ? WEBHOOK_POLICY.retry : {}), ...readRetry(r) };
  const m = r.obj('memory');
  const memory = { ...(webhook ? WEBHOOK_POLICY.memory : {}), ...(m ? defined({ maxRecords: m.int('max_records', 1, 100_000_000), maxBytes: m.size('max_bytes', { positive: true, max: MAX_MEMORY_BYTES }) }) : {}) };
  m?.unknown();
  const overflow = r.oneOf<OverflowPolicy>('overflow', ['drop-oldest', 'drop-newest'], webhook ? WEBHOOK_POLICY.overflow : 'drop-newest')!;
  const spool = readSpool(r, name, opts.spoolRoot);
  if (type === 'file' && spool) r.issue('spool', 'a file sink does not need a spool');
  if (spool) {
    const other = spoolDirs.get(spool.dir);
    if (other) r.issue('spool.dir', `is also the spool of sink "${other}"; each sink needs its own`);
    spoolDirs.set(spool.dir, name);
  }
  return { name, at: r.path, format, events, batch, retry, memory, overflow, spool };
}

/** `retry: { initial, max, max_attempts, max_retry_after, long_retry_after }`: only what is given. */
function readRetry(r: Fields): Partial<RetryOptions> {
  const rt = r.obj('retry');
  if (!rt) return {};
  const retry = defined({
    initialMs: rt.duration('initial', { positive: true, max: 3600 }),
    maxMs: rt.duration('max', { positive: true, max: 86_400 }),
    maxAttempts: rt.int('max_attempts', 1, 1_000_000),
    maxRetryAfterMs: rt.duration('max_retry_after', { max: 86_400 }),
    longRetryAfter: ({ wait: 'wait', give_up: 'give-up' } as const)[rt.oneOf('long_retry_after', ['wait', 'give_up'] as const) ?? 'wait'],
  });
  if (!rt.has('long_retry_after')) delete retry.longRetryAfter;
  if (retry.initialMs !== undefined && retry.maxMs !== undefined && retry.initialMs > retry.maxMs) {
    rt.issue('initial', `${formatDurationValue(retry.initialMs / 1000)} is more than retry.max (${formatDurationValue(retry.maxMs / 1000)}): the first wait cannot be longer than the longest`);
  }
  rt.unknown();
  return retry;
}

function readSpool(r: Fields, name: string, spoolRoot: string | undefined): SpoolOptions | undefined {
  const sraw = r.raw('spool');
  if (sraw === true) {
    if (!spoolRoot) return r.issue('spool', 'needs a dir (spool: { dir: ..., max_bytes: ... })');
    return { dir: join(spoolRoot, sanitizeName(name)), maxBytes: 256 << 20, policy: 'drop-oldest' };
  }
  if (sraw === undefined || sraw === false) return undefined;
  const s = r.obj('spool');
  if (!s) return undefined;
  const dir = s.str('dir') ?? (spoolRoot ? join(spoolRoot, sanitizeName(name)) : undefined);
  if (!dir) s.missing('dir');
  const maxBytes = s.size('max_bytes') ?? 256 << 20;
  const policy = s.oneOf<OverflowPolicy>('policy', ['drop-oldest', 'drop-newest'], 'drop-oldest')!;
  const segmentBytes = s.size('segment_bytes', { min: MIN_SEGMENT_BYTES });
  if (segmentBytes !== undefined && segmentBytes > maxBytes) {
    s.issue('segment_bytes', `${formatSizeValue(segmentBytes)} is more than spool.max_bytes (${formatSizeValue(maxBytes)}): a spool holds whole segments`);
  }
  const fsync = s.bool('fsync', false);
  s.unknown();
  return dir ? { dir, maxBytes, policy, segmentBytes, fsync } : undefined;
}

/**
 * A rules file's `- webhook: URL` delivery, read as the HTTP sink it is. Its own keys: `retries`
 * (attempts after the first) and `queue` (alerts kept), shorthands of `retry.max_attempts` and
 * `memory.max_records`; and like any sink: timeout, token_file/token_env, headers, tls, retry,
 * spool. `min_severity` and `send_resolved` are the rules file's (routing, not delivery).
 */
export function readWebhookDelivery(f: Fields, route: readonly string[]): HttpSinkSpec | undefined {
  f.unknown('for a webhook', ['webhook', 'headers', 'token_file', 'token_env', 'timeout', 'retries', 'retry', 'queue', 'spool', 'tls', ...route]);
  const url = httpUrl(f, 'webhook');
  const token = readSecretRef(f, 'token_file', 'token_env');
  const headers = readHeaders(f) ?? {};
  const timeoutMs = f.duration('timeout', { positive: true, max: 3600 }) ?? WEBHOOK_POLICY.timeoutMs;
  const retry: Partial<RetryOptions> = { ...WEBHOOK_POLICY.retry, ...readRetry(f) };
  const retries = f.int('retries', 0, 1000);
  if (retries !== undefined) {
    if (f.obj('retry')?.has('max_attempts')) f.issue('retries', 'give retries or retry.max_attempts, not both');
    retry.maxAttempts = retries + 1;
  }
  const queue = f.int('queue', 1, 1_000_000);
  const spool = readSpool(f, 'webhook', undefined);
  const tls = readTls(f);
  if (!url) return undefined;
  return {
    type: 'webhook',
    name: `webhook ${new URL(url).origin}`,
    at: f.path,
    url,
    format: 'jsonl',
    events: WEBHOOK_POLICY.events,
    batch: { ...WEBHOOK_POLICY.batch },
    retry,
    memory: { maxRecords: queue ?? WEBHOOK_POLICY.memory.maxRecords },
    overflow: WEBHOOK_POLICY.overflow,
    ...(spool ? { spool } : {}),
    ...(token ? { token } : {}),
    headers,
    gzip: false,
    timeoutMs,
    ...(tls ? { tls } : {}),
  };
}

