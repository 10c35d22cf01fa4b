#include "attribution/seed.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "attribution/bpf/stamp.h"
#include "attribution/procfs.h"
#include "conntrack/clock.h"
#include "kernel_socket.h"

namespace ctwatch {

namespace {

struct Found {
  stamp_listener_key key;
  uint64_t cookie;
  uint32_t uid;
  uint8_t v6only;
};

// Every listening TCP socket and bound, unconnected UDP socket of the namespace, by inode.
void DumpSockets(int fd, uint8_t family, uint8_t proto, uint64_t netns, std::unordered_map<uint32_t, Found>* out) {
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.nlh.nlmsg_seq = 1;
  msg.req.sdiag_family = family;
  msg.req.sdiag_protocol = proto;
  msg.req.idiag_states = proto == IPPROTO_TCP ? (1u << 10) : ~0u;  // TCP_LISTEN; UDP: all
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) return;
  std::vector<char> rx(1 << 16);
  for (;;) {
    ssize_t n = recv(fd, rx.data(), rx.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    int left = static_cast<int>(n);
    for (auto* m = reinterpret_cast<nlmsghdr*>(rx.data()); NLMSG_OK(m, left); m = NLMSG_NEXT(m, left)) {
      if (m->nlmsg_type == NLMSG_DONE || m->nlmsg_type == NLMSG_ERROR) return;
      if (m->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      auto* d = static_cast<inet_diag_msg*>(NLMSG_DATA(m));
      if (d->idiag_inode == 0 || d->id.idiag_sport == 0) continue;
      if (proto == IPPROTO_UDP && d->id.idiag_dport != 0) continue;  // connected: a client
      Found f{};
      f.key.netns = netns;
      f.key.proto = proto;
      f.key.port = ntohs(d->id.idiag_sport);
      const auto* a = reinterpret_cast<const uint8_t*>(d->id.idiag_src);
      static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
      if (family == AF_INET6 && memcmp(a, kMapped, 12) == 0) {
        f.key.family = AF_INET;
        memcpy(f.key.addr, a + 12, 4);
      } else {
        f.key.family = family;
        memcpy(f.key.addr, a, family == AF_INET ? 4 : 16);
      }
      f.cookie = static_cast<uint64_t>(d->id.idiag_cookie[0]) | static_cast<uint64_t>(d->id.idiag_cookie[1]) << 32;
      f.uid = d->idiag_uid;
      f.v6only = family == AF_INET6 ? (proto == IPPROTO_UDP ? 2 : 0) : 0;
      int alen = static_cast<int>(m->nlmsg_len - NLMSG_LENGTH(sizeof(*d)));
      for (auto* at = reinterpret_cast<rtattr*>(d + 1); RTA_OK(at, alen); at = RTA_NEXT(at, alen)) {
        if (at->rta_type == INET_DIAG_SKV6ONLY && family == AF_INET6) f.v6only = *static_cast<uint8_t*>(RTA_DATA(at));
      }
      (*out)[d->idiag_inode] = f;
    }
  }
}

}  // namespace

// The mount point of the cgroup v2 hierarchy ("/sys/fs/cgroup" on a unified host,
// "/sys/fs/cgroup/unified" on a hybrid one), or "" when none is mounted.
std::string CgroupV2Root() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    size_t dash = line.find(" - ");
    if (dash == std::string::npos || line.compare(dash + 3, 8, "cgroup2 ") != 0) continue;
    std::istringstream f(line.substr(0, dash));
    std::string id, parent, dev, root, point;
    if (f >> id >> parent >> dev >> root >> point && root == "/") return point;
  }
  return "";
}

uint64_t CgroupIdOf(int pid, const std::string& cgroup_root) {
  if (cgroup_root.empty()) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, 3, "0::") != 0) continue;
    struct stat sb;
    if (stat((cgroup_root + line.substr(3)).c_str(), &sb) == 0) return sb.st_ino;
    return 0;
  }
  return 0;
}

SeedResult SeedListeners(int listeners_fd, int bound_fd, uint64_t netns_cookie, const std::string& cgroup_root) {
  SeedResult result;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return result;
  // the listeners come from the kernel alone (kernel_socket.h): no seed rather than a forged one
  if (ConnectToKernel(fd) < 0) {
    close(fd);
    return result;
  }
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::unordered_map<uint32_t, Found> wanted;
  for (uint8_t family : {AF_INET, AF_INET6}) {
    for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) DumpSockets(fd, family, proto, netns_cookie, &wanted);
  }
  close(fd);
  result.sockets = wanted.size();
  if (wanted.empty()) return result;

  const long ticks = sysconf(_SC_CLK_TCK);
  const uint64_t now = MonotonicNs();
  for (int pid : ListPids()) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    DIR* dir = opendir(path);
    if (dir == nullptr) {
      if (errno == EACCES || errno == EPERM) result.denied++;
      continue;
    }
    std::vector<double> inodes;
    ReadSocketLinks(dir, &inodes);  // closes dir
    Stat st;
    bool have_stat = false;
    for (double ino : inodes) {
      auto it = wanted.find(static_cast<uint32_t>(ino));
      if (it == wanted.end()) continue;
      if (!have_stat && !(have_stat = ReadStat(pid, &st))) break;
      stamp_listener v{};
      v.owner.netns = netns_cookie;
      v.owner.cgroup = CgroupIdOf(pid, cgroup_root);
      v.owner.start_ns = ticks > 0 ? static_cast<uint64_t>(st.starttime) * (1000000000ull / static_cast<uint64_t>(ticks)) : 0;
      v.owner.stamp_ns = now;
      v.owner.pid = static_cast<uint32_t>(pid);
      v.owner.tid = static_cast<uint32_t>(pid);
      v.owner.uid = it->second.uid;
      v.owner.via = STAMP_SEEDED;
      memcpy(v.owner.comm, st.comm.c_str(), std::min(st.comm.size(), sizeof(v.owner.comm)));
      v.ident = it->second.key.proto == IPPROTO_UDP ? it->second.cookie : 0;
      v.v6only = it->second.v6only;
      // A stamp written since the programs were attached is fresher than this: keep it.
      if (bpf_map_update_elem(listeners_fd, &it->second.key, &v, BPF_NOEXIST) == 0) {
        result.seeded++;
        if (it->second.key.proto == IPPROTO_UDP && bound_fd >= 0) {
          bpf_map_update_elem(bound_fd, &it->second.cookie, &it->second.key, BPF_NOEXIST);
        }
      }
      wanted.erase(it);
    }
    if (wanted.empty()) break;
  }
  return result;
}

}  // namespace ctwatch
