/** The attribution mode choice and the eBPF mode's bookkeeping (pure logic; the kernel side is in
 * test/kernel/attribution-ebpf.test.ts and attribution-mode.test.ts). */
import { describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Users } from '../../src/process/enrich.js';
import { chooseAttribution, describeAttribution, parseAttributionMode, probeAttribution } from '../../src/process/attribution.js';
import { OwnerAttribution } from '../../src/pipeline/attribution.js';
import type { NativeAttribution } from '../../src/source/native.js';
import type { ConntrackEvent } from '../../src/source/types.js';
import type { FlowEnd } from '../../src/flow/types.js';
import { ChurnEngine } from '../../src/churn/engine.js';

const refused = () => ({ refused: { code: 'ERR_BPF_PERMISSION', message: 'missing: CAP_BPF, CAP_PERFMON' } });
const loaded = (closed: string[]) => () => ({
  handle: { open() {}, info: () => ({ mode: 'ebpf', open: true }), close: () => void closed.push('closed') } as NativeAttribution,
});

describe('parseAttributionMode', () => {
  it('defaults to auto; --no-processes is off; a contradiction or an unknown mode is a usage error', () => {
    expect(parseAttributionMode(undefined)).toBe('auto');
    expect(parseAttributionMode('SockDiag')).toBe('sockdiag');
    expect(parseAttributionMode(undefined, true)).toBe('off');
    expect(parseAttributionMode('off', true)).toBe('off');
    expect(() => parseAttributionMode('ebpf', true)).toThrow(/contradict/);
    expect(() => parseAttributionMode('bpf')).toThrow(/use auto, ebpf, sockdiag or off/);
  });
});

describe('chooseAttribution', () => {
  it('auto: ebpf when it loads, else sockdiag with the reason', () => {
    const closed: string[] = [];
    expect(chooseAttribution('auto', { tryEbpf: loaded(closed) })).toMatchObject({ mode: 'ebpf', why: 'the eBPF programs loaded' });
    const c = chooseAttribution('auto', { tryEbpf: refused });
    expect(c).toMatchObject({ mode: 'sockdiag', refused: { code: 'ERR_BPF_PERMISSION' } });
    expect(describeAttribution(c)).toBe('attribution: sockdiag (eBPF refused: missing: CAP_BPF, CAP_PERFMON)');
  });

  it('ebpf that cannot load throws (exit 69); sockdiag and off never try BPF', () => {
    expect(() => chooseAttribution('ebpf', { tryEbpf: refused })).toThrow(expect.objectContaining({ exitCode: 69 }));
    const never = () => {
      throw new Error('tried');
    };
    expect(chooseAttribution('sockdiag', { tryEbpf: never }).mode).toBe('sockdiag');
    expect(describeAttribution(chooseAttribution('off', { tryEbpf: never, noProcessesFlag: true }))).toBe('attribution: off (--no-processes)');
  });

  it('probeAttribution (for doctor) lets go of what it loaded', () => {
    const closed: string[] = [];
    expect(probeAttribution(loaded(closed))).toEqual({ mode: 'ebpf', why: 'the eBPF programs loaded' });
    expect(closed).toEqual(['closed']);
    expect(probeAttribution(refused)).toMatchObject({ mode: 'sockdiag', refused: { code: 'ERR_BPF_PERMISSION' } });
  });
});

const tuple = { family: 'ipv4', proto: 'tcp', src: '127.0.0.1', dst: '127.0.0.1', dport: 80 } as const;
function news(sport: number, owner?: Partial<NonNullable<ConntrackEvent['owner']>>, unattributed?: ConntrackEvent['unattributed']): ConntrackEvent {
  return {
    ...tuple, sport, event: 'new', time: 1_000_000, id: sport, status: [], reply: { src: '127.0.0.1', dst: '127.0.0.1', sport: 80, dport: sport },
    ...(owner ? { owner: { pid: 42, tid: 42, uid: 0, comm: 'client', cgroupId: 0, startNs: 1, side: 'origin', via: 'connect', ageUs: 3, ...owner } } : {}),
    ...(unattributed ? { unattributed } : {}),
  } as ConntrackEvent;
}
const destroy = (sport: number, id = sport) =>
  ({ ...tuple, sport, event: 'destroy', time: 2_000_000, id, status: [], reply: { src: '127.0.0.1', dst: '127.0.0.1', sport: 80, dport: sport } }) as ConntrackEvent;

/** The stage and the engine as the pipeline runs them: every batch is enriched, then ingested. */
function attributed() {
  const a = new OwnerAttribution();
  const engine = new ChurnEngine({ owners: {} });
  const run = (batch: ConntrackEvent[]): FlowEnd[] => {
    a.enrich(batch);
    return engine.ingest(batch);
  };
  return { a, engine, run };
}

describe('OwnerAttribution (eBPF mode)', () => {
  it('flow ends name the owner joined at NEW, or say why none; per-process churn counts them', () => {
    const { a, engine, run } = attributed();
    const batch = [news(1000, {}), news(1001, {}), news(1002, undefined, 'no-stamp')];
    run(batch);
    expect(batch[0].process).toMatchObject({ pid: 42, comm: 'client', side: 'origin' });
    const ends = run([destroy(1000), destroy(1002), destroy(1003)]);
    expect(ends[0].process).toMatchObject({ pid: 42 });
    expect(ends[0].unattributed).toBeUndefined();
    expect(ends[1]).toMatchObject({ process: null, unattributed: 'no-stamp' });
    expect(ends[2]).toMatchObject({ process: null, unattributed: 'unseen' });
    expect(a.stats).toMatchObject({ flows: 3, attributed: 2, reasons: { 'no-stamp': 1 } });
    // the one flow still live is the one whose owner is still held
    expect(engine.tracker.owned).toBe(1);
    const snap = engine.snapshot(2_000_000);
    expect(snap.processes?.[0]).toMatchObject({ key: 'client[42]', live: 1 });
    // what the key names rides beside it: readers never parse "comm[pid]"
    expect(snap.processes?.[0]).toMatchObject({ pid: 42, comm: 'client' });
  });

  it('a flow whose id the kernel reused keeps its own owner: the stale one (ended by the resync) and the new one', () => {
    const { engine, run } = attributed();
    run([news(5000, { pid: 42, comm: 'old' })]);
    // the same id on another tuple: the first flow's DESTROY was lost
    const again = { ...news(5001, { pid: 43, comm: 'new' }), id: 5000 };
    const [stale] = run([again]);
    const [fresh] = run([destroy(5001, 5000)]);
    expect(stale).toMatchObject({ reason: 'resync', sport: 5000 });
    expect(stale.process).toMatchObject({ pid: 42, comm: 'old' });
    expect(fresh.process).toMatchObject({ pid: 43, comm: 'new' });
    expect(engine.tracker.owned).toBe(0);
  });

  it('an owner lives as long as its flow: a flow a resync ended (its DESTROY lost) still names it, and leaves its live count', () => {
    const { engine, run } = attributed();
    run([news(1, {}), news(2, {}), news(3, {})]);
    expect(engine.tracker.owned).toBe(3);
    // a fresh dump shows only flow 3: flows 1 and 2 vanished while events were lost
    const ends = engine.reconcile({ has: (id) => id === 3 }, 3_000_000);
    expect(ends.map((e) => [e.id, e.reason, e.process?.pid])).toEqual([[2, 'resync', 42], [1, 'resync', 42]]);
    expect(engine.tracker.owned).toBe(1);
    expect(engine.snapshot(3_000_000).processes?.[0]).toMatchObject({ key: 'client[42]', live: 1 });
  });
});

describe('owners of flows a dump found, and processes still being read', () => {
  const dumped = (sport: number, owner?: Partial<NonNullable<ConntrackEvent['owner']>>) => ({ ...news(sport, owner), event: 'snapshot' }) as ConntrackEvent;

  it("a dumped flow is live under its owner (not a new flow) and leaves it when it ends; a NEW racing the dump moves it to the NEW's owner", () => {
    const { engine, run } = attributed();
    run([dumped(1, {}), dumped(2, {}), news(3, {})]);
    let row = engine.snapshot(1_000_000).processes?.[0];
    expect(row).toMatchObject({ key: 'client[42]', live: 3 });
    run([destroy(1)]);
    row = engine.snapshot(2_000_000).processes?.[0];
    expect(row).toMatchObject({ key: 'client[42]', live: 2 });
    // the dump and the event socket raced: flow 2's NEW names another process
    const [end] = run([{ ...news(2, { pid: 43, tid: 43, comm: 'other' }), time: 2_000_000 }, destroy(2)]);
    expect(end.process).toMatchObject({ pid: 43 });
    const rows = engine.snapshot(3_000_000).processes!;
    expect(rows.find((r) => r.key === 'client[42]')?.live).toBe(1);
    expect(rows.find((r) => r.key === 'other[43]')?.live ?? 0).toBe(0);
  });

  it('what enrichment reads after the NEW reaches the flow end, however much later it comes; a uid /etc/passwd does not name is settled, not read again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctwatch-users-'));
    try {
      writeFileSync(join(dir, 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
      const users = new Users(join(dir, 'passwd'));
      const a = new OwnerAttribution({ users });
      const engine = new ChurnEngine({ owners: {} });
      const first = [news(7000, { startNs: 0 }), news(7001, { uid: 4242, tid: 77, pid: 77, startNs: 0 })];
      a.enrich(first);
      engine.ingest(first);
      // the passwd read started with the NEW and has not answered yet
      expect(first[0].process?.user).toBeUndefined();
      expect(a.stats.pending).toBe(2);
      await vi.waitFor(() => expect(users.known(0)).toBe(true));
      // the DESTROY comes 30 s later, in the next batch
      const gone = [{ ...destroy(7000), time: 31_000_000 }];
      a.enrich(gone);
      const [end] = engine.ingest(gone);
      expect(end.process).toMatchObject({ pid: 42, user: 'root' });
      // uid 4242 has no name in the file as read: nothing more to wait for
      expect(a.stats.pending).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('unattributed rows (honest figures)', () => {
  it('snapshots carry what could not be attributed, by reason, beside the processes; top shows both', async () => {
    const { renderTop } = await import('../../src/cli/top-view.js');
    const { engine, run } = attributed();
    run([news(2000, {}), news(2001, undefined, 'no-stamp'), news(2002, undefined, 'no-stamp'), news(2003, undefined, 'gone')]);
    const snap = engine.snapshot(1_000_000);
    expect(snap.processes?.map((r) => [r.key, r.live])).toEqual([['client[42]', 1]]);
    expect(snap.unattributed?.map((r) => [r.key, r.live])).toEqual([['no-stamp', 2], ['gone', 1]]);
    run([destroy(2001)]);
    const after = engine.snapshot(2_000_000);
    expect(after.unattributed?.find((r) => r.key === 'no-stamp')?.live).toBe(1);
    const screen = renderTop({
      ...after, overall: { new1: 0, new10: 0, new60: 0, end1: 0, end10: 0, end60: 0 }, live: 0, states: {}, shortLived: 0,
      table: { entries: null, max: null, fill: null, growth: 0, timeToFull: null, kernel: {} }, destinations: [], sources: [], protocols: [],
    } as never);
    expect(screen).toMatch(/PROCESS[^\n]*\nclient\[42\][^\n]*\n\(unattributed: no-stamp\)[^\n]*\n\(unattributed: gone\)/);
  });
});
