/**
 * Flow records (FlowEnd) and views read back from the live-flow table (table.ts): what a DESTROY
 * becomes, what a flow ended without one (resync, shutdown) becomes, and a flow for inspection.
 * The only objects the table makes, one per flow that is output.
 */

import type { ConntrackEvent, Family, IcmpFields } from '../source/types.js';
import { natOf, type FlowEnd, type FlowEndReason } from './types.js';
import { ASSURED, ICMP, IPV6, MARK, PORTS, PREEXISTING, REPLIED, ZONE, statusBits, type FlowTable } from './table.js';
import { protoName } from './keys.js';

/** One live flow, read back from the columns (for inspection and tests; allocates). */
export interface FlowView {
  id: number;
  family: Family;
  proto: string;
  src: string;
  dst: string;
  /** the destination key the flow is counted under */
  destination: string;
  sport?: number;
  dport?: number;
  icmp?: IcmpFields;
  /** µs since epoch when the collector first saw the flow */
  start: number;
  /** ns since epoch, the kernel's start timestamp, when known */
  kernelStart?: number;
  state?: string;
  assured: boolean;
  replied: boolean;
  preexisting: boolean;
  mark?: number;
  zone?: number;
}

/**
 * A flow record with every field of FlowEnd in its literal, those not known yet undefined (the
 * callers fill them): one shape for every flow end, allocated whole, rather than a property array
 * grown as optional fields are added (bench/README.md "One shape per event"). Duration on the
 * collector's clock until a caller says 'kernel'.
 */
function flowEnd(time: number, id: number, family: Family, proto: string, src: string, dst: string, begin: number, duration: number, preexisting: boolean, assured: boolean, replied: boolean, reason: FlowEndReason): FlowEnd {
  return {
    event: 'flow', time, id, family, proto, src, dst,
    sport: undefined, dport: undefined, icmp: undefined,
    begin, duration, open: undefined, clock: 'collector', preexisting, state: undefined, assured, replied,
    orig: undefined, reply: undefined, reason, mark: undefined, zone: undefined, netns: undefined,
    process: undefined, unattributed: undefined, nat: undefined,
  };
}

/**
 * The record of a DESTROY, for the flow held at p (-1: not held). Counters, state and status come
 * from the DESTROY, which carries the final ones. Duration:
 * - kernel start (from the event, else as stored) and the event's kernel end both known: their
 *   difference, clock 'kernel';
 * - otherwise event time minus begin, clock 'collector', where begin is the kernel start when
 *   known, else when we first saw the flow (a lower bound when preexisting).
 * For an id we do not hold (its NEW was lost, or it predates us and showed in no dump) the record
 * is preexisting=true with begin = the kernel start when present, else the event time with
 * duration 0: an honest "unknown", which consumers exclude from lifetime statistics.
 *
 * For a held flow the record's addresses are the interned strings, whose hashes are already
 * computed: a churn counter keyed on them then costs no string hashing.
 */
export function destroyRecord(t: FlowTable, p: number, ev: ConntrackEvent): FlowEnd {
  const end = flowEnd(ev.time, ev.id, ev.family, ev.proto, p >= 0 ? t.src(p) : ev.src, p >= 0 ? t.dst(p) : ev.dst, ev.time, 0, true, false, false, 'destroy');
  // every field is in the record already (flowEnd): what the DESTROY lacks stays undefined
  end.sport = ev.sport;
  end.dport = ev.dport;
  end.icmp = ev.icmp;

  let kernelStart = ev.start;
  let bits = statusBits(ev.status);
  let state = ev.state;
  if (p >= 0) {
    if (kernelStart === undefined && t.kernelStarts[p] === t.kernelStarts[p]) {
      kernelStart = t.kernelStarts[p];
    }
    bits |= t.flags[p];
    end.preexisting = (t.flags[p] & PREEXISTING) !== 0;
    end.begin = t.starts[p];
    if (state === undefined && t.states[p] !== 0) state = t.stateNames[t.states[p]];
    if (t.closings[p] === t.closings[p]) end.open = Math.max(0, t.closings[p] / 1000);
  }
  if (kernelStart !== undefined) {
    end.begin = Math.floor(kernelStart / 1000);
    if (ev.end !== undefined) {
      end.duration = Math.max(0, (ev.end - kernelStart) / 1e9);
      end.clock = 'kernel';
    } else {
      end.duration = Math.max(0, (ev.time - end.begin) / 1e6);
    }
  } else if (p >= 0) {
    end.duration = Math.max(0, (ev.time - end.begin) / 1e6);
  }
  end.state = state;
  end.assured = (bits & ASSURED) !== 0;
  end.replied = (bits & REPLIED) !== 0;
  if (ev.orig !== undefined) end.orig = { packets: ev.orig.packets, bytes: ev.orig.bytes };
  if (ev.reply.packets !== undefined && ev.reply.bytes !== undefined) {
    end.reply = { packets: ev.reply.packets, bytes: ev.reply.bytes };
  }
  const mark = ev.mark ?? (p >= 0 && t.flags[p] & MARK ? t.marks[p] : undefined);
  const zone = ev.zone ?? (p >= 0 && t.flags[p] & ZONE ? t.zones[p] : undefined);
  end.mark = mark;
  end.zone = zone;
  end.netns = ev.netns;
  end.nat = natOf(ev);
  if (t.owners !== undefined) ownerInto(t, p, end);
  return end;
}

/** The record of a flow ended without a DESTROY, from what the table holds. */
export function endedRecord(t: FlowTable, p: number, time: number, reason: FlowEndReason): FlowEnd {
  const f = t.flags[p];
  const kernelStart = t.kernelStarts[p];
  const begin = kernelStart === kernelStart ? Math.floor(kernelStart / 1000) : t.starts[p];
  const end = flowEnd(time, t.ids[p], f & IPV6 ? 'ipv6' : 'ipv4', protoName(t.protos[p]), t.src(p), t.dst(p), begin, Math.max(0, (time - begin) / 1e6), (f & PREEXISTING) !== 0, (f & ASSURED) !== 0, (f & REPLIED) !== 0, reason);
  tupleInto(t, p, end);
  if (t.states[p] !== 0) end.state = t.stateNames[t.states[p]];
  if (f & MARK) end.mark = t.marks[p];
  if (f & ZONE) end.zone = t.zones[p];
  if (t.owners !== undefined) ownerInto(t, p, end);
  return end;
}

/**
 * With process attribution on, every flow end names its owner as attribution named it at NEW (the
 * same object, completed since with what enrichment read: src/pipeline/attribution.ts), or says
 * why none is known; 'unseen': the flow was not held (p = -1) or came without one (first seen by
 * an UPDATE). The owner lives and dies with the flow's slot, so a stale flow ended by a reused id
 * keeps its own.
 */
function ownerInto(t: FlowTable, p: number, end: FlowEnd): void {
  const o = p >= 0 ? t.owners![p] : undefined;
  if (typeof o === 'object') {
    end.process = o;
  } else {
    end.process = null;
    end.unattributed = o ?? 'unseen';
  }
}

export function flowView(t: FlowTable, p: number): FlowView {
  const f = t.flags[p];
  const view: FlowView = {
    id: t.ids[p],
    family: f & IPV6 ? 'ipv6' : 'ipv4',
    proto: protoName(t.protos[p]),
    src: t.src(p),
    dst: t.dst(p),
    destination: t.destination(p),
    start: t.starts[p],
    assured: (f & ASSURED) !== 0,
    replied: (f & REPLIED) !== 0,
    preexisting: (f & PREEXISTING) !== 0,
  };
  tupleInto(t, p, view);
  if (t.kernelStarts[p] === t.kernelStarts[p]) view.kernelStart = t.kernelStarts[p];
  if (t.states[p] !== 0) view.state = t.stateNames[t.states[p]];
  if (f & MARK) view.mark = t.marks[p];
  if (f & ZONE) view.zone = t.zones[p];
  return view;
}

function tupleInto(t: FlowTable, p: number, to: { sport?: number; dport?: number; icmp?: IcmpFields }): void {
  const f = t.flags[p];
  if (f & PORTS) {
    to.sport = t.sports[p];
    to.dport = t.dports[p];
  } else if (f & ICMP) {
    to.icmp = { type: t.dports[p] >> 8, code: t.dports[p] & 0xff, id: t.sports[p] };
  }
}
