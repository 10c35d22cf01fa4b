/**
 * Real nats-server processes for tests: one server or an N-node JetStream cluster on loopback
 * ports, each with its own store directory under a temp dir, optional user/password auth and TLS.
 * Nodes can be killed and started again (same ports, same store). Every process is tracked so it
 * dies with the test process; `stop()` removes the store.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { track, waitFor } from './netns.js';
import { freeTcpPort } from './ports.js';


export interface NatsClusterOptions {
  nodes?: number;
  user?: string;
  password?: string;
  /** PEM files: the servers require TLS with this certificate */
  tls?: { cert: string; key: string };
}

export interface NatsNode {
  name: string;
  port: number;
  clusterPort: number;
  url: string;
  proc: ChildProcess | null;
  log: string;
}

export class NatsCluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'ctwatch-nats-'));
  readonly nodes: NatsNode[] = [];
  constructor(private readonly o: NatsClusterOptions = {}) {}

  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  async start(): Promise<void> {
    const count = this.o.nodes ?? 1;
    for (let i = 0; i < count; i++) {
      const port = await freeTcpPort();
      const clusterPort = await freeTcpPort();
      this.nodes.push({ name: `n${i + 1}`, port, clusterPort, url: `${this.o.tls ? 'tls' : 'nats'}://127.0.0.1:${port}`, proc: null, log: '' });
    }
    for (const n of this.nodes) this.writeConfig(n);
    for (const n of this.nodes) this.startNode(n);
    await this.ready();
  }

  private writeConfig(n: NatsNode): void {
    const store = join(this.dir, n.name);
    mkdirSync(store, { recursive: true });
    const lines = [
      `server_name: ${n.name}`,
      `listen: 127.0.0.1:${n.port}`,
      `jetstream { store_dir: "${store}", max_memory_store: 64MB, max_file_store: 2GB }`,
    ];
    if (this.nodes.length > 1) {
      const routes = this.nodes.filter((m) => m !== n).map((m) => `nats-route://127.0.0.1:${m.clusterPort}`);
      lines.push(`cluster { name: ctwt, listen: 127.0.0.1:${n.clusterPort}, routes: [${routes.join(', ')}] }`);
    }
    if (this.o.user) {
      // the system account is the only other one: the test user's account has JetStream
      lines.push(`authorization { users: [ { user: "${this.o.user}", password: "${this.o.password}" } ] }`);
    }
    if (this.o.tls) lines.push(`tls { cert_file: "${this.o.tls.cert}", key_file: "${this.o.tls.key}" }`);
    writeFileSync(join(this.dir, `${n.name}.conf`), lines.join('\n') + '\n');
  }

  startNode(n: NatsNode): void {
    const p = track(spawn('nats-server', ['-c', join(this.dir, `${n.name}.conf`)], { stdio: ['ignore', 'pipe', 'pipe'] }));
    p.stdout!.on('data', (d) => (n.log += d));
    p.stderr!.on('data', (d) => (n.log = (n.log + d).slice(-20_000)));
    p.once('exit', () => {
      if (n.proc === p) n.proc = null;
    });
    n.proc = p;
  }

  /** A client of the cluster (the test's own view), with the test credentials. */
  async client(opts: Record<string, unknown> = {}): Promise<NatsConnection> {
    return connect({ servers: this.urls, user: this.o.user, pass: this.o.password, maxReconnectAttempts: -1, reconnectTimeWait: 200, ...opts });
  }

  /** Waits until JetStream answers (for a cluster: a meta leader is elected). */
  async ready(timeoutMs = 30_000, tlsOpts?: Record<string, unknown>): Promise<void> {
    await waitFor(async () => {
      let nc: NatsConnection | undefined;
      try {
        nc = await this.client({ timeout: 1000, maxReconnectAttempts: 0, ...(tlsOpts ? { tls: tlsOpts } : {}) });
        const jsm = await jetstreamManager(nc, { timeout: 1000 });
        await jsm.getAccountInfo();
        return true;
      } catch {
        return false;
      } finally {
        await nc?.close().catch(() => {});
      }
    }, `nats-server JetStream ready (${this.nodes.map((n) => n.name).join(', ')})\n${this.nodes.map((n) => n.log.slice(-1500)).join('\n')}`, timeoutMs, 200);
  }

  async kill(n: NatsNode, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = n.proc;
    if (!p) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await gone;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.kill(n, 'SIGKILL')));
  }

  async stop(): Promise<void> {
    await this.stopAll();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
