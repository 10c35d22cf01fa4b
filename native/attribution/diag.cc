#include "attribution/diag.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "kernel_socket.h"
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
  // Answers come from the kernel alone (kernel_socket.h): forged inode or uid answers would name
  // the wrong process.
  if (ConnectToKernel(fd) < 0) {
    int err = errno;
    close(fd);
    return Fail("ERR_SOCKDIAG", err, "connect",
                std::string("cannot connect the ") + what + " netlink socket to the kernel" + where + ": " + strerror(err));
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

size_t AddrLen(uint8_t family) { return family == AF_INET ? 4 : 16; }

}  // namespace

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

void DiagLookupMany(int fd, const std::vector<DiagRequest>& reqs, uint32_t* out, DiagCounters* c) {
  std::vector<char> tx(kChunk * kReqSpace);
  constexpr unsigned kBurst = 64;
  constexpr size_t kAnswer = 1024;  // an answer without extensions is ~150 bytes
  std::vector<char> rx(kBurst * kAnswer);
  mmsghdr msgs[kBurst];
  iovec iov[kBurst];
  for (unsigned i = 0; i < kBurst; i++) {
    iov[i] = {rx.data() + i * kAnswer, kAnswer};
    msgs[i].msg_hdr = msghdr{};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  std::vector<size_t> todo;
  static std::atomic<uint32_t> seq_base{static_cast<uint32_t>(time(nullptr)) << 8};

  for (size_t start = 0; start < reqs.size(); start += kChunk) {
    const size_t stop = std::min(reqs.size(), start + kChunk);
    todo.clear();
    for (size_t i = start; i < stop; i++) {
      if (reqs[i].family != 0) todo.push_back(i);
    }
    // Answers can be lost only if our receive queue overflows; then the missing ones go once more.
    for (int attempt = 0; attempt < 2 && !todo.empty(); attempt++) {
      if (attempt > 0) c->retried += todo.size();
      const uint32_t base = seq_base.fetch_add(static_cast<uint32_t>(kChunk));
      size_t len = 0;
      for (size_t k = 0; k < todo.size(); k++) {
        PutDiagRequest(tx.data() + len, reqs[todo[k]], base + static_cast<uint32_t>(k));
        len += kReqSpace;
      }
      sockaddr_nl kernel{};
      kernel.nl_family = AF_NETLINK;
      ssize_t sent;
      do {
        sent = sendto(fd, tx.data(), len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
      } while (sent < 0 && errno == EINTR);
      ++c->sends;
      if (sent < 0) {
        int err = errno;
        for (size_t idx : todo) out[idx * kResultWidth] = static_cast<uint32_t>(err);
        todo.clear();
        break;
      }
      size_t answered = 0;
      for (;;) {
        // Each answer is its own datagram: take up to kBurst per system call.
        int got = recvmmsg(fd, msgs, kBurst, MSG_DONTWAIT, nullptr);
        if (got < 0) {
          if (errno == EINTR || errno == ENOBUFS) continue;  // ENOBUFS: some answers were dropped
          break;                                            // EAGAIN: everything queued is read
        }
        for (int g = 0; g < got; g++) {
          int left = static_cast<int>(msgs[g].msg_len);
          for (auto* m = static_cast<nlmsghdr*>(iov[g].iov_base); NLMSG_OK(m, left); m = NLMSG_NEXT(m, left)) {
            uint32_t k = m->nlmsg_seq - base;
            if (k >= todo.size()) continue;  // a late answer to an earlier attempt
            uint32_t* res = &out[todo[k] * kResultWidth];
            if (res[0] != EAGAIN) continue;
            if (m->nlmsg_type == NLMSG_ERROR) {
              auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(m));
              res[0] = static_cast<uint32_t>(e->error < 0 ? -e->error : ENOENT);
              ++c->not_found;
              answered++;
            } else if (m->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
                       m->nlmsg_len >= NLMSG_LENGTH(sizeof(inet_diag_msg))) {
              auto* d = static_cast<inet_diag_msg*>(NLMSG_DATA(m));
              res[0] = 0;
              res[1] = d->idiag_inode;
              res[2] = d->idiag_uid;
              res[3] = d->idiag_state;
              // For UDP the kernel reports the socket's own view (sport = local), whatever the
              // orientation of the request.
              res[4] = ntohs(d->id.idiag_dport);
              res[5] = ntohs(d->id.idiag_sport);
              ++c->found;
              answered++;
            }
          }
        }
        if (answered == todo.size() || got < static_cast<int>(kBurst)) break;
      }
      std::vector<size_t> again;
      for (size_t idx : todo) {
        if (out[idx * kResultWidth] == EAGAIN) again.push_back(idx);
      }
      todo.swap(again);
    }
  }
}

}  // namespace ctwatch
