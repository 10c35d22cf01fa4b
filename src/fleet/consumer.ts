/**
 * The fleet's durable JetStream consumer: every host's records from the stream, acknowledged in
 * bulk (AckAll, every few hundred messages and on every tick), resumed where it stopped after a
 * restart. On first creation it starts from the last message of each subject: each host's latest
 * snapshot and alert are there at once, without replaying the stream's history.
 */
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import { errorMessage } from '../sinks/util.js';
import { natsReason } from '../sinks/nats.js';
import { CtwatchError, EXIT } from '../util/errors.js';

export interface FleetConsumerOptions {
  servers: string[];
  stream: string;
  durable: string;
  prefix?: string;
  user?: string;
  password?: string;
  token?: string;
  creds?: string;
  tls?: { ca?: string; cert?: string; key?: string; servername?: string };
  timeoutMs?: number;
  /** a new durable starts at the stream's first message instead of each subject's last (benchmarks, backfills) */
  fromStart?: boolean;
}

export class FleetConsumer {
  private nc: NatsConnection | null = null;
  private last: JsMsg | null = null;
  private unacked = 0;
  private stopped = false;
  private iter: { stop(): void; close?(): Promise<void | Error> } | null = null;

  constructor(private readonly o: FleetConsumerOptions) {}

  /** Connects and makes sure the stream and the durable consumer exist: any failure is one line. */
  async open(): Promise<void> {
    const o = this.o;
    const where = o.servers.join(',');
    try {
      this.nc = await connect({
        servers: o.servers,
        name: `ctwatch fleet ${o.durable}`,
        user: o.user,
        pass: o.password,
        token: o.token,
        authenticator: o.creds ? credsAuthenticator(new TextEncoder().encode(o.creds)) : undefined,
        tls: o.tls as never,
        timeout: o.timeoutMs ?? 5000,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
      });
    } catch (err) {
      throw new CtwatchError('ERR_NATS', `cannot connect to NATS: ${natsReason(err, `nats ${where}`)}`, { exitCode: EXIT.unavailable, cause: err });
    }
    try {
      const jsm = await jetstreamManager(this.nc, { timeout: o.timeoutMs ?? 5000 });
      await jsm.streams.info(o.stream).catch((err) => {
        throw new CtwatchError('ERR_NATS', `stream ${o.stream} not found on ${where} (${errorMessage(err)}): give --stream, or let a nats sink create it (stream.create: true)`, { exitCode: EXIT.unavailable });
      });
      const exists = await jsm.consumers.info(o.stream, o.durable).then(() => true, () => false);
      if (!exists) {
        await jsm.consumers.add(o.stream, {
          durable_name: o.durable,
          ack_policy: AckPolicy.All,
          deliver_policy: o.fromStart ? DeliverPolicy.All : DeliverPolicy.LastPerSubject,
          filter_subject: `${o.prefix ?? 'ctwatch'}.>`,
          max_ack_pending: 200_000,
          ack_wait: 30e9,
        });
      }
    } catch (err) {
      await this.nc.close().catch(() => {});
      if (err instanceof CtwatchError) throw err;
      throw new CtwatchError('ERR_NATS', `NATS: ${natsReason(err, `nats ${where}`)}`, { exitCode: EXIT.unavailable, cause: err });
    }
  }

  /** Calls `on` for every message until stop(). */
  async run(on: (subject: string, data: string) => void): Promise<void> {
    const js = jetstream(this.nc!);
    const c = await js.consumers.get(this.o.stream, this.o.durable);
    while (!this.stopped) {
      const msgs = await c.consume({ max_messages: 2000 });
      this.iter = msgs;
      for await (const m of msgs) {
        on(m.subject, m.string());
        this.last = m;
        if (++this.unacked >= 500) this.ack();
      }
    }
  }

  /** Acknowledges everything up to the last message handled (AckAll). */
  ack(): void {
    if (this.last && this.unacked > 0) {
      this.last.ack();
      this.unacked = 0;
    }
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.ack();
    this.iter?.stop();
    await this.nc?.drain().catch(() => this.nc?.close());
  }
}
