/**
 * NATS JetStream delivery: every record is published to `<prefix>.<host>.<kind>` and counts as
 * delivered only when the stream's PubAck says it is stored (on a replicated stream: on a quorum of
 * the replicas). Each record carries a `Nats-Msg-Id` derived from what it says (host, kind and a
 * hash of the payload), so a batch sent again — after a lost PubAck, a node failover, or from the
 * spool after a restart — is recognised by the server as a duplicate within the stream's
 * duplicate window and stored once.
 *
 * The payload the spool keeps is `subject msgid\n<line>`: a replay publishes the same subject, id
 * and bytes as the first attempt. PubAcks are batched: up to `maxInflight` publishes are
 * outstanding at once on one connection (their acks come back on the client's one muxed reply
 * subscription); with 1, each record waits for its ack before the next goes out.
 *
 * Order per host: pipelined publishes reach the stream leader in order, but when one fails while
 * a later one is stored (no leader elected yet after the cluster came back), the retry lands
 * after it. So after a failure or a reconnect the next batch's first record goes alone (a
 * probe): only when it is stored are the rest pipelined, and once a publish fails no new one
 * starts. What is still in flight at that moment may be stored ahead of the failed one; that
 * takes a leader change in the middle of a batch (docs/fleet.md).
 */
import { createHash } from 'node:crypto';
import { connect, credsAuthenticator, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type StreamConfig } from '@nats-io/jetstream';
import type { SinkRecord } from '../formats/common.js';
import { recordKind } from '../formats/common.js';
import { type SendOutcome, type SinkLogger, type Transport, TransportError, silentLogger } from './types.js';
import { errorMessage } from './util.js';
import { monoMs } from '../util/clock.js';
import { scrub, secretForms } from '../config/secrets.js';

/** The payload schema published under `Ctwatch-Schema` (docs/fleet.md). */
export const FLEET_SCHEMA = 'ctwatch.fleet/1';

export interface NatsTlsOptions {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  servername?: string;
  rejectUnauthorized?: boolean;
}

export interface NatsStreamOptions {
  name: string;
  /** create the stream (or update its limits) at connect */
  create: boolean;
  replicas?: number;
  maxAgeMs?: number;
  maxBytes?: number;
  maxMsgs?: number;
  duplicateWindowMs?: number;
  storage?: 'file' | 'memory';
}

export interface NatsTransportOptions {
  servers: string[];
  /** the host token of every subject (already a valid subject token, see subjectToken) */
  host: string;
  prefix?: string;
  user?: string;
  password?: string;
  token?: string;
  /** contents of a .creds file (JWT and nkey seed) */
  creds?: string;
  tls?: NatsTlsOptions;
  /** deadline for a connect and for a whole batch's PubAcks */
  timeoutMs?: number;
  /** PubAcks outstanding at once (1: one at a time) */
  maxInflight?: number;
  stream?: NatsStreamOptions;
  /** connection name the server shows (`nats server report connections`) */
  name?: string;
  logger?: SinkLogger;
}

/** A subject token: no dots, wildcards or white space. */
export function subjectToken(s: string): string {
  const t = s.replace(/[.*>\s]+/g, '_');
  return t === '' ? '_' : t;
}

/** The subject kind of a record: flow, alert, resolved, churn, overflow, conntrack, other. */
export function natsKind(rec: SinkRecord): string {
  const k = recordKind(rec);
  if (k === 'flow' || k === 'conntrack') return k;
  if (k === 'alert') return rec.event;
  if (rec.event === 'churn' || rec.event === 'overflow') return rec.event;
  return 'other';
}

/** `host.kind.<hash>`: the same record always gets the same id, another record another one. */
export function natsMsgId(host: string, kind: string, line: string): string {
  return `${host}.${kind}.${createHash('sha256').update(line).digest('base64url').slice(0, 27)}`;
}

/** Splits a stored payload into subject, id and data. */
export function splitPayload(p: string): { subject: string; id: string; data: string } {
  const nl = p.indexOf('\n');
  const head = p.slice(0, nl);
  const sp = head.indexOf(' ');
  return { subject: head.slice(0, sp), id: head.slice(sp + 1), data: p.slice(nl + 1) };
}

const ns = (ms: number) => Math.round(ms * 1e6);

/** What an error from the client means, in the operator's words. */
export function natsReason(err: unknown, servers: string): string {
  const msg = errorMessage(err);
  if (/authorization violation|authentication|user authentication expired|auth/i.test(msg)) {
    return `${servers}: authorization violation: the server refused the credentials (check user and password_file, token_file or creds_file)`;
  }
  if (/self[- ]signed|unable to (verify|get)|certificate|altnames|ssl|tls/i.test(msg)) {
    return `${servers}: TLS failed: ${msg} (check tls.ca_file, tls.servername, and whether the server speaks TLS)`;
  }
  if (/no responders|503/i.test(msg)) {
    return `${servers}: no JetStream stream takes these subjects (create one, or set stream.create: true)`;
  }
  if (/ECONNREFUSED|CONNECTION_REFUSED|connection refused/i.test(msg)) return `${servers}: connection refused (is nats-server running?)`;
  return `${servers}: ${msg}`;
}

export class NatsTransport implements Transport {
  readonly description: string;
  readonly secrets: readonly string[];
  /** records the server already had (a replay de-duplicated by Nats-Msg-Id) */
  readonly stats = { truncated: 0, duplicates: 0 };
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly maxInflight: number;
  private readonly logger: SinkLogger;
  private nc: NatsConnection | null = null;
  private js: JetStreamClient | null = null;
  private connecting: Promise<void> | null = null;
  /** the client is between servers: fail fast instead of buffering publishes */
  private down = false;
  /** the next batch starts with one publish alone (start, reconnect, after a failure) */
  private probe = true;
  private lastLogged = '';
  private closed = false;

  constructor(private readonly o: NatsTransportOptions) {
    this.prefix = o.prefix ?? 'ctwatch';
    this.timeoutMs = o.timeoutMs ?? 10_000;
    this.maxInflight = Math.max(1, o.maxInflight ?? 1000);
    this.logger = o.logger ?? silentLogger;
    // credentials never appear in a URL we print
    this.description = `nats ${o.servers.map((s) => s.replace(/\/\/[^@/]*@/, '//')).join(',')}`;
    this.secrets = [o.password, o.token, o.creds].filter((s): s is string => !!s).flatMap((s) => secretForms(s));
  }

  encode(rec: SinkRecord, line: string): string {
    const kind = natsKind(rec);
    return `${this.prefix}.${this.o.host}.${kind} ${natsMsgId(this.o.host, kind, line)}\n${line}`;
  }

  private fail(err: unknown): TransportError {
    const reason = scrub(natsReason(err, this.description), this.secrets);
    if (reason !== this.lastLogged) {
      // once per distinct reason: a retry loop does not repeat it every second
      this.lastLogged = reason;
      this.logger.warn({ err: reason }, 'nats sink cannot deliver');
    }
    return new TransportError(reason, { retryable: true, cause: err });
  }

  private async open(): Promise<void> {
    const o = this.o;
    const nc = await connect({
      servers: o.servers,
      name: o.name ?? `ctwatch ${o.host}`,
      user: o.user,
      pass: o.password,
      token: o.token,
      authenticator: o.creds ? credsAuthenticator(new TextEncoder().encode(o.creds)) : undefined,
      tls: o.tls ? (o.tls as never) : undefined,
      timeout: Math.min(this.timeoutMs, 10_000),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 100,
      pingInterval: 5000,
      maxPingOut: 2,
    });
    try {
      if (o.stream?.create) await this.ensureStream(nc, o.stream);
    } catch (err) {
      await nc.close().catch(() => {});
      throw err;
    }
    this.nc = nc;
    this.js = jetstream(nc, { timeout: this.timeoutMs });
    this.down = false;
    this.probe = true;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.down = this.probe = true;
        else if (s.type === 'reconnect') {
          this.down = false;
          this.probe = true;
        }
        else if (s.type === 'error') this.lastLogged !== String(s.error) && this.logger.warn({ err: scrub(errorMessage(s.error), this.secrets) }, 'nats connection error');
      }
    })().catch(() => {});
    void nc.closed().then(() => {
      if (this.nc === nc) {
        this.nc = null;
        this.js = null;
      }
    });
    this.logger.info({ sink: this.description, server: nc.getServer() }, 'nats sink connected');
  }

  private async ensureStream(nc: NatsConnection, s: NatsStreamOptions): Promise<void> {
    const jsm = await jetstreamManager(nc, { timeout: this.timeoutMs });
    const cfg: Partial<StreamConfig> & { name: string } = {
      name: s.name,
      subjects: [`${this.prefix}.>`],
      ...(s.replicas !== undefined ? { num_replicas: s.replicas } : {}),
      ...(s.maxAgeMs !== undefined ? { max_age: ns(s.maxAgeMs) } : {}),
      ...(s.maxBytes !== undefined ? { max_bytes: s.maxBytes } : {}),
      ...(s.maxMsgs !== undefined ? { max_msgs: s.maxMsgs } : {}),
      ...(s.duplicateWindowMs !== undefined ? { duplicate_window: ns(s.duplicateWindowMs) } : {}),
      ...(s.storage ? { storage: s.storage as never } : {}),
    };
    let exists = true;
    try {
      await jsm.streams.info(s.name);
    } catch (err) {
      if (!/not found/i.test(errorMessage(err))) throw err;
      exists = false;
    }
    if (!exists) {
      await jsm.streams.add(cfg);
      this.logger.info({ stream: s.name, replicas: s.replicas ?? 1 }, 'nats stream created');
    } else {
      // limits may change; replicas and storage are the operator's to migrate (an update would refuse)
      const { name, subjects: _s, num_replicas: _r, storage: _t, ...limits } = cfg;
      if (Object.keys(limits).length) await jsm.streams.update(name, limits);
    }
  }

  private async ready(): Promise<JetStreamClient> {
    if (this.closed) throw new TransportError('nats sink closed', { retryable: true });
    if (!this.js) {
      this.connecting ??= this.open().finally(() => {
        this.connecting = null;
      });
      try {
        await this.connecting;
      } catch (err) {
        throw this.fail(err);
      }
    }
    if (this.down) throw this.fail(new Error('disconnected: no NATS server of the cluster reachable (reconnecting)'));
    return this.js!;
  }

  async send(batch: readonly string[], signal: AbortSignal): Promise<SendOutcome | void> {
    const js = await this.ready();
    if (signal.aborted) return { retry: batch.map((_, i) => i), error: scrub(natsReason('aborted', this.description), this.secrets) };
    const retry: number[] = [];
    let firstError: unknown;
    let deadline = monoMs() + this.timeoutMs;
    const publish = async (i: number): Promise<void> => {
      const { subject, id, data } = splitPayload(batch[i]);
      const h = natsHeaders();
      h.set('Ctwatch-Schema', FLEET_SCHEMA);
      const ack = await js.publish(subject, data, {
        msgID: id,
        headers: h,
        timeout: Math.max(1, Math.min(this.timeoutMs, deadline - monoMs())),
      });
      if (ack.duplicate) this.stats.duplicates++;
    };
    let next = 0;
    if (this.probe && batch.length > 1) {
      try {
        await publish(0);
      } catch (err) {
        // nothing of this batch is stored: all of it again, in order
        throw this.fail(err);
      }
      next = 1;
      // the rest get the whole deadline: a probe answered late must not time them out
      deadline = monoMs() + this.timeoutMs;
    }
    this.probe = false;
    let failed = false;
    const worker = async (): Promise<void> => {
      while (next < batch.length && !failed && !signal.aborted) {
        const i = next++;
        try {
          await publish(i);
        } catch (err) {
          firstError ??= err;
          failed = this.probe = true;
          retry.push(i);
        }
      }
    };
    const workers = Array.from({ length: Math.min(this.maxInflight, batch.length - next) }, worker);
    await Promise.all(workers);
    // not started (a publish failed, or the sink is stopping): sent again with the failed ones
    for (let i = next; i < batch.length; i++) retry.push(i);
    if (retry.length === batch.length && firstError !== undefined) throw this.fail(firstError);
    if (retry.length === 0) return;
    retry.sort((a, b) => a - b);
    return { retry, error: scrub(natsReason(firstError ?? 'aborted', this.description), this.secrets) };
  }

  reopen(): void {
    // the client reconnects by itself; nothing to reopen
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.connecting?.catch(() => {});
    const nc = this.nc;
    this.nc = null;
    this.js = null;
    if (nc) await nc.drain().catch(() => nc.close().catch(() => {}));
  }
}
