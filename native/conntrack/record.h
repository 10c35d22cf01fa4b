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
  // Process attribution ran for this record (NEW and snapshot records, when it is on): `unattributed`
  // says why no owner is known, unless kHasOwner is set too and the owner_* fields name it.
  kHasAttribution = 1u << 12,
  kHasOwner = 1u << 13,
};

// Why a record's owner is not known (Record::unattributed). src/process/owner.ts has the names.
enum Unattributed : uint8_t {
  kAttributed = 0,
  kNotLocal = 1,     // neither end is an address of the namespace, and no local socket stamped it
  kUnsupported = 2,  // no socket to own it (ICMP, GRE, SCTP...)
  kNoStamp = 3,      // a local flow whose socket was not seen used (made before attribution began,
                     // by the kernel itself, or evicted from the bounded map)
  kPreexisting = 4,  // a dumped entry older than attribution
  kAmbiguous = 5,    // the tuple changed hands while the event waited to be read: not guessed
  kNoHook = 6,       // no hook sees this kind of socket on this kernel (connected UDP without
                     // sock:sock_send_length)
  kGone = 7,         // (sock_diag) the socket was gone before it could be looked up
  kNoPid = 8,        // (sock_diag) a socket no readable process holds
  kDenied = 9,       // (sock_diag) /proc/PID/fd of its owner could not be read (capabilities)
  kShared = 10,      // (sock_diag) several processes hold the socket
  kLate = 11,        // (sock_diag) the owner was not found within the join window
  kOverload = 12,    // the join could not keep up and let the record go unattributed
};

// Which of the flow's sockets the owner holds (Record::owner_side).
enum OwnerSide : uint8_t {
  kSideOrigin = 1,    // the socket that started the flow (connect, sendto from here)
  kSideListener = 2,  // the listening / bound socket that accepted it
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
  // Process attribution (see Present): who used the flow's local socket, recorded when it was used.
  uint32_t owner_pid;         // the process (thread group id), as the host's /proc numbers it
  uint32_t owner_tid;         // the thread
  uint32_t owner_uid;
  uint32_t owner_age_us;      // how long before this record was read the socket was used (saturates)
  uint64_t owner_cgroup;      // cgroup v2 id (the inode of its directory under the cgroup2 mount)
  uint64_t owner_start_ns;    // process start, ns since boot: with the pid, the process's identity
  char owner_comm[16];        // NUL-terminated unless 16 long
  uint8_t owner_side;         // OwnerSide
  uint8_t owner_via;          // which hook saw it (stamp_via in attribution/bpf/stamp.h; 7: sock_diag)
  uint8_t unattributed;       // Unattributed
  uint8_t pad2[5];
};
#pragma pack(pop)

static_assert(sizeof(Record) == 224, "record layout changed: update the JS decoder's expectations");

}  // namespace ctwatch
