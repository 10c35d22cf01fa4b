/**
 * Pod names through the container runtime's CRI socket: kubepods cgroup paths carry a pod's UID
 * (enrich.ts), the runtime knows its name and namespace. One call, runtime.v1.RuntimeService/
 * ListPodSandbox (cri.proto), answers for every pod on the node; the answer is cached (bounded)
 * and asked again at most every `refreshMs`, or sooner (at most every `retryMs`) when a UID the
 * cache does not know is seen. Nothing here is on the per-event path: snapshots ask `name()`,
 * which never waits.
 *
 * Root is dangerous: the socket is used only when it is a socket owned by root (or us) in a
 * directory only root can change (trusted-path.ts), every call has a deadline and the reply a
 * size bound. A failure is one warning line naming the socket and the reason (once per reason),
 * counted, never fatal: pods keep their UID.
 */
import { lstatSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CtwatchError, EXIT } from '../util/errors.js';
import { changeableBy, describeKind, describeUid, errnoRefusal, FileRefused, ours, trustedDirectory } from '../util/trusted-path.js';

/** Where runtimes put their CRI socket: containerd, CRI-O, cri-dockerd (Docker Engine). */
export const CRI_SOCKETS = ['/run/containerd/containerd.sock', '/run/crio/crio.sock', '/var/run/cri-dockerd.sock'] as const;

export interface PodName {
  name: string;
  namespace: string;
}

export type CriFailure = 'refused' | 'deadline' | 'unavailable' | 'error' | 'invalid';
export const CRI_FAILURES: readonly CriFailure[] = ['refused', 'deadline', 'unavailable', 'error', 'invalid'];

/** What the metrics export (attribution_cri_*). */
export interface CriStats {
  /** ListPodSandbox calls answered */
  lookups: number;
  /** pods named in the cache now */
  pods: number;
  /** failed lookups by reason (socket refused by the checks, deadline, runtime unreachable, ...) */
  failures: Record<CriFailure, number>;
}

export interface PodNamesOptions {
  /** a socket path, 'off', or undefined: the first of CRI_SOCKETS that exists */
  socket?: string;
  candidates?: readonly string[];
  /** refresh the whole list at most this often (ms) */
  refreshMs?: number;
  /** an unknown UID asks again, at most this often (ms) */
  retryMs?: number;
  /** each call's deadline (ms) */
  deadlineMs?: number;
  /** the largest reply accepted (bytes) */
  maxReplyBytes?: number;
  /** pods kept, at most */
  maxPods?: number;
  /** monotonic ms */
  now?: () => number;
}

const UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// a DNS-1123 subdomain (pod names) / label (namespaces); anything else in a reply is not used
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** Parses `--cri-socket`: 'off', a path, or undefined (auto). One line on a bad value. */
export function parseCriSocket(v: string | undefined): string | undefined {
  if (v === undefined || v === 'auto') return undefined;
  if (v === 'off') return 'off';
  if (!v.startsWith('/')) throw new CtwatchError('ERR_USAGE', `--cri-socket ${JSON.stringify(v)}: name the runtime's socket by its absolute path (e.g. ${CRI_SOCKETS[0]}), or use auto or off`, { exitCode: EXIT.usage });
  return v;
}

/**
 * Throws FileRefused unless `path` is a socket owned by root (or us) whose directory, and the way
 * to it, only root (or we) can change. Returns the socket's real path.
 */
export function checkCriSocket(path: string): string {
  const dir = trustedDirectory(dirname(path));
  const real = join(dir, basename(path));
  let st;
  try {
    st = lstatSync(real);
  } catch (err) {
    throw errnoRefusal(err, path);
  }
  if (!st.isSocket()) throw new FileRefused(`${path} is ${describeKind(st)}, not a socket`, 'ERR_UNSAFE_FILE');
  if (!ours(st.uid)) throw new FileRefused(`${path} belongs to ${describeUid(st.uid)}, not root`, 'ERR_UNSAFE_FILE', 'a runtime socket is root\'s; name the right one with --cri-socket, or --cri-socket off');
  const why = changeableBy(dir, lstatSync(dir), st);
  if (why) throw new FileRefused(`${why}, who could put another socket at ${path}`, 'ERR_UNSAFE_PATH');
  return real;
}

/** The validated pods of a ListPodSandbox reply, at most `max`; `invalid` counts entries skipped. */
export function podsOfReply(reply: unknown, max: number): { pods: Map<string, PodName>; invalid: number } {
  const pods = new Map<string, PodName>();
  let invalid = 0;
  const items = (reply as { items?: unknown })?.items;
  if (!Array.isArray(items)) return { pods, invalid: 1 };
  for (const item of items) {
    const m = (item as { metadata?: { uid?: unknown; name?: unknown; namespace?: unknown } })?.metadata;
    const { uid, name, namespace } = m ?? {};
    if (typeof uid !== 'string' || typeof name !== 'string' || typeof namespace !== 'string' || !UID.test(uid) || !NAME.test(name) || !NAME.test(namespace)) {
      invalid++;
      continue;
    }
    if (pods.size >= max) break;
    pods.set(uid, { name, namespace });
  }
  return { pods, invalid };
}

const PROTO = fileURLToPath(new URL('../../src/process/cri.proto', import.meta.url));

type GrpcModule = typeof import('@grpc/grpc-js');
interface RuntimeClient {
  ListPodSandbox(req: object, opts: { deadline: number }, cb: (err: (Error & { code?: number }) | null, reply?: unknown) => void): void;
  close(): void;
}
let loaded: Promise<{ grpc: GrpcModule; Client: new (target: string, creds: unknown, options: object) => RuntimeClient }> | undefined;

/** grpc-js and the proto, loaded the first time a socket is there to talk to. */
function loadClient() {
  loaded ??= (async () => {
    const grpc = await import('@grpc/grpc-js');
    const loader = await import('@grpc/proto-loader');
    const def = loader.loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { runtime: { v1: { RuntimeService: new (target: string, creds: unknown, options: object) => RuntimeClient } } };
    return { grpc, Client: pkg.runtime.v1.RuntimeService };
  })();
  return loaded;
}

/** One ListPodSandbox call to the (checked) socket, with a deadline and a reply bound. */
export async function listPodSandbox(socket: string, o: { deadlineMs: number; maxReplyBytes: number }): Promise<unknown> {
  const { grpc, Client } = await loadClient();
  const client = new Client(`unix:${socket}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': o.maxReplyBytes,
    'grpc.max_send_message_length': 1024,
    // one call, then closed: no retries, no idle keepalive holding the process open
    'grpc.enable_retries': 0,
  });
  try {
    return await new Promise((resolve, reject) => {
      client.ListPodSandbox({}, { deadline: Date.now() + o.deadlineMs }, (err, reply) => (err ? reject(err) : resolve(reply)));
    });
  } finally {
    client.close();
  }
}

/** A failed call's reason, from its gRPC status (or a FileRefused from the checks). */
function failureOf(err: unknown): { reason: CriFailure; text: string } {
  if (err instanceof FileRefused) return { reason: 'refused', text: err.message };
  const e = err as { code?: number; details?: string; message?: string };
  // grpc status codes: 4 DEADLINE_EXCEEDED, 14 UNAVAILABLE, 8 RESOURCE_EXHAUSTED (reply too large)
  if (e.code === 4) return { reason: 'deadline', text: 'no answer before the deadline' };
  if (e.code === 14) return { reason: 'unavailable', text: `the runtime does not answer (${e.details ?? e.message})` };
  if (e.code === 8) return { reason: 'invalid', text: `the reply is larger than allowed (${e.details ?? e.message})` };
  if (e.code === 12) return { reason: 'error', text: 'the runtime does not serve runtime.v1 ListPodSandbox (CRI v1)' };
  return { reason: 'error', text: e.details ?? e.message ?? String(err) };
}

/**
 * Pod UID -> name and namespace, from the runtime's CRI socket when one is present. `name()` never
 * waits: it answers from the cache and, for a UID it does not know, starts a (rate-limited) refresh.
 */
export class PodNames {
  /** one line per (socket, reason), the first time it happens */
  onWarn?: (line: string) => void;
  private pods = new Map<string, PodName>();
  private readonly counts: CriStats = { lookups: 0, pods: 0, failures: Object.fromEntries(CRI_FAILURES.map((r) => [r, 0])) as Record<CriFailure, number> };
  private lastAsked = -Infinity;
  private running: Promise<void> | null = null;
  private readonly said = new Set<string>();
  private closed = false;
  private readonly o: Required<Omit<PodNamesOptions, 'socket'>> & { socket?: string };

  constructor(o: PodNamesOptions = {}) {
    this.o = {
      socket: o.socket,
      candidates: o.candidates ?? CRI_SOCKETS,
      refreshMs: o.refreshMs ?? 60_000,
      retryMs: o.retryMs ?? 5_000,
      deadlineMs: o.deadlineMs ?? 2_000,
      maxReplyBytes: o.maxReplyBytes ?? 4 << 20,
      maxPods: o.maxPods ?? 4096,
      now: o.now ?? (() => performance.now()),
    };
  }

  get off(): boolean {
    return this.o.socket === 'off';
  }

  get stats(): CriStats {
    return { ...this.counts, pods: this.pods.size, failures: { ...this.counts.failures } };
  }

  /** The pod's name and namespace when the runtime told us; an unknown UID asks again (rate-limited). */
  name(uid: string): PodName | undefined {
    const known = this.pods.get(uid);
    const since = this.o.now() - this.lastAsked;
    if (since >= this.o.refreshMs || (known === undefined && since >= this.o.retryMs)) void this.refresh();
    return known;
  }

  /** Asks the runtime now (unless a call is under way); resolves when it answered or failed. */
  refresh(): Promise<void> {
    if (this.off || this.closed) return Promise.resolve();
    this.running ??= this.ask().finally(() => (this.running = null));
    return this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.running;
  }

  private socket(): string | undefined {
    if (this.o.socket !== undefined) return this.o.socket;
    for (const c of this.o.candidates) {
      try {
        lstatSync(c);
        return c;
      } catch {
        // not this runtime
      }
    }
    return undefined;
  }

  private async ask(): Promise<void> {
    this.lastAsked = this.o.now();
    const socket = this.socket();
    // no runtime socket on this machine (and none named): nothing to ask, nothing to say
    if (socket === undefined) return;
    try {
      const real = checkCriSocket(socket);
      const reply = await listPodSandbox(real, { deadlineMs: this.o.deadlineMs, maxReplyBytes: this.o.maxReplyBytes });
      if (this.closed) return;
      const { pods, invalid } = podsOfReply(reply, this.o.maxPods);
      this.counts.lookups++;
      this.pods = pods;
      if (invalid > 0) {
        this.counts.failures.invalid += invalid;
        this.warn(socket, 'invalid', `${invalid} pod entries without a valid UID, name and namespace were skipped`);
      }
    } catch (err) {
      const f = failureOf(err);
      this.counts.failures[f.reason]++;
      this.warn(socket, f.reason, f.text);
    } finally {
      this.lastAsked = this.o.now();
    }
  }

  private warn(socket: string, reason: CriFailure, text: string): void {
    if (this.said.has(`${socket}\0${reason}`)) return;
    this.said.add(`${socket}\0${reason}`);
    this.onWarn?.(`pod names: CRI socket ${socket}: ${text}; pods are shown by UID (counted in attribution_cri_failures_total{reason="${reason}"}; --cri-socket PATH or off)`);
  }
}
