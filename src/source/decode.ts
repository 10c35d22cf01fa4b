/**
 * Batch of native records → events. The record layout comes from the addon (native/conntrack/record.h);
 * this file only knows field names.
 */
import type { ConntrackEvent, ConntrackEventKind, NativeOwner, SourceEvent, Unattributed } from './types.js';
import type { RecordLayout } from './native.js';
import { ipv4, ipv6 } from './address.js';
import { protoName, statusNames, tcpStateName } from './names.js';

// native/conntrack/record.h: RecordKind and Present
export const KIND = { new: 1, update: 2, destroy: 3, snapshot: 4, overflow: 5, snapshotDone: 6, end: 7, dumpError: 8 } as const;
export const HAS = {
  ports: 1 << 0, icmp: 1 << 1, tcpState: 1 << 2, status: 1 << 3, mark: 1 << 4, zone: 1 << 5,
  timeout: 1 << 6, counters: 1 << 7, tsStart: 1 << 8, tsStop: 1 << 9, secmark: 1 << 10, reply: 1 << 11,
  attribution: 1 << 12, owner: 1 << 13,
} as const;
// native/conntrack/record.h: Unattributed, OwnerSide; attribution/bpf/stamp.h: stamp_via (7: sock_diag)
export const UNATTRIBUTED: readonly (Unattributed | undefined)[] = [undefined, 'not-local', 'unsupported', 'no-stamp', 'preexisting', 'ambiguous', 'no-hook', 'gone', 'no-pid', 'denied', 'shared', 'late', 'overload'];
/** Every reason the reader can give for a NEW without an owner (eBPF mode), in the record's order. */
export const UNATTRIBUTED_REASONS = UNATTRIBUTED.filter((r): r is Unattributed => r !== undefined);
const VIA: NativeOwner['via'][] = ['connect', 'connect', 'sendto', 'send', 'listen', 'bind', 'seeded', 'sockdiag'];
const AF_INET = 2;
const KIND_NAMES: Record<number, ConntrackEventKind> = { 1: 'new', 2: 'update', 3: 'destroy', 4: 'snapshot' };
const TWO32 = 4294967296;
/** the status of a record without one (the shared, frozen empty list) */
const NO_STATUS = statusNames(0);

export interface DecodedBatch {
  events: SourceEvent[];
  /** the reader stopped: this was the last batch */
  end: boolean;
  /** errno of a failed table dump, if one failed in this batch */
  dumpErrors: number[];
}

const UTF8 = new TextDecoder('utf-8');

export function makeDecoder(layout: RecordLayout, netns?: string) {
  const L = layout;
  const size = L.size;
  /** every event's netns ('' as none, as the overflow and dump records below read it) */
  const eventNetns = netns || undefined;
  /** the last owner name decoded, NUL-padded to 17 bytes (so a 16-byte name ends in a 0 too) */
  const lastComm = new Uint8Array(17);
  let lastText = '';

  return function decodeBatch(buffer: ArrayBuffer): DecodedBatch {
    const bytes = new Uint8Array(buffer);
    const view = new DataView(buffer);
    const count = Math.floor(buffer.byteLength / size);
    const events: SourceEvent[] = [];
    const dumpErrors: number[] = [];
    let end = false;
    const u64 = (at: number) => view.getUint32(at, true) + view.getUint32(at + 4, true) * TWO32;
    // The task's name as the kernel holds it: bytes, read as UTF-8 the way /proc/PID/stat is
    // (names are set with prctl/exec and may be anything; a cut multi-byte tail becomes U+FFFD).
    // Records of one batch mostly share an owner: the previous record's name is kept with its
    // bytes, and taken again when they match (no string made per record).
    const comm = (at: number) => {
      let n = 0;
      let same = true;
      for (; n < 16 && bytes[at + n] !== 0; n++) if (bytes[at + n] !== lastComm[n]) same = false;
      if (same && lastComm[n] === 0) return lastText;
      let ascii = true;
      for (let k = 0; k < n; k++) if (bytes[at + k] > 0x7f) ascii = false;
      let text = '';
      if (!ascii) text = UTF8.decode(bytes.subarray(at, at + n));
      else for (let k = 0; k < n; k++) text += String.fromCharCode(bytes[at + k]);
      lastComm.fill(0);
      lastComm.set(bytes.subarray(at, at + n));
      lastText = text;
      return text;
    };

    for (let i = 0; i < count; i++) {
      const base = i * size;
      const kind = bytes[base + L.kind];
      const time = u64(base + L.time_us);
      if (kind === KIND.overflow) {
        events.push({ event: 'overflow', time, overflows: view.getUint32(base + L.id, true), ...(netns ? { netns } : {}) });
        continue;
      }
      if (kind === KIND.snapshotDone) {
        // status: the errno of a dump that failed part way (0: complete)
        const failed = view.getUint32(base + L.status, true);
        events.push({ event: 'snapshot_done', time, entries: view.getUint32(base + L.id, true), ...(failed ? { failed } : {}), ...(netns ? { netns } : {}) });
        continue;
      }
      if (kind === KIND.end) { end = true; continue; }
      if (kind === KIND.dumpError) { dumpErrors.push(view.getUint32(base + L.status, true)); continue; }
      const eventKind = KIND_NAMES[kind];
      if (eventKind === undefined) continue;

      const present = view.getUint32(base + L.present, true);
      const v4 = bytes[base + L.family] === AF_INET;
      const addr = v4 ? ipv4 : ipv6;
      const protoNum = bytes[base + L.proto];
      // Every field in the literal, those the record lacks as undefined: one object of one shape
      // for every event, NEW with its owner or DESTROY without, allocated whole (fields added
      // one by one went to a property array grown twice per event: a third of the bytes the
      // decoder allocated, bench/README.md "One shape per event"), and one shape for the code
      // that reads them.
      const ev: ConntrackEvent = {
        event: eventKind,
        time,
        id: view.getUint32(base + L.id, true),
        family: v4 ? 'ipv4' : 'ipv6',
        proto: protoName(protoNum),
        src: addr(bytes, base + L.src),
        dst: addr(bytes, base + L.dst),
        sport: undefined,
        dport: undefined,
        icmp: undefined,
        reply: { src: '', dst: '', sport: undefined, dport: undefined, packets: undefined, bytes: undefined },
        state: undefined,
        status: NO_STATUS,
        mark: undefined,
        zone: undefined,
        timeout: undefined,
        orig: undefined,
        start: undefined,
        end: undefined,
        netns: eventNetns,
        owner: undefined,
        process: undefined,
        unattributed: undefined,
      };
      if (present & HAS.ports) {
        ev.sport = view.getUint16(base + L.sport, true);
        ev.dport = view.getUint16(base + L.dport, true);
      }
      if (present & HAS.icmp) {
        ev.icmp = { type: bytes[base + L.icmp_type], code: bytes[base + L.icmp_code], id: view.getUint16(base + L.icmp_id, true) };
      }
      const reply = ev.reply;
      if (present & HAS.reply) {
        reply.src = addr(bytes, base + L.reply_src);
        reply.dst = addr(bytes, base + L.reply_dst);
        if (present & HAS.ports) {
          reply.sport = view.getUint16(base + L.reply_sport, true);
          reply.dport = view.getUint16(base + L.reply_dport, true);
        }
      }
      if (present & HAS.tcpState) ev.state = tcpStateName(bytes[base + L.tcp_state]);
      if (present & HAS.status) ev.status = statusNames(view.getUint32(base + L.status, true));
      if (present & HAS.mark) ev.mark = view.getUint32(base + L.mark, true);
      if (present & HAS.zone) ev.zone = view.getUint16(base + L.zone, true);
      if (present & HAS.timeout) ev.timeout = view.getUint32(base + L.timeout, true);
      if (present & HAS.counters) {
        ev.orig = { packets: u64(base + L.orig_packets), bytes: u64(base + L.orig_bytes) };
        reply.packets = u64(base + L.reply_packets);
        reply.bytes = u64(base + L.reply_bytes);
      }
      if (present & HAS.tsStart) ev.start = u64(base + L.ts_start);
      if (present & HAS.tsStop) ev.end = u64(base + L.ts_stop);
      if (present & HAS.owner) {
        ev.owner = {
          pid: view.getUint32(base + L.owner_pid, true),
          tid: view.getUint32(base + L.owner_tid, true),
          uid: view.getUint32(base + L.owner_uid, true),
          comm: comm(base + L.owner_comm),
          cgroupId: u64(base + L.owner_cgroup),
          startNs: u64(base + L.owner_start_ns),
          side: bytes[base + L.owner_side] === 2 ? 'listener' : 'origin',
          via: VIA[bytes[base + L.owner_via]] ?? 'connect',
          ageUs: view.getUint32(base + L.owner_age_us, true),
        };
      } else if (present & HAS.attribution) {
        ev.unattributed = UNATTRIBUTED[bytes[base + L.unattributed]] ?? 'no-stamp';
      }
      events.push(ev);
    }
    return { events, end, dumpErrors };
  };
}
