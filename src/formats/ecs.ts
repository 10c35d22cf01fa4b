/**
 * Elastic Common Schema documents. Standard fields where ECS has them (FORMATS.md), the rest under
 * `conntrack.*` (the kernel entry) and `ctwatch.*` (alerts and other records) so they never collide
 * with a future ECS field. The same documents as JSON text, written straight for the records that
 * come by the thousand per second, are in ecs-text.ts (the ecs format's line).
 */
import type { ConntrackEvent, Counters } from '../source/types.js';
import type { FlowEnd } from '../flow/types.js';
import type { Alert } from '../recording/alert.js';
import { type CommunityIdTuple, communityId } from './community-id.js';
import {
  type FormatOptions,
  type OtherRecord,
  type SinkRecord,
  DEFAULT_PRODUCT,
  alertOwnFields,
  alertSeverity10,
  bothWays,
  compact,
  conntrackOwnFields,
  direction,
  flowOwnFields,
  ianaKeyword,
  isAlert,
  isConntrack,
  isFlow,
  isoFromMicros,
  isoFromNanos,
  makeLocalSet,
  protoNumber,
} from './common.js';

export const ECS_VERSION = '8.17.0';

export type Doc = Record<string, unknown>;

export const CT_EVENT_TYPE: Record<ConntrackEvent['event'], string[]> = {
  new: ['connection', 'start'],
  destroy: ['connection', 'end'],
  update: ['connection', 'change'],
  // an entry found by a table dump: neither its start nor its end, a report of its state
  snapshot: ['connection', 'info'],
};

export function base(time: number | undefined, opts: FormatOptions): Doc {
  const product = opts.product ?? DEFAULT_PRODUCT;
  const doc: Doc = {
    '@timestamp': isoFromMicros(time ?? 0),
    ecs: { version: ECS_VERSION },
    agent: { type: product.name, version: product.version },
  };
  return doc;
}

export function hostFields(doc: Doc, opts: FormatOptions): void {
  if (opts.host) {
    doc.host = compact({
      name: opts.host.name,
      hostname: opts.host.hostname,
      id: opts.host.id,
      ip: opts.host.ip && opts.host.ip.length ? [...opts.host.ip] : undefined,
    });
  }
  if (opts.observer) {
    const o = opts.observer;
    doc.observer = compact({
      hostname: o.hostname,
      ip: o.ip && o.ip.length ? [...o.ip] : undefined,
      type: o.type,
      vendor: o.vendor,
      product: o.product,
    });
  }
}

/** What a flow end and a conntrack event both have for ECS's `network`. */
export interface NetworkOf extends CommunityIdTuple {
  family: string;
  proto: string;
}

function network(x: NetworkOf, orig: Partial<Counters> | undefined, reply: Partial<Counters> | undefined, opts: FormatOptions): Doc {
  const num = protoNumber(x.proto);
  return compact({
    type: x.family,
    iana_number: num === undefined ? undefined : String(num),
    transport: ianaKeyword(num),
    community_id: communityId(x, opts.communityIdSeed ?? 0),
    bytes: bothWays(orig?.bytes, reply?.bytes),
    packets: bothWays(orig?.packets, reply?.packets),
    direction: ecsDirection(x.src, x.dst, opts),
  });
}

/** ECS wants the host's point of view for host-based data: ingress/egress. */
export function ecsDirection(src: string, dst: string, opts: FormatOptions): string | undefined {
  const d = direction(src, dst, makeLocalSet(opts.localAddresses));
  return d === 'in' ? 'ingress' : d === 'out' ? 'egress' : undefined;
}

function endpoint(ip: string, port: number | undefined, bytes?: number, packets?: number): Doc {
  return compact({ ip, port, bytes, packets });
}

export function ecsConntrack(ev: ConntrackEvent, opts: FormatOptions = {}): Doc {
  const doc = base(ev.time, opts);
  const event: Doc = {
    kind: 'event',
    category: ['network'],
    type: CT_EVENT_TYPE[ev.event],
    action: `conntrack-${ev.event}`,
    dataset: 'ctwatch.conntrack',
  };
  if (ev.start !== undefined) event.start = isoFromNanos(ev.start);
  if (ev.end !== undefined) event.end = isoFromNanos(ev.end);
  if (ev.start !== undefined && ev.end !== undefined) event.duration = Math.round(ev.end - ev.start);
  doc.event = event;

  const ob = ev.orig?.bytes;
  const op = ev.orig?.packets;
  const rb = ev.reply.bytes;
  const rp = ev.reply.packets;
  const source = endpoint(ev.src, ev.sport, ob, op);
  const destination = endpoint(ev.dst, ev.dport, rb, rp);
  // NAT (ours): the reply tuple is what the far side answers to, so its destination is the
  // post-SNAT source and its source the post-DNAT destination.
  if (ev.status.includes('SRC_NAT')) source.nat = compact({ ip: ev.reply.dst, port: ev.reply.dport });
  if (ev.status.includes('DST_NAT')) destination.nat = compact({ ip: ev.reply.src, port: ev.reply.sport });
  doc.source = source;
  doc.destination = destination;

  doc.network = network(ev, ev.orig, ev.reply, opts);
  hostFields(doc, opts);
  doc.conntrack = compact({
    id: ev.id,
    ...conntrackOwnFields(ev),
  });
  return doc;
}

export function ecsFlow(f: FlowEnd, opts: FormatOptions = {}): Doc {
  const doc = base(f.time, opts);
  const durationUs = Math.round(f.duration * 1e6);
  doc.event = {
    kind: 'event',
    category: ['network'],
    type: ['connection', 'end'],
    action: 'flow-end',
    dataset: 'ctwatch.flow',
    reason: f.reason,
    start: isoFromMicros(f.begin),
    // begin + duration rather than `time`: with the kernel clock they differ by the event latency,
    // and event.end - event.start must equal event.duration
    end: isoFromMicros(f.begin + durationUs),
    duration: Math.round(f.duration * 1e9),
  };
  const ob = f.orig?.bytes;
  const op = f.orig?.packets;
  const rb = f.reply?.bytes;
  const rp = f.reply?.packets;
  doc.source = endpoint(f.src, f.sport, ob, op);
  doc.destination = endpoint(f.dst, f.dport, rb, rp);
  doc.network = network(f, f.orig, f.reply, opts);
  const p = f.process;
  if (p) {
    doc.process = compact({ pid: p.pid, name: p.comm, executable: p.exe });
    if (p.uid !== undefined || p.user !== undefined) {
      doc.user = compact({ id: p.uid === undefined ? undefined : String(p.uid), name: p.user });
    }
    if (p.container) doc.container = { id: p.container };
  }
  hostFields(doc, opts);
  doc.conntrack = compact({
    id: f.id,
    // open_duration in ns, like event.duration
    ...flowOwnFields(f, { openPerSecond: 1e9 }),
  });
  return doc;
}

export function ecsAlert(a: Alert, opts: FormatOptions = {}): Doc {
  const doc = base(a.time, opts);
  const resolved = a.event === 'resolved';
  doc.message = a.message;
  doc.event = compact({
    kind: 'alert',
    category: ['network'],
    type: [resolved ? 'end' : 'start'],
    action: resolved ? 'alert-resolved' : 'alert-fired',
    dataset: 'ctwatch.alert',
    severity: alertSeverity10(a),
    start: isoFromMicros(a.since),
    end: resolved ? isoFromMicros(a.time) : undefined,
  });
  doc.rule = { name: a.rule };
  hostFields(doc, opts);
  doc.ctwatch = {
    alert: compact({
      state: a.event,
      severity: a.severity,
      ...alertOwnFields(a),
    }),
  };
  return doc;
}

export function ecsOther(r: OtherRecord, opts: FormatOptions = {}): Doc {
  const doc = base(typeof r.time === 'number' ? r.time : undefined, opts);
  doc.event = { kind: 'event', action: r.event, dataset: `ctwatch.${r.event}` };
  hostFields(doc, opts);
  const { event: _e, time: _t, ...rest } = r;
  doc.ctwatch = { [r.event]: rest };
  return doc;
}

export function ecsDocument(rec: SinkRecord, opts: FormatOptions = {}): Doc {
  if (isFlow(rec)) return ecsFlow(rec, opts);
  if (isAlert(rec)) return ecsAlert(rec, opts);
  if (isConntrack(rec)) return ecsConntrack(rec, opts);
  return ecsOther(rec as OtherRecord, opts);
}
