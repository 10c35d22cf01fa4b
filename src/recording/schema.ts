/**
 * The JSONL recording schema (docs/schema.md), version 1: one JSON object per line, `v` and
 * `event` first. Writing and reading live together here so that a recording always reads back
 * into exactly the events that were written.
 */
import { isIP } from 'node:net';
import { protoNumber, STATUS_FLAGS, TCP_STATES } from '../source/names.js';
import type { ConntrackEvent, Counters, IcmpFields, SourceEvent, Tuple } from '../source/types.js';
import type { FlowEnd, NatTuple } from '../flow/types.js';
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

/**
 * What a conntrack event and a flow end both write after their `event`, in the same order: time,
 * the entry's id, family and protocol, and its original tuple.
 */
function entryBytes(w: LineBuffer, x: Tuple & { time: number; id: number; family: string; proto: string }): void {
  // a member a line
  w.ascii(',"time":"'); w.micros(x.time);
  w.ascii('","id":'); w.number(x.id);
  w.ascii(',"family":'); w.string(x.family);
  w.ascii(',"proto":'); w.string(x.proto);
  w.byte(0x2c); tupleBytes(w, x);
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
  entryBytes(w, e);
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
  reply: 19, reason: 20, mark: 21, zone: 22, netns: 23, process: 24, unattributed: 25, nat: 26,
} as const satisfies Record<keyof FlowEnd, number>;

/**
 * The line of a flow end, the record `watch --flows` and `record --flows` write once per
 * connection: as bytes, in FLOW_FIELDS order.
 */
export function writeFlow(w: LineBuffer, f: FlowEnd): void {
  w.ascii(`{"v":${SCHEMA_VERSION},"event":"flow"`);
  entryBytes(w, f);
  w.ascii(',"begin":"');
  w.micros(f.begin);
  w.ascii('","duration":');
  w.micro(f.duration);
  if (f.open !== undefined) { w.ascii(',"open":'); w.number(f.open); }
  stateBytes(w, f);
  if (f.orig !== undefined) countersBytes(w, ',"orig":', f.orig);
  if (f.reply !== undefined) countersBytes(w, ',"reply":', f.reply);
  tailBytes(w, f);
  if (f.nat !== undefined) natBytes(w, f.nat);
  w.ascii('}\n');
}

// Most of a flow line after its times repeats from flow to flow: the end state (a few dozen
// combinations) and, from `reason` on, what the flows of one process share (~200 bytes with the
// process object). Those parts are written once and then copied whole, which costs a lookup
// instead of a dozen writes. The bytes are exactly what the writes make (stateWrite, tailWrite).

/** `clock` to `replied`, by state, then by clock, preexisting, assured and replied as bits */
const stateParts = new Map<string | undefined, (Uint8Array | undefined)[]>();

function stateBytes(w: LineBuffer, f: FlowEnd): void {
  const bits = (f.clock === 'kernel' ? 8 : f.clock === 'collector' ? 0 : 16) | (f.preexisting ? 4 : 0) | (f.assured ? 2 : 0) | (f.replied ? 1 : 0);
  if (bits >= 16) return stateWrite(w, f);  // not a clock this schema knows: written, not kept
  let byBits = stateParts.get(f.state);
  if (byBits === undefined) {
    // one entry per name the decoder gives (TCP_STATES), plus a recording's own if any: bounded
    if (stateParts.size >= 64) stateParts.clear();
    byBits = [];
    stateParts.set(f.state, byBits);
  }
  const b = byBits[bits];
  if (b === undefined) {
    const m = w.mark();
    stateWrite(w, f);
    byBits[bits] = w.since(m);
    return;
  }
  w.bytes(b);
}

function stateWrite(w: LineBuffer, f: FlowEnd): void {
  w.ascii(',"clock":');
  w.string(f.clock);
  w.ascii(',"preexisting":');
  w.boolean(f.preexisting);
  if (f.state !== undefined) { w.ascii(',"state":'); w.string(f.state); }
  w.ascii(',"assured":');
  w.boolean(f.assured);
  w.ascii(',"replied":');
  w.boolean(f.replied);
}

/** `reason` to `unattributed` as a flow of that process wrote them last */
interface Tail {
  reason: FlowEnd['reason'];
  mark: number | undefined;
  zone: number | undefined;
  netns: string | undefined;
  process: FlowEnd['process'];
  unattributed: FlowEnd['unattributed'];
  bytes: Uint8Array;
  /** flows that found it the same */
  hits: number;
  /** flows that did not, while it had no hit */
  misses: number;
}
/**
 * By process object. Attribution shares one object per settled process and never changes it; one
 * still being enriched belongs to a single flow and may gain fields after that flow's line
 * (src/pipeline/attribution.ts completePending), but no later line names it: a tail kept for it
 * is never used again. (LineBuffer.object's cache relies on the same.)
 */
const tails = new WeakMap<object, Tail>();
/** flows without a process object (attribution off, or no owner), by why there is none */
const ownerlessTails = new Map<string | undefined, Tail>();

/** the process objects of the last 4 flow lines without a kept tail (held until 4 more come) */
const recentUncached: (object | undefined)[] = [undefined, undefined, undefined, undefined];
let recentAt = 0;

function tailBytes(w: LineBuffer, f: FlowEnd): void {
  const p = f.process;
  const t = p ? tails.get(p) : ownerlessTails.get(f.unattributed);
  if (t === undefined && p && recentUncached[0] !== p && recentUncached[1] !== p && recentUncached[2] !== p && recentUncached[3] !== p) {
    // A process object first seen is kept only when one of the next 4 uncached flow lines names
    // it too: one being enriched is one object per flow, and a new process's first flows would
    // otherwise fill the WeakMap with entries used once (weak entries cost every garbage
    // collection). Four, not one: a settled process's flows between new processes' flows (a busy
    // host) would otherwise never find theirs kept.
    recentUncached[recentAt] = p;
    recentAt = (recentAt + 1) & 3;
    tailWrite(w, f);
    return;
  }
  if (t !== undefined && t.process === p && t.reason === f.reason && t.mark === f.mark && t.zone === f.zone && t.netns === f.netns && t.unattributed === f.unattributed) {
    t.hits++;
    w.bytes(t.bytes);
    return;
  }
  // Flows of one process whose fields differ each time (a mark per flow) would make a copy per
  // flow: an entry no flow has reused yet is replaced once in 4 misses only.
  if (t !== undefined && t.hits === 0 && (++t.misses & 3) !== 0) {
    tailWrite(w, f);
    return;
  }
  const m = w.mark();
  tailWrite(w, f);
  const next: Tail = { reason: f.reason, mark: f.mark, zone: f.zone, netns: f.netns, process: p, unattributed: f.unattributed, bytes: w.since(m), hits: 0, misses: 0 };
  if (p) tails.set(p, next);
  else if (ownerlessTails.size < 64 || ownerlessTails.has(f.unattributed)) ownerlessTails.set(f.unattributed, next);
}

function tailWrite(w: LineBuffer, f: FlowEnd): void {
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
  if (f.unattributed !== undefined) { w.ascii(',"unattributed":'); w.string(f.unattributed); }
}

/** `"nat":{...}` in src, sport, dst, dport order, only the translated side's fields. */
function natBytes(w: LineBuffer, nat: NatTuple): void {
  w.ascii(',"nat":{');
  let sep = false;
  if (nat.src !== undefined) { w.ascii('"src":'); w.string(nat.src); sep = true; }
  if (nat.sport !== undefined) { w.ascii(sep ? ',"sport":' : '"sport":'); w.number(nat.sport); sep = true; }
  if (nat.dst !== undefined) { w.ascii(sep ? ',"dst":' : '"dst":'); w.string(nat.dst); sep = true; }
  if (nat.dport !== undefined) { w.ascii(sep ? ',"dport":' : '"dport":'); w.number(nat.dport); }
  w.byte(0x7d);
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
 * untouched, except the kernel table figures of `churn` lines, which replay reuses. Every field an
 * event source yields is checked for its type and range (a recording is input like any other: it
 * may come from elsewhere, or be cut and edited by hand). Fields this version does not know are
 * ignored (new optional fields do not bump `v`). Throws RecordingError with the line number.
 */
export function parseLine(text: string, file: string, line: number): SourceEvent | AnyRecord {
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new RecordingError(file, line, `not JSON (${(err as Error).message})`);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new RecordingError(file, line, 'not a JSON object');
  if (obj.v !== SCHEMA_VERSION) throw new RecordingError(file, line, `schema version ${show(obj.v)} is not supported (this ctwatch reads v${SCHEMA_VERSION})`);
  if (typeof obj.event !== 'string') throw new RecordingError(file, line, "missing 'event'");
  const time = typeof obj.time === 'string' ? parseMicros(obj.time) : NaN;
  if (Number.isNaN(time)) throw new RecordingError(file, line, `'time' is not an RFC 3339 timestamp: ${show(obj.time)}`);
  if (time < 0) throw new RecordingError(file, line, `'time' ${show(obj.time)} is before 1970`);
  delete obj.v;
  obj.time = time;
  for (const f of MICROS_FIELDS) if (typeof obj[f] === 'string') obj[f] = parseMicros(obj[f] as string);
  const check = new FieldCheck(file, line, obj.event);
  if (CONNTRACK_KINDS.has(obj.event)) {
    for (const f of ['id', 'src', 'dst', 'family', 'proto'] as const) {
      if (obj[f] === undefined) throw new RecordingError(file, line, `${obj.event} event without '${f}'`);
    }
    check.conntrack(obj);
    return obj as unknown as ConntrackEvent;
  }
  if (obj.event === 'overflow') check.count(obj, 'overflows', true);
  else if (obj.event === 'snapshot_done') check.count(obj, 'entries', true);
  else if (obj.event === 'churn' && obj.table !== undefined) check.table(obj.table);
  return obj as AnyRecord;
}

/** A value as it appears in an error line: JSON, and short (a line can be a megabyte). */
function show(v: unknown): string {
  const s = v === undefined ? 'nothing' : JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

const U16 = 0xffff;
const U32 = 0xffffffff;
const STATES = new Set<string>(TCP_STATES);
const FLAGS = new Set<string>(STATUS_FLAGS);
// Addresses repeat endlessly in a recording; each distinct text is checked once (bounded cache).
const goodAddress = new Map<string, 4 | 6>();

/** The type and range checks of one line; the first failure throws with the field's name. */
class FieldCheck {
  constructor(
    private readonly file: string,
    private readonly line: number,
    private readonly event: string,
  ) {}

  fail(field: string, want: string, v: unknown): never {
    throw new RecordingError(this.file, this.line, `${this.event}: '${field}' must be ${want}, not ${show(v)}`);
  }

  int(o: Record<string, unknown>, key: string, max: number, prefix = '', required = false): void {
    const v = o[key];
    if (v === undefined && !required) return;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) {
      this.fail(prefix + key, max === Number.MAX_SAFE_INTEGER ? 'a whole number >= 0' : `a whole number 0-${max}`, v);
    }
  }

  count(o: Record<string, unknown>, key: string, required = false, prefix = ''): void {
    this.int(o, key, Number.MAX_SAFE_INTEGER, prefix, required);
  }

  object(v: unknown, field: string): Record<string, unknown> {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) this.fail(field, 'an object', v);
    return v as Record<string, unknown>;
  }

  address(o: Record<string, unknown>, key: string, family: 4 | 6, prefix = ''): void {
    const v = o[key];
    const known = typeof v === 'string' ? goodAddress.get(v) : undefined;
    if (known === family) return;
    const fam = typeof v === 'string' ? isIP(v) : 0;
    if (fam !== family) this.fail(prefix + key, `an ${family === 4 ? 'IPv4' : 'IPv6'} address (the event's family)`, v);
    if (goodAddress.size >= 65536) goodAddress.clear();
    goodAddress.set(v as string, family);
  }

  tuple(o: Record<string, unknown>, family: 4 | 6, prefix: string): void {
    this.address(o, 'src', family, prefix);
    this.address(o, 'dst', family, prefix);
    this.int(o, 'sport', U16, prefix);
    this.int(o, 'dport', U16, prefix);
    if (o.icmp !== undefined) {
      const i = this.object(o.icmp, `${prefix}icmp`);
      this.int(i, 'type', 255, `${prefix}icmp.`, true);
      this.int(i, 'code', 255, `${prefix}icmp.`, true);
      this.int(i, 'id', U16, `${prefix}icmp.`, true);
    }
  }

  counters(v: unknown, field: string): void {
    const c = this.object(v, field);
    this.count(c, 'packets', true, `${field}.`);
    this.count(c, 'bytes', true, `${field}.`);
  }

  nanos(o: Record<string, unknown>, key: string): void {
    const v = o[key];
    if (v === undefined) return;
    const ns = typeof v === 'string' ? parseNanos(v) : NaN;
    if (Number.isNaN(ns) || ns < 0) this.fail(key, 'an RFC 3339 timestamp after 1970', v);
    o[key] = ns;
  }

  conntrack(o: Record<string, unknown>): void {
    this.int(o, 'id', U32, '', true);
    if (o.family !== 'ipv4' && o.family !== 'ipv6') this.fail('family', '"ipv4" or "ipv6"', o.family);
    const family = o.family === 'ipv4' ? 4 : 6;
    const p = o.proto;
    // a name from the protocol table, or the number as the decoder writes it (decimal, 0-255)
    if (typeof p !== 'string' || protoNumber(p) === undefined || (/^[^a-z]/.test(p) && !/^\d{1,3}$/.test(p))) {
      this.fail('proto', 'a protocol name (tcp, udp, icmp, ...) or number 0-255 as text', p);
    }
    this.tuple(o, family, '');
    if (o.reply === undefined || o.reply === null) o.reply = { src: '', dst: '' };
    else {
      const r = this.object(o.reply, 'reply');
      this.tuple(r, family, 'reply.');
      this.count(r, 'packets', false, 'reply.');
      this.count(r, 'bytes', false, 'reply.');
    }
    if (o.state !== undefined && (typeof o.state !== 'string' || !(STATES.has(o.state) || /^STATE_\d+$/.test(o.state)))) {
      this.fail('state', `a TCP state (${TCP_STATES.join(', ')})`, o.state);
    }
    if (o.status === undefined) o.status = [];
    else if (!Array.isArray(o.status) || !o.status.every((f) => typeof f === 'string' && FLAGS.has(f))) {
      this.fail('status', 'a list of status flags (SEEN_REPLY, ASSURED, CONFIRMED, ...)', o.status);
    }
    this.int(o, 'mark', U32);
    this.int(o, 'zone', U16);
    this.int(o, 'timeout', U32);
    if (o.orig !== undefined) this.counters(o.orig, 'orig');
    this.nanos(o, 'start');
    this.nanos(o, 'end');
    if (o.netns !== undefined && typeof o.netns !== 'string') this.fail('netns', 'a string', o.netns);
  }

  /** A churn line's kernel table figures, which replay lends to its own snapshots. */
  table(v: unknown): void {
    const t = this.object(v, 'table');
    for (const k of ['entries', 'max'] as const) if (t[k] !== null) this.count(t, k, false, 'table.');
    if (t.kernel !== undefined) {
      const k = this.object(t.kernel, 'table.kernel');
      for (const name of Object.keys(k)) this.count(k, name, true, 'table.kernel.');
    }
  }
}
