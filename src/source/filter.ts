/**
 * `--filter` expressions → a filter the kernel runs on the event socket (so unwanted events never
 * reach user space), plus, for what the kernel's conntrack filter cannot express (ports, zone), a
 * predicate applied in user space — said so in `notes`, never silently ignored.
 *
 *   proto tcp,udp          L4 protocols                                     kernel
 *   src 127.0.0.0/8,::1    original-direction source (CIDR, either family)   kernel
 *   dst 10.1.2.3           original-direction destination                    kernel
 *   state ESTABLISHED,...  TCP states (other protocols unaffected)           kernel
 *   mark 0x10/0xff         connection mark, value[/mask]                     kernel
 *   family ipv4|ipv6       keep one family only                              kernel
 *   sport|dport|port N,... ports (original direction)                        user space
 *   zone N,...             conntrack zone                                    user space
 *
 * Several --filter flags are ANDed; values in one flag are ORed. An address filter of one family
 * does not hide the other family: `--filter 'src 127.0.0.0/8'` still shows all IPv6 events. To see
 * one family only, add `--filter 'family ipv4'`.
 */
import { isIP } from 'node:net';
import { CtwatchError, EXIT } from '../util/errors.js';
import { protoNumber, TCP_STATES } from './names.js';
import type { ConntrackEvent } from './types.js';

export interface NativeFilter {
  protos: number[];
  states: [number, number][];
  src4: [number, number][];
  dst4: [number, number][];
  src6: number[][];
  dst6: number[][];
  marks: [number, number][];
}

export interface CompiledFilter {
  kernel?: NativeFilter;
  /** the kernel part evaluated here, for table dumps (the kernel filters only the event socket) */
  kernelMatch?: (e: ConntrackEvent) => boolean;
  user?: (e: ConntrackEvent) => boolean;
  notes: string[];
}

const bad = (expr: string, why: string) =>
  new CtwatchError('ERR_FILTER', `--filter '${expr}': ${why} (see 'ctwatch record --help' for the filter keys)`, { exitCode: EXIT.usage });

function v4(addr: string): number {
  return addr.split('.').reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
}

function v6words(addr: string): number[] {
  const [head, tail] = addr.includes('::') ? addr.split('::') : [addr, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const n = groups.map((g) => parseInt(g || '0', 16));
  return [0, 1, 2, 3].map((i) => ((n[2 * i] << 16) | n[2 * i + 1]) >>> 0);
}

function mask6(prefix: number): number[] {
  return [0, 1, 2, 3].map((i) => {
    const bits = Math.max(0, Math.min(32, prefix - 32 * i));
    return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  });
}

function cidr(expr: string, text: string): { family: 4 | 6; entry: [number, number] | number[] } {
  const parts = text.split('/');
  const [addr, len] = parts;
  const fam = isIP(addr);
  if (fam === 0 || addr.includes('.') && fam === 6 || parts.length > 2) throw bad(expr, `'${text}' is not an address or CIDR`);
  const max = fam === 4 ? 32 : 128;
  // An empty length ('10.0.0.0/') is a typo, not /0: read as 0 it would match every address.
  if (len !== undefined && !/^\d{1,3}$/.test(len)) throw bad(expr, `'${text}': write the prefix length after the slash, 0-${max} (e.g. ${addr}/${max === 32 ? 24 : 64})`);
  const prefix = len === undefined ? max : Number(len);
  if (prefix > max) throw bad(expr, `'${text}': prefix length must be 0-${max}`);
  if (fam === 4) {
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    return { family: 4, entry: [(v4(addr) & mask) >>> 0, mask] };
  }
  const m = mask6(prefix);
  return { family: 6, entry: [...v6words(addr).map((w, i) => (w & m[i]) >>> 0), ...m] };
}

/** A mark or mask: decimal or 0x hex, 0 to 0xffffffff; undefined for anything else. */
function markNumber(text: string): number | undefined {
  if (!/^(0x[0-9a-f]{1,8}|\d{1,10})$/i.test(text)) return undefined;
  const n = Number(text);
  return n <= 0xffffffff ? n : undefined;
}

const hex = (n: number) => `0x${n.toString(16)}`;

const ALL6 = [0, 0, 0, 0, 0, 0, 0, 0];
const ALL4: [number, number] = [0, 0];
const NONE6 = [0, 0, 0, 0, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff]; // only ::, never an event
const NONE4: [number, number] = [0, 0xffffffff]; // only 0.0.0.0

export function compileFilters(exprs: readonly string[]): CompiledFilter {
  const k: NativeFilter = { protos: [], states: [], src4: [], dst4: [], src6: [], dst6: [], marks: [] };
  const user: ((e: ConntrackEvent) => boolean)[] = [];
  const notes: string[] = [];
  let family: 4 | 6 | undefined;
  let kernelUsed = false;
  for (const raw of exprs) {
    const expr = raw.trim();
    const m = /^(\w+)\s*(?:=|\s)\s*(.+)$/.exec(expr);
    if (!m) throw bad(expr, 'write KEY VALUE[,VALUE...], e.g. proto tcp or dst 127.0.0.5/32');
    const key = m[1].toLowerCase();
    const values = m[2].split(',').map((v) => v.trim()).filter(Boolean);
    if (values.length === 0) throw bad(expr, 'no value');
    switch (key) {
      case 'proto':
        for (const v of values) {
          const n = protoNumber(v.toLowerCase());
          if (n === undefined) throw bad(expr, `unknown protocol '${v}'`);
          k.protos.push(n);
        }
        kernelUsed = true;
        break;
      case 'state':
        for (const v of values) {
          const code = (TCP_STATES as readonly string[]).indexOf(v.toUpperCase());
          if (code < 0) throw bad(expr, `unknown TCP state '${v}' (one of ${TCP_STATES.join(', ')})`);
          k.states.push([6, code]);
        }
        kernelUsed = true;
        break;
      case 'src':
      case 'dst':
        for (const v of values) {
          const c = cidr(expr, v);
          if (c.family === 4) (key === 'src' ? k.src4 : k.dst4).push(c.entry as [number, number]);
          else (key === 'src' ? k.src6 : k.dst6).push(c.entry as number[]);
        }
        kernelUsed = true;
        break;
      case 'mark':
        for (const v of values) {
          // Each part a number of its own: Number('') is 0, and a mask of 0 matches no mark at all.
          const parts = v.split('/');
          const nums = parts.map(markNumber);
          const [val, mask] = nums;
          if (parts.length > 2 || nums.some((n) => n === undefined)) throw bad(expr, `'${v}' is not a mark (value or value/mask, each 0 to 0xffffffff, e.g. 0x10/0xff)`);
          if (mask !== undefined && ((val! & ~mask) >>> 0) !== 0) throw bad(expr, `'${v}': the value has bits outside the mask, so no mark can match (did you mean ${hex((val! & mask) >>> 0)}/${hex(mask)}?)`);
          k.marks.push([val! >>> 0, (mask ?? 0xffffffff) >>> 0]);
        }
        kernelUsed = true;
        break;
      case 'family': {
        const f = values[0].toLowerCase();
        if (values.length !== 1 || (f !== 'ipv4' && f !== 'ipv6')) throw bad(expr, "family is ipv4 or ipv6");
        family = f === 'ipv4' ? 4 : 6;
        kernelUsed = true;
        break;
      }
      case 'sport':
      case 'dport':
      case 'port':
      case 'zone': {
        const nums = values.map((v) => (/^\d{1,5}$/.test(v) ? Number(v) : NaN));
        if (nums.some((n) => !(n <= 65535))) throw bad(expr, `${key} takes numbers 0-65535`);
        const set = new Set(nums);
        user.push(
          key === 'sport' ? (e) => e.sport !== undefined && set.has(e.sport)
            : key === 'dport' ? (e) => e.dport !== undefined && set.has(e.dport)
              : key === 'port' ? (e) => (e.sport !== undefined && set.has(e.sport)) || (e.dport !== undefined && set.has(e.dport))
                : (e) => set.has(e.zone ?? 0),
        );
        notes.push(`'${expr}' is applied in user space: the kernel's conntrack event filter has no ${key === 'zone' ? 'zones' : 'ports'}, so these events still cross into ctwatch and are dropped there`);
        break;
      }
      default:
        throw bad(expr, `unknown key '${key}' (proto, src, dst, state, mark, family, sport, dport, port, zone)`);
    }
  }
  // Address filters per family: a family with none in a direction passes in that direction,
  // unless `family` keeps the other one only (then this family matches nothing there).
  for (const dir of ['src', 'dst'] as const) {
    const f4 = dir === 'src' ? k.src4 : k.dst4;
    const f6 = dir === 'src' ? k.src6 : k.dst6;
    if (family === 4) {
      if (f4.length === 0) f4.push(ALL4);
      f6.length = 0;
      f6.push(NONE6);
    } else if (family === 6) {
      if (f6.length === 0) f6.push(ALL6);
      f4.length = 0;
      f4.push(NONE4);
    } else if (f4.length > 0 && f6.length === 0) f6.push(ALL6);
    else if (f6.length > 0 && f4.length === 0) f4.push(ALL4);
  }
  return {
    kernel: kernelUsed ? k : undefined,
    kernelMatch: kernelUsed ? (e) => matchKernel(k, e) : undefined,
    user: user.length ? (e) => user.every((p) => p(e)) : undefined,
    notes,
  };
}

function inList4(list: [number, number][], addr: string): boolean {
  const a = v4(addr);
  return list.some(([v, m]) => ((a & m) >>> 0) === v);
}

function inList6(list: number[][], addr: string): boolean {
  const w = v6words(addr);
  return list.some((f) => w.every((x, i) => ((x & f[4 + i]) >>> 0) === f[i]));
}

/** The same decision the kernel's filter makes, for dumped entries. */
function matchKernel(k: NativeFilter, e: ConntrackEvent): boolean {
  const proto = protoNumber(e.proto);
  if (k.protos.length && (proto === undefined || !k.protos.includes(proto))) return false;
  if (k.states.length && proto === 6) {
    const code = (TCP_STATES as readonly string[]).indexOf(e.state ?? '');
    if (!k.states.some(([, s]) => s === code)) return false;
  }
  if (k.marks.length && !k.marks.some(([v, m]) => (((e.mark ?? 0) & m) >>> 0) === v)) return false;
  const v6 = e.family === 'ipv6';
  for (const [list4, list6, addr] of [[k.src4, k.src6, e.src], [k.dst4, k.dst6, e.dst]] as const) {
    if (v6 ? list6.length && !inList6(list6, addr) : list4.length && !inList4(list4, addr)) return false;
  }
  return true;
}
