#include "attribution/owner_index.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <unordered_set>

#include "attribution/procfs.h"
#include "attribution/seed.h"

namespace ctwatch {

namespace {

// USER_HZ is 100 on every Linux ABI: stat's start ticks are 10 ms each.
constexpr uint64_t kNsPerTick = 10'000'000;

}  // namespace

OwnerIndex::~OwnerIndex() {
  for (auto& kv : procs_) close(kv.second.dirfd);
}

const ProcOwner* OwnerIndex::Find(uint32_t inode, bool* shared) {
  auto it = owners_.find(inode);
  if (it == owners_.end()) return nullptr;
  auto p = procs_.find(it->second.pid);
  if (p == procs_.end()) return nullptr;
  *shared = it->second.shared;
  // Most recent first: the next round starts with the busiest processes.
  auto h = std::find(hot_.begin(), hot_.end(), it->second.pid);
  if (h != hot_.begin() && h != hot_.end()) std::rotate(hot_.begin(), h, h + 1);
  return &p->second.owner;
}

int OwnerIndex::Likely(const TupleKey& pair) const {
  auto it = pair_owner_.find(pair);
  return it == pair_owner_.end() ? 0 : it->second;
}

void OwnerIndex::NotePair(const TupleKey& pair, int pid) {
  // Bounded by starting over: the pairs that matter are the busy ones, and they come back at once.
  if (pair_owner_.size() >= 4096) pair_owner_.clear();
  pair_owner_[pair] = pid;
}

void OwnerIndex::Forget(int pid) {
  auto p = procs_.find(pid);
  if (p != procs_.end()) {
    for (uint32_t ino : p->second.held) {
      auto it = owners_.find(ino);
      if (it != owners_.end() && it->second.pid == pid) owners_.erase(it);
    }
    close(p->second.dirfd);
    procs_.erase(p);
  }
  auto h = std::find(hot_.begin(), hot_.end(), pid);
  if (h != hot_.end()) hot_.erase(h);
}

bool OwnerIndex::Read(int pid) {
  auto it = procs_.find(pid);
  if (it == procs_.end()) {
    char path[32];
    snprintf(path, sizeof(path), "/proc/%d", pid);
    int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dir < 0) return false;
    // Through the directory: the identity of the very process the directory belongs to.
    Stat st;
    struct stat sb;
    if (!ReadStatAt(dir, &st) || fstat(dir, &sb) != 0) {
      close(dir);
      return false;
    }
    Proc p{dir, {}, {}};
    p.owner.pid = pid;
    p.owner.uid = sb.st_uid;
    p.owner.start_ns = static_cast<uint64_t>(st.starttime) * kNsPerTick;
    p.owner.cgroup = CgroupIdOf(pid, cgroup_root_);
    strncpy(p.owner.comm, st.comm.c_str(), sizeof(p.owner.comm) - 1);
    it = procs_.emplace(pid, std::move(p)).first;
    hot_.insert(hot_.begin(), pid);
    while (hot_.size() > kHotMax) Forget(hot_.back());
    it = procs_.find(pid);
    if (it == procs_.end()) return false;
  }
  std::vector<double> inodes;
  if (!SocketInodesAt(it->second.dirfd, &inodes)) return false;
  auto& held = it->second.held;
  for (uint32_t ino : held) {
    auto o = owners_.find(ino);
    if (o != owners_.end() && o->second.pid == pid) owners_.erase(o);
  }
  held.clear();
  for (double d : inodes) {
    const uint32_t ino = static_cast<uint32_t>(d);
    held.push_back(ino);
    auto o = owners_.find(ino);
    if (o == owners_.end()) {
      owners_.emplace(ino, Holder{pid, false});
      continue;
    }
    if (o->second.pid == pid) continue;
    // Another process we read holds it too, if it still does: a socket inherited across fork.
    auto other = procs_.find(o->second.pid);
    const bool both = other != procs_.end() &&
                      std::find(other->second.held.begin(), other->second.held.end(), ino) != other->second.held.end();
    o->second = Holder{pid, both};
  }
  return true;
}

bool OwnerIndex::AllKnown(const std::vector<uint32_t>& wanted) const {
  for (uint32_t ino : wanted) {
    if (!owners_.count(ino)) return false;
  }
  return true;
}

void OwnerIndex::Resolve(const std::vector<uint32_t>& wanted, const std::vector<int>& likely, bool force) {
  if (wanted.empty() || AllKnown(wanted)) return;
  uint64_t now = MonotonicUs();
  if (!force && now < next_scan_us_) return;
  const uint64_t cpu0 = ThreadCpuUs();
  ScanHot(wanted, likely);
  const uint64_t cpu1 = ThreadCpuUs();
  now = MonotonicUs();
  next_scan_us_ = now + (cpu1 - cpu0) * kScanCostFactor;
  if (AllKnown(wanted) || (!force && now < next_discovery_us_)) return;
  Discover(wanted, force ? kDiscoveryBudgetUs * 100 : kDiscoveryBudgetUs);
  const uint64_t cpu2 = ThreadCpuUs();
  next_discovery_us_ = MonotonicUs() + std::max(kDiscoveryMinUs, (cpu2 - cpu1) * kDiscoveryCostFactor);
  c_.scan_us += cpu2 - cpu0;
}

void OwnerIndex::ScanHot(const std::vector<uint32_t>& wanted, const std::vector<int>& likely) {
  ++c_.hot_scans;
  // The likely owners first (reading one process instead of every hot one is what makes a round
  // cheap enough to run often), then the rest, most recent first, until every socket has its owner.
  std::vector<int> order;
  for (int pid : likely) {
    if (procs_.count(pid) && std::find(order.begin(), order.end(), pid) == order.end()) order.push_back(pid);
  }
  for (int pid : hot_) {
    if (std::find(order.begin(), order.end(), pid) == order.end()) order.push_back(pid);
  }
  for (int pid : order) {
    ++c_.hot_reads;
    if (!Read(pid)) Forget(pid);
    if (AllKnown(wanted)) break;
  }
}

void OwnerIndex::Discover(const std::vector<uint32_t>& wanted, uint64_t budget_us) {
  ++discoveries_;
  const uint64_t t0 = MonotonicUs();
  last_discovery_us_ = t0;
  std::unordered_set<uint32_t> want(wanted.begin(), wanted.end());
  // Namespaces of processes seldom change: remember them, and forget it all every 16 rounds.
  if (discoveries_ % 16 == 0) pid_netns_.clear();
  // Processes new since the last round first (a new process is the likeliest owner of a socket no
  // hot process holds), then the others from where the last round ran out of time.
  std::vector<int> order, known;
  for (int pid : ListPids()) (pid_netns_.count(pid) ? known : order).push_back(pid);
  if (!known.empty()) {
    auto from = std::lower_bound(known.begin(), known.end(), discovery_cursor_);
    order.insert(order.end(), from, known.end());
    order.insert(order.end(), known.begin(), from);
  }
  std::unordered_map<int, double> seen;
  for (int pid : order) {
    auto k = pid_netns_.find(pid);
    seen[pid] = k != pid_netns_.end() ? k->second : NetnsInode(pid);
  }
  uint64_t denied = 0;
  bool complete = true;
  std::vector<double> inodes;
  for (int pid : order) {
    if (MonotonicUs() > t0 + budget_us) {
      discovery_cursor_ = pid;
      complete = false;
      break;
    }
    if (procs_.count(pid)) continue;
    if (seen[pid] == -2) {
      denied++;  // which namespace it is in is closed to us too: it may hold the socket
      continue;
    }
    if (netns_ino_ != 0 && seen[pid] != static_cast<double>(netns_ino_)) continue;
    ++c_.discovery_reads;
    inodes.clear();
    if (!SocketInodes(pid, &inodes)) {
      if (errno == EACCES || errno == EPERM) denied++;
      continue;
    }
    bool owns = false;
    for (double d : inodes) owns = owns || want.count(static_cast<uint32_t>(d));
    // A new hot process (the least recent one makes room); gone between the two reads: let go.
    if (owns && !Read(pid)) Forget(pid);
    if (AllKnown(wanted)) {
      complete = false;
      break;
    }
  }
  // A round cut short has not seen every process: it only adds to what the last one counted.
  c_.denied = complete ? denied : std::max(c_.denied, denied);
  ++c_.discoveries;
  pid_netns_.swap(seen);  // dead pids leave
}

}  // namespace ctwatch
