/**
 * JSON lines written straight as bytes. A line built as a string is paid for three times at
 * 100 000 lines/s — concatenation, flattening the string tree, UTF-8 encoding on write — and the
 * garbage collector pays for a string per field; written here, a line costs one pass over its
 * bytes and allocates nothing. Repeated strings (addresses, names) are JSON-quoted and encoded
 * once, then copied. Which fields a record has, and in which order, is the schema's business
 * (schema.ts); this file knows only JSON's grammar and RFC 3339 times (from time.ts).
 *
 * Lines accumulate in an arena; take() hands over what was written since the last take() as a view
 * of the arena that is never written again (a new arena is started when one is full), so a writer
 * can keep it until its write completes.
 */
import { secondPrefix } from './time.js';

const ARENA_BYTES = 1 << 20;
/** Strings whose encoding is cached, at most; the cache restarts when full. */
const CACHED_STRINGS = 8192;

export class LineBuffer {
  private arena: Buffer;
  /** first byte not handed over yet */
  private start = 0;
  private pos = 0;
  private readonly quoted = new Map<string, Uint8Array>();
  private readonly objects = new WeakMap<object, Uint8Array>();

  constructor(private readonly arenaBytes = ARENA_BYTES) {
    this.arena = Buffer.allocUnsafe(arenaBytes);
  }

  /** Bytes written since the last take(). */
  get length(): number {
    return this.pos - this.start;
  }

  /** What was written since the last take(); those bytes are never touched again. */
  take(): Buffer {
    const out = this.arena.subarray(this.start, this.pos);
    this.start = this.pos;
    return out;
  }

  /** The same as a string, for callers that want one (the arena space is reused). */
  takeString(): string {
    const s = this.arena.toString('utf8', this.start, this.pos);
    this.pos = this.start;
    return s;
  }

  /** Room for n more bytes: a full arena is replaced, the pending bytes moved to the new one. */
  private room(n: number): void {
    if (this.pos + n <= this.arena.length) return;
    const pending = this.pos - this.start;
    const next = Buffer.allocUnsafe(Math.max(this.arenaBytes, 2 * (pending + n)));
    this.arena.copy(next, 0, this.start, this.pos);
    this.arena = next;
    this.start = 0;
    this.pos = pending;
  }

  /** Text known to be ASCII that needs no escaping: JSON punctuation, keys, times. */
  ascii(s: string): void {
    const n = s.length;
    this.room(n);
    const a = this.arena;
    let p = this.pos;
    for (let i = 0; i < n; i++) a[p++] = s.charCodeAt(i);
    this.pos = p;
  }

  byte(c: number): void {
    this.room(1);
    this.arena[this.pos++] = c;
  }

  /** Already encoded bytes. */
  bytes(b: Uint8Array): void {
    const n = b.length;
    this.room(n);
    if (n > 64) {
      this.arena.set(b, this.pos);
      this.pos += n;
      return;
    }
    const a = this.arena;
    let p = this.pos;
    for (let i = 0; i < n; i++) a[p++] = b[i];
    this.pos = p;
  }

  /** Any text as UTF-8, unquoted (e.g. a JSON document made elsewhere). */
  utf8(s: string): void {
    this.room(s.length * 3);
    this.pos += this.arena.write(s, this.pos, 'utf8');
  }

  /** A JSON number, as JSON.stringify writes it. */
  number(n: number): void {
    if (Number.isSafeInteger(n)) this.integer(n);
    else if (Number.isFinite(n)) this.ascii(String(n));
    else this.ascii('null');
  }

  /** A safe integer, digit by digit. */
  integer(n: number): void {
    this.room(17);
    const a = this.arena;
    if (n < 0) {
      a[this.pos++] = 0x2d;
      n = -n;
    }
    if (n < 10) {
      a[this.pos++] = 0x30 + n;
      return;
    }
    let digits = 1;
    for (let m = n; m >= 10; m = Math.floor(m / 10)) digits++;
    let p = this.pos + digits;
    this.pos = p;
    while (n >= 10) {
      const q = Math.floor(n / 10);
      a[--p] = 0x30 + (n - q * 10);
      n = q;
    }
    a[--p] = 0x30 + n;
  }

  boolean(b: boolean): void {
    this.ascii(b ? 'true' : 'false');
  }

  /** A JSON string. Its encoding is cached: use for strings that repeat (addresses, names). */
  string(s: string): void {
    let b = this.quoted.get(s);
    if (b === undefined) {
      b = Buffer.from(JSON.stringify(s));
      if (this.quoted.size >= CACHED_STRINGS) this.quoted.clear();
      this.quoted.set(s, b);
    }
    this.bytes(b);
  }

  /** A JSON string seen once (a message): not cached. */
  stringOnce(s: string): void {
    this.utf8(JSON.stringify(s));
  }

  /** An object as JSON.stringify writes it, cached by identity: for shared, unchanging objects. */
  object(o: object): void {
    let b = this.objects.get(o);
    if (b === undefined) {
      b = Buffer.from(JSON.stringify(o));
      this.objects.set(o, b);
    }
    this.bytes(b);
  }

  /**
   * A number of seconds that is a whole number of µs (a duration between two µs times), as
   * JSON.stringify writes it, digit by digit: String() of a fraction searches for its shortest
   * digits (~130 ns). Below 2^32 s the six decimals, trailing zeros dropped, are those shortest
   * digits: any shorter decimal is ≥ 1 µs away, more than half a unit in the last place of such a
   * double, so it would read back as another number. Anything else goes to number().
   */
  micro(n: number): void {
    const m = Math.round(n * 1e6);
    if (!(m >= 1 && m < 4_294_967_296e6 && m / 1e6 === n)) {
      this.number(n);
      return;
    }
    const whole = Math.floor(m / 1e6);
    let frac = m - whole * 1e6;
    this.integer(whole);
    if (frac === 0) return;
    let digits = 6;
    while (frac % 10 === 0) {
      frac /= 10;
      digits--;
    }
    this.room(digits + 1);
    const a = this.arena;
    a[this.pos] = 0x2e;
    let p = this.pos + digits;
    this.pos = p + 1;
    for (let i = 0; i < digits; i++) {
      const q = Math.floor(frac / 10);
      a[p--] = 0x30 + (frac - q * 10);
      frac = q;
    }
  }

  /** Where what is written next begins, for since() (still right when the arena is replaced). */
  mark(): number {
    return this.pos - this.start;
  }

  /** A copy of what was written since mark(), to be written again with bytes(); no take() or
   * takeString() may come between the two (what they hand over is no longer here). */
  since(mark: number): Uint8Array {
    return new Uint8Array(this.arena.subarray(this.start + mark, this.pos));
  }

  /** RFC 3339 of µs since epoch, as time.ts formatMicros, without quotes. */
  micros(us: number): void {
    const whole = Math.floor(us);
    const second = Math.floor(whole / 1e6);
    this.ascii(secondPrefix(second));
    this.fraction(whole - second * 1e6, 6);
  }

  /** RFC 3339 of ns since epoch, as time.ts formatNanos, without quotes. */
  nanos(ns: number): void {
    const second = Math.floor(ns / 1e9);
    this.ascii(secondPrefix(second));
    this.fraction(Math.max(0, Math.min(999_999_999, Math.round(ns - second * 1e9))), 9);
  }

  /** ".ffffff" (digits places, zero padded) and "Z" */
  private fraction(f: number, digits: number): void {
    this.room(digits + 2);
    const a = this.arena;
    a[this.pos] = 0x2e;
    let p = this.pos + digits;
    a[p + 1] = 0x5a;
    this.pos = p + 2;
    for (let i = 0; i < digits; i++) {
      const q = Math.floor(f / 10);
      a[p--] = 0x30 + (f - q * 10);
      f = q;
    }
  }
}
