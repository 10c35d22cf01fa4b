/** `ctwatch record`: conntrack events to JSONL, losslessly or loudly. */
import { LiveSource, parseEventList, DEFAULT_RCVBUF } from '../source/live.js';
import { RecordWriter, type WritableRecord } from '../recording/writer.js';
import { openOutput } from '../recording/output.js';
import { CtwatchError, EXIT } from '../util/errors.js';
import { announceAccount, dropPrivileges, lookupUser } from '../util/privileges.js';
import { parseChurnEvery, parseCount, parseDuration, parseSize } from './args.js';
import { setLongTimeout } from '../util/timers.js';
import { assembleLive } from '../pipeline/assemble.js';
import { ATTRIBUTION_HELP, ATTRIBUTION_OPTIONS, startAttribution } from './engine-options.js';
import type { SourceEvent } from '../source/types.js';
import { logger, onSignals, parse } from './common.js';

export const RECORD_HELP = `Usage: ctwatch record [options]

Write every conntrack event the kernel reports as one JSON object per line (schema:
docs/schema.md, "v": 1). Needs CAP_NET_ADMIN (root).

Options:
  --netns NAME|PATH     namespace to watch: a name from 'ip netns list' or a path such as
                        /proc/PID/ns/net (default: ctwatch's own)
  --events LIST         kernel events to subscribe to: new,update,destroy (default new,destroy;
                        update multiplies the volume 3-6x)
  -o, --output FILE|-   where lines go (default -, stdout); files are created 0600 and reopened
                        on SIGHUP, so logrotate can move them
  --rcvbuf SIZE         kernel receive buffer (default 32M; raise it if overflows are reported)
  --snapshot            first dump the entries already in the table (event "snapshot")
  --reliable            ask the kernel not to drop DESTROY events for us (it holds dying entries
                        until we read them: see README before using on a full table)
  --filter EXPR         only these flows, filtered in the kernel; repeat to AND, commas to OR:
                        proto tcp | src 127.0.0.0/8 | dst ::1 | state ESTABLISHED | mark 0x1/0xff
                        | family ipv4. An IPv4 address filter does not hide IPv6 (add family).
                        Ports and zone (dport 6379, zone 1) are applied in user space, with a note
  --user NAME           after opening the kernel sockets, run as NAME keeping only CAP_NET_ADMIN
                        (the output file is handed to NAME; its directory must be writable by
                        NAME for logrotate's rename + SIGHUP)
  --duration TIME       stop after this long (e.g. 30s, 5m)
  --count N             stop after N events
  --flows               also write a "flow" line when each flow ends: duration, bytes, packets,
                        last TCP state (implies --snapshot; see docs/schema.md)
  --churn TIME          also write a "churn" line every TIME (e.g. 10s): rates per destination,
                        source and protocol, table fill, time to full
${ATTRIBUTION_HELP}
                        (with --flows or --churn)
  --log-format text|json  diagnostics on stderr (default text)
  -h, --help            this help

Example: watch a namespace for 10 seconds and keep only the connections to Redis
  ctwatch record --netns ctwatch-demo --duration 10s | jq -c 'select(.dport == 6379)'
  {"v":1,"event":"new","time":"2026-11-25T15:04:05.123456Z","id":3834222225,"family":"ipv4",
   "proto":"tcp","src":"127.0.1.7","dst":"127.0.0.5","sport":51662,"dport":6379,"reply":{...},
   "state":"SYN_SENT","status":["CONFIRMED"],"timeout":120,"netns":"ctwatch-demo"}

Loss is never silent: if the kernel drops events (socket overflow, ENOBUFS) an
{"event":"overflow"} line is written where it happened and a warning is logged.
Exit status: 0 done, 64 usage, 66 no such namespace, 69 conntrack netlink missing,
73 output not writable, 74 write failed, 77 not permitted (needs CAP_NET_ADMIN).
`;

export async function record(argv: string[]): Promise<number> {
  const { values } = parse('record', argv, {
    netns: { type: 'string' },
    events: { type: 'string' },
    output: { type: 'string', short: 'o' },
    rcvbuf: { type: 'string' },
    snapshot: { type: 'boolean' },
    reliable: { type: 'boolean' },
    duration: { type: 'string' },
    count: { type: 'string' },
    flows: { type: 'boolean' },
    churn: { type: 'string' },
    filter: { type: 'string', multiple: true },
    user: { type: 'string' },
    ...ATTRIBUTION_OPTIONS,
  });
  if (values.help) {
    process.stdout.write(RECORD_HELP);
    return 0;
  }
  const log = logger(values);
  const events = values.events !== undefined ? parseEventList(values.events) : undefined;
  const rcvbuf = values.rcvbuf ? parseSize(values.rcvbuf, '--rcvbuf') : DEFAULT_RCVBUF;
  const duration = values.duration ? parseDuration(values.duration, '--duration', { positive: true }) : undefined;
  const maxCount = values.count ? parseCount(values.count, '--count') : undefined;

  const account = values.user !== undefined ? lookupUser(values.user) : undefined;
  let fatal: CtwatchError | undefined;
  let source: LiveSource | undefined;
  const output = openOutput(values.output ?? '-', (err) => {
    if (!fatal) fatal = err;
    void source?.close();
  }, { owner: account, log });
  const churnUs = values.churn ? parseChurnEvery(values.churn) : undefined;
  const useEngine = values.flows || churnUs !== undefined;
  // Flow lines name their process (loaded before --user: BPF needs root).
  const attribution = useEngine ? startAttribution(values) : undefined;
  try {
    source = new LiveSource({ netns: values.netns, events, rcvbuf, reliable: values.reliable, snapshot: values.snapshot || useEngine, filter: values.filter, attribution: attribution?.choice.handle });
  } finally {
    attribution?.choice.handle?.close();
  }
  for (const note of source.filterNotes) log.info(note);
  const assembly = assembleLive(source, { engine: useEngine, log, attribution: attribution?.pipeline });
  const src = source;
  // Before the first line that says we run (the drop's): a SIGTERM from then on drains.
  const stop = () => void src.close();
  const offSignals = onSignals(log, stop, () => {
    output.reopen();
    log.info({ output: output.path }, 'reopened output (SIGHUP)');
  });
  let dropped: { boundingSetDropped: boolean } | undefined;
  if (account) {
    try {
      dropped = dropPrivileges(account);
    } catch (err) {
      await source.close();
      throw err;
    }
    announceAccount(log, account, dropped);
  }
  attribution?.announce(log);
  log.info({ netns: values.netns ?? '(own)', events: (events ?? ['new', 'destroy']).join(','), rcvbuf: src.counters.rcvbuf, output: output.path }, 'recording conntrack events');

  const timer = duration !== undefined ? setLongTimeout(stop, duration * 1000) : undefined;

  // A namespace where no ruleset references conntrack tracks nothing; say so instead of
  // recording nothing in silence.
  const quietCheck = setTimeout(() => {
    if (src.counters.events > 0) return;
    try {
      const s = src.stats();
      if (s.entries === 0) {
        const doctor = `ctwatch doctor${values.netns ? ` --netns ${values.netns}` : ''}`;
        log.warn({ netns: values.netns ?? '(own)' }, `no events and an empty conntrack table after 10s: nothing is tracked until a firewall rule uses conntrack (e.g. nft add rule inet t out ct state new counter); '${doctor}' checks every cause`);
      }
    } catch {
      /* stats are a hint only */
    }
  }, 10_000);
  quietCheck.unref();

  let written = 0;
  let overflows = 0;
  let lastOverflowLog = 0;
  const writer = new RecordWriter(output);
  const writeEvents = (batch: SourceEvent[]) => {
    // One write per batch, up to the event that reaches --count.
    let end = batch.length;
    for (let i = 0; i < batch.length; i++) {
      const ev = batch[i];
      if (ev.event === 'overflow') {
        overflows++;
        if (ev.time - lastOverflowLog > 10e6) {
          lastOverflowLog = ev.time;
          log.warn({ overflows: ev.overflows, rcvbuf: src.counters.rcvbuf }, 'the kernel dropped events: socket buffer overflow (ENOBUFS); raise --rcvbuf or reduce --events');
        }
      }
      written++;
      if (maxCount !== undefined && ev.event !== 'overflow' && ev.event !== 'snapshot_done' && written >= maxCount) {
        stop();
        end = i + 1;
        break;
      }
    }
    return writer.write(end === batch.length ? batch : batch.slice(0, end));
  };
  const writeRecords = (records: WritableRecord[]) => writer.write(records);
  await assembly.run({
    events: writeEvents,
    flows: values.flows ? writeRecords : undefined,
    snapshot: churnUs !== undefined ? (snap) => (snap.time % churnUs === 0 ? writeRecords([snap]) : undefined) : undefined,
    resync: (r) => writeRecords([r]),
  });
  timer?.clear();
  clearTimeout(quietCheck);
  await output.end();
  offSignals();
  const c = src.counters;
  if (fatal && fatal.code !== 'ERR_OUTPUT_CLOSED') {
    log.error(fatal.message);
    return fatal.exitCode;
  }
  log.info({ lines: written, events: c.events, overflows: c.overflows, decodeErrors: c.decodeErrors, queueHighWater: c.queueHighWater, output: output.path }, 'stopped');
  return 0;
}
