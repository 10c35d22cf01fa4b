/** Options shared by the commands that run the flow engine (record --flows, top, stats, watch). */
import { LiveSource, parseEventList, DEFAULT_RCVBUF, type SubscribedEvent } from '../source/live.js';
import { OwnerAttribution, type FlowAttribution } from '../pipeline/attribution.js';
import { chooseAttribution, describeAttribution, parseAttributionMode, type AttributionChoice } from '../process/attribution.js';
import { parseCriSocket, PodNames } from '../process/cri.js';
import { parseSize } from './args.js';
import type { Options } from './common.js';
import type { Logger } from '../util/log.js';

export const SOURCE_OPTIONS = {
  netns: { type: 'string' },
  events: { type: 'string' },
  rcvbuf: { type: 'string' },
  reliable: { type: 'boolean' },
  filter: { type: 'string', multiple: true },
} as const satisfies Options;

export const SOURCE_HELP = `  --netns NAME|PATH     namespace to watch: a name from 'ip netns list' or a path such as
                        /proc/PID/ns/net (default: ctwatch's own)
  --rcvbuf SIZE         kernel receive buffer (default 32M; raise it if overflows are reported)
  --reliable            ask the kernel not to drop DESTROY events (see README before using)
  --filter EXPR         only these flows, filtered in the kernel; repeat to AND, commas to OR:
                        proto tcp | src 127.0.0.0/8 | dst ::1 | state ESTABLISHED | mark 0x1/0xff
                        | family ipv4; ports and zone (dport 6379, zone 1) run in user space`;

export const ATTRIBUTION_OPTIONS = {
  attribution: { type: 'string' },
  'no-processes': { type: 'boolean' },
  'cri-socket': { type: 'string' },
} as const satisfies Options;

export const ATTRIBUTION_HELP = `  --attribution MODE    which process owns each flow: auto (default: ebpf when it loads here, else
                        sockdiag), ebpf (stamped by eBPF when the socket is used; CAP_BPF,
                        CAP_PERFMON), sockdiag (socket lookups + /proc; CAP_SYS_PTRACE,
                        CAP_DAC_READ_SEARCH for other users' processes), off
  --no-processes        the same as --attribution off
  --cri-socket PATH|off the container runtime's CRI socket, for pod names and namespaces
                        (default: the first present of /run/containerd/containerd.sock,
                        /run/crio/crio.sock, /var/run/cri-dockerd.sock; used only when root's,
                        in a directory only root can change); off: pods by UID only`;

export interface AttributionValues {
  attribution?: string;
  'no-processes'?: boolean;
  'cri-socket'?: string;
}

/** The mode chosen at start, and what the pipeline runs for it. */
export interface StartedAttribution {
  choice: AttributionChoice;
  pipeline?: FlowAttribution;
  announce(log: Logger): void;
}

/**
 * Chooses the attribution mode (before the source opens and before --user: loading BPF needs
 * root). `announce` logs the one line that says which runs and why; callers call it once start-up
 * has gone through, so a failed start still says one thing only.
 */
export function startAttribution(v: AttributionValues): StartedAttribution {
  const choice = chooseAttribution(parseAttributionMode(v.attribution, v['no-processes']), { noProcessesFlag: v['no-processes'] });
  const socket = parseCriSocket(v['cri-socket']);
  const pods = choice.mode === 'off' || socket === 'off' ? undefined : new PodNames({ socket });
  const pipeline = choice.mode === 'off' ? undefined : new OwnerAttribution({ mode: choice.mode, pods });
  return {
    choice,
    pipeline,
    announce(log: Logger) {
      if (choice.refused) log.warn(describeAttribution(choice));
      else log.info(describeAttribution(choice));
      if (pipeline) {
        pipeline.onDenied = () => log.warn(`attribution: /proc/PID/fd of some processes cannot be read (other users'), so their flows count as unattributed 'denied': add CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, or use --attribution ebpf (CAP_BPF, CAP_PERFMON)`);
        if (pods) pods.onWarn = (line) => log.warn(line);
        pipeline.executables.onDenied = (pid) => log.warn(`attribution: /proc/${pid}/exe cannot be read (another user's process), so its flows name the process without its executable: add CAP_SYS_PTRACE (counted in attribution stats: exe.denied)`);
      }
    },
  };
}

export interface SourceValues {
  netns?: string;
  events?: string;
  rcvbuf?: string;
  reliable?: boolean;
  filter?: string[];
}

/**
 * The engine needs TCP state changes to count TIME_WAIT per destination, so it subscribes to
 * updates by default; `--events new,destroy` trades that for a third of the volume.
 */
export function openEngineSource(v: SourceValues, defaults: SubscribedEvent[] = ['new', 'update', 'destroy'], attribution?: StartedAttribution): LiveSource {
  const handle = attribution?.choice.handle;
  try {
    return new LiveSource({
    netns: v.netns,
    events: v.events !== undefined ? parseEventList(v.events) : defaults,
    rcvbuf: v.rcvbuf ? parseSize(v.rcvbuf, '--rcvbuf') : DEFAULT_RCVBUF,
    reliable: v.reliable,
    filter: v.filter,
    snapshot: true,
    attribution: handle,
  });
  } finally {
    // The reader holds its own share of the programs: they stay attached while it reads.
    handle?.close();
  }
}
