/**
 * Sinks from configuration: the sinks file read with the config reader (src/config/reader.ts), so a
 * problem reads `sinks.yaml:12: sinks[2].url: expected an http:// or https:// URL` like any rules
 * file problem; `parseSinkConfigs` validates the `sinks:` list into typed specs, reporting every
 * problem; `createSinks` builds them, reading token, key and CA files — the only I/O here, done once
 * at start-up. Secrets follow src/config/secrets.ts: from files or the environment, never inline.
 *
 * Adding a sink type: a `SinkType`, its spec, a `read<Type>(fields, common)` that asks for each of
 * its keys through `Fields` (unknown keys are then reported for it), and a transport in createSinks.
 */
import { join } from 'node:path';
import { isScalar, type LineCounter } from 'yaml';
import { ConfigReader, parseConfigText, readConfigFile, toNode, type ConfigIssue, type Fields } from '../config/reader.js';
import { readHeaders, readSecretRef, type HeaderValue, type SecretRef } from '../config/secrets.js';
import { formatDurationValue, formatSizeValue } from '../config/units.js';
import { FORMAT_NAMES, type FormatName } from '../formats/index.js';
import { FACILITIES } from '../formats/syslog.js';
import { SinkConfigError } from './errors.js';
import type { SpoolOptions } from './spool.js';
import type { OverflowPolicy } from './types.js';
import type { RetryOptions } from './util.js';
import type { NatsStreamOptions } from './nats.js';

export type { SecretRef } from '../config/secrets.js';
export { SinkConfigError } from './errors.js';

export type SinkConfigIssue = ConfigIssue;

export type SinkType = 'syslog' | 'splunk_hec' | 'elasticsearch' | 'http' | 'webhook' | 'file' | 'nats';
const SINK_TYPES: SinkType[] = ['syslog', 'splunk_hec', 'elasticsearch', 'http', 'webhook', 'file', 'nats'];

/** Sinks in one file: each holds memory and a connection, and a list this long is a mistake. */
export const MAX_SINKS = 64;

/** Event kinds a sink can select; `conntrack` = new+update+destroy+snapshot, `other` = the rest. */
export const EVENT_KINDS = [
  'new', 'update', 'destroy', 'snapshot', 'conntrack', 'flow', 'alert', 'resolved',
  'overflow', 'snapshot_done', 'churn', 'other',
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];
/** Raw conntrack events can run at 100k/s: a SIEM sink gets them only when asked. */
export const DEFAULT_EVENTS: EventKind[] = ['flow', 'alert', 'resolved', 'overflow'];
/** A nats sink feeds `ctwatch fleet`: the churn snapshots (one a second) too. */
export const NATS_DEFAULT_EVENTS: EventKind[] = ['flow', 'alert', 'resolved', 'churn', 'overflow'];

export interface TlsFiles {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  servername?: string;
  verify: boolean;
}

interface CommonSpec {
  name: string;
  /** where the sink was configured, for errors found when it is built: `sinks[2]` */
  at: string;
  format: FormatName;
  events: EventKind[];
  batch: { maxRecords?: number; maxBytes?: number; maxWaitMs?: number };
  retry: Partial<RetryOptions>;
  memory: { maxRecords?: number; maxBytes?: number };
  overflow: OverflowPolicy;
  spool?: SpoolOptions;
}

export interface SyslogSinkSpec extends CommonSpec {
  type: 'syslog';
  protocol: 'udp' | 'tcp' | 'tls';
  host: string;
  port: number;
  facility: number;
  appName: string;
  hostname?: string;
  structuredData: boolean;
  pen?: number;
  maxMessageBytes?: number;
  /** deadline for one batch to be taken by the receiver's socket; then reconnect and retry */
  timeoutMs: number;
  tls?: TlsFiles;
}

export interface HttpSinkSpec extends CommonSpec {
  type: 'splunk_hec' | 'elasticsearch' | 'http' | 'webhook';
  url: string;
  token?: SecretRef;
  username?: string;
  gzip: boolean;
  timeoutMs: number;
  /** plain values, or secrets read at start-up (credential headers) */
  headers: Record<string, HeaderValue>;
  tls?: TlsFiles;
  index?: string;
  source?: string;
  sourcetype?: string;
  fields?: Record<string, string>;
  op?: 'create' | 'index';
  pipeline?: string;
}

export interface FileSinkSpec extends CommonSpec {
  type: 'file';
  path: string;
  rotateBytes?: number;
  rotateIntervalMs?: number;
  gzip: boolean;
  maxFiles?: number;
}

export interface NatsSinkSpec extends CommonSpec {
  type: 'nats';
  servers: string[];
  /** the subject's host token (default: this machine's short host name) */
  host?: string;
  subjectPrefix: string;
  user?: string;
  password?: SecretRef;
  token?: SecretRef;
  credsFile?: string;
  tls?: TlsFiles;
  /** deadline for a connect and for a batch's PubAcks */
  timeoutMs: number;
  /** PubAcks outstanding at once (1 = wait for each) */
  maxInflight: number;
  /** the stream and its limits (one shape, the transport's) */
  stream?: NatsStreamOptions;
}

export type SinkSpec = SyslogSinkSpec | HttpSinkSpec | FileSinkSpec | NatsSinkSpec;

/** A batch is one request body: past 64 MiB most receivers refuse it (Elasticsearch stops at 100 MB). */
const MAX_BATCH_BYTES = 64 << 20;
/** The memory queue lives in the JavaScript heap (about 4 GiB): a bigger bound would crash, not bound. */
const MAX_MEMORY_BYTES = 1 << 30;
/** The spool's smallest segment (src/sinks/spool.ts never writes smaller ones). */
const MIN_SEGMENT_BYTES = 4096;

function readTls(r: Fields): TlsFiles | undefined {
  const t = r.obj('tls');
  if (!t) return undefined;
  const spec: TlsFiles = {
    caFile: t.str('ca_file'),
    certFile: t.str('cert_file'),
    keyFile: t.str('key_file'),
    servername: t.str('servername'),
    verify: t.bool('verify', true),
  };
  if (!!spec.certFile !== !!spec.keyFile) t.issue('', 'cert_file and key_file go together');
  t.unknown();
  return spec;
}

function httpUrl(r: Fields, key = 'url'): string | undefined {
  const url = r.str(key, true);
  if (url === undefined) return undefined;
  let ok = false;
  try {
    ok = ['http:', 'https:'].includes(new URL(url).protocol);
  } catch {
    // reported below
  }
  if (!ok) return r.issue(key, 'expected an http:// or https:// URL');
  return url;
}

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

/**
 * The alert webhook's policy, as config: alerts are few and urgent, so one per POST, a short
 * timeout, a bounded number of tries, the oldest waiting alert dropped when the queue is full, and
 * a receiver asking to wait longer than 2 minutes gets that alert given up rather than holding the
 * ones behind it. A SIEM sink keeps its data instead (unbounded retries, a spool). Every one of
 * these can be set in the file like any sink's.
 */
export const WEBHOOK_POLICY = {
  events: ['alert', 'resolved'] as EventKind[],
  batch: { maxRecords: 1, maxWaitMs: 0 },
  retry: { initialMs: 500, maxMs: 30_000, maxAttempts: 6, maxRetryAfterMs: 120_000, longRetryAfter: 'give-up' } as Partial<RetryOptions>,
  memory: { maxRecords: 1000 },
  overflow: 'drop-oldest' as OverflowPolicy,
  timeoutMs: 5000,
};

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

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
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

function readSyslog(r: Fields, common: CommonSpec): SyslogSinkSpec | undefined {
  const protocol = r.oneOf('protocol', ['udp', 'tcp', 'tls'] as const, 'tls')!;
  const host = r.str('host', true);
  const port = r.int('port', 1, 65535) ?? (protocol === 'tls' ? 6514 : 514);
  const fac = r.raw('facility');
  let facility = FACILITIES.local0;
  if (typeof fac === 'string' && fac in FACILITIES) facility = FACILITIES[fac];
  else if (typeof fac === 'number' && Number.isInteger(fac) && fac >= 0 && fac <= 23) facility = fac;
  else if (fac !== undefined) r.issue('facility', 'expected a facility name (local0..local7, daemon, ...) or 0..23');
  const appName = r.str('app_name') ?? 'ctwatch';
  const hostname = r.str('hostname');
  const structuredData = r.bool('structured_data', true);
  const pen = r.int('pen', 1, 2 ** 31);
  const maxMessageBytes = r.int('max_message_bytes', 480, 1 << 20);
  const timeoutMs = r.duration('timeout', { positive: true, max: 3600 }) ?? 30_000;
  const tls = readTls(r);
  if (tls && protocol !== 'tls') r.issue('tls', `only applies to protocol: tls (this sink uses ${protocol})`);
  if (!host) return undefined;
  return {
    ...common, type: 'syslog', protocol, host, port, facility, appName, hostname, structuredData, pen,
    maxMessageBytes, timeoutMs, tls: tls ?? (protocol === 'tls' ? { verify: true } : undefined),
  };
}

function readHttp(r: Fields, type: HttpSinkSpec['type'], common: CommonSpec): HttpSinkSpec | undefined {
  const url = httpUrl(r);
  let token: SecretRef | undefined;
  let username: string | undefined;
  if (type === 'elasticsearch') {
    username = r.str('username');
    token = username ? readSecretRef(r, 'password_file', 'password_env') : readSecretRef(r, 'api_key_file', 'api_key_env');
  } else {
    token = readSecretRef(r, 'token_file', 'token_env');
  }
  if (type === 'splunk_hec' && !token) r.missing('token_file', 'a HEC token is required (token_file or token_env)');
  const spec: Partial<HttpSinkSpec> = {
    gzip: r.bool('gzip', type !== 'webhook'),
    timeoutMs: r.duration('timeout', { positive: true, max: 3600 }) ?? (type === 'webhook' ? WEBHOOK_POLICY.timeoutMs : 30_000),
    headers: readHeaders(r) ?? {},
    tls: readTls(r),
  };
  if (type === 'splunk_hec') {
    spec.index = r.str('index');
    spec.source = r.str('source');
    spec.sourcetype = r.str('sourcetype');
    spec.fields = r.stringMap('fields');
  }
  if (type === 'elasticsearch') {
    spec.index = r.str('index', true);
    spec.op = r.oneOf('op', ['create', 'index'] as const, 'create');
    spec.pipeline = r.str('pipeline');
  }
  if (!url) return undefined;
  return { ...common, ...spec, type, url, token, username } as HttpSinkSpec;
}

function natsUrl(r: Fields): string[] | undefined {
  const list = r.has('servers') ? r.stringList('servers', true) : r.has('url') ? r.stringList('url', true) : r.missing('servers', 'give servers: [nats://HOST:4222, ...] (or url:)');
  if (!list) return undefined;
  const key = r.has('servers') ? 'servers' : 'url';
  if (list.length === 0) return r.issue(key, 'expected at least one nats:// or tls:// URL');
  for (const u of list) {
    let ok = false;
    try {
      const url = new URL(u);
      ok = ['nats:', 'tls:'].includes(url.protocol) && url.username === '' && url.password === '';
    } catch {
      // reported below
    }
    if (!ok) return r.issue(key, `${JSON.stringify(u.replace(/\/\/[^@/]*@/, '//'))}: expected nats://HOST:PORT or tls://HOST:PORT, credentials in password_file/token_file/creds_file`);
  }
  return list;
}

function readNats(r: Fields, common: CommonSpec): NatsSinkSpec | undefined {
  const servers = natsUrl(r);
  const host = r.str('host');
  if (host !== undefined && !/^[A-Za-z0-9_-]+$/.test(host)) r.issue('host', 'expected one subject token: letters, digits, - and _');
  const subjectPrefix = r.str('subject_prefix') ?? 'ctwatch';
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(subjectPrefix)) r.issue('subject_prefix', 'expected subject tokens (letters, digits, - and _) separated by dots');
  const user = r.str('user');
  const password = readSecretRef(r, 'password_file', 'password_env');
  const token = readSecretRef(r, 'token_file', 'token_env');
  const credsFile = r.str('creds_file');
  if (user && !password) r.issue('user', 'needs password_file or password_env');
  if (password && !user) r.issue('password_file', 'needs user');
  if ([user, token, credsFile].filter(Boolean).length > 1) r.issue('', 'give one of user + password_file, token_file or creds_file');
  const tls = readTls(r);
  const timeoutMs = r.duration('timeout', { positive: true, max: 3600 }) ?? 10_000;
  const maxInflight = r.int('max_inflight', 1, 100_000) ?? 1000;
  const st = r.obj('stream');
  let stream: NatsSinkSpec['stream'];
  if (st) {
    stream = {
      name: st.str('name') ?? 'CTWATCH',
      create: st.bool('create', false),
      ...defined({
        replicas: st.int('replicas', 1, 5),
        maxAgeMs: st.duration('max_age', { positive: true }),
        maxBytes: st.size('max_bytes'),
        maxMsgs: st.int('max_msgs', 1, Number.MAX_SAFE_INTEGER),
        duplicateWindowMs: st.duration('duplicate_window', { positive: true, max: 86_400 }),
        storage: st.oneOf('storage', ['file', 'memory'] as const),
      }),
    };
    if (!/^[A-Za-z0-9_-]+$/.test(stream.name)) st.issue('name', 'expected letters, digits, - and _');
    st.unknown();
  }
  if (!servers) return undefined;
  return {
    ...common, type: 'nats', servers, host, subjectPrefix, user, password, token, credsFile,
    tls: tls ?? (servers.some((u) => u.startsWith('tls:')) ? { verify: true } : undefined), timeoutMs, maxInflight, stream,
  };
}

function readFile_(r: Fields, common: CommonSpec): FileSinkSpec | undefined {
  const path = r.str('path', true);
  const rot = r.obj('rotate');
  const rotateBytes = rot?.size('max_bytes');
  const rotateIntervalMs = rot?.duration('interval', { min: 1 });
  rot?.unknown();
  const gzip = r.bool('gzip', true);
  const maxFiles = r.int('max_files', 1, 100_000);
  if (!path) return undefined;
  return { ...common, type: 'file', path, rotateBytes, rotateIntervalMs, gzip, maxFiles };
}

