/** Records for sink and spool tests that only need some flow lines, told apart by `id`. */
import type { FlowEnd } from '../../src/flow/types.js';

/** A TCP flow line, the same but for its `id` and time. */
export function flow(id: number): FlowEnd {
  return {
    event: 'flow', time: 1_700_000_000_000_000 + id, id, family: 'ipv4', proto: 'tcp',
    src: '10.0.0.5', dst: '10.0.0.9', sport: 40_000, dport: 443, begin: 1_700_000_000_000_000,
    duration: 1, clock: 'kernel', preexisting: false, assured: true, replied: true, reason: 'destroy',
  };
}
