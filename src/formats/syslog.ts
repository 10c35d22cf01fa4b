/**
 * RFC 5424 message building (the transport and its framing live in src/sinks/syslog.ts). The
 * MSG is a formatted record (JSON, ECS, OCSF or CEF); an optional SD element repeats the few fields
 * a syslog server can route or filter on without parsing the body.
 */
import type { Alert } from '../alerts/types.js';
import { communityId } from './community-id.js';
import { type SinkRecord, isAlert, isConntrack, isFlow, isoFromMicros } from './common.js';

export const FACILITIES: Record<string, number> = {
  kern: 0, user: 1, mail: 2, daemon: 3, auth: 4, syslog: 5, lpr: 6, news: 7, uucp: 8, cron: 9,
  authpriv: 10, ftp: 11, ntp: 12, security: 13, console: 14, solaris_cron: 15,
  local0: 16, local1: 17, local2: 18, local3: 19, local4: 20, local5: 21, local6: 22, local7: 23,
};

export const SEVERITY = {
  emerg: 0, alert: 1, crit: 2, err: 3, warning: 4, notice: 5, info: 6, debug: 7,
} as const;

/** PEN 32473 is reserved for documentation (RFC 5612); set yours if you have one. */
export const DEFAULT_PEN = 32473;

export interface SyslogHeaderOptions {
  /** facility number 0..23 (default 16, local0) */
  facility?: number;
  hostname?: string;
  appName?: string;
  procId?: string | number;
  /** SD-ID enterprise number; the SD element is `[ctwatch@PEN ...]` */
  pen?: number;
  /** add the SD element (default true) */
  structuredData?: boolean;
  /** 'auto' (default): a BOM only when MSG is not pure ASCII, which is when it matters */
  bom?: 'auto' | 'always' | 'never';
}

export function syslogSeverity(rec: SinkRecord): number {
  if (isAlert(rec)) {
    const a = rec as Alert;
    if (a.event === 'resolved') return SEVERITY.notice;
    return a.severity === 'critical' ? SEVERITY.crit : a.severity === 'warning' ? SEVERITY.warning : SEVERITY.info;
  }
  if (rec.event === 'overflow') return SEVERITY.warning;
  return SEVERITY.info;
}

/** Header fields are printable US-ASCII without spaces (PRINTUSASCII); anything else becomes '_'
 * and an empty value the NILVALUE. */
export function headerField(s: string | undefined, max: number): string {
  if (s === undefined || s === '') return '-';
  const clean = s.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return clean === '' ? '-' : clean;
}

/** SD-PARAM values escape '"', '\' and ']' (RFC 5424 §6.3.3). */
export function escapeSdValue(s: string): string {
  return SD_SPECIAL.test(s) ? s.replace(/["\\\]]/g, (c) => '\\' + c) : s;
}
const SD_SPECIAL = /["\\\]]/;

/** SD-NAME: 1-32 PRINTUSASCII except '=', SP, ']' and '"'. */
export function sdName(s: string): string {
  return s.replace(/[^\x21-\x7e]|[= \]"]/g, '_').slice(0, 32) || '_';
}

export function structuredData(rec: SinkRecord, pen = DEFAULT_PEN): string {
  const params: [string, string | number | undefined][] = [['event', rec.event]];
  if (isFlow(rec) || isConntrack(rec)) {
    params.push(
      ['id', rec.id],
      ['proto', rec.proto],
      ['src', rec.src],
      ['sport', rec.sport],
      ['dst', rec.dst],
      ['dport', rec.dport],
      ['community_id', communityId(rec)],
    );
    if (isFlow(rec)) params.push(['duration', rec.duration], ['open', rec.open], ['reason', rec.reason]);
    else params.push(['state', rec.state]);
  } else if (isAlert(rec)) {
    params.push(['rule', rec.rule], ['severity', rec.severity], ['subject', rec.subject]);
  }
  if (typeof rec.netns === 'string') params.push(['netns', rec.netns]);
  const body = params
    .filter((p) => p[1] !== undefined)
    // the names are ours and already valid SD-NAMEs; only values need escaping
    .map(([k, v]) => `${k}="${escapeSdValue(String(v))}"`)
    .join(' ');
  return `[ctwatch@${pen} ${body}]`;
}

const BOM = '\ufeff';

/**
 * One RFC 5424 message (no framing, no trailing newline):
 * `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [BOM]MSG`.
 */
export function syslogMessage(rec: SinkRecord, msg: string, opts: SyslogHeaderOptions = {}): string {
  const facility = opts.facility ?? FACILITIES.local0;
  const pri = facility * 8 + syslogSeverity(rec);
  const ts = typeof rec.time === 'number' ? isoFromMicros(rec.time) : '-';
  const host = headerField(opts.hostname, 255);
  const app = headerField(opts.appName ?? 'ctwatch', 48);
  const procid = headerField(opts.procId === undefined ? undefined : String(opts.procId), 128);
  const msgid = headerField(rec.event, 32);
  const sd = opts.structuredData === false ? '-' : structuredData(rec, opts.pen ?? DEFAULT_PEN);
  const bomMode = opts.bom ?? 'auto';
  // eslint-disable-next-line no-control-regex
  const bom = bomMode === 'always' || (bomMode === 'auto' && /[^\x00-\x7f]/.test(msg)) ? BOM : '';
  return `<${pri}>1 ${ts} ${host} ${app} ${procid} ${msgid} ${sd} ${bom}${msg}`;
}

/** Cut a message to at most `max` UTF-8 bytes without splitting a character. */
export function truncateUtf8(s: string, max: number): string {
  const buf = Buffer.from(s, 'utf8');
  if (buf.length <= max) return s;
  let end = max;
  // back off continuation bytes (10xxxxxx) so the cut lands on a character boundary
  while (end > 0 && (buf[end] & 0xc0) === 0x80) end--;
  return buf.subarray(0, end).toString('utf8');
}

/** RFC 6587 octet counting: `LEN SP MSG`, LEN in bytes (BOM included). */
export function octetFrame(msg: string): string {
  return `${Buffer.byteLength(msg, 'utf8')} ${msg}`;
}
