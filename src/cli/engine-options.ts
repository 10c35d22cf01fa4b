/** Options shared by the commands that run the flow engine (record --flows, top, stats, watch). */
import { LiveSource, parseEventList, DEFAULT_RCVBUF, type SubscribedEvent } from '../source/live.js';
import { parseSize } from './args.js';
import type { Options } from './common.js';

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
export function openEngineSource(v: SourceValues, defaults: SubscribedEvent[] = ['new', 'update', 'destroy']): LiveSource {
  return new LiveSource({
    netns: v.netns,
    events: v.events !== undefined ? parseEventList(v.events) : defaults,
    rcvbuf: v.rcvbuf ? parseSize(v.rcvbuf, '--rcvbuf') : DEFAULT_RCVBUF,
    reliable: v.reliable,
    filter: v.filter,
    snapshot: true,
  });
}
