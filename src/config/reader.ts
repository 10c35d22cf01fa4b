/**
 * The one reader for ctwatch's YAML files (the rules file, the sinks file) and its one error model:
 * every problem in a file is collected, each as `file:line: field: reason`, and the file is refused
 * as a whole, because a half-loaded configuration fails silently at 3 a.m. Unknown keys are errors
 * with a did-you-mean, since a typo (`thresold`, `tokenfile`) must not fall back to a default.
 *
 * Files are read through readConfigFile: a bounded read of a regular file, so a FIFO, a device or
 * a file the size of a disk cannot hang the daemon or fill its memory (at start-up, or at SIGHUP on
 * the event loop). Values are read with the grammar of ./units.ts.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { Document, isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, visit, type Node as YamlNode, type Pair, type YAMLMap } from 'yaml';
import { CtwatchError, EXIT } from '../util/errors.js';
import { formatSizeValue, parseDuration, parseSize, ValueError, type Range } from './units.js';

export interface ConfigIssue {
  /** 1-based; 0 when the problem has no place in the file (or the input was not a file) */
  line: number;
  /** dotted path, e.g. "rules.table_fill.threshold", "sinks[2].url"; '' for the file itself */
  field: string;
  reason: string;
}

/**
 * One problem as a line: `file:line: field: reason`, leaving out what is unknown. A problem with
 * the file itself (no line, no field: missing, not a regular file) names the file in its reason.
 */
export function issueLine(file: string | undefined, i: ConfigIssue): string {
  if (i.line === 0 && i.field === '') return i.reason;
  const where = file ? (i.line > 0 ? `${file}:${i.line}: ` : `${file}: `) : '';
  return `${where}${i.field ? `${i.field}: ` : ''}${i.reason}`;
}

/**
 * A refused configuration. `message` lists every problem, one per line; `summary` is the one line
 * a command prints (the first problem, and how many more there are).
 */
export class ConfigError extends CtwatchError {
  /** the first problem's place */
  readonly line: number;
  readonly field: string;
  constructor(
    code: string,
    /** the file as named by the operator; '' when the input was not a file */
    readonly file: string,
    /** every problem found, in file order */
    readonly issues: ConfigIssue[],
    exitCode: number = EXIT.config,
  ) {
    super(code, issues.map((i) => issueLine(file || undefined, i)).join('\n'), { exitCode });
    this.name = 'ConfigError';
    this.line = issues[0]?.line ?? 0;
    this.field = issues[0]?.field ?? '';
  }

  get summary(): string {
    const first = this.message.split('\n')[0];
    const more = this.issues.length - 1;
    return more > 0 ? `${first} (and ${more} more problem${more > 1 ? 's' : ''} in this file)` : first;
  }
}

/** Config files are small; anything larger is the wrong file, or an attack on the daemon's memory. */
export const MAX_CONFIG_BYTES = 256 << 10;

/**
 * Reads a config file: a regular file of at most `maxBytes`, opened without blocking (a FIFO with
 * no writer would otherwise hang the open). `what` names it in errors ("rules file"); `code` is the
 * error code. Missing, unreadable or not a regular file: exit 66; too large: exit 78.
 */
export async function readConfigFile(path: string, what: string, code: string, maxBytes = MAX_CONFIG_BYTES): Promise<string> {
  const refuse = (reason: string, exitCode: number): ConfigError =>
    new ConfigError(code, path, [{ line: 0, field: '', reason }], exitCode);
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const e = (err as NodeJS.ErrnoException).code ?? String(err);
    const why = e === 'ENOENT' ? `${what} ${path} does not exist` : e === 'EACCES' ? `${what} ${path} is not readable by this user` : `${what} ${path} cannot be opened`;
    throw refuse(`${why} (cannot read: ${e})`, EXIT.noInput);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : 'not a file';
      throw refuse(`${what} ${path} is ${kind}, not a regular file`, EXIT.noInput);
    }
    const buf = Buffer.alloc(Math.min(maxBytes, st.size) + 1);
    let got = 0;
    // read to the bound, not to st.size: the file may grow while we read it
    for (;;) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
      if (got === buf.length) {
        if (got > maxBytes) {
          throw refuse(`${what} ${path} is larger than ${formatSizeValue(maxBytes)}: is it the right file?`, EXIT.config);
        }
        break;
      }
    }
    return buf.toString('utf8', 0, got);
  } finally {
    await fh.close();
  }
}

/** A YAML text, parsed for reading: its root node, and the YAML syntax problems as issues. */
export interface ConfigDocument {
  root: unknown;
  lines: LineCounter;
  issues: ConfigIssue[];
}

export function parseConfigText(text: string): ConfigDocument {
  const lines = new LineCounter();
  // Duplicate keys are found below with one set per map: the library's own check compares every
  // key with every other (a 256 KiB file of one-line rules took 1.5 s, on the event loop at SIGHUP).
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: true });
  const issues: ConfigIssue[] = doc.errors.map((e) => ({
    line: e.linePos?.[0].line ?? 0,
    field: 'yaml',
    // the library appends "at line N, column M:" and a code excerpt; our prefix already says where
    reason: e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, ''),
  }));
  // Aliases (*name) are refused: nothing here needs them, and a few nested ones expand into a
  // document far larger than the file ("billion laughs").
  visit(doc, {
    Alias(_, node) {
      const at = node.range ? lines.linePos(node.range[0]).line : 0;
      issues.push({ line: at, field: 'yaml', reason: `aliases (*${node.source}) are not supported: write the value out` });
    },
    Map(_, map) {
      const seen = new Set<unknown>();
      for (const pair of map.items) {
        const key = isScalar(pair.key) ? pair.key.value : pair.key;
        if (!seen.has(key)) {
          seen.add(key);
          continue;
        }
        const range = isScalar(pair.key) ? pair.key.range : undefined;
        issues.push({ line: range ? lines.linePos(range[0]).line : 0, field: 'yaml', reason: 'Map keys must be unique' });
      }
    },
  });
  return { root: doc.contents, lines, issues };
}

function isEmpty(node: unknown): boolean {
  return node === null || node === undefined || (isScalar(node) && node.value === null);
}

/**
 * Walks one document, collecting issues. `lines` is absent when the input did not come from a file
 * (an object built in code): the problems then have no line.
 */
export class ConfigReader {
  readonly issues: ConfigIssue[] = [];
  constructor(private readonly lines?: LineCounter) {}

  lineOf(node: unknown): number {
    const range = (node as YamlNode | null)?.range;
    return range && this.lines ? this.lines.linePos(range[0]).line : 0;
  }

  fail(node: unknown, field: string, reason: string): undefined {
    this.issues.push({ line: this.lineOf(node), field, reason });
    return undefined;
  }

  /** The fields of a mapping node at `path`; undefined (and an issue) when it is not a mapping. */
  fields(node: unknown, path: string, what = 'a mapping'): Fields | undefined {
    if (!isMap(node)) return this.fail(node, path, `expected ${what}`);
    return new Fields(this, node, path);
  }

  /** A list node's items, or undefined (and an issue) when it is not a list. */
  list(node: unknown, path: string, what = 'a list'): unknown[] | undefined {
    if (!isSeq(node)) return this.fail(node, path, `expected ${what}`);
    return node.items;
  }

  /** The issues in file order (problems without a line keep the order they were found in). */
  sorted(): ConfigIssue[] {
    return this.issues
      .map((i, n) => [i, n] as const)
      .sort((a, b) => (a[0].line || Infinity) - (b[0].line || Infinity) || a[1] - b[1])
      .map(([i]) => i);
  }
}

/** A value built in code, as nodes for the reader (without lines). */
export function toNode(value: unknown): unknown {
  return isNode(value) ? value : new Document(value).contents;
}

/**
 * The fields of one mapping. Each reader reports its own problem and returns undefined (or the
 * default); `unknown()` at the end reports every key nobody asked for, with the nearest known one.
 */
export class Fields {
  private readonly pairs = new Map<string, Pair<unknown, unknown>>();
  private readonly asked = new Set<string>();
  /** "is required" problems, dropped when a misspelt key explains them (`tokenfile`) */
  private readonly missingKeys = new Map<string, ConfigIssue>();

  constructor(
    readonly reader: ConfigReader,
    readonly node: YAMLMap,
    /** dotted path of this mapping, '' for the top of the file */
    readonly path: string,
  ) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      this.pairs.set(key, pair);
    }
  }

  /** A required key that is absent. */
  missing(key: string, reason = 'is required'): undefined {
    this.issue(key, reason);
    this.missingKeys.set(key, this.reader.issues[this.reader.issues.length - 1]);
    return undefined;
  }

  /** The dotted path of one of this mapping's fields. */
  at(key: string): string {
    return key === '' ? this.path : this.path ? `${this.path}.${key}` : key;
  }

  keys(): string[] {
    return [...this.pairs.keys()];
  }

  has(key: string): boolean {
    this.asked.add(key);
    return this.pairs.has(key) && !isEmpty(this.pairs.get(key)!.value);
  }

  /** The value node of a key (undefined when absent or null). */
  value(key: string): unknown {
    this.asked.add(key);
    const v = this.pairs.get(key)?.value;
    return isEmpty(v) ? undefined : v;
  }

  /** The key node, for problems about the key itself. */
  keyNode(key: string): unknown {
    return this.pairs.get(key)?.key;
  }

  /** A problem with one field ('' for the mapping itself). */
  issue(key: string, reason: string): undefined {
    const at = key === '' ? this.node : (this.pairs.get(key)?.value ?? this.pairs.get(key)?.key ?? this.node);
    return this.reader.fail(at, this.at(key), reason);
  }

  /** The value as plain data (a scalar's value, a list or mapping as JS), undefined when absent. */
  raw(key: string): unknown {
    const v = this.value(key);
    if (v === undefined) return undefined;
    return isScalar(v) ? v.value : (v as { toJSON(): unknown }).toJSON();
  }

  private scalar(key: string): unknown {
    const v = this.value(key);
    return isScalar(v) ? v.value : v === undefined ? undefined : v;
  }

  str(key: string, required = false): string | undefined {
    const v = this.scalar(key);
    if (v === undefined) return required ? this.missing(key) : undefined;
    if (typeof v === 'string' && v.length > 0) return v;
    return this.issue(key, 'expected a non-empty string');
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.scalar(key);
    if (v === undefined) return dflt;
    if (typeof v === 'boolean') return v;
    return this.issue(key, 'expected true or false') ?? dflt;
  }

  /** A number within [min, max]; integers only when `integer`. */
  number(key: string, min: number, max = Infinity, integer = false, required = false): number | undefined {
    const v = this.scalar(key);
    if (v === undefined) return required ? this.missing(key) : undefined;
    const what = integer ? 'a whole number' : 'a number';
    if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
      return this.issue(key, `expected ${what}${max < Infinity ? ` from ${min} to ${max}` : ''}`);
    }
    if (v < min || v > max) return this.issue(key, `${v} is out of range: use ${max < Infinity ? `${min} to ${max}` : `at least ${min}`}`);
    return v;
  }

  int(key: string, min: number, max: number, required = false): number | undefined {
    return this.number(key, min, max, true, required);
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], dflt?: T): T | undefined {
    const v = this.scalar(key);
    if (v === undefined) return dflt;
    if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
    const near = typeof v === 'string' ? closest(v, allowed) : undefined;
    return this.issue(key, `expected one of ${allowed.join(', ')}${near ? ` (did you mean ${near}?)` : ''}`) ?? dflt;
  }

  /** A duration in seconds (./units.ts grammar). */
  seconds(key: string, range: Range = {}): number | undefined {
    return this.grammar(key, 'a duration: write e.g. 500ms, 10s, 5m, 1h30m', (v) => parseDuration(v, range));
  }

  /** A duration in milliseconds. */
  duration(key: string, range: Range = {}): number | undefined {
    const s = this.seconds(key, range);
    return s === undefined ? undefined : Math.round(s * 1000);
  }

  /** A size in bytes (./units.ts grammar); more than 0 unless the range says otherwise. */
  size(key: string, range: Range = { positive: true }): number | undefined {
    return this.grammar(key, 'a size: write e.g. 64M, 512K or 1G', (v) => parseSize(v, range));
  }

  private grammar(key: string, what: string, read: (v: string | number) => number): number | undefined {
    const v = this.scalar(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string' && typeof v !== 'number') return this.issue(key, `expected ${what}`);
    try {
      return read(v);
    } catch (err) {
      if (!(err instanceof ValueError)) throw err;
      return this.issue(key, err.reason);
    }
  }

  /** A nested mapping. */
  obj(key: string): Fields | undefined {
    const v = this.value(key);
    if (v === undefined) return undefined;
    return this.reader.fields(v, this.at(key));
  }

  /** A list node's items, or undefined (and an issue) when it is not a list. */
  list(key: string, what = 'a list'): unknown[] | undefined {
    const v = this.value(key);
    if (v === undefined) return undefined;
    if (!isSeq(v)) return this.issue(key, `expected ${what}`);
    return v.items;
  }

  /** A list of strings (numbers taken as written: YAML reads an argv entry such as 30 as a number). */
  stringList(key: string, allowSingle = false): string[] | undefined {
    const v = this.value(key);
    if (v === undefined) return undefined;
    if (allowSingle && isScalar(v)) {
      const s = this.str(key);
      return s === undefined ? undefined : [s];
    }
    if (!isSeq(v)) return this.issue(key, 'expected a list of strings');
    const out: string[] = [];
    v.items.forEach((item, i) => {
      const x = isScalar(item) ? item.value : undefined;
      if ((typeof x === 'string' && x !== '') || typeof x === 'number') out.push(String(x));
      else this.reader.fail(item, `${this.at(key)}[${i}]`, 'expected a non-empty string');
    });
    return out;
  }

  /** A mapping of strings (a number is taken as its text). */
  stringMap(key: string): Record<string, string> | undefined {
    const m = this.obj(key);
    if (!m) return undefined;
    const out: Record<string, string> = {};
    for (const k of m.keys()) {
      const v = m.scalar(k);
      if (typeof v === 'string' || typeof v === 'number') out[k] = String(v);
      else m.issue(k, 'expected a string');
    }
    return out;
  }

  /**
   * Reports every key that nobody asked for (or outside `allowed`, when given), with the nearest
   * known key. `context` is added to the reason, e.g. "for table_fill".
   */
  unknown(context = '', allowed?: readonly string[]): void {
    const known = allowed ?? [...this.asked];
    for (const [key, pair] of this.pairs) {
      if (allowed ? allowed.includes(key) : this.asked.has(key)) continue;
      const near = closest(key, known);
      const explained = near === undefined ? undefined : this.missingKeys.get(near);
      if (explained) this.reader.issues.splice(this.reader.issues.indexOf(explained), 1);
      this.reader.fail(pair.key, this.at(key), `unknown field${context ? ` ${context}` : ''}${near ? ` (did you mean ${near}?)` : ''}`);
    }
  }
}

/** The known word within two edits of a typo, so "thresold" points at "threshold". */
export function closest(word: string, options: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const o of options) {
    const d = editDistance(word, o);
    if (d < bestD) {
      best = o;
      bestD = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
