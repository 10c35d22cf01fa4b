#include "attribution/diag.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "netns.h"

#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

namespace ctwatch {

OpenError Fail(const char* code, int err, const char* syscall, std::string message) {
  return MakeOpenError(code, err, syscall, std::move(message));
}

uint64_t ThreadCpuUs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

uint64_t MonotonicUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

OpenError OpenNetlink(int protocol, const char* what, const std::string& where, int* out) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) {
    int err = errno;
    if (err == EPROTONOSUPPORT || err == EAFNOSUPPORT) {
      return Fail("ERR_NO_SOCK_DIAG", err, "socket",
                  std::string("the kernel's ") + what + " netlink interface is not available" + where +
                      ": load it with 'modprobe inet_diag tcp_diag udp_diag' (CONFIG_INET_DIAG)");
    }
    return Fail("ERR_SOCKDIAG", err, "socket",
                std::string("cannot open the ") + what + " netlink socket" + where + ": " + strerror(err));
  }
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) < 0) {
    int err = errno;
    close(fd);
    return Fail("ERR_SOCKDIAG", err, "bind",
                std::string("cannot bind the ") + what + " netlink socket" + where + ": " + strerror(err));
  }
  // Errors carry only the header of the failed request back, not the whole request.
  int on = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof(on));
  int size = kRcvbuf;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
  // A reply that never comes must not hang the thread (and close()) forever.
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  *out = fd;
  return {};
}

namespace {

// Next space-separated field of [*p, end), or false when there is none.
bool NextField(const char** p, const char* end, const char** f, size_t* n) {
  while (*p < end && **p == ' ') ++*p;
  const char* start = *p;
  while (*p < end && **p != ' ') ++*p;
  *f = start;
  *n = static_cast<size_t>(*p - start);
  return *n > 0;
}

bool ParseUint(const char* f, size_t n, unsigned max, unsigned* out) {
  if (n == 0 || n > 5) return false;
  unsigned v = 0;
  for (size_t i = 0; i < n; i++) {
    if (f[i] < '0' || f[i] > '9') return false;
    v = v * 10 + static_cast<unsigned>(f[i] - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

bool ParseAddr(int family, const char* f, size_t n, uint8_t* out) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (n == 0 || n >= sizeof(buf)) return false;
  memcpy(buf, f, n);
  buf[n] = 0;
  return inet_pton(family, buf, out) == 1;
}

}  // namespace

// "F P LOCAL LPORT REMOTE RPORT": F is 4 or 6 (14 or 16: skip the capture, ask the kernel now),
// P is 6 (TCP) or 17 (UDP), REMOTE may be '*' (and RPORT 0) to ask for the listening /
// unconnected socket bound to LOCAL:LPORT. Parsed by hand: sscanf was an eighth of the thread's
// time.
bool ParseRequest(const char* p, const char* end, DiagRequest* r) {
  const char* f;
  size_t n;
  unsigned fam, proto, lport, rport;
  if (!NextField(&p, end, &f, &n) || !ParseUint(f, n, 16, &fam)) return false;
  r->live = fam >= 10;
  if (r->live) fam -= 10;
  if (fam != 4 && fam != 6) return false;
  if (!NextField(&p, end, &f, &n) || !ParseUint(f, n, 255, &proto)) return false;
  if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) return false;
  r->family = fam == 4 ? AF_INET : AF_INET6;
  r->proto = static_cast<uint8_t>(proto);
  if (!NextField(&p, end, &f, &n) || !ParseAddr(r->family, f, n, r->local)) return false;
  if (!NextField(&p, end, &f, &n) || !ParseUint(f, n, 65535, &lport)) return false;
  if (!NextField(&p, end, &f, &n)) return false;
  if (n == 1 && *f == '*') {
    r->listener = true;
  } else if (!ParseAddr(r->family, f, n, r->remote)) {
    return false;
  }
  if (!NextField(&p, end, &f, &n) || !ParseUint(f, n, 65535, &rport)) return false;
  r->lport = static_cast<uint16_t>(lport);
  r->rport = r->listener ? 0 : static_cast<uint16_t>(rport);
  const char* rest;
  return !NextField(&p, end, &rest, &n);
}

size_t AddrLen(uint8_t family) { return family == AF_INET ? 4 : 16; }

// Builds one exact-match SOCK_DIAG_BY_FAMILY request (no NLM_F_DUMP: the kernel answers with the
// one socket or an NLMSG_ERROR, ENOENT when there is none).
void PutDiagRequest(char* at, const DiagRequest& r, uint32_t seq) {
  auto* nlh = reinterpret_cast<nlmsghdr*>(at);
  nlh->nlmsg_len = NLMSG_LENGTH(sizeof(inet_diag_req_v2));
  nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  nlh->nlmsg_flags = NLM_F_REQUEST;
  nlh->nlmsg_seq = seq;
  nlh->nlmsg_pid = 0;
  auto* req = static_cast<inet_diag_req_v2*>(NLMSG_DATA(nlh));
  memset(req, 0, sizeof(*req));
  req->sdiag_family = r.family;
  req->sdiag_protocol = r.proto;
  req->idiag_states = ~0u;
  req->id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  req->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  const size_t alen = AddrLen(r.family);
  if (r.proto == IPPROTO_TCP) {
    // inet_diag_find_one_icsk() looks up (saddr=dst, daddr=src): src is our end. A miss in the
    // established hash falls back to the listener on src:sport, which the state (LISTEN) shows.
    req->id.idiag_sport = htons(r.lport);
    req->id.idiag_dport = htons(r.rport);
    memcpy(req->id.idiag_src, r.local, alen);
    memcpy(req->id.idiag_dst, r.remote, alen);
  } else {
    // udp_dump_one(): "src and dst are swapped for historical reasons" — the lookup is in receive
    // orientation, src is the remote end and dst ours.
    req->id.idiag_sport = htons(r.rport);
    req->id.idiag_dport = htons(r.lport);
    memcpy(req->id.idiag_src, r.remote, alen);
    memcpy(req->id.idiag_dst, r.local, alen);
  }
}

}  // namespace ctwatch
