/**
 * What a configured sink is: the typed specs the sinks file (and a rules file's `- webhook:`) is
 * read into by ./config.ts, the event kinds a sink selects, and the webhook's delivery policy.
 * Types and constants only; ./build.ts turns a spec into a sink.
 */
import type { HeaderValue, SecretRef } from '../config/secrets.js';
import type { FormatName } from '../formats/index.js';
import type { SpoolOptions } from './spool.js';
import type { OverflowPolicy } from './types.js';
import type { RetryOptions } from './util.js';
import type { NatsStreamOptions } from './nats.js';

export type SinkType = 'syslog' | 'splunk_hec' | 'elasticsearch' | 'http' | 'webhook' | 'file' | 'nats';
export const SINK_TYPES: SinkType[] = ['syslog', 'splunk_hec', 'elasticsearch', 'http', 'webhook', 'file', 'nats'];

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
export interface CommonSpec {
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
