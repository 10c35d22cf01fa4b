/**
 * The spool's files, as bytes (src/sinks/spool.ts keeps and uses them). Layout of a spool
 * directory (SECURITY.md: private, 0700, owned by the account ctwatch runs as):
 *   seg-000000000001.log ...  segments, appended to in order; a record is `LEN:PAYLOAD\n`, LEN the
 *                             payload's UTF-8 byte length, so payloads may contain anything
 *   state.json                the committed read position {seq, offset}, rewritten in place
 *   lock                      flock(2)ed for the life of the spool; holds the pid, for people only
 * Pure functions only: no I/O here.
 */

export interface Segment {
  seq: number;
  /** bytes of whole records; a torn tail past it (a write that could not be cut back) is ignored */
  bytes: number;
  records: number;
}

/** The committed read position: segment `seq`, byte `offset` in it. */
export interface State {
  seq: number;
  offset: number;
}

const SEG_RE = /^seg-(\d{12})\.log$/;
const NL = 0x0a;
const COLON = 0x3a;
/** state.json is rewritten in place at this fixed size: no new block is needed, even on a full disk */
const STATE_BYTES = 64;

export function segName(seq: number): string {
  return `seg-${String(seq).padStart(12, '0')}.log`;
}

/** The segments among a directory's names, oldest first. */
export function segmentSeqs(names: readonly string[]): number[] {
  return names.map((n) => SEG_RE.exec(n)).filter((m) => m !== null).map((m) => Number(m[1])).sort((a, b) => a - b);
}

/**
 * The read position after the last whole record that ends at or before `offset` (an offset inside a
 * record: that record comes again), from the ends of a segment's records.
 */
export function headAt(ends: readonly number[], offset: number): { offset: number; index: number } {
  let index = 0;
  while (index < ends.length && ends[index] <= offset) index++;
  return { offset: index > 0 ? ends[index - 1] : 0, index };
}

/** state.json's text: undefined when empty or not a read position. */
export function parseState(text: string): State | undefined {
  if (text === '') return undefined;
  try {
    const p = JSON.parse(text) as Partial<State>;
    if (Number.isSafeInteger(p.seq) && Number.isSafeInteger(p.offset) && p.seq! >= 0 && p.offset! >= 0) return { seq: p.seq!, offset: p.offset! };
  } catch {
    /* not JSON: not a read position */
  }
  return undefined;
}

/** state.json's bytes for a read position, always STATE_BYTES long. */
export function stateBytes(s: State): Buffer {
  const text = JSON.stringify({ seq: s.seq, offset: s.offset });
  return Buffer.from(text.padEnd(STATE_BYTES - 1, ' ') + '\n');
}

export function frame(payload: string): Buffer {
  const body = Buffer.from(payload, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length}:`), body, Buffer.from('\n')]);
}

type FrameAt = { kind: 'frame'; body: number; end: number } | { kind: 'partial' } | { kind: 'bad' };

/** What starts at buf[pos]: a whole record (`end` past its newline), the start of one cut off by the buffer's end, or not a record. */
function frameAt(buf: Buffer, pos: number): FrameAt {
  let i = pos;
  while (i < buf.length && i - pos <= 12 && buf[i] >= 0x30 && buf[i] <= 0x39) i++;
  if (i - pos > 12) return { kind: 'bad' };
  if (i === buf.length) return { kind: 'partial' };
  if (i === pos || buf[i] !== COLON) return { kind: 'bad' };
  const newline = i + 1 + Number(buf.toString('latin1', pos, i));
  if (newline >= buf.length) return { kind: 'partial' };
  return buf[newline] === NL ? { kind: 'frame', body: i + 1, end: newline + 1 } : { kind: 'bad' };
}

/**
 * The next place after `pos` where a whole record starts (or, not `final`, may start past the
 * buffer). Every byte is a candidate, not only those after a newline: a torn record is followed by
 * the next one without a newline between them.
 */
function resync(buf: Buffer, pos: number, final: boolean): number {
  for (let i = pos + 1; i < buf.length; i++) {
    const c = buf[i];
    if (c < 0x30 || c > 0x39) continue;
    const p = buf[i - 1];
    if (p >= 0x30 && p <= 0x39) continue; // inside a number: its start was tried
    const f = frameAt(buf, i);
    if (f.kind === 'frame' || (f.kind === 'partial' && !final)) return i;
  }
  return buf.length;
}

export interface Parsed {
  records: string[];
  /** where parsing stopped */
  end: number;
  /** corrupt bytes stepped over */
  skipped: number;
  /** end of the last whole record (0 when none) */
  lastFrameEnd: number;
  /** end of each whole record, when asked for */
  ends?: number[];
}

/**
 * Records from buf[start..]; corruption is stepped over to the next whole record and counted.
 * `final`: the buffer ends where the data ends, so a record cut off at its end is torn, not partial.
 */
export function parseFrames(buf: Buffer, start: number, maxRecords: number, maxBytes: number, final = false, keepEnds = false, decode = true): Parsed {
  const records: string[] = [];
  const ends: number[] | undefined = keepEnds ? [] : undefined;
  let pos = start;
  let bytes = 0;
  let skipped = 0;
  let lastFrameEnd = 0;
  let count = 0;
  while (pos < buf.length && count < maxRecords) {
    const f = frameAt(buf, pos);
    if (f.kind === 'frame') {
      const len = f.end - 1 - f.body;
      if (count > 0 && bytes + len > maxBytes) break;
      if (decode) records.push(buf.toString('utf8', f.body, f.end - 1));
      ends?.push(f.end);
      count++;
      bytes += len;
      pos = lastFrameEnd = f.end;
      continue;
    }
    if (f.kind === 'partial' && !final) break;
    const next = resync(buf, pos, final);
    skipped += next - pos;
    pos = next;
  }
  return { records, end: pos, skipped, lastFrameEnd, ends };
}
