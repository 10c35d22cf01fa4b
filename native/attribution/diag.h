// sock_diag requests for one socket by exact tuple, and the netlink sockets that carry them:
// the parts of the fallback's lookups that know nothing about processes.
#pragma once
#include <linux/inet_diag.h>
#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"

namespace ctwatch {

// One socket to look up: ours is `local`; `remote` unset with `listener`.
struct DiagRequest {
  uint8_t family = 0;  // AF_INET / AF_INET6; 0: do not send (bad line, or answered already)
  uint8_t proto = 0;   // IPPROTO_TCP / IPPROTO_UDP
  bool listener = false;
  uint8_t local[16] = {};
  uint8_t remote[16] = {};
  uint16_t lport = 0;
  uint16_t rport = 0;
};

// A flow's identity as the sock_diag join keys it: the original direction, ours first.
struct TupleKey {
  uint8_t family = 0, proto = 0;
  uint16_t lport = 0, rport = 0;
  uint8_t local[16] = {}, remote[16] = {};
  bool operator==(const TupleKey& o) const { return memcmp(this, &o, sizeof(*this)) == 0; }
};
static_assert(sizeof(TupleKey) == 38, "TupleKey must have no padding (it is hashed and compared as bytes)");

struct TupleHash {
  size_t operator()(const TupleKey& k) const {
    // FNV-1a over the bytes: the key is small and fixed.
    uint64_t h = 1469598103934665603ull;
    const auto* b = reinterpret_cast<const uint8_t*>(&k);
    for (size_t i = 0; i < sizeof(k); i++) h = (h ^ b[i]) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

inline TupleKey KeyOf(const DiagRequest& r) {
  TupleKey k;
  k.family = r.family;
  k.proto = r.proto;
  k.lport = r.lport;
  k.rport = r.rport;
  memcpy(k.local, r.local, 16);
  memcpy(k.remote, r.remote, 16);
  return k;
}

inline TupleKey PairOf(TupleKey k) {
  k.lport = 0;
  return k;
}

// Per-request result words: errno (0 = found), socket inode (0 = no struct socket: TIME_WAIT,
// NEW_SYN_RECV, or accepted by the kernel but not yet by the process), uid, TCP state (TCP_* from
// include/net/tcp_states.h; UDP reports 1 connected / 7 unconnected), remote port the kernel
// returned (0 for a listener or an unconnected UDP socket), the local port.
constexpr size_t kResultWidth = 6;

// Requests per sendmsg. Each answer is one skb in our receive queue, charged by its truesize
// (~1-2 KiB); 128 answers fit easily in the 4 MiB we ask for, and the kernel handles every request
// of a send synchronously inside sendmsg(), so after it returns all answers are already queued.
constexpr size_t kChunk = 128;
constexpr int kRcvbuf = 4 << 20;

OpenError Fail(const char* code, int err, const char* syscall, std::string message);
uint64_t ThreadCpuUs();
uint64_t MonotonicUs();
OpenError OpenNetlink(int protocol, const char* what, const std::string& where, int* out);
// Builds one exact-match SOCK_DIAG_BY_FAMILY request (no NLM_F_DUMP: the kernel answers with the
// one socket or an NLMSG_ERROR, ENOENT when there is none).
void PutDiagRequest(char* at, const DiagRequest& r, uint32_t seq);
constexpr size_t kReqSpace = NLMSG_SPACE(sizeof(inet_diag_req_v2));

struct DiagCounters {
  uint64_t found = 0, not_found = 0, retried = 0, sends = 0;
};
// Looks every request up on `fd` (NETLINK_SOCK_DIAG, opened in the namespace), kResultWidth
// words per request in `out`, whose first word the caller sets to EAGAIN (a request with family 0
// is skipped). Answers lost to a full receive queue are asked once more.
void DiagLookupMany(int fd, const std::vector<DiagRequest>& reqs, uint32_t* out, DiagCounters* c);

}  // namespace ctwatch
