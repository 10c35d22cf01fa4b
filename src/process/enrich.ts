/**
 * What a pid is, beyond its number: the cgroup a process runs in, read as a systemd unit or a
 * container id, and its uid as a user name. Pure parsers plus a small cached /etc/passwd reader.
 */
import { readFile, stat } from 'node:fs/promises';

export interface CgroupFacts {
  /** the process's cgroup path (the unified hierarchy's; on v1, the name=systemd one or the first
   * controller with a path other than "/") */
  cgroup?: string;
  /** innermost systemd unit that is not a container's own scope ("nginx.service", "session-2.scope");
   * below a user's manager, named with it ("user@1000.service/app.scope") */
  unit?: string;
  /** container id: 64 hex digits from docker, containerd/CRI, cri-o, podman/libpod paths */
  container?: string;
  /** Kubernetes pod UID (dashed) and QoS class, from a kubepods cgroup path */
  pod?: string;
  qos?: PodQos;
}

export type PodQos = 'guaranteed' | 'burstable' | 'besteffort';

// kubelet's systemd driver escapes the UID's dashes as underscores in slice names:
//   kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice
//   kubepods.slice/kubepods-pod<uid>.slice (guaranteed: no QoS level of its own)
// the cgroupfs driver uses plain directories: /kubepods/burstable/pod<uid>, /kubepods/pod<uid>
const POD_SLICE = /^kubepods(?:-(burstable|besteffort))?-pod([0-9a-f_]{36})\.slice$/;
const POD_DIR = /^pod([0-9a-f-]{36})$/;
const UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Pod UID and QoS class from a cgroup path under kubepods (systemd or cgroupfs driver), or
 * undefined when the path is not a pod's. A pod directly under kubepods is Guaranteed.
 */
export function podOf(path: string | undefined): { pod: string; qos: PodQos } | undefined {
  if (path === undefined) return undefined;
  const parts = path.split('/').filter(Boolean);
  const root = parts.findIndex((p) => p === 'kubepods' || p === 'kubepods.slice');
  if (root < 0) return undefined;
  for (let i = root + 1; i < parts.length; i++) {
    const seg = parts[i];
    const slice = POD_SLICE.exec(seg);
    const dir = slice ? null : POD_DIR.exec(seg);
    const uid = slice ? slice[2].replace(/_/g, '-') : dir?.[1];
    if (uid === undefined || !UID.test(uid)) continue;
    let qos: PodQos = 'guaranteed';
    if (slice?.[1]) qos = slice[1] as PodQos;
    else if (dir && (parts[i - 1] === 'burstable' || parts[i - 1] === 'besteffort')) qos = parts[i - 1] as PodQos;
    return { pod: uid, qos };
  }
  return undefined;
}

// v1 controllers in the order we trust them to carry the same path as the container's cgroup.
const V1_ORDER = ['name=systemd', 'pids', 'memory', 'cpu', 'cpu,cpuacct', 'cpuacct', 'blkio', 'devices', 'freezer', 'cpuset'];

/** Picks the cgroup path from /proc/PID/cgroup text (v2 "0::/path", v1 "N:controllers:/path"). */
export function cgroupPath(text: string): string | undefined {
  let v2: string | undefined;
  const v1 = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    if (line.slice(0, first) === '0' && controllers === '') v2 = path;
    else for (const c of controllers.split(',')) v1.set(c, path), v1.set(controllers, path);
  }
  if (v2 !== undefined && v2 !== '/') return v2;
  for (const c of V1_ORDER) {
    const p = v1.get(c);
    if (p !== undefined && p !== '/') return p;
  }
  for (const p of v1.values()) if (p !== '/') return p;
  return v2 ?? (v1.size ? '/' : undefined);
}

const ID64 = /^[0-9a-f]{64}$/;
// docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, libpod-<id>.scope, or a bare id
// (cgroupfs drivers: /docker/<id>, /kubepods/burstable/pod<uid>/<id>).
const CONTAINER_SCOPE = /^(?:docker|cri-containerd|crio|libpod|containerd)-([0-9a-f]{64})\.scope$/;
const UNIT = /\.(?:service|scope|socket|mount|swap|timer|target|path)$/;

// systemd hands user@UID.service's subtree to that user (Delegate=yes): every name below it is the
// user's to choose, so it is never read as a system unit, a container or a pod of its own.
const USER_MANAGER = /^user@\d+\.service$/;

/**
 * Unit and container id from a cgroup path. The innermost match wins for each. Below a user's
 * own manager (user@UID.service) the unit is named with it ("user@1000.service/app.scope") and no
 * container or pod is taken: that user can make `sshd.service` or `docker-<id>.scope` there, and
 * must not be counted as the system's sshd or someone's container (rootless containers therefore
 * count under their user's unit).
 */
export function cgroupFacts(path: string | undefined): CgroupFacts {
  if (path === undefined) return {};
  const out: CgroupFacts = { cgroup: path };
  const parts = path.split('/').filter(Boolean);
  const manager = parts.findIndex((p) => USER_MANAGER.test(p));
  if (manager >= 0) {
    let inner: string | undefined;
    for (let i = parts.length - 1; i > manager && inner === undefined; i--) if (UNIT.test(parts[i])) inner = parts[i];
    out.unit = inner === undefined ? parts[manager] : `${parts[manager]}/${inner}`;
    const pod = podOf(`/${parts.slice(0, manager).join('/')}`);
    if (pod) {
      out.pod = pod.pod;
      out.qos = pod.qos;
    }
    return out;
  }
  for (let i = parts.length - 1; i >= 0; i--) {
    const seg = parts[i];
    if (out.container === undefined) {
      const m = CONTAINER_SCOPE.exec(seg);
      if (m) out.container = m[1];
      else if (ID64.test(seg)) out.container = seg;
      if (out.container !== undefined) continue;
    }
    if (out.unit === undefined && UNIT.test(seg) && !CONTAINER_SCOPE.test(seg)) out.unit = seg;
  }
  const pod = podOf(path);
  if (pod) {
    out.pod = pod.pod;
    out.qos = pod.qos;
  }
  // A unit outside the container (containerd.service holding a shim) is not the container's unit.
  if (out.container !== undefined && out.unit !== undefined) {
    const ci = parts.findIndex((p) => p.includes(out.container!));
    const ui = parts.lastIndexOf(out.unit);
    if (ui < ci) delete out.unit;
  }
  return out;
}

/** uid -> name from passwd(5) text; the first entry for a uid wins, as getpwuid does. */
export function parsePasswd(text: string): Map<number, string> {
  const users = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 3) continue;
    const uid = Number(f[2]);
    if (f[0] && Number.isInteger(uid) && uid >= 0 && !users.has(uid)) users.set(uid, f[0]);
  }
  return users;
}

/** A cached /etc/passwd: reread when it changed, at most every `minReloadMs`, on an unknown uid. */
export class Users {
  private users = new Map<number, string>();
  private mtimeMs = -1;
  private loadedAt = -Infinity;
  private loading: Promise<void> | null = null;

  constructor(
    private readonly path = '/etc/passwd',
    private readonly minReloadMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The name of `uid`, reloading the file first when that might help. */
  async name(uid: number): Promise<string | undefined> {
    if (!this.users.has(uid)) {
      // A caller arriving while another's read is under way waits for that read: it would
      // otherwise see the empty map and report the uid as unnamed (root with no user name).
      if (this.loading) await this.loading;
      else if (this.now() - this.loadedAt >= this.minReloadMs) await this.reload();
    }
    return this.users.get(uid);
  }

  /** Without I/O: the name if the file (as last read) has it. */
  cached(uid: number): string | undefined {
    return this.users.get(uid);
  }

  /** Whether the file as last read answered for `uid`: its name, or that it has none (a uid
   * only a container knows). */
  known(uid: number): boolean {
    return this.users.has(uid) || (this.loadedAt > -Infinity && this.loading === null);
  }

  private reload(): Promise<void> {
    this.loading ??= (async () => {
      this.loadedAt = this.now();
      try {
        const st = await stat(this.path);
        if (st.mtimeMs !== this.mtimeMs) {
          this.users = parsePasswd(await readFile(this.path, 'utf8'));
          this.mtimeMs = st.mtimeMs;
        }
      } catch {
        // No passwd (a scratch container host): names stay unknown, uids are still reported.
      }
    })().finally(() => (this.loading = null));
    return this.loading;
  }
}
