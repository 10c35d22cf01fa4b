// NEW-time capture for the sock_diag fallback (see sockdiag.h): what was seen of a flow's socket
// while it lived, and which processes held the sockets lately.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include "attribution/diag.h"

namespace ctwatch {

// What the capture saw of a flow's socket while it lived.
struct CapturedSocket {
  uint32_t inode, uid, state, pid, start;
};

struct Owner {
  int pid;
  uint32_t start;  // clock ticks after boot, low 32 bits
};

struct CaptureState {
  uint64_t netns_ino = 0;  // the namespace's inode: which processes discovery may read
  std::unordered_map<TupleKey, CapturedSocket, TupleHash> sockets;
  std::deque<TupleKey> order;  // oldest first, for eviction
  std::unordered_map<uint32_t, Owner> owners;  // inode -> process, for the hot processes' sockets
  std::vector<int> hot;                        // pids that owned captured sockets, most recent first
  // A hot process: its /proc/PID directory held open (once the process exits, reads through it
  // fail, even if the pid is taken again: no start time to re-read), and what it held last.
  struct HotProc {
    int dirfd;
    uint32_t start;
    std::vector<uint32_t> held;
  };
  std::unordered_map<int, HotProc> procs;
  // Captured sockets whose owner is not known yet: (inode, flow, when captured, likely owner).
  struct Unowned {
    uint32_t inode;
    TupleKey key;
    uint64_t at_us;
    int likely;  // the last owner of a socket between the same two addresses (0: none)
  };
  std::vector<Unowned> unowned;
  // Who last owned a socket from this local address to this remote address and port (the local
  // port zeroed): a pool or a leaky client keeps opening the same pair, so its process is read
  // first instead of every hot process in turn. Only an order: an owner is what /proc shows.
  std::unordered_map<TupleKey, int, TupleHash> pair_owner;
  uint64_t next_scan_us = 0;       // reading hot processes again is allowed from then on
  uint64_t next_discovery_us = 0;  // reading every process of the namespace, from then on
  // pid -> its network namespace inode, as last seen by a discovery (re-read every few rounds).
  std::unordered_map<int, double> pid_netns;
  unsigned discoveries = 0;
  int discovery_cursor = 0;  // where the last round ran out of time
};

void NotePairOwner(CaptureState* cap, const TupleKey& key, int pid);
OpenError OpenConntrackNew(const std::string& where, int* out);
inline uint32_t Low32(double v) { return static_cast<uint32_t>(static_cast<uint64_t>(v) & 0xffffffffu); }

}  // namespace ctwatch
