/**
 * Which attribution mode runs, and why: `--attribution auto|ebpf|sockdiag|off`.
 *
 *   ebpf      the addon's eBPF programs stamp each socket when it is used (connect, accept, first
 *             datagram) and the reader thread joins the stamps with every NEW
 *             (native/attribution/bpf_join.cc); needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN),
 *             BTF and cgroup v2. Nothing is read from /proc per flow, so `--user` loses nothing.
 *   sockdiag  the fallback: the reader thread asks sock_diag for each NEW's socket at once and maps
 *             its inode to a process from /proc (native/attribution/diag_join.cc); reading other
 *             users' /proc/PID/fd needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.
 *   auto      ebpf when it loads here, else sockdiag, with the reason eBPF was refused.
 *   off       no attribution (`--no-processes` is the same).
 *
 * The choice is made once, at start, before `--user` gives up root (loading BPF needs it); the
 * caller logs `describe(choice)` as one line.
 */
import { loadAddon, type NativeAttribution } from '../source/native.js';
import { CtwatchError, EXIT } from '../util/errors.js';

export type AttributionRequest = 'auto' | 'ebpf' | 'sockdiag' | 'off';
export type AttributionMode = 'ebpf' | 'sockdiag' | 'off';

export const ATTRIBUTION_MODES: readonly AttributionRequest[] = ['auto', 'ebpf', 'sockdiag', 'off'];

export interface AttributionChoice {
  /** what was asked for */
  requested: AttributionRequest;
  /** what runs */
  mode: AttributionMode;
  /** why, in the operator's words ("eBPF refused: ...") */
  why: string;
  /** ebpf, sockdiag: the opened handle to give the LiveSource (close it after the source) */
  handle?: NativeAttribution;
  /** auto fell back: the typed error eBPF was refused with */
  refused?: { code: string; message: string };
}

export function parseAttributionMode(text: string | undefined, noProcesses = false): AttributionRequest {
  if (noProcesses) {
    if (text !== undefined && text !== 'off') {
      throw new CtwatchError('ERR_USAGE', `--no-processes and --attribution ${text} contradict each other: keep one (--no-processes is --attribution off)`, { exitCode: EXIT.usage });
    }
    return 'off';
  }
  if (text === undefined) return 'auto';
  const t = text.trim().toLowerCase();
  if ((ATTRIBUTION_MODES as readonly string[]).includes(t)) return t as AttributionRequest;
  throw new CtwatchError('ERR_USAGE', `--attribution ${JSON.stringify(text)}: use auto, ebpf, sockdiag or off`, { exitCode: EXIT.usage });
}

/** Tries to open the eBPF mode; the typed error when it cannot run here. */
export function openEbpf(): { handle?: NativeAttribution; refused?: { code: string; message: string } } {
  let handle: NativeAttribution;
  try {
    handle = new (loadAddon().Attribution)({ mode: 'ebpf' });
    handle.open();
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { refused: { code: e.code ?? 'ERR_BPF_REFUSED', message: e.message ?? String(err) } };
  }
  return { handle };
}

/** Opens the sock_diag fallback (nothing to load: each reader opens its socket in its namespace). */
export function openSockdiag(): NativeAttribution {
  const handle = new (loadAddon().Attribution)({ mode: 'sockdiag' });
  handle.open();
  return handle;
}

/** Opens what `requested` asks for (see the module comment). `--attribution ebpf` that cannot load
 * is an error (exit 69), not a quiet fallback. */
export function chooseAttribution(requested: AttributionRequest, opts: { noProcessesFlag?: boolean; tryEbpf?: typeof openEbpf; sockdiag?: typeof openSockdiag } = {}): AttributionChoice {
  const tryEbpf = opts.tryEbpf ?? openEbpf;
  switch (requested) {
    case 'off':
      return { requested, mode: 'off', why: opts.noProcessesFlag ? '--no-processes' : '--attribution off' };
    case 'sockdiag':
      return { requested, mode: 'sockdiag', why: '--attribution sockdiag', handle: opts.sockdiag?.() ?? openSockdiag() };
    case 'ebpf': {
      const r = tryEbpf();
      if (!r.handle) {
        throw new CtwatchError(r.refused!.code, `--attribution ebpf: ${r.refused!.message} (or use --attribution auto to fall back to sockdiag)`, { exitCode: EXIT.unavailable });
      }
      return { requested, mode: 'ebpf', why: '--attribution ebpf', handle: r.handle };
    }
    case 'auto': {
      const r = tryEbpf();
      if (r.handle) return { requested, mode: 'ebpf', why: 'the eBPF programs loaded', handle: r.handle };
      return { requested, mode: 'sockdiag', why: `eBPF refused: ${r.refused!.message}`, refused: r.refused, handle: opts.sockdiag?.() ?? openSockdiag() };
    }
  }
}

/** The start-up line: "attribution: sockdiag (eBPF refused: ... missing: CAP_BPF)". */
export function describeAttribution(c: Pick<AttributionChoice, 'mode' | 'why'>): string {
  return `attribution: ${c.mode} (${c.why})`;
}

/**
 * For `ctwatch doctor`: which mode `auto` would run here and why, found by loading the programs
 * and letting them go at once (nothing stays attached).
 */
export function probeAttribution(tryEbpf: typeof openEbpf = openEbpf): { mode: AttributionMode; why: string; refused?: { code: string; message: string } } {
  const c = chooseAttribution('auto', { tryEbpf });
  c.handle?.close();
  return { mode: c.mode, why: c.why, ...(c.refused ? { refused: c.refused } : {}) };
}
