/**
 * OCSF 1.3 events: Network Activity (4001) for conntrack events and flows, Detection Finding
 * (2004) for alerts, Base Event (0) for anything else. Fields OCSF has no place for go to
 * `unmapped`, which is what the schema provides for them.
 */
import type { ConntrackEvent } from '../source/types.js';
import type { FlowEnd } from '../flow/types.js';
import type { Alert } from '../recording/alert.js';
import { communityId } from './community-id.js';
import {
  type FormatOptions,
  type OtherRecord,
  type SinkRecord,
  DEFAULT_PRODUCT,
  alertOwnFields,
  bothWays,
  compact,
  conntrackOwnFields,
  direction,
  flowOwnFields,
  isAlert,
  isConntrack,
  isFlow,
  makeLocalSet,
  msFromMicros,
  protoNumber,
} from './common.js';

export const OCSF_VERSION = '1.3.0';

type Doc = Record<string, unknown>;

export const NETWORK_ACTIVITY = {
  UNKNOWN: 0,
  OPEN: 1,
  CLOSE: 2,
  RESET: 3,
  FAIL: 4,
  REFUSE: 5,
  TRAFFIC: 6,
  OTHER: 99,
} as const;

const ACTIVITY_NAMES: Record<number, string> = {
  0: 'Unknown',
  1: 'Open',
  2: 'Close',
  3: 'Reset',
  4: 'Fail',
  5: 'Refuse',
  6: 'Traffic',
  99: 'Other',
};

const DIRECTION_IDS = { unknown: 0, in: 1, out: 2, local: 4 } as const;
const DIRECTION_NAMES = ['Unknown', 'Inbound', 'Outbound', 'Lateral', 'Local'];

/**
 * How a connection ended (ours, FORMATS.md): conntrack moves a TCP entry to CLOSE on a RST and to
 * TIME_WAIT after a FIN exchange, so CLOSE + ASSURED is a reset of an established connection,
 * CLOSE + reply but never ASSURED is a RST answering the SYN (refused), and no reply at all is a
 * failure (timeout, unreachable, filtered).
 */
export function closeActivity(x: {
  proto: string;
  state?: string;
  replied: boolean;
  assured: boolean;
}): number {
  if (!x.replied) return NETWORK_ACTIVITY.FAIL;
  if (x.proto === 'tcp' && x.state === 'CLOSE') {
    return x.assured ? NETWORK_ACTIVITY.RESET : NETWORK_ACTIVITY.REFUSE;
  }
  return NETWORK_ACTIVITY.CLOSE;
}

function ctActivity(ev: ConntrackEvent): number {
  switch (ev.event) {
    case 'new':
      return NETWORK_ACTIVITY.OPEN;
    case 'destroy':
      return closeActivity({
        proto: ev.proto,
        state: ev.state,
        replied: ev.status.includes('SEEN_REPLY'),
        assured: ev.status.includes('ASSURED'),
      });
    default:
      // update, and a snapshot entry (already open before we looked): a report on a live flow
      return NETWORK_ACTIVITY.TRAFFIC;
  }
}

function flowActivity(f: FlowEnd): number {
  // shutdown: the flow is still live, this is its last traffic report; resync: it is gone but we
  // did not see how it ended, so the state we last saw says nothing about a reset
  if (f.reason === 'shutdown') return NETWORK_ACTIVITY.TRAFFIC;
  if (f.reason === 'resync') return NETWORK_ACTIVITY.CLOSE;
  return closeActivity(f);
}

function header(
  classUid: number,
  className: string,
  categoryUid: number,
  categoryName: string,
  activityId: number,
  activityName: string,
  timeUs: number | undefined,
  severityId: number,
  opts: FormatOptions,
  eventCode: string,
): Doc {
  const product = opts.product ?? DEFAULT_PRODUCT;
  const doc: Doc = {
    class_uid: classUid,
    class_name: className,
    category_uid: categoryUid,
    category_name: categoryName,
    activity_id: activityId,
    activity_name: activityName,
    type_uid: classUid * 100 + activityId,
    type_name: `${className}: ${activityName}`,
    time: msFromMicros(timeUs ?? 0),
    severity_id: severityId,
    severity: SEVERITY_NAMES[severityId],
    metadata: {
      version: OCSF_VERSION,
      product: { name: product.name, vendor_name: product.vendor, version: product.version },
      event_code: eventCode,
      ...(opts.host ? { profiles: ['host'] } : {}),
    },
  };
  if (opts.host) {
    doc.device = compact({
      hostname: opts.host.hostname ?? opts.host.name,
      name: opts.host.name,
      uid: opts.host.id,
      ip: opts.host.ip?.[0],
      type_id: 0,
      type: 'Unknown',
    });
  }
  return doc;
}

const SEVERITY_NAMES: Record<number, string> = {
  0: 'Unknown',
  1: 'Informational',
  2: 'Low',
  3: 'Medium',
  4: 'High',
  5: 'Critical',
};

interface FlowLike {
  id: number;
  family: string;
  proto: string;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  icmp?: { type: number; code: number; id: number };
}

function networkBody(
  doc: Doc,
  x: FlowLike,
  ob: number | undefined,
  op: number | undefined,
  rb: number | undefined,
  rp: number | undefined,
  opts: FormatOptions,
): void {
  doc.src_endpoint = compact({ ip: x.src, port: x.sport });
  doc.dst_endpoint = compact({ ip: x.dst, port: x.dport });
  const dir = direction(x.src, x.dst, makeLocalSet(opts.localAddresses));
  const dirId = DIRECTION_IDS[dir];
  doc.connection_info = compact({
    direction_id: dirId,
    direction: DIRECTION_NAMES[dirId],
    protocol_num: protoNumber(x.proto),
    protocol_name: x.proto,
    protocol_ver_id: x.family === 'ipv6' ? 6 : 4,
    // the ct id ties the open/traffic/close events of one entry together; it is reused once the
    // entry is freed, so it is not unique over time (community_uid + time is)
    uid: String(x.id),
    community_uid: communityId(x, opts.communityIdSeed ?? 0),
  });
  if (ob !== undefined || rb !== undefined) {
    doc.traffic = compact({
      bytes_out: ob,
      packets_out: op,
      bytes_in: rb,
      packets_in: rp,
      bytes: bothWays(ob, rb),
      packets: bothWays(op, rp),
    });
  }
}

export function ocsfConntrack(ev: ConntrackEvent, opts: FormatOptions = {}): Doc {
  const activity = ctActivity(ev);
  const doc = header(
    4001, 'Network Activity', 4, 'Network Activity', activity, ACTIVITY_NAMES[activity],
    ev.time, 1, opts, ev.event,
  );
  networkBody(doc, ev, ev.orig?.bytes, ev.orig?.packets, ev.reply.bytes, ev.reply.packets, opts);
  if (ev.start !== undefined) doc.start_time = Math.floor(ev.start / 1e6);
  if (ev.end !== undefined) doc.end_time = Math.floor(ev.end / 1e6);
  if (ev.start !== undefined && ev.end !== undefined) {
    doc.duration = Math.round((ev.end - ev.start) / 1e6);
  }
  const nat: Doc = {};
  if (ev.status.includes('SRC_NAT')) Object.assign(nat, compact({ src_ip: ev.reply.dst, src_port: ev.reply.dport }));
  if (ev.status.includes('DST_NAT')) Object.assign(nat, compact({ dst_ip: ev.reply.src, dst_port: ev.reply.sport }));
  doc.unmapped = {
    conntrack: compact({
      ...conntrackOwnFields(ev),
      nat: Object.keys(nat).length ? nat : undefined,
    }),
  };
  return doc;
}

export function ocsfFlow(f: FlowEnd, opts: FormatOptions = {}): Doc {
  const activity = flowActivity(f);
  const doc = header(
    4001, 'Network Activity', 4, 'Network Activity', activity, ACTIVITY_NAMES[activity],
    f.time, 1, opts, 'flow',
  );
  networkBody(doc, f, f.orig?.bytes, f.orig?.packets, f.reply?.bytes, f.reply?.packets, opts);
  const durationMs = Math.round(f.duration * 1000);
  doc.start_time = msFromMicros(f.begin);
  doc.end_time = msFromMicros(f.begin) + durationMs;
  doc.duration = durationMs;
  const p = f.process;
  if (p) {
    const process: Doc = compact({ pid: p.pid, name: p.comm });
    if (p.exe) {
      const name = p.exe.slice(p.exe.lastIndexOf('/') + 1);
      process.file = { path: p.exe, name, type_id: 1, type: 'Regular File' };
    }
    if (p.container) process.container = { uid: p.container };
    const actor: Doc = { process };
    if (p.uid !== undefined || p.user !== undefined) {
      actor.user = compact({ uid: p.uid === undefined ? undefined : String(p.uid), name: p.user });
    }
    doc.actor = actor;
  }
  doc.unmapped = {
    // open_duration in ms, like OCSF's own duration; the reason, which OCSF has no field for
    conntrack: compact(flowOwnFields(f, { openPerSecond: 1000, withReason: true })),
  };
  return doc;
}

const ALERT_SEVERITY_ID = { info: 1, warning: 3, critical: 5 } as const;

export function ocsfAlert(a: Alert, opts: FormatOptions = {}): Doc {
  const resolved = a.event === 'resolved';
  // Detection Finding activities: 1 Create, 3 Close
  const activity = resolved ? 3 : 1;
  const doc = header(
    2004, 'Detection Finding', 2, 'Findings', activity, resolved ? 'Close' : 'Create',
    a.time, ALERT_SEVERITY_ID[a.severity], opts, a.event,
  );
  doc.message = a.message;
  doc.status_id = resolved ? 4 : 1;
  doc.status = resolved ? 'Resolved' : 'New';
  doc.is_alert = !resolved;
  doc.finding_info = {
    // rule + subject is the dedup key; `since` separates successive episodes of the same alert
    uid: `${a.rule}:${a.subject}:${a.since}`,
    title: a.rule,
    desc: a.message,
    created_time: msFromMicros(a.since),
    analytic: { name: a.rule, type_id: 1, type: 'Rule' },
  };
  doc.unmapped = {
    ctwatch: compact(alertOwnFields(a)),
  };
  return doc;
}

export function ocsfOther(r: OtherRecord, opts: FormatOptions = {}): Doc {
  const doc = header(0, 'Base Event', 0, 'Uncategorized', 99, 'Other',
    typeof r.time === 'number' ? r.time : undefined, 1, opts, r.event);
  const { event: _e, time: _t, ...rest } = r;
  doc.message = r.event;
  doc.unmapped = { ctwatch: { [r.event]: rest } };
  return doc;
}

export function ocsfDocument(rec: SinkRecord, opts: FormatOptions = {}): Doc {
  if (isFlow(rec)) return ocsfFlow(rec, opts);
  if (isAlert(rec)) return ocsfAlert(rec, opts);
  if (isConntrack(rec)) return ocsfConntrack(rec, opts);
  return ocsfOther(rec as OtherRecord, opts);
}
