/**
 * The JSONL recording schema (docs/schema.md), version 1: one JSON object per line, `v` and
 * `event` first. Writing and reading live together here so that a recording always reads back
 * into exactly the events that were written.
 */
import type { ConntrackEvent, SourceEvent, Tuple } from '../source/types.js';
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

// Strings in events repeat endlessly (a few addresses, state and protocol names), so each is
// JSON-quoted once and looked up after that; the cache is bounded and simply restarts when full.
const quoted = new Map<string, string>();
function q(text: string): string {
  let s = quoted.get(text);
  if (s === undefined) {
    s = JSON.stringify(text);
    if (quoted.size >= 65536) quoted.clear();
    quoted.set(text, s);
  }
  return s;
}

const statusJson = new WeakMap<readonly string[], string>();
function statusList(status: readonly string[]): string {
  // The decoder shares one frozen array per distinct status word, so this hits almost always.
  let s = statusJson.get(status);
  if (s === undefined) {
    s = `[${status.map(q).join(',')}]`;
    statusJson.set(status, s);
  }
  return s;
}

function tupleText(t: Tuple): string {
  let s = `"src":${q(t.src)},"dst":${q(t.dst)}`;
  if (t.sport !== undefined) s += `,"sport":${t.sport}`;
  if (t.dport !== undefined) s += `,"dport":${t.dport}`;
  if (t.icmp !== undefined) s += `,"icmp":{"type":${t.icmp.type},"code":${t.icmp.code},"id":${t.icmp.id}}`;
  return s;
}

/**
 * The line for a conntrack event, built as text: this runs once per event at 100 k events/s, where
 * building an object and JSON.stringify-ing it costs four times as much. Same fields and order as
 * eventRecord (a unit test holds the two together).
 */
export function eventLine(e: ConntrackEvent): string {
  let s = `{"v":${SCHEMA_VERSION},"event":${q(e.event)},"time":"${formatMicros(e.time)}","id":${e.id},"family":${q(e.family)},"proto":${q(e.proto)},${tupleText(e)},"reply":{${tupleText(e.reply)}`;
  if (e.reply.packets !== undefined) s += `,"packets":${e.reply.packets}`;
  if (e.reply.bytes !== undefined) s += `,"bytes":${e.reply.bytes}`;
  s += '}';
  if (e.state !== undefined) s += `,"state":${q(e.state)}`;
  s += `,"status":${statusList(e.status)}`;
  if (e.mark !== undefined) s += `,"mark":${e.mark}`;
  if (e.zone !== undefined) s += `,"zone":${e.zone}`;
  if (e.timeout !== undefined) s += `,"timeout":${e.timeout}`;
  if (e.orig !== undefined) s += `,"orig":{"packets":${e.orig.packets},"bytes":${e.orig.bytes}}`;
  if (e.start !== undefined) s += `,"start":"${formatNanos(e.start)}"`;
  if (e.end !== undefined) s += `,"end":"${formatNanos(e.end)}"`;
  if (e.netns !== undefined) s += `,"netns":${q(e.netns)}`;
  return `${s}}`;
}

const CONNTRACK_KINDS = new Set(['new', 'update', 'destroy', 'snapshot']);

/** Fields holding µs times in derived records, written as RFC 3339 like `time`. */
const MICROS_FIELDS = ['since', 'begin'];

/** One line (without the newline) for any record. */
export function toLine(rec: SourceEvent | AnyRecord): string {
  if (CONNTRACK_KINDS.has(rec.event)) return eventLine(rec as ConntrackEvent);
  const { event, time, ...rest } = rec as AnyRecord;
  for (const f of MICROS_FIELDS) if (typeof rest[f] === 'number') rest[f] = formatMicros(rest[f] as number);
  return JSON.stringify({ v: SCHEMA_VERSION, event, time: formatMicros(time), ...rest });
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
