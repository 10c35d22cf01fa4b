// The fixed-size binary record the reader thread writes for each event. A batch is an array of
// these; JavaScript decodes it (src/source/decode.ts) using the offsets exported by the addon, so
// the layout lives here only. Fixed size keeps the reader thread free of allocation and lets one
// copy move a whole batch across the boundary.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ctwatch {

enum RecordKind : uint8_t {
  kNew = 1,
  kUpdate = 2,
  kDestroy = 3,
  kSnapshot = 4,      // an entry from a table dump
  kOverflow = 5,      // the socket overflowed (ENOBUFS): the kernel dropped events for us
  kSnapshotDone = 6,  // end of a table dump; `id` holds the number of entries dumped
  kEnd = 7,           // the reader stopped; nothing follows
  kDumpError = 8,     // a dump failed; `status` holds the errno
};

// Bits of Record::present: "absent" is not zero (a counter the kernel did not send is unknown).
enum Present : uint32_t {
  kHasPorts = 1u << 0,
  kHasIcmp = 1u << 1,
  kHasTcpState = 1u << 2,
  kHasStatus = 1u << 3,
  kHasMark = 1u << 4,
  kHasZone = 1u << 5,
  kHasTimeout = 1u << 6,
  kHasCounters = 1u << 7,
  kHasTimestampStart = 1u << 8,
  kHasTimestampStop = 1u << 9,
  kHasSecmark = 1u << 10,
  kHasReplyTuple = 1u << 11,
};

#pragma pack(push, 1)
struct Record {
  uint8_t kind;
  uint8_t family;  // AF_INET / AF_INET6
  uint8_t proto;   // IPPROTO_*
  uint8_t tcp_state;
  uint32_t present;
  uint32_t id;
  uint32_t status;
  uint32_t mark;
  uint32_t timeout;
  uint16_t zone;
  uint16_t sport, dport;            // original direction, host order
  uint16_t reply_sport, reply_dport;
  uint8_t icmp_type, icmp_code;
  uint16_t icmp_id;
  uint8_t pad0[2];
  uint8_t src[16], dst[16];              // original direction
  uint8_t reply_src[16], reply_dst[16];  // reply direction
  uint64_t orig_packets, orig_bytes;
  uint64_t reply_packets, reply_bytes;
  uint64_t ts_start, ts_stop;  // ns since epoch, kernel clock
  uint64_t time_us;            // when the reader thread read it, µs since epoch
  uint32_t secmark;
  uint8_t pad1[4];
};
#pragma pack(pop)

static_assert(sizeof(Record) == 168, "record layout changed: update the JS decoder's expectations");

}  // namespace ctwatch
