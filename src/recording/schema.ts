/**
 * The JSONL recording schema (docs/schema.md), version 1: one JSON object per line, `v` and
 * `event` first. Writing and reading live together here so that a recording always reads back
 * into exactly the events that were written.
 */
import type { ConntrackEvent, Counters, IcmpFields, SourceEvent, Tuple } from '../source/types.js';
import type { FlowEnd } from '../flow/types.js';
import { LineBuffer } from './line-buffer.js';
import { CtwatchError, EXIT } from '../util/errors.js';
import { formatMicros, formatNanos, parseMicros, parseNanos } from './time.js';

export const SCHEMA_VERSION = 1;

/** Any record ctwatch writes: conntrack events plus derived ones (flow, churn, alert, ...). */
export interface AnyRecord {
  event: string;
  time: number;
  [field: string]: unknown;
}

function tupleFields(t: Tuple, out: Record<string, unknown>): void {
  out.src = t.src;
  out.dst = t.dst;
  if (t.sport !== undefined) out.sport = t.sport;
  if (t.dport !== undefined) out.dport = t.dport;
  if (t.icmp !== undefined) out.icmp = t.icmp;
}

/** A conntrack event in schema field order. */
export function eventRecord(e: ConntrackEvent): Record<string, unknown> {
  const r: Record<string, unknown> = { v: SCHEMA_VERSION, event: e.event, time: formatMicros(e.time), id: e.id, family: e.family, proto: e.proto };
  tupleFields(e, r);
  const reply: Record<string, unknown> = {};
  tupleFields(e.reply, reply);
  if (e.reply.packets !== undefined) reply.packets = e.reply.packets;
  if (e.reply.bytes !== undefined) reply.bytes = e.reply.bytes;
  r.reply = reply;
  if (e.state !== undefined) r.state = e.state;
  r.status = e.status;
  if (e.mark !== undefined) r.mark = e.mark;
  if (e.zone !== undefined) r.zone = e.zone;
  if (e.timeout !== undefined) r.timeout = e.timeout;
  if (e.orig !== undefined) r.orig = e.orig;
  if (e.start !== undefined) r.start = formatNanos(e.start);
  if (e.end !== undefined) r.end = formatNanos(e.end);
  if (e.netns !== undefined) r.netns = e.netns;
  return r;
}

function tupleBytes(w: LineBuffer, t: Tuple): void {
  w.ascii('"src":');
  w.string(t.src);
  w.ascii(',"dst":');
  w.string(t.dst);
  if (t.sport !== undefined) { w.ascii(',"sport":'); w.number(t.sport); }
  if (t.dport !== undefined) { w.ascii(',"dport":'); w.number(t.dport); }
  if (t.icmp !== undefined) icmpBytes(w, t.icmp);
}

function icmpBytes(w: LineBuffer, icmp: IcmpFields): void {
  w.ascii(',"icmp":{"type":');
  w.number(icmp.type);
  w.ascii(',"code":');
  w.number(icmp.code);
  w.ascii(',"id":');
  w.number(icmp.id);
  w.byte(0x7d);
}

function countersBytes(w: LineBuffer, key: string, c: Counters): void {
  w.ascii(key);
  w.ascii('{"packets":');
  w.number(c.packets);
  w.ascii(',"bytes":');
  w.number(c.bytes);
  w.byte(0x7d);
}

/**
 * The line of a conntrack event: the fields and order of eventRecord (a unit test holds the two
 * together), written as bytes because it runs once per event.
 */
export function writeEvent(w: LineBuffer, e: ConntrackEvent): void {
  w.ascii(`{"v":${SCHEMA_VERSION},"event":`);
  w.string(e.event);
  w.ascii(',"time":"');
  w.micros(e.time);
  w.ascii('","id":');
  w.number(e.id);
  w.ascii(',"family":');
  w.string(e.family);
  w.ascii(',"proto":');
  w.string(e.proto);
  w.byte(0x2c);
  tupleBytes(w, e);
  w.ascii(',"reply":{');
  tupleBytes(w, e.reply);
  if (e.reply.packets !== undefined) { w.ascii(',"packets":'); w.number(e.reply.packets); }
  if (e.reply.bytes !== undefined) { w.ascii(',"bytes":'); w.number(e.reply.bytes); }
  w.byte(0x7d);
  if (e.state !== undefined) { w.ascii(',"state":'); w.string(e.state); }
  w.ascii(',"status":');
  statusBytes(w, e.status);
  if (e.mark !== undefined) { w.ascii(',"mark":'); w.number(e.mark); }
  if (e.zone !== undefined) { w.ascii(',"zone":'); w.number(e.zone); }
  if (e.timeout !== undefined) { w.ascii(',"timeout":'); w.number(e.timeout); }
  if (e.orig !== undefined) countersBytes(w, ',"orig":', e.orig);
  if (e.start !== undefined) { w.ascii(',"start":"'); w.nanos(e.start); w.byte(0x22); }
  if (e.end !== undefined) { w.ascii(',"end":"'); w.nanos(e.end); w.byte(0x22); }
  if (e.netns !== undefined) { w.ascii(',"netns":'); w.string(e.netns); }
  w.ascii('}\n');
}

function statusBytes(w: LineBuffer, status: readonly string[]): void {
  // The decoder shares one frozen array per distinct status word, so this is cached by identity.
  if (Object.isFrozen(status)) {
    w.object(status);
    return;
  }
  w.byte(0x5b);
  for (let i = 0; i < status.length; i++) {
    if (i > 0) w.byte(0x2c);
    w.string(status[i]);
  }
  w.byte(0x5d);
}

/**
 * Every field of a flow line, in the order it is written (docs/schema.md, "flow"). The type
 * makes a field added to FlowEnd fail to compile until it is written here too.
 */
export const FLOW_FIELDS = {
  event: 0, time: 1, id: 2, family: 3, proto: 4, src: 5, dst: 6, sport: 7, dport: 8, icmp: 9, begin: 10,
  duration: 11, open: 12, clock: 13, preexisting: 14, state: 15, assured: 16, replied: 17, orig: 18,
  reply: 19, reason: 20, mark: 21, zone: 22, netns: 23, process: 24,
} as const satisfies Record<keyof FlowEnd, number>;

/**
 * The line of a flow end, the record `watch --flows` and `record --flows` write once per
 * connection: as bytes, in FLOW_FIELDS order.
 */
export function writeFlow(w: LineBuffer, f: FlowEnd): void {
  w.ascii(`{"v":${SCHEMA_VERSION},"event":"flow","time":"`);
  w.micros(f.time);
  w.ascii('","id":');
  w.number(f.id);
  w.ascii(',"family":');
  w.string(f.family);
  w.ascii(',"proto":');
  w.string(f.proto);
  w.ascii(',"src":');
  w.string(f.src);
  w.ascii(',"dst":');
  w.string(f.dst);
  if (f.sport !== undefined) { w.ascii(',"sport":'); w.number(f.sport); }
  if (f.dport !== undefined) { w.ascii(',"dport":'); w.number(f.dport); }
  if (f.icmp !== undefined) icmpBytes(w, f.icmp);
  w.ascii(',"begin":"');
  w.micros(f.begin);
  w.ascii('","duration":');
  w.number(f.duration);
  if (f.open !== undefined) { w.ascii(',"open":'); w.number(f.open); }
  w.ascii(',"clock":');
  w.string(f.clock);
  w.ascii(',"preexisting":');
  w.boolean(f.preexisting);
  if (f.state !== undefined) { w.ascii(',"state":'); w.string(f.state); }
  w.ascii(',"assured":');
  w.boolean(f.assured);
  w.ascii(',"replied":');
  w.boolean(f.replied);
  if (f.orig !== undefined) countersBytes(w, ',"orig":', f.orig);
  if (f.reply !== undefined) countersBytes(w, ',"reply":', f.reply);
  w.ascii(',"reason":');
  w.string(f.reason);
  if (f.mark !== undefined) { w.ascii(',"mark":'); w.number(f.mark); }
  if (f.zone !== undefined) { w.ascii(',"zone":'); w.number(f.zone); }
  if (f.netns !== undefined) { w.ascii(',"netns":'); w.string(f.netns); }
  if (f.process !== undefined) {
    w.ascii(',"process":');
    // Attribution shares one object per process among its flows.
    if (f.process === null) w.ascii('null');
    else w.object(f.process);
  }
  w.ascii('}\n');
}

const CONNTRACK_KINDS = new Set(['new', 'update', 'destroy', 'snapshot']);

/** Fields holding µs times in derived records, written as RFC 3339 like `time`. */
const MICROS_FIELDS = ['since', 'begin'];

/**
 * Appends the line (with its newline) of any record: the one encoder of the schema. Conntrack
 * events and flow ends, which come by the hundred thousand per second, have writers of their own;
 * every other record (churn, alert, resync, overflow, ...) is `v`, `event`, `time` and then its
 * fields as they are, with `since` and `begin` as times.
 */
export function writeRecord(w: LineBuffer, rec: SourceEvent | FlowEnd | AnyRecord): void {
  const kind = rec.event;
  if (kind === 'flow') return writeFlow(w, rec as FlowEnd);
  if (CONNTRACK_KINDS.has(kind)) return writeEvent(w, rec as ConntrackEvent);
  const { event, time, ...rest } = rec as AnyRecord;
  for (const f of MICROS_FIELDS) if (typeof rest[f] === 'number') rest[f] = formatMicros(rest[f] as number);
  w.utf8(JSON.stringify({ v: SCHEMA_VERSION, event, time: formatMicros(time), ...rest }));
  w.byte(0x0a);
}

const scratch = new LineBuffer(64 * 1024);

/** One line (without the newline) for any record. */
export function toLine(rec: SourceEvent | FlowEnd | AnyRecord): string {
  writeRecord(scratch, rec);
  const line = scratch.takeString();
  return line.slice(0, -1);
}

/** The line of a conntrack event, without the newline. */
export function eventLine(e: ConntrackEvent): string {
  return toLine(e);
}

export class RecordingError extends CtwatchError {
  readonly line: number;
  constructor(file: string, line: number, reason: string) {
    super('ERR_RECORDING', `${file}:${line}: ${reason}`, { exitCode: EXIT.dataErr });
    this.line = line;
  }
}

/**
 * Parses one line back into a record. Conntrack events come back as ConntrackEvent (times in µs
 * and ns again); other kinds are returned with `time` (and `since`/`begin`) converted and the rest
 * untouched. Throws RecordingError with the line number on anything malformed.
 */
export function parseLine(text: string, file: string, line: number): SourceEvent | AnyRecord {
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new RecordingError(file, line, `not JSON (${(err as Error).message})`);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new RecordingError(file, line, 'not a JSON object');
  if (obj.v !== SCHEMA_VERSION) throw new RecordingError(file, line, `schema version ${JSON.stringify(obj.v)} is not supported (this ctwatch reads v${SCHEMA_VERSION})`);
  if (typeof obj.event !== 'string') throw new RecordingError(file, line, "missing 'event'");
  const time = typeof obj.time === 'string' ? parseMicros(obj.time) : NaN;
  if (Number.isNaN(time)) throw new RecordingError(file, line, `'time' is not an RFC 3339 timestamp: ${JSON.stringify(obj.time)}`);
  delete obj.v;
  obj.time = time;
  for (const f of MICROS_FIELDS) if (typeof obj[f] === 'string') obj[f] = parseMicros(obj[f] as string);
  if (CONNTRACK_KINDS.has(obj.event)) {
    for (const f of ['id', 'src', 'dst', 'family', 'proto'] as const) {
      if (obj[f] === undefined) throw new RecordingError(file, line, `${obj.event} event without '${f}'`);
    }
    if (typeof obj.start === 'string') obj.start = parseNanos(obj.start);
    if (typeof obj.end === 'string') obj.end = parseNanos(obj.end);
    if (!Array.isArray(obj.status)) obj.status = [];
    if (typeof obj.reply !== 'object' || obj.reply === null) obj.reply = { src: '', dst: '' };
    return obj as unknown as ConntrackEvent;
  }
  return obj as AnyRecord;
}
