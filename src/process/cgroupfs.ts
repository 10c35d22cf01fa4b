/**
 * cgroup id -> cgroup path, read from cgroupfs itself (eBPF mode: the stamp carries
 * bpf_get_current_cgroup_id(), which on cgroup v2 is the inode of the cgroup's directory under the
 * cgroup2 mount). The mount is found once in /proc/self/mountinfo and checked to be cgroup2
 * (statfs magic). An id is resolved in two steps of rising cost:
 *
 *   1. the owner's /proc/PID/cgroup names a candidate path; it counts only if the directory at
 *      that path has the id as its inode (a process that moved, or a reused pid, names another);
 *   2. else a walk of the hierarchy (directories only, never a link; at most `maxWalk` entries,
 *      at most once per `walkMinMs`) finds the directory whose inode is the id.
 *
 * Answers are cached (at most `maxEntries`, the oldest go first); an id no walk found is retried
 * after the next walk is allowed. Everything is asynchronous: the first flow of a new cgroup may
 * go without its unit, the flows after it have it.
 */
import { lstat, readdir, readFile, statfs } from 'node:fs/promises';
import { cgroupFacts, type CgroupFacts } from './enrich.js';

const CGROUP2_SUPER_MAGIC = 0x63677270;

export interface CgroupMount {
  /** where it is mounted here ("/sys/fs/cgroup", "/sys/fs/cgroup/unified") */
  mountpoint: string;
  /** which cgroup the mount shows at its top ("/" unless mounted inside a cgroup namespace) */
  root: string;
}

/** mountinfo(5) escapes space, tab, newline and backslash as \ooo. */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The first cgroup2 mount in /proc/self/mountinfo text, preferring one that shows the root. */
export function cgroup2Mount(mountinfo: string): CgroupMount | undefined {
  let found: CgroupMount | undefined;
  for (const line of mountinfo.split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const fstype = line.slice(dash + 3).split(' ')[0];
    if (fstype !== 'cgroup2') continue;
    const f = line.slice(0, dash).split(' ');
    if (f.length < 5) continue;
    const m = { root: unescapeMountField(f[3]), mountpoint: unescapeMountField(f[4]) };
    if (m.root === '/') return m;
    found ??= m;
  }
  return found;
}

export interface CgroupfsStats {
  /** ids resolved from the owner's /proc/PID/cgroup, checked against the directory's inode */
  byPid: number;
  /** ids resolved by walking the hierarchy */
  byWalk: number;
  walks: number;
  /** ids neither found */
  unresolved: number;
  cached: number;
}

export interface CgroupfsOptions {
  /** default: found in /proc/self/mountinfo */
  mount?: CgroupMount | null;
  maxEntries?: number;
  maxWalk?: number;
  walkMinMs?: number;
  /** a walk taking T ms is followed by at least T × this of rest; default 20 (≤ 5 % of a core) */
  walkCostFactor?: number;
  /** monotonic ms */
  now?: () => number;
  proc?: string;
}

export class Cgroupfs {
  readonly stats: CgroupfsStats = { byPid: 0, byWalk: 0, walks: 0, unresolved: 0, cached: 0 };
  /** id -> facts; null: being resolved, or not found (then retried after `retryAt`) */
  private readonly cache = new Map<number, CgroupFacts | null>();
  private readonly retryAt = new Map<number, number>();
  private mount: Promise<CgroupMount | null>;
  private walking: Promise<void> | null = null;
  private nextWalk = 0;
  private readonly maxEntries: number;
  private readonly maxWalk: number;
  private readonly walkMinMs: number;
  private readonly walkCostFactor: number;
  private readonly inflight = new Map<number, Promise<CgroupFacts | undefined>>();
  private readonly now: () => number;
  private readonly proc: string;

  constructor(o: CgroupfsOptions = {}) {
    this.maxEntries = o.maxEntries ?? 4096;
    this.maxWalk = o.maxWalk ?? 65_536;
    this.walkMinMs = o.walkMinMs ?? 1000;
    this.walkCostFactor = o.walkCostFactor ?? 20;
    this.now = o.now ?? (() => performance.now());
    this.proc = o.proc ?? '/proc';
    this.mount = o.mount !== undefined ? Promise.resolve(o.mount) : findMount(this.proc);
  }

  /** Without I/O: what `id` is known to be, or undefined (and its resolution starts). */
  facts(id: number, pid: number): CgroupFacts | undefined {
    const hit = this.cache.get(id);
    if (hit) return hit;
    if (hit === null && this.now() < (this.retryAt.get(id) ?? Infinity)) return undefined;
    void this.resolve(id, pid);
    return undefined;
  }

  /** Whether `id` has its answer (its facts, or not found for now), rather than being resolved. */
  answered(id: number): boolean {
    return this.cache.has(id) && !this.inflight.has(id);
  }

  /** Resolves `id` (the owner `pid` names a candidate); undefined when cgroupfs has no such id. */
  resolve(id: number, pid: number): Promise<CgroupFacts | undefined> {
    const hit = this.cache.get(id);
    if (hit) return Promise.resolve(hit);
    let p = this.inflight.get(id);
    // as many lookups at once as the cache holds answers: a local account making fresh cgroups
    // faster than a walk ends must not grow this map (the rest are unresolved, asked again later)
    if (!p && this.inflight.size >= this.maxEntries) {
      this.stats.unresolved++;
      return Promise.resolve(undefined);
    }
    if (!p) {
      p = this.lookup(id, pid).finally(() => this.inflight.delete(id));
      this.inflight.set(id, p);
    }
    return p;
  }

  private async lookup(id: number, pid: number): Promise<CgroupFacts | undefined> {
    this.remember(id, null);
    this.retryAt.set(id, Infinity);
    const mount = await this.mount;
    if (!mount) return this.unresolved(id);
    const candidate = await this.fromPid(mount, id, pid);
    if (candidate !== undefined) {
      this.stats.byPid++;
      return this.found(id, candidate);
    }
    await this.walk(mount, id);
    const after = this.cache.get(id);
    if (after) return after;
    return this.unresolved(id);
  }

  private unresolved(id: number): undefined {
    this.stats.unresolved++;
    // only beside its cache entry: one evicted while it was looked up must not leave a retry
    // time behind that nothing removes (retryAt would grow with every fresh id)
    if (this.cache.has(id)) this.retryAt.set(id, Math.max(this.nextWalk, this.now() + 1));
    return undefined;
  }

  private found(id: number, path: string): CgroupFacts {
    const facts = Object.freeze(cgroupFacts(path));
    this.remember(id, facts);
    this.retryAt.delete(id);
    return facts;
  }

  private remember(id: number, v: CgroupFacts | null): void {
    this.cache.delete(id);
    this.cache.set(id, v);
    while (this.cache.size > this.maxEntries) {
      const oldest = this.cache.keys().next().value as number;
      this.cache.delete(oldest);
      this.retryAt.delete(oldest);
    }
    this.stats.cached = this.cache.size;
  }

  /** The owner's cgroup path if the directory there is cgroup `id`. */
  private async fromPid(mount: CgroupMount, id: number, pid: number): Promise<string | undefined> {
    const own = await this.cgroupOf(mount, pid);
    return own !== undefined && own.id === id ? own.path : undefined;
  }

  /** The cgroup `pid` is in, as /proc/PID/cgroup names it, and its id (its directory's inode);
   * undefined when the process is gone, its cgroup is not under the mount, or was removed. */
  async idOf(pid: number): Promise<number | undefined> {
    const mount = await this.mount;
    return mount ? (await this.cgroupOf(mount, pid))?.id : undefined;
  }

  private async cgroupOf(mount: CgroupMount, pid: number): Promise<{ path: string; id: number } | undefined> {
    if (!(pid > 0)) return undefined;
    let path: string | undefined;
    try {
      path = unifiedPath(await readFile(`${this.proc}/${pid}/cgroup`, 'utf8'));
    } catch {
      return undefined; // gone already: the walk decides
    }
    const rel = relativeTo(mount.root, path);
    if (path === undefined || rel === undefined) return undefined;
    try {
      const st = await lstat(mount.mountpoint + rel, { bigint: true });
      if (st.isDirectory()) return { path, id: Number(st.ino) };
    } catch {
      /* moved or removed since */
    }
    return undefined;
  }

  /** Walks the hierarchy once (rate-limited; callers arriving meanwhile share the walk). */
  private walk(mount: CgroupMount, id: number): Promise<void> {
    if (this.walking) return this.walking;
    if (this.now() < this.nextWalk) return Promise.resolve();
    this.walking = (async () => {
      const t0 = this.now();
      this.stats.walks++;
      const want = id;
      let seen = 0;
      const queue: string[] = [''];
      try {
        // the mount's own top: the root cgroup (id 1 on the host), or a namespace's
        if (Number((await lstat(mount.mountpoint, { bigint: true })).ino) === want) this.found(want, mount.root);
      } catch {
        /* unmounted meanwhile: nothing resolves */
      }
      while (queue.length > 0 && seen < this.maxWalk) {
        const rel = queue.shift()!;
        let entries;
        try {
          entries = await readdir(mount.mountpoint + rel, { withFileTypes: true });
        } catch {
          continue; // removed while we walked
        }
        for (const e of entries) {
          // cgroupfs holds files and directories; a link or anything else is not a cgroup
          if (!e.isDirectory() || ++seen > this.maxWalk) continue;
          const child = `${rel}/${e.name}`;
          queue.push(child);
          let ino: bigint;
          try {
            ino = (await lstat(mount.mountpoint + child, { bigint: true })).ino;
          } catch {
            continue;
          }
          const n = Number(ino);
          // Every pending id this walk finds is answered, not only the one that started it.
          if (n === want || this.cache.get(n) === null) {
            this.stats.byWalk++;
            this.found(n, joinRoot(mount.root, child));
          }
        }
      }
      this.nextWalk = this.now() + Math.max(this.walkMinMs, (this.now() - t0) * this.walkCostFactor);
    })().finally(() => (this.walking = null));
    return this.walking;
  }
}

async function findMount(proc: string): Promise<CgroupMount | null> {
  try {
    const m = cgroup2Mount(await readFile(`${proc}/self/mountinfo`, 'utf8'));
    if (!m) return null;
    const fs = await statfs(m.mountpoint);
    return fs.type === CGROUP2_SUPER_MAGIC ? m : null;
  } catch {
    return null;
  }
}

/** The cgroup v2 path in /proc/PID/cgroup text ("0::/path"), the only hierarchy cgroup ids name. */
export function unifiedPath(text: string): string | undefined {
  for (const line of text.split('\n')) if (line.startsWith('0::')) return line.slice(3);
  return undefined;
}

/** `path` (a cgroup path as /proc/PID/cgroup names it) below the mount's root, or undefined. */
export function relativeTo(root: string, path: string | undefined): string | undefined {
  if (path === undefined || !path.startsWith('/') || path.split('/').includes('..')) return undefined;
  if (root === '/') return path === '/' ? '' : path;
  if (path === root) return '';
  return path.startsWith(root + '/') ? path.slice(root.length) : undefined;
}

function joinRoot(root: string, rel: string): string {
  if (rel === '') return root;
  return root === '/' ? rel : root + rel;
}
