/**
 * The warm-up before a live pipeline's first event (src/pipeline/warmup.ts) leaves no trace: a
 * recording replayed after it gives byte for byte the flow and churn lines it gave before it,
 * including flows on the very addresses and ports the warm-up used (so a module-level cache it
 * filled would show). And it keeps to its budget, read on the clock it is given.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig } from '../../src/alerts/index.js';
import { assembleReplay, warmUpGivesWay, warmUpLive } from '../../src/pipeline/assemble.js';
import { Cgroupfs } from '../../src/process/cgroupfs.js';
import type { Output } from '../../src/recording/output.js';
import { formatMicros } from '../../src/recording/time.js';
import { RecordWriter } from '../../src/recording/writer.js';
import type { RecordLayout } from '../../src/source/native.js';

// native/conntrack/record.h as the addon exports it (the warm-up lays its records out and decodes
// them with the same table, so the test needs no addon)
const LAYOUT: RecordLayout = {
  kind: 0, family: 1, proto: 2, tcp_state: 3, present: 4, id: 8, status: 12, mark: 16, timeout: 20, zone: 24,
  sport: 26, dport: 28, reply_sport: 30, reply_dport: 32, icmp_type: 34, icmp_code: 35, icmp_id: 36,
  src: 40, dst: 56, reply_src: 72, reply_dst: 88, orig_packets: 104, orig_bytes: 112, reply_packets: 120,
  reply_bytes: 128, ts_start: 136, ts_stop: 144, time_us: 152, secmark: 160, owner_pid: 168, owner_tid: 172,
  owner_uid: 176, owner_age_us: 180, owner_cgroup: 184, owner_start_ns: 192, owner_comm: 200, owner_side: 216,
  owner_via: 217, unattributed: 218, size: 224,
};

const dir = mkdtempSync(join(tmpdir(), 'ctwatch-warmup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A recording of 300 flows over 4 s: NEW, UPDATE, DESTROY, some towards the warm-up's own
 * destinations (198.19.0.1:443 from 198.18.0.x, 2001:2::1:1, and ports of the 10000-11023 its
 * second generation spreads flows over), the rest elsewhere. */
function recording(): string {
  const t0 = Date.parse('2026-11-25T15:04:05Z') * 1000;
  const lines: string[] = [];
  const flows = 300;
  for (let step = 0; step < flows + 20; step++) {
    const at = (n: number, kind: string, state: string, status: string[]) => {
      const v6 = n % 9 === 8;
      const ours = n % 2 === 0;
      const src = v6 ? `2001:2::${ours ? 0 : 5}:${(n % 7) + 1}` : ours ? `198.18.0.${(n % 64) + 1}` : `10.1.0.${(n % 50) + 1}`;
      const dst = v6 ? `2001:2::1:1` : ours ? '198.19.0.1' : '10.2.0.7';
      const sport = 32768 + n;
      const dport = ours ? (n % 4 === 0 ? 10_000 + (n % 1024) : 443) : 6379;
      lines.push(JSON.stringify({
        v: 1, event: kind, time: formatMicros(t0 + step * 12_500 + lines.length), id: 0x7a000000 + n, family: v6 ? 'ipv6' : 'ipv4', proto: 'tcp',
        src, dst, sport, dport, reply: { src: dst, dst: src, sport: dport, dport: sport },
        state, status, ...(kind === 'destroy' ? {} : { timeout: 120 }), netns: 'prod',
      }));
    };
    if (step < flows) at(step, 'new', 'SYN_SENT', ['CONFIRMED']);
    if (step >= 5 && step - 5 < flows) at(step - 5, 'update', 'ESTABLISHED', ['SEEN_REPLY', 'ASSURED', 'CONFIRMED']);
    if (step >= 20) at(step - 20, 'destroy', 'TIME_WAIT', ['SEEN_REPLY', 'ASSURED', 'CONFIRMED']);
  }
  const file = join(dir, 'flows.jsonl');
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

/** What `replay --flows` would write: every flow line and every churn line, as bytes. */
async function replayed(file: string): Promise<string> {
  const chunks: Buffer[] = [];
  const memory: Output = {
    path: '(memory)',
    write: (lines) => (chunks.push(Buffer.from(lines)), true),
    drained: async () => {},
    reopen: () => {},
    end: async () => {},
    errors: 0,
  };
  const writer = new RecordWriter(memory);
  const assembly = await assembleReplay(file);
  await assembly.run({ flows: (ends) => writer.write(ends), snapshot: (snap) => writer.write([snap]) });
  return Buffer.concat(chunks).toString('utf8');
}

describe('warm-up', () => {
  it('leaves no trace: a replay after it writes the very bytes it wrote before', async () => {
    const file = recording();
    const before = await replayed(file);
    expect(before.split('\n').filter((l) => l.includes('"event":"flow"'))).toHaveLength(300);
    expect(before).toContain('"event":"churn"');

    const w = await warmUpLive({ layout: LAYOUT, netns: 'prod', updates: true, attribution: 'ebpf', rules: defaultConfig(), engine: { replies: true }, budgetMs: 60_000 });
    expect(w.cut).toBe(false);
    expect(w.busy).toBe(false);
    // two generations: every flow's NEW, UPDATE and DESTROY; the dumped flows' entry, end, and the dump's end
    expect(w.flows).toBe(16_000 + 6_000);
    expect(w.events).toBe(3 * (16_000 + 6_000) + 2 * (2 * 64 + 1));
    expect(w.lines).toBe(16_000 + 6_000 + 2 * 64 + w.snapshots);
    expect(w.snapshots).toBeGreaterThanOrEqual(4);
    // the owner's reads answered between the batches, and the last generation's last flows went
    // through the shared, completed process, as a live owner's do (its cgroup only where this process has
    // one under a cgroup2 mount it can see: not on a v1-only host)
    const cgroups = (await new Cgroupfs({ maxWalk: 0 }).idOf(process.pid)) === undefined ? 0 : 1;
    expect(w.attribution).toEqual({ exe: 1, cgroups, pending: 0 });

    expect(await replayed(file)).toBe(before);
  });

  it('stops as soon as the live source has events waiting (started under load)', async () => {
    let asked = 0;
    // waiting from the third look on: after two synthetic batches
    const w = await warmUpLive({ layout: LAYOUT, budgetMs: 60_000, busy: () => ++asked > 2 });
    expect(w).toMatchObject({ cut: true, busy: true });
    expect(w.events).toBeGreaterThan(0);
    // two synthetic batches of the first generation, and no second generation
    expect(w.events).toBeLessThanOrEqual(2 * 1024);
    expect(w.flows).toBeLessThan(16_000);
  });

  it('gives way to a load already there, not to a table dump', () => {
    expect(warmUpGivesWay({ events: 0, full: false })).toBe(false);
    expect(warmUpGivesWay({ events: 4095, full: false })).toBe(false);
    expect(warmUpGivesWay({ events: 4096, full: false })).toBe(true);
    // the reader may hand over nothing more: of a light load, the socket holds the rest
    expect(warmUpGivesWay({ events: 2000, full: true })).toBe(false);
    // ... of a dump of 64 Ki entries, the reader is blocked in it and sees no load meanwhile
    expect(warmUpGivesWay({ events: 0, full: true })).toBe(true);
  });

  it('stops at its budget, on the clock it is given', async () => {
    let t = 0;
    // every reading 1 ms later: the 5 ms budget runs out after a handful of batches
    const w = await warmUpLive({ layout: LAYOUT, budgetMs: 5, now: () => (t += 1) });
    expect(w.cut).toBe(true);
    expect(w.events).toBeGreaterThan(0);
    expect(w.events).toBeLessThan(2 * 16_000);
  });
});
