/**
 * Elastic Common Schema documents. Standard fields where ECS has them (FORMATS.md), the rest under
 * `conntrack.*` (the kernel entry) and `ctwatch.*` (alerts and other records) so they never collide
 * with a future ECS field.
 */
import type { ConntrackEvent } from '../source/types.js';
import type { FlowEnd } from '../flow/types.js';
import type { Alert } from '../recording/alert.js';
import { communityId } from './community-id.js';
import {
  type FormatOptions,
  type HostInfo,
  type ObserverInfo,
  type OtherRecord,
  type ProductInfo,
  type SinkRecord,
  DEFAULT_PRODUCT,
  alertSeverity10,
  compact,
  direction,
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

type Doc = Record<string, unknown>;

const CT_EVENT_TYPE: Record<ConntrackEvent['event'], string[]> = {
  new: ['connection', 'start'],
  destroy: ['connection', 'end'],
  update: ['connection', 'change'],
  // an entry found by a table dump: neither its start nor its end, a report of its state
  snapshot: ['connection', 'info'],
};

function base(time: number | undefined, opts: FormatOptions): Doc {
  const product = opts.product ?? DEFAULT_PRODUCT;
  const doc: Doc = {
    '@timestamp': isoFromMicros(time ?? 0),
    ecs: { version: ECS_VERSION },
    agent: { type: product.name, version: product.version },
  };
  return doc;
}

function hostFields(doc: Doc, opts: FormatOptions): void {
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

function network(
  family: string,
  proto: string,
  cid: string | undefined,
  bytes: number | undefined,
  packets: number | undefined,
  dir: string | undefined,
): Doc {
  const num = protoNumber(proto);
  return compact({
    type: family,
    iana_number: num === undefined ? undefined : String(num),
    transport: ianaKeyword(num),
    community_id: cid,
    bytes,
    packets,
    direction: dir,
  });
}

/** ECS wants the host's point of view for host-based data: ingress/egress. */
function ecsDirection(src: string, dst: string, opts: FormatOptions): string | undefined {
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

  const both = ob !== undefined && rb !== undefined;
  doc.network = network(
    ev.family,
    ev.proto,
    communityId(ev, opts.communityIdSeed ?? 0),
    both ? ob + rb : undefined,
    op !== undefined && rp !== undefined ? op + rp : undefined,
    ecsDirection(ev.src, ev.dst, opts),
  );
  hostFields(doc, opts);
  doc.conntrack = compact({
    id: ev.id,
    event: ev.event,
    state: ev.state,
    status: [...ev.status],
    mark: ev.mark,
    zone: ev.zone,
    timeout: ev.timeout,
    netns: ev.netns,
    icmp: ev.icmp ? { ...ev.icmp } : undefined,
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
  doc.network = network(
    f.family,
    f.proto,
    communityId(f, opts.communityIdSeed ?? 0),
    ob !== undefined && rb !== undefined ? ob + rb : undefined,
    op !== undefined && rp !== undefined ? op + rp : undefined,
    ecsDirection(f.src, f.dst, opts),
  );
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
    state: f.state,
    assured: f.assured,
    replied: f.replied,
    clock: f.clock,
    preexisting: f.preexisting,
    mark: f.mark,
    zone: f.zone,
    netns: f.netns,
    icmp: f.icmp ? { ...f.icmp } : undefined,
    cgroup: p?.cgroup,
    unit: p?.unit,
    // how long the TCP connection was open (to its first FIN/RST), in ns like event.duration
    open_duration: f.open === undefined ? undefined : Math.round(f.open * 1e9),
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
      subject: a.subject,
      values: { ...a.values },
      top: a.top,
      hint: a.hint,
      netns: a.netns,
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

/*
 * The same documents written straight to JSON text, for the records that come by the thousand per
 * second (flow ends, conntrack events): building the object and then stringifying it took over 40%
 * of an ECS-over-syslog sink's time per event (CPU profile). The text is byte-for-byte what
 * JSON.stringify(ecsDocument(rec, opts)) gives (test/unit/formats-ecs-text.test.ts holds it to
 * that): same key order, members left out when undefined, any value we do not expect the type of
 * written by JSON.stringify itself.
 */

/**
 * JSON.stringify escapes '"', '\\', control characters and lone surrogates: a string with none of
 * them is its own JSON body. Surrogates of either kind count, JSON.stringify knows pairs from lone
 * ones. A loop, not a regex: the strings are short, and a regex call costs more than the scan.
 */
function needsEscape(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return true;
  }
  return false;
}

/**
 * A member as JSON.stringify writes it, or '' where it leaves it out. `key` comes written out with
 * its comma and colon (`,"port":`): one concatenation per member instead of three.
 */
function member(key: string, v: unknown): string {
  switch (typeof v) {
    case 'number':
      return Number.isFinite(v) ? key + v : key + 'null';
    case 'string':
      // quotes joined to the value first: a short value makes one flat piece with them (see isoFromMicros)
      return needsEscape(v) ? key + JSON.stringify(v) : key + ('"' + v + '"');
    case 'boolean':
      return v ? key + 'true' : key + 'false';
    case 'undefined':
    case 'function':
    case 'symbol':
      return '';
    default: {
      const t = JSON.stringify(v);
      return t === undefined ? '' : key + t;
    }
  }
}

/**
 * An object from its members as member() writes them (each with its leading comma). The first
 * comes apart from the rest: cutting the comma off the whole text would flatten it, a copy per
 * object, where cutting it off one short member costs next to nothing.
 */
function object(first: string, rest = ''): string {
  if (first !== '') return `{${first.slice(1)}${rest}}`;
  return rest === '' ? '{}' : `{${rest.slice(1)}}`;
}

interface Constant {
  host: HostInfo | undefined;
  observer: ObserverInfo | undefined;
  product: ProductInfo | undefined;
  /** `,"ecs":{...},"agent":{...}` */
  head: string;
  /** `,"host":{...},"observer":{...}` or '' */
  hosts: string;
}

// The agent, host and observer members depend on the options only: written once per options
// object (and again if one of its host/observer/product objects is replaced).
const constants = new WeakMap<FormatOptions, Constant>();

function constantParts(opts: FormatOptions): Constant {
  let c = constants.get(opts);
  if (c === undefined || c.host !== opts.host || c.observer !== opts.observer || c.product !== opts.product) {
    const head = JSON.stringify(base(0, opts));
    const hostDoc: Doc = {};
    hostFields(hostDoc, opts);
    const hosts = JSON.stringify(hostDoc);
    c = {
      host: opts.host,
      observer: opts.observer,
      product: opts.product,
      head: ',' + head.slice(head.indexOf(',"ecs":') + 1, -1),
      hosts: hosts === '{}' ? '' : ',' + hosts.slice(1, -1),
    };
    constants.set(opts, c);
  }
  return c;
}

// `,"iana_number":...,"transport":...` per protocol name; few distinct names ever reach us, the
// bound only guards against a stream of garbage.
const protoMembers = new Map<string, string>();

function protoText(proto: string): string {
  let t = protoMembers.get(proto);
  if (t === undefined) {
    const num = protoNumber(proto);
    t =
      member(',"iana_number":', num === undefined ? undefined : String(num)) +
      member(',"transport":', ianaKeyword(num));
    if (protoMembers.size >= 1024) protoMembers.clear();
    protoMembers.set(proto, t);
  }
  return t;
}

function networkText(
  family: unknown,
  proto: string,
  cid: string | undefined,
  bytes: number | undefined,
  packets: number | undefined,
  dir: string | undefined,
): string {
  return object(
    member(',"type":', family),
    protoText(proto) +
      member(',"community_id":', cid) +
      member(',"bytes":', bytes) +
      member(',"packets":', packets) +
      member(',"direction":', dir),
  );
}

/** the members of a source or destination after its first, ip */
function endpointRest(port: unknown, bytes: unknown, packets: unknown): string {
  return member(',"port":', port) + member(',"bytes":', bytes) + member(',"packets":', packets);
}

/** the start of `event` per conntrack event kind, up to its optional members */
const CT_EVENT_TEXT = new Map<string, string>(
  Object.entries(CT_EVENT_TYPE).map(([kind, type]) => [
    kind,
    `{"kind":"event","category":["network"],"type":${JSON.stringify(type)},` +
      `"action":"conntrack-${kind}","dataset":"ctwatch.conntrack"`,
  ]),
);

// The decoder shares one frozen status array per distinct set of flags, so its JSON is worth
// keeping; an array that is not frozen could change under us and is written each time.
const statusTexts = new WeakMap<readonly string[], string>();

function statusText(status: readonly string[]): string {
  if (!Object.isFrozen(status)) return JSON.stringify([...status]);
  let t = statusTexts.get(status);
  if (t === undefined) {
    t = JSON.stringify([...status]);
    statusTexts.set(status, t);
  }
  return t;
}

function icmpMember(icmp: object | undefined): string {
  return icmp ? `,"icmp":${JSON.stringify({ ...icmp })}` : '';
}

export function ecsFlowJson(f: FlowEnd, opts: FormatOptions = {}): string {
  const c = constantParts(opts);
  const durationUs = Math.round(f.duration * 1e6);
  const ob = f.orig?.bytes;
  const op = f.orig?.packets;
  const rb = f.reply?.bytes;
  const rp = f.reply?.packets;
  let s =
    `{"@timestamp":"${isoFromMicros(f.time ?? 0)}"${c.head}` +
    `,"event":{"kind":"event","category":["network"],"type":["connection","end"],"action":"flow-end",` +
    `"dataset":"ctwatch.flow"${member(',"reason":', f.reason)}` +
    `,"start":"${isoFromMicros(f.begin)}","end":"${isoFromMicros(f.begin + durationUs)}"` +
    `${member(',"duration":', Math.round(f.duration * 1e9))}}` +
    `,"source":${object(member(',"ip":', f.src), endpointRest(f.sport, ob, op))}` +
    `,"destination":${object(member(',"ip":', f.dst), endpointRest(f.dport, rb, rp))}` +
    `,"network":${networkText(
      f.family,
      f.proto,
      communityId(f, opts.communityIdSeed ?? 0),
      ob !== undefined && rb !== undefined ? ob + rb : undefined,
      op !== undefined && rp !== undefined ? op + rp : undefined,
      ecsDirection(f.src, f.dst, opts),
    )}`;
  const p = f.process;
  if (p) {
    const rest = member(',"name":', p.comm) + member(',"executable":', p.exe);
    s += `,"process":${object(member(',"pid":', p.pid), rest)}`;
    if (p.uid !== undefined || p.user !== undefined) {
      const id = member(',"id":', p.uid === undefined ? undefined : String(p.uid));
      s += `,"user":${object(id, member(',"name":', p.user))}`;
    }
    if (p.container) s += `,"container":{${member(',"id":', p.container).slice(1)}}`;
  }
  return (
    s +
    c.hosts +
    `,"conntrack":${object(
      member(',"id":', f.id),
      member(',"state":', f.state) +
        member(',"assured":', f.assured) +
        member(',"replied":', f.replied) +
        member(',"clock":', f.clock) +
        member(',"preexisting":', f.preexisting) +
        member(',"mark":', f.mark) +
        member(',"zone":', f.zone) +
        member(',"netns":', f.netns) +
        icmpMember(f.icmp) +
        member(',"cgroup":', p?.cgroup) +
        member(',"unit":', p?.unit) +
        member(',"open_duration":', f.open === undefined ? undefined : Math.round(f.open * 1e9)),
    )}}`
  );
}

export function ecsConntrackJson(ev: ConntrackEvent, opts: FormatOptions = {}): string {
  const c = constantParts(opts);
  let event = CT_EVENT_TEXT.get(ev.event);
  if (event === undefined) return JSON.stringify(ecsConntrack(ev, opts));
  if (ev.start !== undefined) event += `,"start":"${isoFromNanos(ev.start)}"`;
  if (ev.end !== undefined) event += `,"end":"${isoFromNanos(ev.end)}"`;
  if (ev.start !== undefined && ev.end !== undefined) event += member(',"duration":', Math.round(ev.end - ev.start));

  const ob = ev.orig?.bytes;
  const op = ev.orig?.packets;
  const rb = ev.reply.bytes;
  const rp = ev.reply.packets;
  let source = endpointRest(ev.sport, ob, op);
  let destination = endpointRest(ev.dport, rb, rp);
  if (ev.status.includes('SRC_NAT')) {
    source += `,"nat":${object(member(',"ip":', ev.reply.dst), member(',"port":', ev.reply.dport))}`;
  }
  if (ev.status.includes('DST_NAT')) {
    destination += `,"nat":${object(member(',"ip":', ev.reply.src), member(',"port":', ev.reply.sport))}`;
  }
  return (
    `{"@timestamp":"${isoFromMicros(ev.time ?? 0)}"${c.head},"event":${event}}` +
    `,"source":${object(member(',"ip":', ev.src), source)}` +
    `,"destination":${object(member(',"ip":', ev.dst), destination)}` +
    `,"network":${networkText(
      ev.family,
      ev.proto,
      communityId(ev, opts.communityIdSeed ?? 0),
      ob !== undefined && rb !== undefined ? ob + rb : undefined,
      op !== undefined && rp !== undefined ? op + rp : undefined,
      ecsDirection(ev.src, ev.dst, opts),
    )}` +
    c.hosts +
    `,"conntrack":${object(
      member(',"id":', ev.id),
      member(',"event":', ev.event) +
        member(',"state":', ev.state) +
        `,"status":${statusText(ev.status)}` +
        member(',"mark":', ev.mark) +
        member(',"zone":', ev.zone) +
        member(',"timeout":', ev.timeout) +
        member(',"netns":', ev.netns) +
        icmpMember(ev.icmp),
    )}}`
  );
}

/** The ECS document as one line of JSON: what the ecs format writes. */
export function ecsJson(rec: SinkRecord, opts: FormatOptions = {}): string {
  if (isFlow(rec)) return ecsFlowJson(rec, opts);
  if (isAlert(rec)) return JSON.stringify(ecsAlert(rec, opts));
  if (isConntrack(rec)) return ecsConntrackJson(rec, opts);
  return JSON.stringify(ecsOther(rec as OtherRecord, opts));
}
