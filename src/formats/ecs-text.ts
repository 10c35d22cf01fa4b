/**
 * ECS documents (ecs.ts) written straight to JSON text, for the records that come by the thousand per
 * second (flow ends, conntrack events): building the object and then stringifying it took over 40%
 * of an ECS-over-syslog sink's time per event (CPU profile). The text is byte-for-byte what
 * JSON.stringify(ecsDocument(rec, opts)) gives (test/unit/formats-ecs-text.test.ts holds it to
 * that): same key order, members left out when undefined, any value we do not expect the type of
 * written by JSON.stringify itself.
 */
import type { ConntrackEvent, Counters } from '../source/types.js';
import type { FlowEnd } from '../flow/types.js';
import { communityId } from './community-id.js';
import {
  type FormatOptions,
  type HostInfo,
  type ObserverInfo,
  type OtherRecord,
  type ProductInfo,
  type SinkRecord,
  bothWays,
  ianaKeyword,
  isAlert,
  isConntrack,
  isFlow,
  isoFromMicros,
  isoFromNanos,
  protoNumber,
} from './common.js';
import { member, object } from './json-text.js';
import {
  CT_EVENT_TYPE,
  base,
  ecsAlert,
  ecsConntrack,
  ecsDirection,
  ecsOther,
  hostFields,
  type Doc,
  type NetworkOf,
} from './ecs.js';

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

function networkText(x: NetworkOf, orig: Partial<Counters> | undefined, reply: Partial<Counters> | undefined, opts: FormatOptions): string {
  return object(
    member(',"type":', x.family),
    protoText(x.proto) +
      member(',"community_id":', communityId(x, opts.communityIdSeed ?? 0)) +
      member(',"bytes":', bothWays(orig?.bytes, reply?.bytes)) +
      member(',"packets":', bothWays(orig?.packets, reply?.packets)) +
      member(',"direction":', ecsDirection(x.src, x.dst, opts)),
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
    `,"network":${networkText(f, f.orig, f.reply, opts)}`;
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
    `,"network":${networkText(ev, ev.orig, ev.reply, opts)}` +
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
