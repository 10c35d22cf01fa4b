/** The SIEM feed: sinks built from configuration, and the pieces for building them by hand. */
export {
  type Sink,
  type SinkCounters,
  type SinkLogger,
  type Transport,
  type SendOutcome,
  type OverflowPolicy,
  TransportError,
  silentLogger,
} from './types.js';
export { DeliverySink, type SinkOptions, type BatchOptions, type MemoryOptions } from './sink.js';
export { RecordQueue, type QueueBounds } from './queue.js';
export { ExecHook, hookEnv, type ExecHookOptions } from './exec.js';
export {
  SinkDelivery,
  WebhookDelivery,
  webhookDelivery,
  webhookSpec,
  type Delivery,
  type DeliveryStats,
  type WebhookOptions,
  type WebhookStats,
  type ExecStats,
} from './delivery.js';
export { Spool, type SpoolOptions, type SpoolBatch, type AppendResult } from './spool.js';
export { SyslogTransport, type SyslogTransportOptions, type SyslogTlsOptions } from './syslog.js';
export { HttpTransport, MAX_ANSWER, MAX_BULK_ANSWER, type HttpTransportOptions, type HttpApi, type HttpAuth } from './http.js';
export { FileTransport, type FileTransportOptions } from './file.js';
export { NatsTransport, FLEET_SCHEMA, natsKind, natsMsgId, subjectToken, splitPayload, type NatsTransportOptions } from './nats.js';
export {
  parseSinkConfigs,
  parseSinkFile,
  loadSinkConfig,
  SinkConfigError,
  WEBHOOK_POLICY,
  readWebhookDelivery,
  DEFAULT_EVENTS,
  EVENT_KINDS,
  type SinkSpec,
  type SyslogSinkSpec,
  type HttpSinkSpec,
  type FileSinkSpec,
  type NatsSinkSpec,
  type EventKind,
  type ParseOptions,
  type SinkConfigIssue,
} from './config.js';
export { createSinks, prepareSink, buildSink, eventFilter, systemHost, SinkSet, SinkStartError, type CreateOptions, type PreparedSink } from './build.js';
export { type RetryOptions, DEFAULT_RETRY, backoffMs, parseRetryAfter } from './util.js';
