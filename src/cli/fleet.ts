/** `ctwatch fleet`: every host's churn and alerts from NATS JetStream, merged into one view. */
import { cannotRead } from '../config/secrets.js';
import { readTrustedFile } from '../util/safe-file.js';
import { Gauge, Counter, Registry } from 'prom-client';
import { FleetConsumer } from '../fleet/consumer.js';
import { FleetState, DEFAULT_FLEET } from '../fleet/merge.js';
import { renderFleet } from '../fleet/view.js';
import { serveMetrics, formatListenAddress, parseListenAddress } from '../metrics/index.js';
import { PREFIX } from '../metrics/exporter.js';
import { formatMicros } from '../recording/time.js';
import { CtwatchError, EXIT } from '../util/errors.js';
import { setLongInterval, setLongTimeout } from '../util/timers.js';
import { parseDuration } from './args.js';
import { logger, onSignals, parse } from './common.js';

export const FLEET_HELP = `Usage: ctwatch fleet --nats URL[,URL...] [options]

One view for many hosts: every 'ctwatch watch' with a nats sink publishes its flows, churn
snapshots and alerts to NATS JetStream (docs/fleet.md); this merges them, live, like top:
hosts by table fill and time to full, destinations and processes across hosts (with which
hosts), and fleet alerts: one destination churning from many hosts, a host gone silent.

Options:
  --nats URLS           servers, comma-separated: nats://HOST:4222 or tls://HOST:4222
  --stream NAME         the stream the sinks publish to (default CTWATCH)
  --durable NAME        the durable consumer (default ctwatch-fleet); resumes where it stopped
  --user NAME --password-file FILE | --token-file FILE | --creds FILE
                        credentials, from files
  --tls-ca FILE         CA of the servers' certificates (also --tls-cert/--tls-key, --tls-servername)
  --interval TIME       refresh every TIME (default 1s)
  --silent-after TIME   a host with nothing published this long is silent (default 30s)
  --min-hosts N         alert on a destination churning from N hosts or more (default 3) ...
  --min-rate R          ... at R new flows/s or more on each (default 50)
  --json                one JSON line per refresh (the view, schema in docs/fleet.md)
  -b, --batch           print each screen one after another (for logs and pipes)
  --metrics ADDR        serve the fleet's Prometheus metrics at http://ADDR/metrics
  --duration TIME       stop after this long
  --log-format text|json
  -h, --help            this help

Example: ctwatch fleet --nats nats://nats1:4222,nats://nats2:4222 --user fleet --password-file /etc/ctwatch/nats.pw
`;

function file(path: string | undefined, flag: string): string | undefined {
  if (path === undefined) return undefined;
  try {
    const v = readTrustedFile(path, 1 << 20).toString('utf8').trim();
    if (!v) throw new Error('empty');
    return v;
  } catch (err) {
    throw new CtwatchError('ERR_USAGE', `${flag} ${cannotRead(path, err)}`, { exitCode: EXIT.noInput });
  }
}

function count(v: string | undefined, flag: string, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (!Number.isFinite(x) || x < min) throw new CtwatchError('ERR_USAGE', `${flag} ${JSON.stringify(v)}: give a number, at least ${min}`, { exitCode: EXIT.usage });
  return x;
}

export async function fleet(argv: string[]): Promise<number> {
  const { values } = parse('fleet', argv, {
    nats: { type: 'string' },
    stream: { type: 'string' },
    durable: { type: 'string' },
    user: { type: 'string' },
    'password-file': { type: 'string' },
    'token-file': { type: 'string' },
    creds: { type: 'string' },
    'tls-ca': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-servername': { type: 'string' },
    interval: { type: 'string' },
    'silent-after': { type: 'string' },
    'min-hosts': { type: 'string' },
    'min-rate': { type: 'string' },
    json: { type: 'boolean' },
    batch: { type: 'boolean', short: 'b' },
    metrics: { type: 'string' },
    duration: { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(FLEET_HELP);
    return 0;
  }
  const log = logger(values);
  if (!values.nats) throw new CtwatchError('ERR_USAGE', "--nats URL is required (see 'ctwatch fleet --help')", { exitCode: EXIT.usage });
  const servers = values.nats.split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of servers) {
    let ok = false;
    try {
      const u = new URL(s);
      ok = (u.protocol === 'nats:' || u.protocol === 'tls:') && !u.username && !u.password;
    } catch {
      // below
    }
    if (!ok) throw new CtwatchError('ERR_USAGE', `--nats ${JSON.stringify(s.replace(/\/\/[^@/]*@/, '//'))}: expected nats://HOST:PORT or tls://HOST:PORT (credentials in --password-file, --token-file or --creds)`, { exitCode: EXIT.usage });
  }
  if (values.user && !values['password-file']) throw new CtwatchError('ERR_USAGE', '--user needs --password-file', { exitCode: EXIT.usage });
  if (values.metrics !== undefined) parseListenAddress(values.metrics);
  const intervalMs = parseDuration(values.interval ?? '1s', '--interval', { positive: true }) * 1000;
  const state = new FleetState({
    silentAfterMs: parseDuration(values['silent-after'] ?? '30s', '--silent-after', { positive: true }) * 1000,
    minHosts: count(values['min-hosts'], '--min-hosts', DEFAULT_FLEET.minHosts, 1),
    minRate: count(values['min-rate'], '--min-rate', DEFAULT_FLEET.minRate, 0),
  });
  const durationMs = values.duration ? parseDuration(values.duration, '--duration', { positive: true }) * 1000 : undefined;
  const tlsFiles = values['tls-ca'] || values['tls-cert'] || values['tls-key'];
  const consumer = new FleetConsumer({
    servers,
    stream: values.stream ?? 'CTWATCH',
    durable: values.durable ?? 'ctwatch-fleet',
    user: values.user,
    password: file(values['password-file'], '--password-file'),
    token: file(values['token-file'], '--token-file'),
    creds: file(values.creds, '--creds'),
    // a tls:// server means TLS, whatever the server's INFO offers (the client would otherwise
    // send credentials in clear to whoever answers without TLS)
    tls: tlsFiles || values['tls-servername'] || servers.some((u) => u.startsWith('tls://')) ? {
      ca: file(values['tls-ca'], '--tls-ca'), cert: file(values['tls-cert'], '--tls-cert'), key: file(values['tls-key'], '--tls-key'),
      ...(values['tls-servername'] ? { servername: values['tls-servername'] } : {}),
    } : undefined,
  });
  await consumer.open();

  const mono = () => performance.now();
  const registry = new Registry();
  const g = (name: string, help: string, labelNames: string[] = []) => new Gauge({ name: PREFIX + name, help, labelNames, registers: [registry] });
  const m = {
    hosts: g('fleet_hosts', 'hosts that have published'),
    silent: g('fleet_hosts_silent', 'hosts with nothing published for --silent-after'),
    dropped: g('fleet_messages_dropped', 'messages not kept because a bound was reached (hosts: more than 10 000 hosts; alerts: more than 1 000 open alerts on one host)', ['what']),
    fill: g('fleet_host_table_fill_ratio', 'conntrack table fill of each host, 0..1', ['host']),
    ttf: g('fleet_host_time_to_full_seconds', 'seconds until the host\'s table is full at its growth (absent when not growing)', ['host']),
    rate: g('fleet_host_new_flows_per_second', 'new flows per second on each host (its last snapshot)', ['host']),
    hostSilent: g('fleet_host_silent', '1 when the host has published nothing for --silent-after', ['host']),
    dest: g('fleet_destination_new_flows_per_second', 'new flows per second to each top destination, all hosts summed', ['destination']),
    destHosts: g('fleet_destination_hosts', 'hosts connecting to each top destination', ['destination']),
    alerts: g('fleet_alerts', 'active fleet alerts by rule', ['rule']),
    messages: new Counter({ name: PREFIX + 'fleet_messages_total', help: 'messages consumed from the stream by kind', labelNames: ['kind'], registers: [registry] }),
  };
  const counted = new Map<string, number>();
  const updateMetrics = () => {
    const v = state.view(mono());
    for (const x of [m.fill, m.ttf, m.rate, m.hostSilent, m.dest, m.destHosts, m.alerts]) x.reset();
    m.hosts.set(v.hosts.length);
    m.silent.set(v.hosts.filter((h) => h.silent).length);
    for (const h of v.hosts) {
      if (h.fill !== null) m.fill.set({ host: h.host }, h.fill);
      if (h.timeToFull !== null) m.ttf.set({ host: h.host }, h.timeToFull);
      m.rate.set({ host: h.host }, h.newPerS);
      m.hostSilent.set({ host: h.host }, h.silent ? 1 : 0);
    }
    for (const d of v.destinations) {
      m.dest.set({ destination: d.key }, d.newPerS);
      m.destHosts.set({ destination: d.key }, d.hosts.length);
    }
    for (const rule of ['fleet_destination_churn', 'host_silent', 'host_alert']) m.alerts.set({ rule }, v.alerts.filter((a) => a.rule === rule).length);
    for (const [what, n] of Object.entries(state.dropped)) m.dropped.set({ what }, n);
    for (const [kind, n] of state.byKind) {
      m.messages.inc({ kind }, n - (counted.get(kind) ?? 0));
      counted.set(kind, n);
    }
  };
  const metricsServer = values.metrics !== undefined
    ? await serveMetrics({ contentType: registry.contentType, metrics: async () => (updateMetrics(), registry.metrics()) }, values.metrics).catch(async (err) => {
        await consumer.close();
        throw err;
      })
    : undefined;
  log.info({ nats: servers.join(','), stream: values.stream ?? 'CTWATCH', durable: values.durable ?? 'ctwatch-fleet', ...(metricsServer ? { metrics: `http://${formatListenAddress(metricsServer.host, metricsServer.port)}/metrics` } : {}) }, 'following the fleet');

  const tty = process.stdout.isTTY && !values.batch && !values.json;
  const tick = () => {
    consumer.ack();
    const v = state.view(mono());
    const now = formatMicros(Date.now() * 1000);
    if (values.json) process.stdout.write(`${JSON.stringify({ ...v, time: now })}\n`);
    else {
      const screen = renderFleet(v, `${now.slice(0, 19).replace('T', ' ')} UTC`, tty ? process.stdout.columns : 160);
      process.stdout.write(tty ? `\x1b[H\x1b[2J${screen}\n` : `${screen}\n\n`);
    }
  };
  const timer = setLongInterval(tick, intervalMs);
  let stopTimer: { clear(): void } | undefined;
  const done = consumer.run((subject, data) => state.ingest(subject, data, mono()));
  const stop = () => void consumer.close();
  const offSignals = onSignals(log, stop);
  if (durationMs !== undefined) stopTimer = setLongTimeout(stop, durationMs);
  try {
    await done;
  } finally {
    timer.clear();
    stopTimer?.clear();
    offSignals();
    await consumer.close();
    await metricsServer?.close();
  }
  tick();
  return 0;
}
