#include "attribution/local.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "kernel_socket.h"
#include "netns.h"

namespace ctwatch {

namespace {
constexpr uint64_t kMaxAgeNs = 10'000'000'000ull;
}

LocalAddresses::~LocalAddresses() {
  if (fd_ >= 0) close(fd_);
}

OpenError LocalAddresses::Open(uint64_t now_ns) {
  fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd_ < 0) {
    return MakeOpenError("ERR_ATTRIBUTION", errno, "socket", std::string("cannot open a route netlink socket: ") + strerror(errno));
  }
  // The local addresses come from the kernel alone (kernel_socket.h): a forged list would make
  // flows look local or passing through.
  if (ConnectToKernel(fd_) < 0) {
    int err = errno;
    close(fd_);
    fd_ = -1;
    return MakeOpenError("ERR_ATTRIBUTION", err, "connect", std::string("cannot connect a route netlink socket to the kernel: ") + strerror(err));
  }
  // A dump that never answers must not hang the reader thread.
  timeval tv{1, 0};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  read_ns_ = now_ns;
  Read();
  return {};
}

bool LocalAddresses::Read() {
  std::vector<Prefix> found;
  for (uint8_t family : {AF_INET, AF_INET6}) {
    struct {
      nlmsghdr nlh;
      rtmsg rtm;
    } req{};
    req.nlh.nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
    req.nlh.nlmsg_type = RTM_GETROUTE;
    req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.nlh.nlmsg_seq = ++seq_;
    req.rtm.rtm_family = family;
    req.rtm.rtm_table = RT_TABLE_LOCAL;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd_, &req, req.nlh.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) return false;
    std::vector<char> rx(1 << 16);
    for (bool done = false; !done;) {
      ssize_t n = recv(fd_, rx.data(), rx.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      int left = static_cast<int>(n);
      for (auto* m = reinterpret_cast<nlmsghdr*>(rx.data()); NLMSG_OK(m, left); m = NLMSG_NEXT(m, left)) {
        if (m->nlmsg_seq != req.nlh.nlmsg_seq) continue;
        if (m->nlmsg_type == NLMSG_DONE || m->nlmsg_type == NLMSG_ERROR) {
          done = true;
          break;
        }
        if (m->nlmsg_type != RTM_NEWROUTE) continue;
        auto* rtm = static_cast<rtmsg*>(NLMSG_DATA(m));
        if (rtm->rtm_type != RTN_LOCAL) continue;
        int alen = static_cast<int>(RTM_PAYLOAD(m));
        for (auto* a = RTM_RTA(rtm); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
          if (a->rta_type != RTA_DST) continue;
          Prefix p{};
          p.family = rtm->rtm_family;
          p.len = rtm->rtm_dst_len;
          memcpy(p.addr, RTA_DATA(a), p.family == AF_INET ? 4 : 16);
          found.push_back(p);
        }
      }
    }
  }
  prefixes_.swap(found);
  return true;
}

bool LocalAddresses::Contains(uint8_t family, const uint8_t* addr, uint64_t now_ns) {
  if (fd_ >= 0 && now_ns - read_ns_ > kMaxAgeNs) {
    read_ns_ = now_ns;
    Read();
  }
  for (const Prefix& p : prefixes_) {
    if (p.family != family) continue;
    unsigned bits = p.len;
    size_t whole = bits / 8;
    if (memcmp(p.addr, addr, whole) != 0) continue;
    unsigned rest = bits % 8;
    if (rest == 0) return true;
    uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
    if ((p.addr[whole] & mask) == (addr[whole] & mask)) return true;
  }
  return false;
}

}  // namespace ctwatch
