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
import { readFileSync } from 'node:fs';
import { hostname as osHostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { isScalar, type LineCounter } from 'yaml';
import { EXIT } from '../util/errors.js';
import { ConfigError, ConfigReader, parseConfigText, readConfigFile, toNode, type ConfigIssue, type Fields } from '../config/reader.js';
import { basicForms, readHeaders, readSecretRef, resolveSecret, secretForms, type HeaderValue, type SecretRef } from '../config/secrets.js';
import { FORMAT_NAMES, type FormatName, formatFor, formatInfo } from '../formats/index.js';
import { type FormatOptions, type HostInfo, type ProductInfo, type SinkRecord, recordKind } from '../formats/common.js';
import { FACILITIES } from '../formats/syslog.js';
import { FileTransport } from './file.js';
import { type HttpAuth, HttpTransport } from './http.js';
import { DeliverySink, type SinkOptions } from './sink.js';
import type { SpoolOptions } from './spool.js';
import { SyslogTransport, type SyslogTlsOptions } from './syslog.js';
import { type OverflowPolicy, type Sink, type SinkCounters, type SinkLogger, type Transport, silentLogger } from './types.js';
import type { RetryOptions } from './util.js';

export type { SecretRef } from '../config/secrets.js';

/** A refused sinks configuration (exit 78): every problem as `file:line: field: reason`. */
export class SinkConfigError extends ConfigError {
  constructor(issues: ConfigIssue[], file = '', exitCode: number = EXIT.config) {
    super('ERR_SINK_CONFIG', file, issues, exitCode);
    this.name = 'SinkConfigError';
  }
}

export type SinkConfigIssue = ConfigIssue;

export type SinkType = 'syslog' | 'splunk_hec' | 'elasticsearch' | 'http' | 'file';
const SINK_TYPES: SinkType[] = ['syslog', 'splunk_hec', 'elasticsearch', 'http', 'file'];

/** Sinks in one file: each holds memory and a connection, and a list this long is a mistake. */
export const MAX_SINKS = 64;

/** Event kinds a sink can select; `conntrack` = new+update+destroy+snapshot, `other` = the rest. */
export const EVENT_KINDS = [
  'new', 'update', 'destroy', 'snapshot', 'conntrack', 'flow', 'alert', 'resolved',
  'overflow', 'snapshot_done', 'other',
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];
/** Raw conntrack events can run at 100k/s: a SIEM sink gets them only when asked. */
export const DEFAULT_EVENTS: EventKind[] = ['flow', 'alert', 'resolved', 'overflow'];

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
  tls?: TlsFiles;
}

export interface HttpSinkSpec extends CommonSpec {
  type: 'splunk_hec' | 'elasticsearch' | 'http';
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

export type SinkSpec = SyslogSinkSpec | HttpSinkSpec | FileSinkSpec;

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
  const format = r.oneOf('format', FORMAT_NAMES, type === 'elasticsearch' ? 'ecs' : 'jsonl')!;
  let events = DEFAULT_EVENTS;
  const ev = r.list('events', `a non-empty list of: ${EVENT_KINDS.join(', ')}`);
  if (ev !== undefined) {
    if (ev.length === 0) {
      r.issue('events', `expected a non-empty list of: ${EVENT_KINDS.join(', ')}`);
    } else {
      events = [];
      ev.forEach((node, j) => {
        const k = isScalar(node) ? node.value : undefined;
        if (typeof k === 'string' && (EVENT_KINDS as readonly string[]).includes(k)) events.push(k as EventKind);
        else r.reader.fail(node, `${r.at('events')}[${j}]`, `unknown event kind ${JSON.stringify(k)} (one of ${EVENT_KINDS.join(', ')})`);
      });
    }
  }
  const b = r.obj('batch');
  const batch = b ? { maxRecords: b.int('max_records', 1, 100_000), maxBytes: b.size('max_bytes'), maxWaitMs: b.duration('max_wait', { max: 600 }) } : {};
  b?.unknown();
  const rt = r.obj('retry');
  const retry: Partial<RetryOptions> = {};
  if (rt) {
    const initial = rt.duration('initial', { positive: true, max: 3600 });
    const max = rt.duration('max', { positive: true, max: 86_400 });
    const attempts = rt.int('max_attempts', 1, 1_000_000);
    const ra = rt.duration('max_retry_after', { max: 86_400 });
    if (initial !== undefined) retry.initialMs = initial;
    if (max !== undefined) retry.maxMs = max;
    if (attempts !== undefined) retry.maxAttempts = attempts;
    if (ra !== undefined) retry.maxRetryAfterMs = ra;
    rt.unknown();
  }
  const m = r.obj('memory');
  const memory = m ? { maxRecords: m.int('max_records', 1, 100_000_000), maxBytes: m.size('max_bytes') } : {};
  m?.unknown();
  const overflow = r.oneOf<OverflowPolicy>('overflow', ['drop-oldest', 'drop-newest'], 'drop-newest')!;

  let spool: SpoolOptions | undefined;
  const sraw = r.raw('spool');
  if (sraw === true) {
    if (!opts.spoolRoot) r.issue('spool', 'needs a dir (spool: { dir: ..., max_bytes: ... })');
    else spool = { dir: join(opts.spoolRoot, sanitizeName(name)), maxBytes: 256 << 20, policy: 'drop-oldest' };
  } else if (sraw !== undefined && sraw !== false) {
    const s = r.obj('spool');
    if (s) {
      const dir = s.str('dir') ?? (opts.spoolRoot ? join(opts.spoolRoot, sanitizeName(name)) : undefined);
      if (!dir) s.issue('dir', 'is required');
      const maxBytes = s.size('max_bytes') ?? 256 << 20;
      const policy = s.oneOf<OverflowPolicy>('policy', ['drop-oldest', 'drop-newest'], 'drop-oldest')!;
      const segmentBytes = s.size('segment_bytes');
      const fsync = s.bool('fsync', false);
      s.unknown();
      if (dir) spool = { dir, maxBytes, policy, segmentBytes, fsync };
    }
  }
  if (type === 'file' && spool) r.issue('spool', 'a file sink does not need a spool');
  if (spool) {
    const other = spoolDirs.get(spool.dir);
    if (other) r.issue('spool.dir', `is also the spool of sink "${other}"; each sink needs its own`);
    spoolDirs.set(spool.dir, name);
  }
  return { name, at: r.path, format, events, batch, retry, memory, overflow, spool };
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
  const tls = readTls(r);
  if (tls && protocol !== 'tls') r.issue('tls', `only applies to protocol: tls (this sink uses ${protocol})`);
  if (!host) return undefined;
  return {
    ...common, type: 'syslog', protocol, host, port, facility, appName, hostname, structuredData, pen,
    maxMessageBytes, tls: tls ?? (protocol === 'tls' ? { verify: true } : undefined),
  };
}

function readHttp(r: Fields, type: 'splunk_hec' | 'elasticsearch' | 'http', common: CommonSpec): HttpSinkSpec | undefined {
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
    gzip: r.bool('gzip', true),
    timeoutMs: r.duration('timeout', { positive: true, max: 3600 }) ?? 30_000,
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

/** Which records a sink takes, as a predicate. */
export function eventFilter(kinds: readonly EventKind[]): (rec: SinkRecord) => boolean {
  const set = new Set<string>(kinds);
  if (set.has('conntrack')) for (const k of ['new', 'update', 'destroy', 'snapshot']) set.add(k);
  const other = set.has('other');
  return (rec) => {
    if (set.has(rec.event)) return true;
    return other && recordKind(rec) === 'other' && rec.event !== 'overflow' && rec.event !== 'snapshot_done';
  };
}

export interface CreateOptions {
  logger?: SinkLogger;
  env?: NodeJS.ProcessEnv;
  host?: HostInfo;
  observer?: FormatOptions['observer'];
  product?: ProductInfo;
  localAddresses?: string[];
  communityIdSeed?: number;
  /** how the files named in the config are read (tests) */
  readFile?: (path: string) => Buffer;
}

/** The machine's identity, for formats (host.*) and syslog HOSTNAME. */
export function systemHost(): { host: HostInfo; localAddresses: string[] } {
  const name = osHostname();
  const ips: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) ips.push(a.address.replace(/%.*$/, ''));
  }
  return { host: { name: name.split('.')[0], hostname: name, ip: ips.filter((a) => a !== '127.0.0.1' && a !== '::1') }, localAddresses: ips };
}

/** Several sinks fed together. */
export class SinkSet {
  constructor(readonly sinks: Sink[]) {}

  write(rec: SinkRecord): void {
    for (const s of this.sinks) s.write(rec);
  }

  counters(): Record<string, SinkCounters> {
    const out: Record<string, SinkCounters> = {};
    for (const s of this.sinks) out[s.name] = { ...s.counters };
    return out;
  }

  reopen(): void {
    for (const s of this.sinks) s.reopen();
  }

  async flush(timeoutMs = 10_000): Promise<boolean> {
    const r = await Promise.all(this.sinks.map((s) => s.flush(timeoutMs)));
    return r.every(Boolean);
  }

  async close(timeoutMs = 5000): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.close(timeoutMs)));
  }
}

/** Build the sinks. Reads secrets and TLS files now, so a bad path fails at start-up, not later. */
export function createSinks(specs: readonly SinkSpec[], opts: CreateOptions = {}): SinkSet {
  const env = opts.env ?? process.env;
  const read = opts.readFile ?? ((p: string) => readFileSync(p));
  const logger = opts.logger ?? silentLogger;
  const issues: ConfigIssue[] = [];
  const built: Sink[] = [];
  const prepared: {
    spec: SinkSpec;
    fmtOpts: FormatOptions;
    tlsOpts: SyslogTlsOptions | undefined;
    auth: HttpAuth | undefined;
    headers: Record<string, string>;
    secretHeaders: string[];
  }[] = [];
  specs.forEach((spec, i) => {
    const path = spec.at ?? `sinks[${i}]`;
    const problem = (key: string, reason: string): void => void issues.push({ line: 0, field: `${path}.${key}`, reason });
    const file = (key: string, p: string | undefined): Buffer | undefined => {
      if (!p) return undefined;
      try {
        return read(p);
      } catch (err) {
        problem(key, `cannot read ${p} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
        return undefined;
      }
    };
    const secret = (ref: SecretRef | undefined, key: string): string | undefined => {
      if (!ref) return undefined;
      const r = resolveSecret(ref, env, read);
      if (r.reason) problem(ref.env ? `${key}_env` : `${key}_file`, r.reason);
      return r.value;
    };
    const tls = spec.type !== 'file' ? spec.tls : undefined;
    const tlsOpts = tls && {
      ca: file('tls.ca_file', tls.caFile),
      cert: file('tls.cert_file', tls.certFile),
      key: file('tls.key_file', tls.keyFile),
      servername: tls.servername,
      rejectUnauthorized: tls.verify,
    };
    if (tls && !tls.verify) logger.warn({ sink: spec.name }, 'TLS certificate verification is off for this sink');
    const fmtOpts: FormatOptions = {
      host: opts.host,
      observer: opts.observer,
      product: opts.product,
      localAddresses: opts.localAddresses,
      communityIdSeed: opts.communityIdSeed,
    };
    let auth: HttpAuth | undefined;
    const headers: Record<string, string> = {};
    const secretHeaders: string[] = [];
    if (spec.type === 'splunk_hec' || spec.type === 'elasticsearch' || spec.type === 'http') {
      const what = spec.type === 'elasticsearch' ? (spec.username ? 'password' : 'api_key') : 'token';
      const value = secret(spec.token, what);
      auth = value
        ? spec.type === 'splunk_hec'
          ? { scheme: 'splunk', secret: value }
          : spec.type === 'elasticsearch'
            ? spec.username
              ? { scheme: 'basic', username: spec.username, secret: value }
              : { scheme: 'apikey', secret: value }
            : { scheme: 'bearer', secret: value }
        : undefined;
      for (const [name, v] of Object.entries(spec.headers)) {
        if (typeof v === 'string') {
          headers[name] = v;
        } else {
          const r = resolveSecret(v, env, read);
          if (r.reason) problem(`headers.${name}`, r.reason);
          else {
            headers[name] = r.value!;
            secretHeaders.push(name);
          }
        }
      }
    }
    prepared.push({ spec, fmtOpts, tlsOpts, auth, headers, secretHeaders });
  });
  if (issues.length) throw new SinkConfigError(issues);
  for (const { spec, fmtOpts, tlsOpts, auth, headers, secretHeaders } of prepared) {
    let transport: Transport;
    if (spec.type === 'syslog') {
      transport = new SyslogTransport({
        protocol: spec.protocol,
        host: spec.host,
        port: spec.port,
        maxMessageBytes: spec.maxMessageBytes,
        tls: tlsOpts,
        header: {
          facility: spec.facility,
          appName: spec.appName,
          hostname: spec.hostname ?? opts.host?.hostname ?? opts.host?.name,
          procId: process.pid,
          pen: spec.pen,
          structuredData: spec.structuredData,
        },
      });
    } else if (spec.type === 'file') {
      transport = new FileTransport({
        path: spec.path,
        maxBytes: spec.rotateBytes,
        intervalMs: spec.rotateIntervalMs,
        gzip: spec.gzip,
        maxFiles: spec.maxFiles,
      });
    } else {
      transport = new HttpTransport({
        api: spec.type === 'splunk_hec' ? 'splunk-hec' : spec.type === 'elasticsearch' ? 'elasticsearch' : 'ndjson',
        url: spec.url,
        auth,
        headers,
        secretHeaders,
        gzip: spec.gzip,
        timeoutMs: spec.timeoutMs,
        tls: tlsOpts,
        lineIsJson: formatInfo(spec.format).json,
        hec: {
          index: spec.index,
          source: spec.source,
          sourcetype: spec.sourcetype ?? `ctwatch:${spec.format}`,
          host: opts.host?.hostname ?? opts.host?.name,
          fields: spec.fields,
        },
        elasticsearch: spec.index ? { index: spec.index, op: spec.op, pipeline: spec.pipeline } : undefined,
      });
    }
    const sinkOpts: SinkOptions = {
      name: spec.name,
      format: formatFor(spec.format, fmtOpts),
      filter: eventFilter(spec.events),
      batch: spec.type === 'syslog' ? { maxWaitMs: 0, ...defined(spec.batch) } : defined(spec.batch),
      retry: spec.retry,
      memory: defined(spec.memory),
      overflow: spec.overflow,
      spool: spec.spool,
      logger,
    };
    built.push(new DeliverySink(transport, sinkOpts));
  }
  return new SinkSet(built);
}

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
