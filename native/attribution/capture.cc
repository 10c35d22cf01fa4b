#include "attribution/capture.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <unordered_set>

#include "attribution/procfs.h"
#include "attribution/sockdiag.h"
#include "conntrack/decode.h"
#include "conntrack/record.h"

namespace ctwatch {


void NotePairOwner(CaptureState* cap, const TupleKey& key, int pid) {
  // Bounded by starting over: the pairs that matter are the busy ones, and they come back at once.
  if (cap->pair_owner.size() >= 4096) cap->pair_owner.clear();
  cap->pair_owner[PairOf(key)] = pid;
}

// The capture's own subscription: NEW events only, on a plain netlink socket (recvmmsg, no
// library state), with a buffer large enough for a burst while a lookup batch runs.
OpenError OpenConntrackNew(const std::string& where, int* out) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
  if (fd < 0) {
    int err = errno;
    return Fail("ERR_NO_CTNETLINK", err, "socket",
                "the kernel's conntrack netlink interface is not available" + where +
                    ": load it with 'modprobe nf_conntrack_netlink'");
  }
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups = 1;  // NF_NETLINK_CONNTRACK_NEW, a bind() bitmask
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) < 0) {
    int err = errno;
    close(fd);
    if (err == EPERM || err == EACCES) {
      return Fail("ERR_NO_CAP_NET_ADMIN", err, "bind",
                  "capturing sockets at NEW time reads conntrack events, which needs CAP_NET_ADMIN" + where +
                      ": run ctwatch as root, or turn capture off");
    }
    return Fail("ERR_SOCKDIAG", err, "bind", "cannot subscribe to conntrack events" + where + ": " + strerror(err));
  }
  int size = kCtRcvbuf;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
  *out = fd;
  return {};
}

// Reads the NEW events queued on the capture socket, looks their sockets up at once, and records
// what it found (with the owner when a hot process, or a rate-limited discovery, has the inode).
void SockDiag::Capture() {
  constexpr unsigned kBurst = 64;
  static thread_local std::vector<char> storage(kBurst * 8192);
  static thread_local mmsghdr msgs[kBurst];
  static thread_local iovec iov[kBurst];
  for (unsigned i = 0; i < kBurst; i++) {
    iov[i] = {storage.data() + i * 8192, 8192};
    msgs[i].msg_hdr = msghdr{};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  std::vector<DiagRequest> reqs;
  Record rec;
  // A bounded amount per call, so that queued JS lookups are not starved by a flood.
  for (int burst = 0; burst < 32; burst++) {
    int got = recvmmsg(ct_fd_, msgs, kBurst, MSG_DONTWAIT, nullptr);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        ++cap_overflows_;  // lost NEW events: those flows fall back to the lookup from JS
        continue;
      }
      break;
    }
    for (int i = 0; i < got; i++) {
      int len = static_cast<int>(msgs[i].msg_len);
      for (auto* nlh = static_cast<const nlmsghdr*>(iov[i].iov_base); NLMSG_OK(nlh, len); nlh = NLMSG_NEXT(nlh, len)) {
        if (nlh->nlmsg_type < NLMSG_MIN_TYPE) continue;
        memset(&rec, 0, sizeof(rec));
        if (!DecodeMessage(nlh, 0, 0, &rec) || rec.kind != kNew) continue;
        if ((rec.proto != IPPROTO_TCP && rec.proto != IPPROTO_UDP) || !(rec.present & kHasPorts)) continue;
        DiagRequest r;
        r.family = rec.family;
        r.proto = rec.proto;
        memcpy(r.local, rec.src, 16);
        memcpy(r.remote, rec.dst, 16);
        r.lport = rec.sport;
        r.rport = rec.dport;
        reqs.push_back(r);
      }
    }
    if (got < static_cast<int>(kBurst)) break;
  }
  if (reqs.empty()) return;
  cap_events_ += reqs.size();
  std::vector<uint32_t> out(reqs.size() * kResultWidth, 0);
  for (size_t i = 0; i < reqs.size(); i++) out[i * kResultWidth] = EAGAIN;
  LookupMany(reqs, out.data());
  FillOwners(reqs, out.data());
  const uint64_t now = MonotonicUs();
  for (size_t i = 0; i < reqs.size(); i++) {
    const uint32_t* res = &out[i * kResultWidth];
    // Only a socket with a file is worth keeping; a listener means this end had no socket of its
    // own (the flow did not start here).
    if (res[0] != 0 || res[1] == 0 || (reqs[i].proto == IPPROTO_TCP && res[3] == 10)) continue;
    TupleKey key = KeyOf(reqs[i]);
    auto ins = cap_->sockets.insert_or_assign(key, CapturedSocket{res[1], res[2], res[3], res[7], res[8]});
    if (ins.second) cap_->order.push_back(key);
    ++cap_sockets_;
    if (res[7] != 0) {
      ++cap_owned_;
      NotePairOwner(cap_.get(), key, static_cast<int>(res[7]));
    } else {
      auto likely = cap_->pair_owner.find(PairOf(key));
      cap_->unowned.push_back({res[1], key, now, likely != cap_->pair_owner.end() ? likely->second : 0});
    }
  }
  while (cap_->order.size() > kCaptureMax) {
    cap_->sockets.erase(cap_->order.front());
    cap_->order.pop_front();
    ++cap_evicted_;
  }
}

// Finds owners for captured sockets that have none yet, within the scan budget: the hot
// processes first, then (rate-limited) every process of the namespace.
void SockDiag::ResolveUnowned() {
  auto& un = cap_->unowned;
  if (un.empty()) return;
  const uint64_t now = MonotonicUs();
  if (now < cap_->next_scan_us) return;
  // The budget counts CPU, not wall time: on a saturated host this thread is often preempted
  // mid-read, and counting that as cost would make reads rarer exactly when churn is highest.
  const uint64_t cpu0 = ThreadCpuUs();
  // Sockets closed since their capture can no longer be found in /proc: ask the kernel which are
  // still there (~2 µs each, against ~50 µs per process read), so that a round stops as soon as
  // the live ones have their owner instead of reading every hot process for the dead ones.
  {
    std::vector<DiagRequest> reqs(un.size());
    for (size_t i = 0; i < un.size(); i++) {
      const TupleKey& k = un[i].key;
      reqs[i].family = k.family;
      reqs[i].proto = k.proto;
      reqs[i].lport = k.lport;
      reqs[i].rport = k.rport;
      memcpy(reqs[i].local, k.local, 16);
      memcpy(reqs[i].remote, k.remote, 16);
    }
    std::vector<uint32_t> out(reqs.size() * kResultWidth, 0);
    for (size_t i = 0; i < reqs.size(); i++) out[i * kResultWidth] = EAGAIN;
    LookupMany(reqs, out.data());
    std::vector<CaptureState::Unowned> alive;
    for (size_t i = 0; i < un.size(); i++) {
      const uint32_t* res = &out[i * kResultWidth];
      // Gone only when the kernel says so (no such socket, or another socket on the tuple now);
      // an unanswered query (our receive queue overflowed, sendto failed) keeps the socket wanted.
      const bool gone = res[0] == ENOENT || (res[0] == 0 && res[1] != un[i].inode);
      if (gone) ++cap_closed_unowned_;
      else alive.push_back(un[i]);
    }
    un.swap(alive);
    if (un.empty()) return;
  }
  std::vector<uint32_t> wanted;
  std::vector<int> likely;
  for (const auto& u : un) {
    wanted.push_back(u.inode);
    // Only hot processes are read in a round: at most kHotMax candidates, however many sockets.
    if (u.likely != 0 && std::find(likely.begin(), likely.end(), u.likely) == likely.end() &&
        std::find(cap_->hot.begin(), cap_->hot.end(), u.likely) != cap_->hot.end()) {
      likely.push_back(u.likely);
    }
  }
  ScanHot(wanted, likely);
  uint64_t done = MonotonicUs();
  const uint64_t cpu1 = ThreadCpuUs();
  cap_->next_scan_us = done + (cpu1 - cpu0) * kScanCostFactor;
  bool missing = false;
  for (const auto& u : un) missing = missing || !cap_->owners.count(u.inode);
  if (missing && done >= cap_->next_discovery_us) {
    Discover(wanted);
    const uint64_t after = MonotonicUs();
    cap_->next_discovery_us = after + std::max(kDiscoveryMinUs, (ThreadCpuUs() - cpu1) * kDiscoveryCostFactor);
    done = after;
  }
  std::vector<CaptureState::Unowned> left;
  for (const auto& u : un) {
    auto o = cap_->owners.find(u.inode);
    if (o != cap_->owners.end()) {
      auto it = cap_->sockets.find(u.key);
      if (it != cap_->sockets.end() && it->second.inode == u.inode && it->second.pid == 0) {
        it->second.pid = static_cast<uint32_t>(o->second.pid);
        it->second.start = o->second.start;
        ++cap_owned_;
        NotePairOwner(cap_.get(), u.key, o->second.pid);
      }
    } else if (done - u.at_us < kUnownedMaxUs) {
      left.push_back(u);
    }
  }
  un.swap(left);
}

// Fills pid and start for answers whose inode a hot process held at its last read (no /proc).
void SockDiag::FillOwners(const std::vector<DiagRequest>& reqs, uint32_t* out) {
  for (size_t i = 0; i < reqs.size(); i++) {
    uint32_t* res = &out[i * kResultWidth];
    if (res[0] != 0 || res[1] == 0 || res[7] != 0) continue;
    auto it = cap_->owners.find(res[1]);
    if (it == cap_->owners.end()) continue;
    res[7] = static_cast<uint32_t>(it->second.pid);
    res[8] = it->second.start;
    // Most recent first: the next read starts with the busiest processes.
    auto& hot = cap_->hot;
    auto h = std::find(hot.begin(), hot.end(), it->second.pid);
    if (h != hot.begin() && h != hot.end()) std::rotate(hot.begin(), h, h + 1);
  }
}

namespace {

void Forget(CaptureState* cap, int pid) {
  auto h = cap->procs.find(pid);
  if (h == cap->procs.end()) return;
  for (uint32_t ino : h->second.held) {
    auto it = cap->owners.find(ino);
    if (it != cap->owners.end() && it->second.pid == pid) cap->owners.erase(it);
  }
  close(h->second.dirfd);
  cap->procs.erase(h);
}

// Replaces what `pid` is known to hold; returns false when the process is gone.
bool ReadOwner(CaptureState* cap, int pid) {
  auto it = cap->procs.find(pid);
  if (it == cap->procs.end()) {
    char path[32];
    snprintf(path, sizeof(path), "/proc/%d", pid);
    int proc_dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (proc_dir < 0) return false;
    // Through the directory: the start time of the very process the directory belongs to.
    Stat st;
    if (!ReadStatAt(proc_dir, &st)) {
      close(proc_dir);
      return false;
    }
    it = cap->procs.emplace(pid, CaptureState::HotProc{proc_dir, Low32(st.starttime), {}}).first;
  }
  std::vector<double> inodes;
  if (!SocketInodesAt(it->second.dirfd, &inodes)) return false;
  auto& held = it->second.held;
  for (uint32_t ino : held) {
    auto o = cap->owners.find(ino);
    if (o != cap->owners.end() && o->second.pid == pid) cap->owners.erase(o);
  }
  held.clear();
  const Owner owner{pid, it->second.start};
  for (double d : inodes) {
    const uint32_t ino = static_cast<uint32_t>(d);
    held.push_back(ino);
    cap->owners[ino] = owner;
  }
  return true;
}

bool AllKnown(const CaptureState* cap, const std::vector<uint32_t>& wanted) {
  for (uint32_t ino : wanted) {
    if (!cap->owners.count(ino)) return false;
  }
  return true;
}

}  // namespace

void SockDiag::ScanHot(const std::vector<uint32_t>& wanted, const std::vector<int>& likely) {
  ++cap_hot_scans_;
  const uint64_t t0 = MonotonicUs();
  struct Done { SockDiag* self; uint64_t t0; ~Done() { self->cap_hot_us_ += MonotonicUs() - t0; } } done{this, t0};
  auto& hot = cap_->hot;
  // The likely owners first (reading one process instead of every hot one is what makes a round
  // cheap enough to run often), then the rest, most recent first, until every socket has its owner.
  std::vector<int> order;
  for (int pid : likely) {
    if (std::find(hot.begin(), hot.end(), pid) != hot.end()) order.push_back(pid);
  }
  const size_t first = order.size();
  for (int pid : hot) {
    if (std::find(order.begin(), order.begin() + static_cast<long>(first), pid) == order.begin() + static_cast<long>(first)) order.push_back(pid);
  }
  if (AllKnown(cap_.get(), wanted)) order.clear();
  for (int pid : order) {
    ++cap_hot_reads_;
    if (!ReadOwner(cap_.get(), pid)) {
      Forget(cap_.get(), pid);
      auto h = std::find(hot.begin(), hot.end(), pid);
      if (h != hot.end()) hot.erase(h);
      continue;
    }
    if (AllKnown(cap_.get(), wanted)) break;
  }
  cap_hot_size_ = hot.size();
}

void SockDiag::Discover(const std::vector<uint32_t>& wanted) {
  ++cap_discoveries_;
  const uint64_t t0 = MonotonicUs();
  struct Done { SockDiag* self; uint64_t t0; ~Done() { self->cap_discovery_us_ += MonotonicUs() - t0; } } done{this, t0};
  std::unordered_set<uint32_t> want(wanted.begin(), wanted.end());
  std::vector<double> inodes;
  // Namespaces of processes seldom change: remember them, and forget it all every 16 rounds.
  if (++cap_->discoveries % 16 == 0) cap_->pid_netns.clear();
  // Processes new since the last round first (a new process is the likeliest owner of a socket
  // no hot process holds), then the others from where the last round stopped: a round reads for
  // at most kDiscoveryBudgetUs, so a server holding thousands of sockets costs a few rounds, not
  // one long stall of the capture.
  std::vector<int> order;
  std::vector<int> known;
  for (int pid : ListPids()) (cap_->pid_netns.count(pid) ? known : order).push_back(pid);
  if (!known.empty()) {
    auto from = std::lower_bound(known.begin(), known.end(), cap_->discovery_cursor);
    order.insert(order.end(), from, known.end());
    order.insert(order.end(), known.begin(), from);
  }
  std::unordered_map<int, double> seen;
  for (int pid : order) {
    auto k = cap_->pid_netns.find(pid);
    seen[pid] = k != cap_->pid_netns.end() ? k->second : NetnsInode(pid);
  }
  const uint64_t deadline = t0 + kDiscoveryBudgetUs;
  for (int pid : order) {
    if (MonotonicUs() > deadline) {
      cap_->discovery_cursor = pid;
      break;
    }
    if (std::find(cap_->hot.begin(), cap_->hot.end(), pid) != cap_->hot.end()) continue;
    if (cap_->netns_ino != 0 && seen[pid] != static_cast<double>(cap_->netns_ino)) continue;
    inodes.clear();
    SocketInodes(pid, &inodes);
    bool owns = false;
    for (double d : inodes) {
      if (want.count(static_cast<uint32_t>(d))) owns = true;
    }
    if (!owns) continue;
    if (!ReadOwner(cap_.get(), pid)) {
      // It exited between the two reads: let go of the /proc/PID directory ReadOwner opened.
      Forget(cap_.get(), pid);
      continue;
    }
    // A new hot process: the least recent one makes room.
    cap_->hot.insert(cap_->hot.begin(), pid);
    if (cap_->hot.size() > kHotMax) {
      Forget(cap_.get(), cap_->hot.back());
      cap_->hot.pop_back();
    }
    if (AllKnown(cap_.get(), wanted)) break;
  }
  cap_->pid_netns.swap(seen);  // dead pids leave
}

}  // namespace ctwatch
