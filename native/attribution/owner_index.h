// The sock_diag fallback's inode -> process index: which process holds a socket inode, found by
// reading /proc/PID/fd of as few processes as possible. The one owner-index policy of the fallback
// (the eBPF join needs none: its stamps name the task).
//
//   likely: the process that last owned a socket between the same two addresses (a pool or a
//           leaky client keeps opening the same pair): read first;
//   hot:    the kHotMax processes that owned sockets most recently, their /proc/PID directory held
//           open (reads through it fail once the process exits, even if the pid is taken again);
//           after a round that cost T of CPU, the next waits kScanCostFactor x T;
//   discovery: every process of the namespace, new ones first, then from where the last round ran
//           out of time (kDiscoveryBudgetUs); after a round that cost T, the next waits
//           max(kDiscoveryMinUs, kDiscoveryCostFactor x T).
//
// Budgets count the thread's CPU, not wall time (a preempted read is not its cost). A process
// whose descriptors cannot be read (another user's, without CAP_SYS_PTRACE / CAP_DAC_READ_SEARCH)
// is counted in denied(); an inode two live processes hold (inherited across fork) is `shared`.
// Everything here runs on the reader thread that owns the join.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "attribution/diag.h"

namespace ctwatch {

// Hot processes kept; how often every process of the namespace may be read. Reading descriptors
// costs ~3 µs each: after a read of the hot processes that took T, the next waits 4 T (a fifth of
// the thread at most), and after a discovery that took T, the next waits 20 T (a twentieth).
constexpr size_t kHotMax = 16;
constexpr uint64_t kDiscoveryMinUs = 50'000;
constexpr uint64_t kScanCostFactor = 4;
constexpr uint64_t kDiscoveryCostFactor = 20;
constexpr uint64_t kDiscoveryBudgetUs = 5'000;

// A process as the index read it: its identity (pid and start) and what the record carries.
struct ProcOwner {
  int pid = 0;
  uint32_t uid = 0;
  uint64_t start_ns = 0;  // start_boottime in ns (stat's USER_HZ ticks x 10 ms)
  uint64_t cgroup = 0;    // cgroup v2 id, 0 when unknown
  char comm[16] = {};
};

struct OwnerIndexCounters {
  uint64_t hot_scans = 0, hot_reads = 0, discoveries = 0, discovery_reads = 0, scan_us = 0;
  uint64_t denied = 0;  // processes the last discovery could not read
};

class OwnerIndex {
 public:
  // `netns_ino`: the namespace whose processes discovery reads (0: all).
  OwnerIndex(uint64_t netns_ino, std::string cgroup_root) : netns_ino_(netns_ino), cgroup_root_(std::move(cgroup_root)) {}
  ~OwnerIndex();
  OwnerIndex(const OwnerIndex&) = delete;
  OwnerIndex& operator=(const OwnerIndex&) = delete;

  // The process holding `inode` when it was last read (null: none known); `shared` when several do.
  const ProcOwner* Find(uint32_t inode, bool* shared);
  // Reads processes, within the budgets, until every inode of `wanted` has its owner: the likely
  // ones, the hot ones, then (rate-limited) a discovery. `force` ignores the budgets once (the
  // start-up dump: every socket exists now, and nothing else waits).
  void Resolve(const std::vector<uint32_t>& wanted, const std::vector<int>& likely, bool force);
  // Whether a round of reads may run now (the budgets allow it).
  bool Due() const { return MonotonicUs() >= next_scan_us_; }
  // Who last owned a socket between these two addresses (the local port zeroed), 0: none.
  int Likely(const TupleKey& pair) const;
  void NotePair(const TupleKey& pair, int pid);
  // Discoveries so far: an owner not found by one that began after its socket was seen is no one
  // we can read.
  unsigned discoveries() const { return discoveries_; }
  uint64_t last_discovery_us() const { return last_discovery_us_; }
  const OwnerIndexCounters& counters() const { return c_; }

 private:
  struct Proc {
    int dirfd;
    ProcOwner owner;
    std::vector<uint32_t> held;
  };
  struct Holder {
    int pid;
    bool shared;
  };
  bool Read(int pid);  // (re)reads what `pid` holds; false when it is gone
  void Forget(int pid);
  void ScanHot(const std::vector<uint32_t>& wanted, const std::vector<int>& likely);
  void Discover(const std::vector<uint32_t>& wanted, uint64_t budget_us);
  bool AllKnown(const std::vector<uint32_t>& wanted) const;

  const uint64_t netns_ino_;
  const std::string cgroup_root_;
  std::unordered_map<uint32_t, Holder> owners_;  // inode -> holder
  std::unordered_map<int, Proc> procs_;          // the hot processes, read through their directory
  std::vector<int> hot_;                          // most recent first, at most kHotMax
  std::unordered_map<TupleKey, int, TupleHash> pair_owner_;
  std::unordered_map<int, double> pid_netns_;
  uint64_t next_scan_us_ = 0, next_discovery_us_ = 0, last_discovery_us_ = 0;
  unsigned discoveries_ = 0;
  int discovery_cursor_ = 0;
  OwnerIndexCounters c_;
};

}  // namespace ctwatch
