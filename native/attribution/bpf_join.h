// The eBPF join: for each NEW, the stamp bpf/owner.bpf.c wrote when the flow's socket was used,
// found by the flow's tuple in the reader's copy of the map (stamp_copy.h) or the kernel's maps (see bpf_join.cc for the rules that keep a
// tuple that changed hands from being given to the wrong process).
#pragma once
#include <cstring>
#include <memory>

#include "attribution/bpf/stamp.h"
#include "attribution/bpf_stamps.h"
#include "attribution/join.h"
#include "attribution/local.h"
#include "attribution/tuple_table.h"

namespace ctwatch {

class BpfJoin : public Join {
 public:
  explicit BpfJoin(std::shared_ptr<BpfStamps> stamps) : stamps_(std::move(stamps)) {}
  OpenError Open(const std::string& netns, int conntrack_fd) override;
  bool Attach(Record* r, const ReadWindow& window, bool last) override;
  uint64_t WaitNs() const override;
  // Takes the stamp ring's records into the copy, so that it does not fill while no NEW comes.
  void Upkeep() override;
  int UpkeepMs() const override { return STAMP_RING_DRAIN_MS; }
  void Counters(JoinCounters* out) const override { *out = c_; }

 private:
  enum class Verdict { kMissing, kOwner, kAmbiguous };
  Verdict Origin(const Record& r, const ReadWindow& w, bool local, uint64_t now, stamp_flow* out);
  struct Joined;
  bool Consumed(const Joined* bucket, const stamp_flow_key& k, const stamp_flow& f, uint8_t proto) const;
  bool Listener(const Record& r, stamp_listener* out);
  void Settle(Record* r, uint8_t reason);
  void Fill(Record* r, const stamp_owner& o, uint8_t side, const ReadWindow& w);

  std::shared_ptr<BpfStamps> stamps_;
  uint64_t cookie_ = 0;  // this namespace's
  LocalAddresses local_;
  JoinCounters c_;
  // The stamp each tuple's last NEW was joined with: a previous owner whose stamp was already
  // used has no NEW left unread, so its tuple changing hands makes nothing ambiguous. A fixed
  // table in buckets of two (bpf_join.cc, Remember and Consumed): nothing allocated per record.
  struct alignas(64) Joined {  // a cache line
    stamp_flow_key key;  // all zero (family 0): an empty slot, which no flow's key matches
    uint64_t stamp_ns;
    uint32_t pid;
  };
  Joined* Bucket(const stamp_flow_key& k) const;
  void Remember(Joined* bucket, const stamp_flow_key& k, const stamp_owner& o);
  MappedTable joined_table_;  // mapped by Open
  Joined* joined_ = nullptr;  // kJoinedSlots of it
  uint64_t joined_seed_ = 0;
};

class BpfJoinFactory : public JoinFactory {
 public:
  explicit BpfJoinFactory(std::shared_ptr<BpfStamps> stamps) : stamps_(std::move(stamps)) {}
  std::unique_ptr<Join> NewJoin() override { return std::unique_ptr<Join>(new BpfJoin(stamps_)); }
  const char* mode() const override { return "ebpf"; }
  std::vector<std::pair<const char*, uint64_t>> SharedCounters() const override { return stamps_->Counters(); }
  const std::shared_ptr<BpfStamps>& stamps() const { return stamps_; }

 private:
  std::shared_ptr<BpfStamps> stamps_;
};

}  // namespace ctwatch
