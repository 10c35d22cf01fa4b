// The eBPF join: for each NEW, the stamp bpf/owner.bpf.c wrote when the flow's socket was used,
// looked up in the kernel's maps by the flow's tuple (see bpf_join.cc for the rules that keep a
// tuple that changed hands from being given to the wrong process).
#pragma once
#include <cstring>
#include <memory>
#include <unordered_map>

#include "attribution/bpf/stamp.h"
#include "attribution/bpf_stamps.h"
#include "attribution/join.h"
#include "attribution/local.h"

namespace ctwatch {

class BpfJoin : public Join {
 public:
  explicit BpfJoin(std::shared_ptr<BpfStamps> stamps) : stamps_(std::move(stamps)) {}
  OpenError Open(const std::string& netns, int conntrack_fd) override;
  bool Attach(Record* r, const ReadWindow& window, bool last) override;
  uint64_t WaitNs() const override;
  void Counters(JoinCounters* out) const override { *out = c_; }

 private:
  enum class Verdict { kMissing, kOwner, kAmbiguous };
  Verdict Origin(const Record& r, const ReadWindow& w, bool local, stamp_flow* out);
  bool Consumed(const stamp_flow_key& k, const stamp_flow& f, uint8_t proto) const;
  bool Listener(const Record& r, stamp_listener* out);
  void Settle(Record* r, uint8_t reason);
  void Fill(Record* r, const stamp_owner& o, uint8_t side, const ReadWindow& w);

  std::shared_ptr<BpfStamps> stamps_;
  uint64_t cookie_ = 0;  // this namespace's
  LocalAddresses local_;
  JoinCounters c_;
  // The stamp each tuple's last NEW was joined with: a previous owner whose stamp was already
  // used has no NEW left unread, so its tuple changing hands makes nothing ambiguous. Bounded by
  // starting over (the tuples that matter come back within seconds).
  struct KeyHash {
    size_t operator()(const stamp_flow_key& k) const {
      uint64_t h = 1469598103934665603ull;
      const auto* b = reinterpret_cast<const uint8_t*>(&k);
      for (size_t i = 0; i < sizeof(k); i++) h = (h ^ b[i]) * 1099511628211ull;
      return static_cast<size_t>(h);
    }
  };
  struct KeyEq {
    bool operator()(const stamp_flow_key& a, const stamp_flow_key& b) const { return memcmp(&a, &b, sizeof(a)) == 0; }
  };
  struct Joined {
    uint32_t pid;
    uint64_t stamp_ns;
  };
  std::unordered_map<stamp_flow_key, Joined, KeyHash, KeyEq> joined_;
};

class BpfJoinFactory : public JoinFactory {
 public:
  explicit BpfJoinFactory(std::shared_ptr<BpfStamps> stamps) : stamps_(std::move(stamps)) {}
  std::unique_ptr<Join> NewJoin() override { return std::unique_ptr<Join>(new BpfJoin(stamps_)); }
  const char* mode() const override { return "ebpf"; }
  const std::shared_ptr<BpfStamps>& stamps() const { return stamps_; }

 private:
  std::shared_ptr<BpfStamps> stamps_;
};

}  // namespace ctwatch
