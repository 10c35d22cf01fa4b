// The sock_diag join, for when eBPF cannot load: for each NEW, the reader thread asks the kernel
// at once which socket has the flow's tuple (sock_diag, in the flow's namespace, while the socket
// most likely still lives) and maps its inode to a process (owner_index.h). The record that
// reaches JavaScript carries the owner as in eBPF mode (owner_via 7), or the reason none is known.
//
// Which socket is the flow's (the same rule as the eBPF join): a flow started here (its original
// source is a local address, or both ends are) belongs to the socket that started it (original
// tuple); a flow that arrived belongs to the socket that accepted it (the reply tuple, which after
// DNAT is the real local address), or the listener when it is not accepted yet. The side is fixed
// by the addresses, never by which lookup succeeded. Reasons:
//   not-local   neither end is local; unsupported: no socket (ICMP, GRE...)
//   gone        the kernel has no socket for the tuple any more, or one without a file (TIME_WAIT)
//   no-pid      the socket has a file, and a discovery that began after it was seen found no
//               process holding it (a kernel socket, or one in a process we cannot see)
//   denied      the same, while some processes' /proc/PID/fd could not be read (capabilities)
//   shared      several processes hold it (inherited across fork): which one is a guess
//   late        its owner was not found within the wait (kWaitNs), the socket still there
//   overload    the kernel did not answer the lookup
#pragma once
#include <memory>
#include <string>
#include <unordered_map>

#include "attribution/diag.h"
#include "attribution/join.h"
#include "attribution/local.h"
#include "attribution/owner_index.h"

namespace ctwatch {

class DiagJoin : public Join {
 public:
  explicit DiagJoin(std::string cgroup_root) : cgroup_root_(std::move(cgroup_root)) {}
  ~DiagJoin() override;
  OpenError Open(const std::string& netns, int conntrack_fd) override;
  bool Attach(Record* r, const ReadWindow& window, bool last) override;
  uint64_t WaitNs() const override;
  bool Prompt() const override { return true; }
  void Counters(JoinCounters* out) const override;

 private:
  // What the lookup found for a record still waiting for its owner.
  struct Seen {
    uint32_t inode;
    uint8_t side;
    bool gone;  // a later lookup found the socket closed: its owner can no longer be read
    uint64_t at_us;
    DiagRequest query;  // how to ask whether it still exists
  };
  enum class Found { kSocket, kSettled };
  Found Look(Record* r, Seen* out, bool orig_local, bool reply_local);
  bool Lookup(DiagRequest* q, uint32_t* res);
  void Round(const Seen& self, const TupleKey& pair, bool force);
  void Settle(Record* r, uint8_t reason);
  void Fill(Record* r, const ProcOwner& o, uint8_t side);
  static TupleKey KeyOf(const Record& r);

  std::string cgroup_root_;
  int diag_fd_ = -1;
  LocalAddresses local_;
  std::unique_ptr<OwnerIndex> index_;
  std::unordered_map<TupleKey, Seen, TupleHash> waiting_;
  DiagCounters diag_;
  uint64_t next_forced_us_ = 0;
  JoinCounters c_;
};

class DiagJoinFactory : public JoinFactory {
 public:
  explicit DiagJoinFactory(std::string cgroup_root) : cgroup_root_(std::move(cgroup_root)) {}
  std::unique_ptr<Join> NewJoin() override { return std::unique_ptr<Join>(new DiagJoin(cgroup_root_)); }
  const char* mode() const override { return "sockdiag"; }

 private:
  std::string cgroup_root_;
};

}  // namespace ctwatch
