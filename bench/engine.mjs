// Flow engine throughput and memory. Build first: npx tsc -p tsconfig.json
// Run: node --expose-gc bench/engine.mjs [events=5000000]
//
// Throughput: synthetic NEW/DESTROY events in batches of 1024 through ChurnEngine.ingest (tracker +
// rate windows + heavy hitters + lifetimes), with a snapshot per second of event time. The table is
// first filled to 100 k live flows, then every step opens one flow and closes the oldest. Events
// are built per batch like the decoder does (fresh address strings); only the engine is timed.
// Two key spreads: 'concentrated' (64 destinations, 64 sources: every key stays in the top-K) and
// 'spread' (1000 destinations, 4096 sources, uniform: most events evict a heavy-hitter slot, the
// cost of a server with many clients or a scan).
// Memory: heapUsed + arrayBuffers after a forced GC, before and after filling an engine with 100 k
// and then 1 M live flows (NEW only), divided by the flows added.
import { ChurnEngine } from '../dist/churn/engine.js';

const TOTAL = Number(process.argv[2] ?? 5_000_000);
const BATCH = 1024;
const LIVE = 100_000;
/** event-time spacing: 50 k events per second */
const STEP_US = 20;
const T0 = 1_700_000_000_000_000;

if (typeof globalThis.gc !== 'function') {
  console.error('run with node --expose-gc bench/engine.mjs');
  process.exit(2);
}

// The k-th flow: a bijection on u32 gives unique, scattered ids, as the kernel's hashed ids are.
const idOf = (k) => Math.imul(k + 1, 0x9e3779b1) >>> 0;

function event(kind, k, time, spread = { destinations: 1000, sources: 4096 }) {
  const d = (k * 7919) % spread.destinations;
  const s = (k * 104729) % spread.sources;
  const src = `10.${(s >> 8) & 255}.${s & 255}.1`;
  const dst = `172.16.${d >> 8}.${d & 255}`;
  const sport = 1024 + (k % 60000);
  const dport = 6000 + (d % 16);
  const ev = {
    event: kind,
    time,
    id: idOf(k),
    family: 'ipv4',
    proto: 'tcp',
    src,
    dst,
    sport,
    dport,
    reply: { src: dst, dst: src, sport: dport, dport: sport },
    status: kind === 'new' ? ['CONFIRMED'] : ['ASSURED', 'CONFIRMED', 'SEEN_REPLY'],
    state: kind === 'new' ? 'SYN_SENT' : 'TIME_WAIT',
  };
  if (kind === 'destroy') {
    ev.orig = { packets: 6, bytes: 420 };
    ev.reply.packets = 5;
    ev.reply.bytes = 380;
  }
  return ev;
}

function throughput(total, spread) {
  const engine = new ChurnEngine();
  let opened = 0;
  let closed = 0;
  let time = T0;
  let done = 0;
  let busy = 0;
  let records = 0;
  let snapshots = 0;
  let nextSnapshot = T0 + 1_000_000;
  while (done < total) {
    const batch = [];
    for (let i = 0; i < BATCH && done < total; i++, done++) {
      time += STEP_US;
      if (opened - closed < LIVE || (done & 1) === 0) batch.push(event('new', opened++, time, spread));
      else batch.push(event('destroy', closed++, time, spread));
    }
    const began = performance.now();
    records += engine.ingest(batch).length;
    // a snapshot per second of event time, as the collector takes them
    if (time >= nextSnapshot) {
      engine.snapshot(time);
      snapshots++;
      nextSnapshot += 1_000_000;
    }
    busy += performance.now() - began;
  }
  const snap = engine.snapshot(time);
  return { events: done, seconds: busy / 1000, records, snapshots, live: snap.live, top: snap.destinations[0] };
}

function used() {
  globalThis.gc();
  globalThis.gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function memory() {
  const engine = new ChurnEngine();
  const base = used();
  const rows = [];
  let k = 0;
  let time = T0;
  for (const target of [100_000, 1_000_000]) {
    const before = k;
    while (k < target) {
      const batch = [];
      for (let i = 0; i < BATCH && k < target; i++) batch.push(event('new', k++, (time += STEP_US)));
      engine.ingest(batch);
    }
    const bytes = used() - base;
    rows.push({ live: engine.tracker.size, bytes, perFlow: bytes / engine.tracker.size, added: k - before });
  }
  return { rows, distinct: engine.tracker.distinct };
}

for (const [name, total, spread] of [
  ['concentrated', TOTAL, { destinations: 64, sources: 64 }],
  ['spread', Math.min(TOTAL, 1_000_000), { destinations: 1000, sources: 4096 }],
]) {
  const t = throughput(total, spread);
  console.log(
    `throughput, ${name} (${spread.destinations} destinations, ${spread.sources} sources): ` +
      `${t.events.toLocaleString('en')} events (NEW/DESTROY, ~${LIVE / 1000} k live) in ` +
      `${t.seconds.toFixed(2)} s = ${Math.round(t.events / t.seconds).toLocaleString('en')} events/s ` +
      `(${t.records.toLocaleString('en')} flow records, ${t.snapshots} snapshots; ` +
      `top ${t.top.key} new1=${t.top.new1.toFixed(1)}/s live=${t.top.live})`,
  );
}
const m = memory();
for (const r of m.rows) {
  console.log(
    `memory: ${r.live.toLocaleString('en')} live flows: ${(r.bytes / 1048576).toFixed(1)} MiB ` +
      `heap+arrayBuffers over an empty engine = ${r.perFlow.toFixed(1)} bytes/flow`,
  );
}
const [small, large] = m.rows;
console.log(
  `  marginal, 100 k -> 1 M: ${((large.bytes - small.bytes) / (large.live - small.live)).toFixed(1)} bytes/flow; ` +
    `fixed costs included above: ${m.distinct.destinations} destination keys and ${m.distinct.sources} sources ` +
    `interned, 2 x 256 heavy-hitter slots with their windows`,
);
