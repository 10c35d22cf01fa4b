/**
 * ArcSight CEF:0 lines. Byte counters follow the CEF dictionary, which is counter-intuitive:
 * `in` (bytesIn) is data flowing from source to destination and `out` (bytesOut) from destination
 * to source, so in = original-direction bytes, out = reply-direction bytes.
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
  alertSeverity10,
  isAlert,
  isConntrack,
  isFlow,
  msFromMicros,
} from './common.js';

/** Header fields: backslash and pipe are escaped; a line break would end the record, so it
 * becomes a space. */
export function escapeCefHeader(s: string): string {
  return s.replace(/[\\|]/g, (c) => '\\' + c).replace(/\r\n|[\r\n]/g, ' ');
}

/** Extension values: backslash and equals are escaped, line breaks written as \n / \r. */
export function escapeCefValue(s: string): string {
  return s.replace(/[\\=\r\n]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\' + c));
}

type Ext = [string, string | number | undefined][];

function line(
  signatureId: string,
  name: string,
  severity: number,
  ext: Ext,
  opts: FormatOptions,
): string {
  const p = opts.product ?? DEFAULT_PRODUCT;
  const head = [
    'CEF:0',
    escapeCefHeader(p.vendor),
    escapeCefHeader(p.name),
    escapeCefHeader(p.version),
    escapeCefHeader(signatureId),
    escapeCefHeader(name),
    String(severity),
  ].join('|');
  if (opts.host) ext.push(['dvchost', opts.host.hostname ?? opts.host.name]);
  const parts: string[] = [];
  for (const [k, v] of ext) {
    if (v === undefined) continue;
    parts.push(`${k}=${escapeCefValue(String(v))}`);
  }
  return `${head}|${parts.join(' ')}`;
}

function proto(p: string): string {
  return p.toUpperCase();
}

function labelled(ext: Ext, key: string, label: string, value: string | number | undefined): void {
  if (value === undefined) return;
  ext.push([key, value], [`${key}Label`, label]);
}

const CT_NAMES: Record<ConntrackEvent['event'], string> = {
  new: 'Connection opened',
  update: 'Connection updated',
  destroy: 'Connection closed',
  snapshot: 'Connection present',
};

export function cefConntrack(ev: ConntrackEvent, opts: FormatOptions = {}): string {
  const ext: Ext = [
    ['rt', msFromMicros(ev.time)],
    ['cat', 'conntrack'],
    ['src', ev.src],
    ['spt', ev.sport],
    ['dst', ev.dst],
    ['dpt', ev.dport],
    ['proto', proto(ev.proto)],
    ['in', ev.orig?.bytes],
    ['out', ev.reply.bytes],
    ['start', ev.start === undefined ? undefined : Math.floor(ev.start / 1e6)],
    ['end', ev.end === undefined ? undefined : Math.floor(ev.end / 1e6)],
    ['externalId', ev.id],
  ];
  if (ev.status.includes('SRC_NAT')) {
    ext.push(['sourceTranslatedAddress', ev.reply.dst], ['sourceTranslatedPort', ev.reply.dport]);
  }
  if (ev.status.includes('DST_NAT')) {
    ext.push(['destinationTranslatedAddress', ev.reply.src], ['destinationTranslatedPort', ev.reply.sport]);
  }
  labelled(ext, 'cn1', 'origPackets', ev.orig?.packets);
  labelled(ext, 'cn2', 'replyPackets', ev.reply.packets);
  labelled(ext, 'cs1', 'communityId', communityId(ev, opts.communityIdSeed ?? 0));
  labelled(ext, 'cs2', 'tcpState', ev.state);
  labelled(ext, 'cs3', 'ctStatus', ev.status.join(','));
  labelled(ext, 'cs4', 'netns', ev.netns);
  labelled(ext, 'cs6', 'ctMark', ev.mark);
  return line(`conntrack:${ev.event}`, CT_NAMES[ev.event], 1, ext, opts);
}

export function cefFlow(f: FlowEnd, opts: FormatOptions = {}): string {
  const durationMs = Math.round(f.duration * 1000);
  const p = f.process;
  const ext: Ext = [
    ['rt', msFromMicros(f.time)],
    ['cat', 'flow'],
    ['src', f.src],
    ['spt', f.sport],
    ['dst', f.dst],
    ['dpt', f.dport],
    ['proto', proto(f.proto)],
    ['in', f.orig?.bytes],
    ['out', f.reply?.bytes],
    ['start', msFromMicros(f.begin)],
    ['end', msFromMicros(f.begin) + durationMs],
    ['externalId', f.id],
    ['suser', p?.user],
    ['suid', p?.uid],
    ['sproc', p?.comm],
    ['spid', p?.pid],
  ];
  labelled(ext, 'cn1', 'origPackets', f.orig?.packets);
  labelled(ext, 'cn2', 'replyPackets', f.reply?.packets);
  labelled(ext, 'cn3', 'durationMs', durationMs);
  labelled(ext, 'cs1', 'communityId', communityId(f, opts.communityIdSeed ?? 0));
  labelled(ext, 'cs2', 'tcpState', f.state);
  labelled(ext, 'cs4', 'netns', f.netns);
  labelled(ext, 'cs5', 'endReason', f.reason);
  labelled(ext, 'cs6', 'ctMark', f.mark);
  return line('flow:end', 'Flow ended', 1, ext, opts);
}

export function cefAlert(a: Alert, opts: FormatOptions = {}): string {
  const resolved = a.event === 'resolved';
  const ext: Ext = [
    ['rt', msFromMicros(a.time)],
    ['cat', 'alert'],
    ['msg', a.message],
    ['start', msFromMicros(a.since)],
    ['end', resolved ? msFromMicros(a.time) : undefined],
    ['externalId', `${a.rule}:${a.subject}`],
  ];
  labelled(ext, 'cs3', 'alertSeverity', a.severity);
  labelled(ext, 'cs4', 'netns', a.netns);
  labelled(ext, 'cs5', 'alertSubject', a.subject);
  labelled(ext, 'cs6', 'hint', a.hint);
  return line(
    `${a.event}:${a.rule}`,
    `${resolved ? 'Resolved' : 'Alert'}: ${a.rule}`,
    alertSeverity10(a),
    ext,
    opts,
  );
}

export function cefOther(r: OtherRecord, opts: FormatOptions = {}): string {
  const { event: _e, time: _t, ...rest } = r;
  const ext: Ext = [
    ['rt', typeof r.time === 'number' ? msFromMicros(r.time) : undefined],
    ['cat', r.event],
    ['msg', JSON.stringify(rest)],
  ];
  return line(r.event, r.event, 1, ext, opts);
}

export function cefLine(rec: SinkRecord, opts: FormatOptions = {}): string {
  if (isFlow(rec)) return cefFlow(rec, opts);
  if (isAlert(rec)) return cefAlert(rec, opts);
  if (isConntrack(rec)) return cefConntrack(rec, opts);
  return cefOther(rec as OtherRecord, opts);
}
