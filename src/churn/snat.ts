/**
 * SNAT / masquerade port use: distinct translated source ports of live entries per (translated
 * source address, destination the flows really go to), what snat_port_exhaustion judges against
 * the port range.
 *
 * Ports are held per flow (conntrack id), so every way a flow leaves releases its port: a DESTROY,
 * a resync that found it gone from the table (its DESTROY was lost in an overflow), an id reused
 * for another tuple, a drain. Before, only a DESTROY did, and a resync left the port counted until
 * a new flow happened to reuse it. A port is counted per pair with the flows holding it (the kernel
 * keeps reply tuples unique, but a stale flow and its successor can overlap until a resync).
 */
import type { ConntrackEvent } from '../source/types.js';
import { destinationKey } from '../flow/keys.js';
import type { SnatPair, SnatView } from './snapshot.js';

interface Pair {
  key: string;
  src: string;
  destination: string;
  /** port → flows holding it */
  ports: Map<number, number>;
}

export class SnatPorts {
  private readonly pairs = new Map<string, Pair>();
  /** conntrack id → the pair and port its flow holds */
  private readonly flows = new Map<number, { pair: Pair; port: number }>();
  private seen = false;

  constructor(private readonly range: SnatView['range']) {}

  /** Live source-translated flows counted. */
  get size(): number {
    return this.flows.size;
  }

  /**
   * A live flow (NEW, a dumped entry, a late UPDATE): its port counted when its source was
   * translated. The reply goes from reply.src:reply.sport to the translated reply.dst:reply.dport.
   */
  add(ev: ConntrackEvent): void {
    const r = ev.reply;
    if (r.dport === undefined || r.dst === '' || (r.dst === ev.src && r.dport === ev.sport)) return;
    // the id held another flow before (a reused id, or the same flow seen again): that one is gone
    this.release(ev.id);
    const destination = destinationKey(ev.family, r.src, r.sport, ev.proto);
    const key = `${r.dst} → ${destination}`;
    let pair = this.pairs.get(key);
    if (pair === undefined) this.pairs.set(key, (pair = { key, src: r.dst, destination, ports: new Map() }));
    pair.ports.set(r.dport, (pair.ports.get(r.dport) ?? 0) + 1);
    this.flows.set(ev.id, { pair, port: r.dport });
  }

  /** The flow with this conntrack id ended, however: its port is free again. */
  release(id: number): void {
    const f = this.flows.get(id);
    if (f === undefined) return;
    this.flows.delete(id);
    const n = (f.pair.ports.get(f.port) ?? 1) - 1;
    if (n > 0) f.pair.ports.set(f.port, n);
    else f.pair.ports.delete(f.port);
    if (f.pair.ports.size === 0) this.pairs.delete(f.pair.key);
  }

  /** The snapshot's view: absent until a source-translated flow was seen, then always there. */
  view(topN: number): SnatView | undefined {
    if (this.pairs.size === 0 && !this.seen) return undefined;
    this.seen = true;
    const range = this.range;
    const size = range === null ? 0 : range.high - range.low + 1;
    const pairs: SnatPair[] = [...this.pairs.values()].map((p) => ({
      key: p.key,
      src: p.src,
      destination: p.destination,
      ports: p.ports.size,
      share: size > 0 ? p.ports.size / size : null,
    }));
    pairs.sort((a, b) => b.ports - a.ports || (a.key < b.key ? -1 : 1));
    return { range, pairs: pairs.slice(0, topN), complete: pairs.length <= topN };
  }
}
