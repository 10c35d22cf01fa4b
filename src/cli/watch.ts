/** `ctwatch watch`: the daemon. Collection, engine and alerting until SIGTERM. */
import { ConfigError, defaultConfig, loadAlertConfig, type AlertConfig } from '../alerts/index.js';
import { Watcher } from '../pipeline/watcher.js';
import { RecordWriter, type WritableRecord } from '../recording/writer.js';
import { openOutput, type Output } from '../recording/output.js';
import { CtwatchError, EXIT } from '../util/errors.js';
import { parseChurnEvery, parseDuration } from './args.js';
import { setLongInterval } from '../util/timers.js';
import { announceAccount, dropPrivileges, lookupUser } from '../util/privileges.js';
import { createSinks, loadSinkConfig, SinkConfigError, SinkStartError, systemHost, type SinkSet } from '../sinks/index.js';
import { MetricsExporter, formatListenAddress, parseListenAddress } from '../metrics/index.js';
import type { SinkRecord } from '../formats/index.js';
import { logger, onSignals, parse } from './common.js';
import { ATTRIBUTION_HELP, ATTRIBUTION_OPTIONS, openEngineSource, SOURCE_HELP, SOURCE_OPTIONS, startAttribution } from './engine-options.js';

export const WATCH_HELP = `Usage: ctwatch watch [options]

Run as a daemon: follow the conntrack table, compute churn, and raise alerts that say what is
happening and who causes it, e.g.
  churn to 127.0.0.5:6379/tcp 2 340 new/s (×40 its median), 61 % of table, full in ~3 min;
  top source 127.0.1.7
Alerts go to stderr (the log), to --output as JSON lines ("alert" / "resolved"), and to the
webhooks and exec hooks of the rules file. Built-in rules apply with no file (docs/alerts.md).

Options:
${SOURCE_HELP}
  --events LIST         kernel events (default new,update,destroy: updates give TCP states)
  --rules FILE          alert rules and deliveries (YAML, docs/alerts.md); reloaded on SIGHUP
  --check-rules         validate --rules and --sinks and exit: every problem as FILE:LINE: field:
                        reason, one per line (0 valid, 78 invalid)
  -o, --output FILE|-   write alerts (and --flows, --churn lines) as JSON lines; reopened on SIGHUP
  --flows               also write a "flow" line per flow that ends
  --churn TIME          also write a "churn" line every TIME (e.g. 10s)
  --sinks FILE          SIEM feed: syslog (UDP/TCP/TLS), Splunk HEC, Elasticsearch, HTTP, files,
                        in ECS, OCSF, CEF or JSONL, with a disk spool (YAML, docs/siem.md)
  --metrics ADDR        serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9477; a bare
                        PORT is loopback, :PORT every interface
                        (docs/metrics.md)
${ATTRIBUTION_HELP}
  --user NAME           after opening the kernel sockets, run as NAME keeping only CAP_NET_ADMIN
                        (ebpf attribution loses nothing; sockdiag then sees only what NAME may
                        read in /proc)
  --status TIME         log a status line every TIME (default 1m; 0 = never)
  --log-format text|json
  -h, --help            this help

Signals: SIGHUP reloads --rules and reopens --output; SIGTERM/SIGINT drain deliveries, flush
and exit 0 (a second one exits at once).
Example:
  sudo ctwatch watch --netns prod --rules /etc/ctwatch/rules.yaml -o /var/log/ctwatch/alerts.jsonl
A systemd unit is in contrib/ctwatch.service.
`;

/** A refused config file: a command prints one line, the first problem and how many more. */
function oneLine(err: unknown): never {
  if (err instanceof ConfigError) throw new CtwatchError(err.code, err.summary, { exitCode: err.exitCode, cause: err });
  throw err;
}

async function loadRules(path: string | undefined, account?: { name: string }): Promise<AlertConfig> {
  if (!path) return defaultConfig();
  const config = await loadAlertConfig(path).catch(oneLine);
  if (account) refuseWebhookSpools(path, config, account.name);
  return config;
}

/**
 * A rules-file webhook's spool is opened as its delivery is built (at start, before the switch,
 * and again at each SIGHUP, after it): under --user it would be root's directory the account
 * cannot write, or one the rebuilt delivery refuses. The sinks file's webhook sinks open theirs
 * after the switch, as the account; say so rather than spool from memory only.
 */
function refuseWebhookSpools(path: string, config: AlertConfig, user: string): void {
  const i = config.deliver.findIndex((d) => d.type === 'webhook' && d.sink.spool);
  if (i < 0) return;
  throw new CtwatchError('ERR_CONFIG', `${path}: deliver[${i}].spool: a rules-file webhook cannot spool under --user ${user}; `
    + 'move it to the --sinks file (type: webhook, spooled as the account) or drop its spool', { exitCode: EXIT.config });
}

/** The SIEM feed: a YAML file whose `sinks:` list is validated whole before anything starts. */
async function loadSinks(path: string, log: { warn(o: object, m: string): void; error(o: object, m: string): void; info(o: object, m: string): void }): Promise<SinkSet> {
  const specs = await loadSinkConfig(path).catch(oneLine);
  const host = systemHost();
  try {
    // spools open in sinkStart(), after --user: created now, as root, they would be root's
    return createSinks(specs, { logger: log as never, host: host.host, localAddresses: host.localAddresses, deferSpool: true });
  } catch (err) {
    // secrets and TLS files are read now: name the file the sink came from
    if (err instanceof SinkConfigError) oneLine(new SinkConfigError(err.issues, path));
    throw err;
  }
}

/** A sink that cannot start (its spool or file is unsafe, or locked): one line, exit 73. */
function sinkStartFailed(err: unknown): CtwatchError {
  if (!(err instanceof SinkStartError)) throw err;
  return new CtwatchError('ERR_SINK', `cannot start ${err.message}`, { exitCode: EXIT.cantCreate, cause: err });
}

/** `--check-rules`: every problem in --rules (and --sinks), one line each; 0 when both are valid. */
async function checkFiles(rules: string | undefined, sinks: string | undefined): Promise<number> {
  let status = 0;
  const report = (err: unknown): void => {
    if (!(err instanceof ConfigError)) throw err;
    for (const line of err.message.split('\n')) process.stderr.write(`ctwatch watch: ${line}\n`);
    status ||= err.exitCode;
  };
  const config = rules ? await loadAlertConfig(rules).catch(report) : defaultConfig();
  const specs = sinks ? await loadSinkConfig(sinks).catch(report) : undefined;
  if (status === 0) {
    if (config) process.stdout.write(`${rules ?? '(built-in rules)'}: ${config.rules.length} rules, ${config.deliver.length} deliveries: valid\n`);
    if (specs) process.stdout.write(`${sinks}: ${specs.length} sinks: valid\n`);
  }
  return status;
}

export async function watch(argv: string[]): Promise<number> {
  const { values } = parse('watch', argv, {
    ...SOURCE_OPTIONS,
    rules: { type: 'string' },
    'check-rules': { type: 'boolean' },
    output: { type: 'string', short: 'o' },
    flows: { type: 'boolean' },
    churn: { type: 'string' },
    status: { type: 'string' },
    sinks: { type: 'string' },
    metrics: { type: 'string' },
    ...ATTRIBUTION_OPTIONS,
    user: { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(WATCH_HELP);
    return 0;
  }
  const log = logger(values);
  if (values['check-rules']) return checkFiles(values.rules, values.sinks);
  if (values.metrics !== undefined) parseListenAddress(values.metrics);
  const account = values.user !== undefined ? lookupUser(values.user) : undefined;
  let config = await loadRules(values.rules, account);
  const sinks = values.sinks ? await loadSinks(values.sinks, log) : undefined;
  const churnUs = values.churn ? parseChurnEvery(values.churn) : undefined;
  const statusMs = parseDuration(values.status ?? '1m', '--status') * 1000;
  let fatal: CtwatchError | undefined;
  let output: Output | undefined;
  let closeSource = () => {};
  // Outputs first: a mistake there must not leave a kernel source open behind it.
  if (values.output) {
    output = openOutput(values.output, (err) => {
      fatal ??= err;
      closeSource();
    }, { owner: account, log });
  }
  // File sinks' files and (for --user) spool directories, as the daemon's first acts: deterministic,
  // before the switch, and a refusal stops it before any kernel source is open. Without --user the
  // spools open now too; with it, right after the switch, as the account.
  const abandon = async (err: unknown): Promise<never> => {
    await sinks?.close(0);
    await output?.end().catch(() => {});
    throw err;
  };
  try {
    sinks?.prepare(account);
    if (!account) await sinks?.start();
  } catch (err) {
    await abandon(sinkStartFailed(err));
  }
  let attribution: ReturnType<typeof startAttribution>;
  try {
    attribution = startAttribution(values);
  } catch (err) {
    return abandon(err);
  }
  const source = openEngineSource(values, undefined, attribution);
  closeSource = () => void source.close();
  const writer = output ? new RecordWriter(output) : undefined;
  const write = (records: WritableRecord[]) => {
    if (sinks) for (const r of records) sinks.write(r as SinkRecord);
    return writer?.write(records);
  };
  const metrics = values.metrics !== undefined ? new MetricsExporter() : undefined;
  let fired = 0;
  const watcher = new Watcher(source, config, {
    events: sinks ? (batch) => { for (const e of batch) sinks.write(e as SinkRecord); } : undefined,
    alerts: (alerts) => {
      fired += alerts.filter((a) => a.event === 'alert').length;
      return write(alerts);
    },
    // Sinks pick flow ends by their own filter; the JSONL output only with --flows.
    flows: values.flows || sinks ? (flows) => {
      if (sinks) for (const f of flows) sinks.write(f);
      if (values.flows) return writer?.write(flows);
    } : undefined,
    resync: (r) => write([r]),
    snapshot: (snap, active) => {
      metrics?.update({ snapshot: snap, source: source.counters, activeAlerts: active, firedTotal: fired, deliveries: watcher.deliveryStats(), sinks: sinks?.counters(), attribution: watcher.attribution?.stats, join: source.attribution });
      // every snapshot to the sinks (those that take `churn`: a nats sink feeding `ctwatch fleet`);
      // to --output only every --churn TIME
      sinks?.write(snap as unknown as SinkRecord);
      if (churnUs && snap.time % churnUs === 0) return writer?.write([snap]);
    },
  }, log, { attribution: attribution.pipeline });
  // Before the first line that says we run (the drop's, or 'watching'): a SIGTERM from then on
  // drains, also while the sinks and the metrics endpoint are still starting.
  const offSignals = onSignals(
    log,
    (signal) => {
      log.info({ signal }, 'stopping: draining deliveries and flushing');
      void source.close();
    },
    () => {
      output?.reopen();
      sinks?.reopen();
      loadRules(values.rules, account).then(
        async (next) => {
          config = next;
          await watcher.reload(next);
          log.info({ rules: values.rules ?? '(built-in)', rulesCount: next.rules.length }, 'reloaded rules (SIGHUP)');
        },
        (err: Error) => log.error(`rules not reloaded, keeping the old ones: ${err.message}`),
      );
    },
  );
  let dropped: { boundingSetDropped: boolean } | undefined;
  if (account) {
    try {
      dropped = dropPrivileges(account);
      await sinks?.start().catch((err) => {
        throw sinkStartFailed(err);
      });
    } catch (err) {
      await source.close();
      await abandon(err);
    }
    announceAccount(log, account, dropped);
  }
  const metricsServer = metrics && values.metrics !== undefined ? await metrics.listen(values.metrics).catch(async (err) => {
    await source.close();
    throw err;
  }) : undefined;
  attribution.announce(log);
  log.info({ netns: values.netns ?? '(own)', rules: values.rules ?? '(built-in)', rulesCount: config.rules.length, deliveries: config.deliver.length, output: output?.path ?? '(none)', ...(metricsServer ? { metrics: `http://${formatListenAddress(metricsServer.host, metricsServer.port)}/metrics` } : {}) }, 'watching the conntrack table');

  const status = statusMs > 0
    ? setLongInterval(() => {
        const s = watcher.last;
        const c = source.counters;
        log.info({ events: c.events, overflows: c.overflows, live: s?.live, fill: s?.table.fill === null || s === undefined ? undefined : Math.round(s.table.fill * 1000) / 10, newPerS: s ? Math.round(s.overall.new10) : undefined, alerts: watcher.activeAlerts().length }, 'status');
      }, statusMs)
    : undefined;
  status?.unref();

  await watcher.run();
  status?.clear();
  const drained = await watcher.close(5000);
  await sinks?.close(5000);
  await metricsServer?.close();
  await output?.end();
  offSignals();
  const c = source.counters;
  log.info({ events: c.events, overflows: c.overflows, alerts: fired, deliveriesDrained: drained, deliveries: watcher.deliveryStats(), ...(sinks ? { sinks: sinks.counters() } : {}) }, 'stopped');
  if (fatal && fatal.code !== 'ERR_OUTPUT_CLOSED') {
    log.error(fatal.message);
    return fatal.exitCode;
  }
  return 0;
}
