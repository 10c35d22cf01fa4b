/**
 * Socket lookups by exact tuple in one network namespace (sock_diag), batched: one call with many
 * tuples, answered from the addon's namespace thread. A thin typed wrapper: it validates and
 * encodes requests and decodes answers; what to look up and what an answer means is attributor.ts.
 */
import { CtwatchError, fromNativeError } from '../util/errors.js';
import { netnsPath } from '../util/netns.js';
import { FROM_CAPTURE, loadProcessAddon, RESULT_WIDTH, type NativeSockDiag, type NativeSockDiagCounters } from './native.js';

export type SocketProto = 'tcp' | 'udp';

export interface SocketQuery {
  family: 'ipv4' | 'ipv6';
  proto: SocketProto;
  /** our end of the connection */
  local: string;
  lport: number;
  /** the other end; null asks for the listening (TCP) or unconnected (UDP) socket on local:lport */
  remote: string | null;
  rport: number;
}

/** Socket states as the kernel numbers them (include/net/tcp_states.h; not conntrack's TCP_STATES,
 * which number nf_conntrack_tcp.h). UDP sockets report
 * ESTABLISHED when connected and CLOSE when not. */
export const SOCKET_STATE = {
  ESTABLISHED: 1,
  SYN_SENT: 2,
  SYN_RECV: 3,
  FIN_WAIT1: 4,
  FIN_WAIT2: 5,
  TIME_WAIT: 6,
  CLOSE: 7,
  CLOSE_WAIT: 8,
  LAST_ACK: 9,
  LISTEN: 10,
  CLOSING: 11,
  NEW_SYN_RECV: 12,
} as const;

export interface SocketAnswer {
  /** 0: found; ENOENT (2): no such socket; EAGAIN: the answer was lost twice; EINVAL: bad query */
  errno: number;
  /** 0 when the socket has no file: TIME_WAIT, a request socket, or accepted by the kernel but
   * not yet by the process (or orphaned: closed by the process, still shutting down) */
  inode: number;
  uid: number;
  state: number;
  /** remote port of the socket found: 0 for a listener or an unconnected UDP socket */
  rport: number;
  lport: number;
  /** the answer is what the NEW-time capture saw (the socket may be gone now) */
  captured: boolean;
  /** the process holding the socket, if the namespace thread knows it (0 when not), and the low
   * 32 bits of its start time: check them against /proc before trusting the pid */
  pid: number;
  start32: number;
}

export const ENOENT = 2;
export const EAGAIN = 11;

export interface SockDiagOptions {
  /** a name under /run/netns or a path such as /proc/PID/ns/net; absent: our own namespace */
  netns?: string;
  /** look each NEW flow's socket up the moment the kernel reports it (see native/attribution/sockdiag.h);
   * needs CAP_NET_ADMIN; default false */
  capture?: boolean;
}

const FAMILY = { ipv4: 4, ipv6: 6 } as const;
const PROTO = { tcp: 6, udp: 17 } as const;

function badQuery(q: SocketQuery): string | null {
  if (q.family !== 'ipv4' && q.family !== 'ipv6') return `family ${String(q.family)}`;
  if (q.proto !== 'tcp' && q.proto !== 'udp') return `protocol ${String(q.proto)}`;
  if (!Number.isInteger(q.lport) || q.lport < 0 || q.lport > 65535) return `local port ${q.lport}`;
  if (!Number.isInteger(q.rport) || q.rport < 0 || q.rport > 65535) return `remote port ${q.rport}`;
  if (typeof q.local !== 'string' || !/^[0-9a-fA-F:.]{2,45}$/.test(q.local)) return `local address ${String(q.local)}`;
  if (q.remote !== null && (typeof q.remote !== 'string' || !/^[0-9a-fA-F:.]{2,45}$/.test(q.remote))) return `remote address ${String(q.remote)}`;
  return null;
}

/** One query as the addon reads it (exported for the attributor, which builds many at once). */
export function encodeQuery(q: SocketQuery): string {
  return `${FAMILY[q.family]} ${PROTO[q.proto]} ${q.local} ${q.lport} ${q.remote ?? '*'} ${q.remote === null ? 0 : q.rport}`;
}

export class SockDiag {
  readonly netns?: string;
  private readonly native: NativeSockDiag;
  private closed = false;

  constructor(options: SockDiagOptions = {}) {
    if (options.netns !== undefined && (typeof options.netns !== 'string' || options.netns === '')) {
      throw new CtwatchError('ERR_NETNS', `network namespace must be a name or a path, not ${JSON.stringify(options.netns)}`);
    }
    this.netns = options.netns;
    const addon = loadProcessAddon();
    this.native = new addon.SockDiag({ netns: options.netns === undefined ? undefined : netnsPath(options.netns), capture: options.capture === true });
    try {
      this.native.open();
    } catch (err) {
      throw fromNativeError(err);
    }
  }

  /** Looks every query up in one trip to the namespace thread; answers are in query order. */
  async lookup(queries: readonly SocketQuery[]): Promise<SocketAnswer[]> {
    const lines: string[] = new Array(queries.length);
    for (let i = 0; i < queries.length; i++) {
      const bad = badQuery(queries[i]);
      if (bad) throw new CtwatchError('ERR_SOCKDIAG_QUERY', `socket query ${i} has a bad ${bad}: use ipv4/ipv6, tcp/udp, an address and ports 0-65535`);
      lines[i] = encodeQuery(queries[i]);
    }
    const words = await this.lookupEncoded(lines);
    const out: SocketAnswer[] = new Array(queries.length);
    for (let i = 0; i < queries.length; i++) out[i] = answerAt(words, i);
    return out;
  }

  /** Already-encoded queries (see encodeQuery): the raw answer words, RESULT_WIDTH per query. */
  async lookupEncoded(lines: readonly string[]): Promise<Uint32Array> {
    if (lines.length === 0) return new Uint32Array(0);
    try {
      return await this.native.lookup(lines.join('\n'));
    } catch (err) {
      throw fromNativeError(err);
    }
  }

  /** The namespace's local routes ("prefix/len"): which addresses are this namespace's own. */
  async localRoutes(): Promise<string[]> {
    try {
      return await this.native.localRoutes();
    } catch (err) {
      throw fromNativeError(err);
    }
  }

  get counters(): NativeSockDiagCounters {
    return this.native.counters();
  }

  /** Stops the thread and closes the sockets; lookups still queued reject with ERR_SOCKDIAG_CLOSED. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.native.close();
  }
}

export function answerAt(words: Uint32Array, i: number): SocketAnswer {
  const b = i * RESULT_WIDTH;
  return {
    errno: words[b],
    inode: words[b + 1],
    uid: words[b + 2],
    state: words[b + 3],
    rport: words[b + 4],
    lport: words[b + 5],
    captured: (words[b + 6] & FROM_CAPTURE) !== 0,
    pid: words[b + 7],
    start32: words[b + 8],
  };
}
