/**
 * Building sinks from their specs (./config.ts): `prepareSink` reads what a spec names — secrets,
 * TLS files — so a missing file fails at start-up (or at SIGHUP), naming the key; `buildSink` makes
 * the transport and the delivery engine. The SIEM sinks and the alert webhooks are built here alike.
 */
import { hostname as osHostname, networkInterfaces } from 'node:os';
import type { ConfigIssue } from '../config/reader.js';
import { cannotRead, resolveSecret, type SecretRef } from '../config/secrets.js';
import { formatFor, formatInfo, type Formatter } from '../formats/index.js';
import { type FormatOptions, type HostInfo, type ProductInfo, type SinkRecord, recordKind } from '../formats/common.js';
import type { EventKind, SinkSpec } from './config.js';
import { SinkConfigError } from './errors.js';
import { FileTransport } from './file.js';
import { type HttpAuth, HttpTransport } from './http.js';
import { DeliverySink, type SinkOptions } from './sink.js';
import { type FileOwner, readTrustedFile } from '../util/safe-file.js';

/** The largest secret or TLS file a sink reads. */
const SECRET_FILE_MAX = 1 << 20;
import { SyslogTransport, type SyslogTlsOptions } from './syslog.js';
import { NatsTransport, subjectToken } from './nats.js';
import { type Sink, type SinkCounters, type SinkLogger, type Transport, silentLogger } from './types.js';

/** Which records a sink takes, as a predicate. */
export function eventFilter(kinds: readonly EventKind[]): (rec: SinkRecord) => boolean {
  const set = new Set<string>(kinds);
  if (set.has('conntrack')) for (const k of ['new', 'update', 'destroy', 'snapshot']) set.add(k);
  const other = set.has('other');
  return (rec) => {
    if (set.has(rec.event)) return true;
    // churn snapshots come once a second: only to sinks that name `churn`
    return other && recordKind(rec) === 'other' && rec.event !== 'overflow' && rec.event !== 'snapshot_done' && rec.event !== 'churn';
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
  /** spools are opened by SinkSet.start() (the daemon: after --user), not as sinks are built */
  deferSpool?: boolean;
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

/** A sink that cannot start: its spool or file is not safe to use, or its spool is locked. */
export class SinkStartError extends Error {
  readonly code: string;
  constructor(
    readonly sink: string,
    cause: unknown,
  ) {
    super(`sink "${sink}": ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'SinkStartError';
    this.code = (cause as { code?: string })?.code ?? 'EIO';
  }
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

  /**
   * Start-up, before `--user` switches: opens file sinks' files and hands spool directories to
   * `owner` (see DeliverySink.prepare). Throws SinkStartError naming the sink, in one line.
   */
  prepare(owner?: FileOwner): void {
    for (const s of this.sinks) {
      try {
        (s as DeliverySink).prepare?.(owner);
      } catch (err) {
        throw new SinkStartError(s.name, err);
      }
    }
  }

  /** Opens every spool (after `--user`, as the account); rejects with the first that cannot be used. */
  async start(): Promise<void> {
    const results = await Promise.allSettled(this.sinks.map((s) => (s as DeliverySink).start?.()));
    const i = results.findIndex((r) => r.status === 'rejected');
    if (i >= 0) throw new SinkStartError(this.sinks[i].name, (results[i] as PromiseRejectedResult).reason);
  }

  async flush(timeoutMs = 10_000): Promise<boolean> {
    const r = await Promise.all(this.sinks.map((s) => s.flush(timeoutMs)));
    return r.every(Boolean);
  }

  async close(timeoutMs = 5000): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.close(timeoutMs)));
  }
}

/** A spec with what it names read: ready to build, nothing left that can fail. */
export interface PreparedSink {
  spec: SinkSpec;
  tls: SyslogTlsOptions | undefined;
  auth: HttpAuth | undefined;
  headers: Record<string, string>;
  secretHeaders: string[];
  /** a nats sink's credentials, read */
  nats?: { password?: string; token?: string; creds?: string };
}

/**
 * Reads the secrets and TLS files a spec names. Problems go to `issues` (field paths from the
 * spec's `at`, e.g. `sinks[1].token_file`); undefined when there were any.
 */
export function prepareSink(spec: SinkSpec, issues: ConfigIssue[], opts: CreateOptions = {}, index = 0): PreparedSink | undefined {
  const env = opts.env ?? process.env;
  // Secrets and TLS files are read as root from paths an operator names: a trusted way there, no
  // FIFO or device, at most 1 MiB (a CA bundle is a few hundred KiB).
  const read = opts.readFile ?? ((p: string) => readTrustedFile(p, SECRET_FILE_MAX));
  const before = issues.length;
  const path = spec.at ?? `sinks[${index}]`;
  const problem = (key: string, reason: string): void => void issues.push({ line: 0, field: `${path}.${key}`, reason });
  const file = (key: string, p: string | undefined): Buffer | undefined => {
    if (!p) return undefined;
    try {
      return read(p);
    } catch (err) {
      problem(key, cannotRead(p, err));
      return undefined;
    }
  };
  const secret = (ref: SecretRef | undefined, key: string): string | undefined => {
    if (!ref) return undefined;
    const r = resolveSecret(ref, env, read);
    if (r.reason) problem(ref.env ? `${key}_env` : `${key}_file`, r.reason);
    return r.value;
  };
  const t = spec.type !== 'file' ? spec.tls : undefined;
  const tls = t && {
    ca: file('tls.ca_file', t.caFile),
    cert: file('tls.cert_file', t.certFile),
    key: file('tls.key_file', t.keyFile),
    servername: t.servername,
    rejectUnauthorized: t.verify,
  };
  let auth: HttpAuth | undefined;
  const headers: Record<string, string> = {};
  const secretHeaders: string[] = [];
  if (spec.type === 'splunk_hec' || spec.type === 'elasticsearch' || spec.type === 'http' || spec.type === 'webhook') {
    const what = spec.type === 'elasticsearch' ? (spec.username ? 'password' : 'api_key') : 'token';
    const value = secret(spec.token, what);
    if (value) {
      auth =
        spec.type === 'splunk_hec'
          ? { scheme: 'splunk', secret: value }
          : spec.type === 'elasticsearch'
            ? spec.username
              ? { scheme: 'basic', username: spec.username, secret: value }
              : { scheme: 'apikey', secret: value }
            : { scheme: 'bearer', secret: value };
    }
    for (const [name, v] of Object.entries(spec.headers)) {
      if (typeof v === 'string') {
        headers[name] = v;
        continue;
      }
      const r = resolveSecret(v, env, read);
      if (r.reason) problem(`headers.${name}`, r.reason);
      else {
        headers[name] = r.value!;
        secretHeaders.push(name);
      }
    }
  }
  let nats: PreparedSink['nats'];
  if (spec.type === 'nats') {
    const credsBuf = file('creds_file', spec.credsFile);
    nats = { password: secret(spec.password, 'password'), token: secret(spec.token, 'token'), creds: credsBuf?.toString('utf8') };
  }
  return issues.length > before ? undefined : { spec, tls, auth, headers, secretHeaders, nats };
}

/**
 * The webhook body: the alert object itself, as docs/alerts.md "The alert" shows it (µs times),
 * which is what webhook receivers and exec hooks have always been given.
 */
const alertJson: Formatter = (rec) => JSON.stringify(rec);

/** The transport and delivery engine of a prepared spec. */
/** `extra`: engine options a caller sets in code (a test's jitter source). */
export function buildSink(p: PreparedSink, opts: CreateOptions = {}, extra: Partial<SinkOptions> = {}): DeliverySink {
  const { spec, tls, auth, headers, secretHeaders } = p;
  const logger = opts.logger ?? silentLogger;
  if (tls && !tls.rejectUnauthorized) logger.warn({ sink: spec.name }, 'TLS certificate verification is off for this sink');
  const fmtOpts: FormatOptions = {
    host: opts.host,
    observer: opts.observer,
    product: opts.product,
    localAddresses: opts.localAddresses,
    communityIdSeed: opts.communityIdSeed,
  };
  let transport: Transport;
  if (spec.type === 'syslog') {
    transport = new SyslogTransport({
      protocol: spec.protocol,
      host: spec.host,
      port: spec.port,
      maxMessageBytes: spec.maxMessageBytes,
      sendTimeoutMs: spec.timeoutMs,
      tls,
      header: {
        facility: spec.facility,
        appName: spec.appName,
        hostname: spec.hostname ?? opts.host?.hostname ?? opts.host?.name,
        procId: process.pid,
        pen: spec.pen,
        structuredData: spec.structuredData,
      },
    });
  } else if (spec.type === 'nats') {
    const host = spec.host ?? subjectToken(opts.host?.name ?? 'localhost');
    transport = new NatsTransport({
      servers: spec.servers,
      host,
      prefix: spec.subjectPrefix,
      user: spec.user,
      password: p.nats?.password,
      token: p.nats?.token,
      creds: p.nats?.creds,
      tls: tls && { ...tls, ca: tls.ca?.toString('utf8'), cert: tls.cert?.toString('utf8'), key: tls.key?.toString('utf8') },
      timeoutMs: spec.timeoutMs,
      maxInflight: spec.maxInflight,
      stream: spec.stream,
      name: `ctwatch ${host}`,
      logger,
    });
  } else if (spec.type === 'file') {
    transport = new FileTransport({
      path: spec.path,
      maxBytes: spec.rotateBytes,
      intervalMs: spec.rotateIntervalMs,
      gzip: spec.gzip,
      maxFiles: spec.maxFiles,
      logger,
    });
  } else {
    transport = new HttpTransport({
      api: spec.type === 'splunk_hec' ? 'splunk-hec' : spec.type === 'elasticsearch' ? 'elasticsearch' : spec.type === 'webhook' ? 'webhook' : 'ndjson',
      url: spec.url,
      auth,
      headers,
      secretHeaders,
      gzip: spec.gzip,
      timeoutMs: spec.timeoutMs,
      tls,
      lineIsJson: spec.type === 'webhook' || formatInfo(spec.format).json,
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
    format: spec.type === 'webhook' ? alertJson : formatFor(spec.format, fmtOpts),
    filter: eventFilter(spec.events),
    batch: spec.type === 'syslog' ? { maxWaitMs: 0, ...defined(spec.batch) } : defined(spec.batch),
    retry: spec.retry,
    memory: defined(spec.memory),
    overflow: spec.overflow,
    spool: spec.spool,
    deferSpool: opts.deferSpool,
    logger,
    ...extra,
  };
  return new DeliverySink(transport, sinkOpts);
}

/** Build the sinks. Reads secrets and TLS files now, so a bad path fails at start-up, not later. */
export function createSinks(specs: readonly SinkSpec[], opts: CreateOptions = {}): SinkSet {
  const issues: ConfigIssue[] = [];
  const prepared = specs.map((spec, i) => prepareSink(spec, issues, opts, i));
  if (issues.length) throw new SinkConfigError(issues);
  return new SinkSet(prepared.map((p) => buildSink(p!, opts)));
}

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
