/**
 * Real receivers for the sink tests: a private rsyslogd (UDP, TCP, TLS and mutual-TLS listeners on
 * loopback) and a node:http server that behaves like Splunk HEC, Elasticsearch `_bulk` or a plain
 * NDJSON endpoint, with scripted failures.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { waitFor as poll } from './wait.js';

import { freeTcpPort, freeUdpPort } from './ports.js';

export { freeTcpPort, freeUdpPort };

/** ./wait.ts's waitFor with the deadline before the words, as the sink tests call it. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  return (await poll(fn, what, timeoutMs, 25)) as T;
}

export interface TestPki {
  dir: string;
  caFile: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** a CA that signed nothing here: verifying the server with it must fail */
  otherCaFile: string;
}

/** A throwaway CA, a server certificate for 127.0.0.1/localhost, a client certificate. */
export function makePki(dir: string): TestPki {
  mkdirSync(dir, { recursive: true });
  const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ca = (name: string, cn: string) =>
    ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`,
      '-days', '2', '-subj', `/CN=${cn}`);
  ca('ca', 'ctwatch test CA');
  ca('other-ca', 'some other CA');
  const leaf = (name: string, cn: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    ossl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  };
  leaf('server', 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'ctwatch-client', 'extendedKeyUsage=clientAuth\n');
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client.key'),
    otherCaFile: join(dir, 'other-ca.pem'),
  };
}

export interface SyslogRecord {
  hostname: string;
  appname: string;
  procid: string;
  msgid: string;
  sd: string;
  msg: string;
  pri: string;
  ts: string;
}

export type Listener = 'udp' | 'tcp' | 'tls' | 'mtls';

export interface Rsyslog {
  ports: Record<Listener, number>;
  pki: TestPki;
  /** every message received on a listener so far, as rsyslog parsed it */
  records(listener: Listener): SyslogRecord[];
  stop(): Promise<void>;
}

/** A private rsyslogd: own config, work dir, pid file; never the system one. */
export async function startRsyslog(dir: string): Promise<Rsyslog> {
  mkdirSync(join(dir, 'work'), { recursive: true });
  const pki = makePki(join(dir, 'pki'));
  const ports: Record<Listener, number> = {
    udp: await freeUdpPort(),
    tcp: await freeTcpPort(),
    tls: await freeTcpPort(),
    mtls: await freeTcpPort(),
  };
  const out = (l: Listener) => join(dir, `${l}.json`);
  const conf = `
global(workDirectory="${join(dir, 'work')}" maxMessageSize="64k"
  defaultNetstreamDriverCAFile="${pki.caFile}"
  defaultNetstreamDriverCertFile="${pki.serverCert}"
  defaultNetstreamDriverKeyFile="${pki.serverKey}"
  parser.escapeControlCharactersOnReceive="off")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="${ports.udp}" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="${ports.tcp}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="${ports.tls}" ruleset="tls"
  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="${ports.mtls}" ruleset="mtls"
  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
template(name="fields" type="list" option.jsonf="on") {
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="appname" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
  property(outname="ts" name="timereported" dateFormat="rfc3339" format="jsonf")
}
${(['udp', 'tcp', 'tls', 'mtls'] as const)
  .map((l) => `ruleset(name="${l}") { action(type="omfile" file="${out(l)}" template="fields") }`)
  .join('\n')}
`;
  const confPath = join(dir, 'rsyslog.conf');
  writeFileSync(confPath, conf);
  const child: ChildProcess = spawn('rsyslogd', ['-n', '-f', confPath, '-i', join(dir, 'rsyslogd.pid')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stdout?.on('data', (d) => (stderr += String(d)));
  child.stderr?.on('data', (d) => (stderr += String(d)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    }
  };
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`rsyslogd exited ${child.exitCode}: ${stderr}`);
      const ok = await Promise.all([ports.tcp, ports.tls, ports.mtls].map(canConnect));
      return ok.every(Boolean);
    }, 10_000, 'rsyslogd listeners');
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    ports,
    pki,
    records(l) {
      const f = out(l);
      if (!existsSync(f)) return [];
      // rsyslog may be in the middle of writing a line: only whole lines count.
      const text = readFileSync(f, 'utf8');
      return text
        .slice(0, text.lastIndexOf('\n') + 1)
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as SyslogRecord);
    },
    stop,
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/* ------------------------------------------------------------------------------------------- */

export type Api = 'hec' | 'bulk' | 'ndjson';

export interface ReceivedRequest {
  api: Api;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** the records of the request: HEC envelopes, _bulk sources, NDJSON lines (parsed JSON) */
  items: any[];
  /** _bulk action lines */
  actions: any[];
}

/**
 * What to do with a request: a status (with optional headers/body), per-item _bulk statuses, or
 * 'drop' (read the body, then destroy the connection without answering).
 */
export type Reply =
  | { status: number; headers?: Record<string, string>; body?: string }
  | { bulkItems: number[] }
  | 'drop';

export class HttpReceiver {
  readonly requests: ReceivedRequest[] = [];
  /** items the receiver accepted (2xx, or 2xx per _bulk item), in arrival order */
  readonly accepted: any[] = [];
  /** decides the reply to each request; default 200 */
  script: (req: ReceivedRequest, n: number) => Reply | undefined = () => undefined;
  /** delay before answering, ms */
  delayMs = 0;
  private server: http.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  async start(port = this.port): Promise<void> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  /** Stop listening and cut every open connection: the receiver is down. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  url(path = '/'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let body = Buffer.concat(chunks);
    if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
    const text = body.toString('utf8');
    const path = req.url ?? '/';
    const api: Api = path.startsWith('/services/collector') ? 'hec' : path.includes('/_bulk') ? 'bulk' : 'ndjson';
    const lines = text.split('\n').filter((l) => l.length > 0);
    const rec: ReceivedRequest = { api, path, headers: req.headers, items: [], actions: [] };
    if (api === 'bulk') {
      for (let i = 0; i < lines.length; i += 2) {
        rec.actions.push(JSON.parse(lines[i]));
        rec.items.push(JSON.parse(lines[i + 1]));
      }
    } else {
      for (const l of lines) rec.items.push(JSON.parse(l));
    }
    this.requests.push(rec);
    const reply = this.script(rec, this.requests.length - 1) ?? { status: 200 };
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (reply === 'drop') {
      // the worst case for at-least-once: the receiver took the data, the sender never hears so
      this.accepted.push(...rec.items);
      req.socket.destroy();
      return;
    }
    if ('bulkItems' in reply) {
      const items = reply.bulkItems.map((status, i) => {
        const op = Object.keys(rec.actions[i])[0];
        if (status < 300) this.accepted.push(rec.items[i]);
        return {
          [op]: status < 300 ? { status } : { status, error: { type: status === 429 ? 'es_rejected_execution_exception' : 'mapper_parsing_exception', reason: 'scripted' } },
        };
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: reply.bulkItems.some((s) => s >= 300), items }));
      return;
    }
    if (reply.status < 300) this.accepted.push(...rec.items);
    res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
    res.end(
      reply.body ??
        (api === 'hec'
          ? JSON.stringify(reply.status < 300 ? { text: 'Success', code: 0 } : { text: 'Server is busy', code: 9 })
          : api === 'bulk'
            ? JSON.stringify({ errors: false, items: rec.items.map(() => ({ create: { status: 201 } })) })
            : '{}'),
    );
  }
}
