/**
 * The disk spool as root, next to an account that plants things (SECURITY.md T2), and on a full
 * disk (T4): a spool directory owned by the real `nobody`, group-writable, reached through a link
 * nobody planted; seg-*.log, lock and state.json symlinks and hard links to root files; a lock held
 * by a live process (flock(1)) and one left by a dead one; a state.json that parses but points
 * nowhere; corruption between records; a real 256 KiB tmpfs filled up while a real HTTP receiver is
 * down, then back. Root files keep owner, mode and content; every record is delivered or counted.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { formatFor } from '../../src/formats/index.js';
import { flow } from '../helpers/records.js';
import { HttpTransport } from '../../src/sinks/http.js';
import { DeliverySink } from '../../src/sinks/sink.js';
import { Spool, SpoolError, parseFrames, type SpoolOptions } from '../../src/sinks/spool.js';
import type { SinkLogger } from '../../src/sinks/types.js';
import { HttpReceiver, freeTcpPort, waitFor } from '../helpers/receivers.js';
import { CLI, createNetns, track, type Netns } from '../helpers/netns.js';
import { NOBODY, asNobody, expectUntouched, victim, type Victim } from '../helpers/victim.js';

const run = promisify(execFile);

let dir: string;
let secret: Victim;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctwatch-sec-spool-'));
  chmodSync(dir, 0o755);
  secret = victim(dir);
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const opts = (d: string, o: Partial<SpoolOptions> = {}): SpoolOptions => ({ dir: d, maxBytes: 1 << 20, policy: 'drop-oldest', segmentBytes: 4096, ...o });

async function refusal(o: SpoolOptions): Promise<SpoolError> {
  const err = await Spool.open(o).then(
    async (s) => {
      await s.close();
      return undefined;
    },
    (e) => e,
  );
  expect(err).toBeInstanceOf(SpoolError);
  expect((err as Error).message).not.toContain('\n');
  return err as SpoolError;
}

async function drain(s: Spool): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const b = await s.read(1000, 1 << 20);
    if (!b) return out;
    out.push(...b.records);
    await s.commit(b);
  }
}

function logger(): SinkLogger & { lines: { level: string; obj: any; msg?: string }[] } {
  const lines: { level: string; obj: any; msg?: string }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, msg });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

describe('spool directory: only ctwatch\'s own, nothing in it followed', () => {
  it('is created 0700, with its lock and state files 0600', async () => {
    const s = await Spool.open(opts(join(dir, 'new', 'spool')));
    await s.append(['x']);
    expect(statSync(join(dir, 'new', 'spool')).mode & 0o7777).toBe(0o700);
    for (const f of ['lock', 'state.json', 'seg-000000000001.log']) expect(statSync(join(dir, 'new', 'spool', f)).mode & 0o777).toBe(0o600);
    await s.close();
  });

  it('a directory owned by nobody, with seg-*.log and lock symlinks nobody planted to root files: refused, the files untouched', async () => {
    const spool = join(dir, 'spool');
    mkdirSync(spool, 0o700);
    chownSync(spool, NOBODY, NOBODY);
    const other = victim(dir, 'root-other', 'other\n');
    asNobody('ln', '-s', secret.path, join(spool, 'seg-000000000001.log'));
    asNobody('ln', '-s', other.path, join(spool, 'lock'));
    asNobody('ln', '-s', other.path, join(spool, 'state.json'));
    const err = await refusal(opts(spool));
    expect(err.code).toBe('ERR_UNSAFE_PATH');
    expect(err.message).toMatch(/spool .*spool: .*spool belongs to nobody \(uid 65534\), but ctwatch keeps its files there as root \(uid 0\) \(chown -R root .*spool, or choose another directory\)/);
    expectUntouched(secret);
    expectUntouched(other);
  });

  it('a group-writable directory: refused (chmod 700)', async () => {
    const spool = join(dir, 'spool');
    mkdirSync(spool);
    chownSync(spool, 0, NOBODY);
    chmodSync(spool, 0o770);
    const err = await refusal(opts(spool));
    expect(err.message).toMatch(/is writable by group nogroup \(gid 65534\) \(chmod 700 .*spool\)/);
    expect(readdirSync(spool)).toEqual([]);
  });

  it('under a directory nobody owns, through a link nobody planted to a root directory: refused, nothing created there', async () => {
    const theirs = join(dir, 'theirs');
    mkdirSync(theirs);
    chownSync(theirs, NOBODY, NOBODY);
    const rootOnly = join(dir, 'root-only');
    mkdirSync(rootOnly, 0o700);
    asNobody('ln', '-s', rootOnly, join(theirs, 'spool'));
    const err = await refusal(opts(join(theirs, 'spool')));
    expect(err.message).toMatch(/theirs belongs to nobody \(uid 65534\), who could put something else at .*theirs\/spool/);
    expect(readdirSync(rootOnly)).toEqual([]);
  });

  it.each(['seg-000000000001.log', 'lock', 'state.json'])('a %s symlink to a root file inside our own directory: refused, not followed', async (name) => {
    const spool = join(dir, 'spool');
    mkdirSync(spool, 0o700);
    symlinkSync(secret.path, join(spool, name));
    const err = await refusal(opts(spool));
    expect(err.message).toContain(`${name} is a symbolic link, and ctwatch follows none where it writes`);
    expectUntouched(secret);
  });

  it('a seg-*.log hard link to a root file: refused, the file not truncated', async () => {
    const spool = join(dir, 'spool');
    mkdirSync(spool, 0o700);
    linkSync(secret.path, join(spool, 'seg-000000000001.log'));
    const err = await refusal(opts(spool));
    expect(err.message).toContain('has 2 hard links');
    expectUntouched(secret);
  });

  it('a lock another process holds (flock(1)): refused in one line with its pid; once it is gone, the spool opens', async () => {
    const spool = join(dir, 'spool');
    const first = await Spool.open(opts(spool));
    await first.append(['a']);
    await first.close();
    const holder = spawn('flock', ['--exclusive', join(spool, 'lock'), 'sleep', '60'], { stdio: 'ignore', detached: true });
    try {
      await waitFor(() => execFileSync('sh', ['-c', `flock --nonblock ${join(spool, 'lock')} true || echo held`]).toString().includes('held'), 5000, 'flock(1) to hold the lock');
      writeFileSync(join(spool, 'lock'), `${holder.pid}\n`);
      const err = await refusal(opts(spool));
      expect(err.code).toBe('ERR_SPOOL_BUSY');
      expect(err.message).toMatch(new RegExp(`spool .*spool is in use by another ctwatch \\(pid ${holder.pid}\\): stop it, or give this sink its own spool dir`));
    } finally {
      // flock(1) and its sleep (which inherits the locked descriptor): the whole group
      const closed = new Promise((r) => holder.once('close', r));
      process.kill(-holder.pid!, 'SIGKILL');
      await closed;
      await waitFor(() => !execFileSync('sh', ['-c', `flock --nonblock ${join(spool, 'lock')} true || echo held`]).toString().includes('held'), 5000, 'the lock to be let go');
    }
    const s = await Spool.open(opts(spool));
    expect(await drain(s)).toEqual(['a']);
    await s.close();
  });

  it('a lock file left by a dead process, its pid now reused by a live one: does not block', async () => {
    const spool = join(dir, 'spool');
    const first = await Spool.open(opts(spool));
    await first.append(['a', 'b']);
    await first.close();
    // pid 1 is alive and is not ctwatch: exactly the reused-pid case the old pid file blocked on for good
    writeFileSync(join(spool, 'lock'), '1\n');
    const s = await Spool.open(opts(spool));
    expect(await drain(s)).toEqual(['a', 'b']);
    expect(readFileSync(join(spool, 'lock'), 'utf8')).toBe(`${process.pid}\n`);
    await s.close();
  });
});

describe('spool state and corruption: replayed and counted, never deleted', () => {
  const seed = async (spool: string, n: number) => {
    const s = await Spool.open(opts(spool, { segmentBytes: 1 << 20 }));
    await s.append(Array.from({ length: n }, (_, i) => `r${i}`));
    await s.close();
  };

  it.each([
    ['a segment past the newest', { seq: 999_999, offset: 0 }, /points past the newest segment/],
    ['an offset past the end', { seq: 1, offset: 99_999_999 }, /offset is past the end of its segment/],
    ['wrong types', { seq: 'one', offset: -4 }, /not a read position/],
  ])('a garbage state.json (%s): the spool is replayed whole, with a log line', async (_what, state, line) => {
    const spool = join(dir, 'spool');
    await seed(spool, 50);
    writeFileSync(join(spool, 'state.json'), JSON.stringify(state));
    const log = logger();
    const s = await Spool.open(opts(spool), log);
    expect(s.pendingRecords).toBe(50);
    expect(await drain(s)).toEqual(Array.from({ length: 50 }, (_, i) => `r${i}`));
    expect(log.lines.some((l) => l.level === 'warn' && line.test(l.msg ?? '')), JSON.stringify(log.lines)).toBe(true);
    await s.close();
  });

  it('a torn record in the middle (an older version on a full disk): later records kept, the damage skipped and counted', async () => {
    const spool = join(dir, 'spool');
    await seed(spool, 3);
    const seg = join(spool, 'seg-000000000001.log');
    appendFileSync(seg, '120:partial write that never fini');
    appendFileSync(seg, '5:after\n6:after2\n');
    const log = logger();
    const s = await Spool.open(opts(spool), log);
    expect(s.pendingRecords).toBe(5);
    expect(await drain(s)).toEqual(['r0', 'r1', 'r2', 'after', 'after2']);
    expect(s.corruptBytes).toBe('120:partial write that never fini'.length);
    expect(log.lines.some((l) => /corrupt bytes between records/.test(l.msg ?? ''))).toBe(true);
    await s.close();
  });

  it('a torn tail is cut at open, counted and logged', async () => {
    const spool = join(dir, 'spool');
    await seed(spool, 2);
    appendFileSync(join(spool, 'seg-000000000001.log'), '99:torn');
    const log = logger();
    const s = await Spool.open(opts(spool), log);
    expect(s.corruptBytes).toBe(7);
    expect(log.lines.find((l) => /torn record: cut it off/.test(l.msg ?? ''))?.obj).toMatchObject({ bytes: 7 });
    expect(await drain(s)).toEqual(['r0', 'r1']);
    await s.close();
  });
});

describe('spool on a full disk (a real 256 KiB tmpfs) with a real HTTP receiver', () => {
  let mnt: string;
  let rx: HttpReceiver;
  beforeEach(async () => {
    mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    await run('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', mnt]);
    rx = new HttpReceiver();
  });
  afterEach(async () => {
    await rx.stop();
    await run('umount', [mnt]).catch(() => run('umount', ['-l', mnt]));
  });

  it('every record is delivered or counted as lost with a reason; no torn record; the loop goes on; a restart finds the spool whole', async () => {
    const port = await freeTcpPort();
    const log = logger();
    const spool = join(mnt, 'spool');
    const make = () =>
      new DeliverySink(new HttpTransport({ api: 'ndjson', url: `http://127.0.0.1:${port}/in`, lineIsJson: true }), {
        name: 'ndjson',
        format: formatFor('jsonl'),
        batch: { maxRecords: 50, maxWaitMs: 2 },
        retry: { initialMs: 10, maxMs: 50 },
        // the limit is far above the disk: the disk fills first
        spool: { dir: spool, maxBytes: 64 << 20, policy: 'drop-oldest', segmentBytes: 64 << 10 },
        logger: log,
      });
    const sink = make();
    const n = 3000; // ~1 MB of JSON lines: four times the disk
    for (let i = 0; i < n; i += 100) {
      for (let j = i; j < i + 100; j++) sink.write(flow(j));
      await new Promise((r) => setTimeout(r, 5));
    }
    await waitFor(() => sink.counters.spooled + sink.counters.dropped >= n, 15_000, 'every record spooled or dropped');
    expect(sink.counters.dropped).toBeGreaterThan(0);
    expect(sink.counters.spooled).toBeGreaterThan(0);
    // (lastError is the latest error: a refused connection may have come after the disk filled)
    const drops = log.lines.filter((l) => l.msg === 'sink dropped records');
    expect(drops.some((d) => d.obj.reason === 'spool write failed'), JSON.stringify(drops)).toBe(true);
    // no segment holds a torn record behind which later ones were written
    for (const name of readdirSync(spool).filter((f) => f.startsWith('seg-'))) {
      const buf = readFileSync(join(spool, name));
      const p = parseFrames(buf, 0, Infinity, Infinity, true);
      expect({ name, skipped: p.skipped }).toEqual({ name, skipped: 0 });
    }
    const spooled = sink.counters.spooled;
    const dropped = sink.counters.dropped;
    expect(spooled + dropped).toBe(n);
    // a restart on the full disk: what is there is recovered whole, nothing cut
    await sink.close(200);
    const log2 = logger();
    const again = new DeliverySink(new HttpTransport({ api: 'ndjson', url: `http://127.0.0.1:${port}/in`, lineIsJson: true }), {
      name: 'ndjson', format: formatFor('jsonl'), batch: { maxRecords: 50, maxWaitMs: 2 }, retry: { initialMs: 10, maxMs: 50 },
      spool: { dir: spool, maxBytes: 64 << 20, policy: 'drop-oldest', segmentBytes: 64 << 10 }, logger: log2,
    });
    await waitFor(() => again.counters.spoolRecords > 0, 5000, 'the restarted sink to resume from its spool');
    expect(again.counters.spoolRecords).toBe(spooled);
    expect(again.counters.spoolCorruptBytes).toBe(0);
    // the receiver comes back: everything that was kept arrives, and the loop is still there for new records
    rx.port = port;
    await rx.start(port);
    expect(await again.flush(20_000)).toBe(true);
    const ids = new Set(rx.accepted.map((r) => r.id as number));
    expect(ids.size).toBe(spooled);
    expect(ids.size + dropped).toBe(n);
    for (let j = n; j < n + 100; j++) again.write(flow(j));
    expect(await again.flush(20_000)).toBe(true);
    const later = new Set(rx.accepted.map((r) => r.id as number));
    for (let j = n; j < n + 100; j++) expect(later.has(j)).toBe(true);
    expect(again.counters.dropped).toBe(0);
    await again.close();
    expect(existsSync(join(spool, 'lock'))).toBe(true);
  }, 60_000);
});

describe('watch --sinks with a spool: handed over before --user, refused loudly', () => {
  let ns: Netns;
  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  const sinksFile = (spool: string, extra = '') => {
    const f = join(dir, 'sinks.yaml');
    writeFileSync(f, `sinks:
  - name: siem
    type: http
    url: http://127.0.0.1:9/ingest
    format: ecs
    events: [flow]
    spool: { dir: ${spool} }
${extra}`);
    return f;
  };

  /** Runs watch until `until` shows in stderr (then SIGTERM) or it exits by itself. */
  function watch(args: string[], until?: RegExp): Promise<{ code: number | null; stderr: string }> {
    return new Promise((resolve) => {
      const p = track(spawn(process.execPath, [CLI, 'watch', '--netns', ns.name, '--status', '0', '--no-processes', ...args], { cwd: '/', stdio: ['ignore', 'ignore', 'pipe'] }));
      let stderr = '';
      let stopped = false;
      p.stderr!.on('data', (d) => {
        stderr += d;
        if (until && !stopped && until.test(stderr)) {
          stopped = true;
          setTimeout(() => p.kill('SIGTERM'), 500);
        }
      });
      const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
      p.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
  }
  const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l && !/^ctwatch info:|"level":"info"|^\{"level":30/.test(l));

  it('--user nobody: a missing spool directory is created for nobody before the switch (0700), and its lock and state are nobody\'s', async () => {
    const spool = join(dir, 'spool');
    const r = await watch(['--sinks', sinksFile(spool), '--user', 'nobody'], /watching the conntrack table/);
    expect(r.code, r.stderr).toBe(0);
    const st = statSync(spool);
    expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }).toEqual({ uid: NOBODY, gid: NOBODY, mode: 0o700 });
    for (const f of ['lock', 'state.json']) expect(statSync(join(spool, f)).uid).toBe(NOBODY);
    expect(r.stderr).not.toMatch(/memory only/);
  });

  it('--user nobody and a spool directory that is root\'s: exit 73, one line, nothing created in it', async () => {
    const spool = join(dir, 'spool');
    mkdirSync(spool, 0o700);
    const r = await watch(['--sinks', sinksFile(spool), '--user', 'nobody']);
    expect(r.code, r.stderr).toBe(73);
    expect(errorLines(r.stderr), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/cannot start sink "siem": spool .*spool: .*spool belongs to root \(uid 0\), but ctwatch keeps its files there as nobody \(uid 65534\)/);
    expect(readdirSync(spool)).toEqual([]);
  });

  it('a spool directory nobody owns (no --user): exit 73, one line', async () => {
    const spool = join(dir, 'spool');
    mkdirSync(spool, 0o700);
    chownSync(spool, NOBODY, NOBODY);
    const r = await watch(['--sinks', sinksFile(spool)]);
    expect(r.code, r.stderr).toBe(73);
    expect(errorLines(r.stderr), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/cannot start sink "siem": spool .*belongs to nobody \(uid 65534\)/);
  });

  it('a spool another ctwatch holds: exit 73, one line naming it, never "from memory only"', async () => {
    const spool = join(dir, 'spool');
    const first = await Spool.open(opts(spool));
    try {
      const r = await watch(['--sinks', sinksFile(spool)]);
      expect(r.code, r.stderr).toBe(73);
      expect(errorLines(r.stderr), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`cannot start sink "siem": spool .*spool is in use by another ctwatch \\(pid ${process.pid}\\)`));
      expect(r.stderr).not.toMatch(/memory only/);
    } finally {
      await first.close();
    }
  });

  it('--user nobody: a file sink is created for nobody before the switch; a symlink in its place is refused at start (exit 73)', async () => {
    const out = join(dir, 'out');
    mkdirSync(out);
    const file = join(out, 'flows.jsonl');
    const f = join(dir, 'file-sinks.yaml');
    writeFileSync(f, `sinks:\n  - name: archive\n    type: file\n    path: ${file}\n    format: jsonl\n`);
    const r = await watch(['--sinks', f, '--user', 'nobody'], /watching the conntrack table/);
    expect(r.code, r.stderr).toBe(0);
    const st = statSync(file);
    expect({ uid: st.uid, mode: st.mode & 0o7777 }).toEqual({ uid: NOBODY, mode: 0o600 });
    rmSync(file);
    symlinkSync(secret.path, file);
    const bad = await watch(['--sinks', f, '--user', 'nobody']);
    expect(bad.code, bad.stderr).toBe(73);
    expect(errorLines(bad.stderr), bad.stderr).toHaveLength(1);
    expect(bad.stderr).toMatch(/cannot start sink "archive": .*flows\.jsonl is a symbolic link/);
    expectUntouched(secret);
  });
});
