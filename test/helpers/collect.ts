/** Runs a source in the background of a test and keeps everything it delivers. */
import type { EventSource, SourceEvent, ConntrackEvent } from '../../src/source/types.js';

export interface Collector {
  events: SourceEvent[];
  conntrack(): ConntrackEvent[];
  /** resolves when iteration ended (after close) */
  done: Promise<void>;
}

export function collect(source: EventSource): Collector {
  const events: SourceEvent[] = [];
  const done = (async () => {
    for await (const batch of source) for (const e of batch) events.push(e);
  })();
  return {
    events,
    conntrack: () => events.filter((e): e is ConntrackEvent => e.event === 'new' || e.event === 'update' || e.event === 'destroy' || e.event === 'snapshot'),
    done,
  };
}
