// The BPF half of attribution: loads the programs of bpf/owner.bpf.c once per process, attaches
// them (cgroup v2 root + raw tracepoints, every attachment a BPF link, so the kernel detaches them
// when the last descriptor goes, even on SIGKILL) and hands the readers the maps to join with.
// Shared by every reader of the process; the last one to let go detaches and frees everything.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attribution/stamp_copy.h"
#include "errors.h"

struct owner_bpf;

namespace ctwatch {

class BpfStamps {
 public:
  // The loaded programs, loading them if no one holds them. On failure returns null and fills
  // `error` with a typed error (ERR_BPF_PERMISSION, ERR_BPF_NO_BTF, ERR_BPF_NO_CGROUP2,
  // ERR_BPF_LOCKDOWN, ERR_BPF_REFUSED) whose message names what is missing.
  // `ring_bytes` sizes the stamp ring (0: STAMP_RING_BYTES; a power of two of at least a page),
  // for the programs this call loads: a caller that finds them loaded gets them as they are.
  static std::shared_ptr<BpfStamps> Acquire(OpenError* error, uint32_t ring_bytes = 0);
  static constexpr uint32_t kMaxRingBytes = 64u << 20;  // its pages count twice in RSS
  // The refusal of a ring size that is not one (`given` as the caller wrote it).
  static OpenError RingSizeRefused(const std::string& given);
  ~BpfStamps();
  BpfStamps(const BpfStamps&) = delete;
  BpfStamps& operator=(const BpfStamps&) = delete;

  int flows_fd() const { return flows_fd_; }
  int listeners_fd() const { return listeners_fd_; }
  int bound_fd() const { return bound_fd_; }
  // CLOCK_MONOTONIC ns when the programs were attached: nothing was stamped before.
  uint64_t attached_ns() const { return attached_ns_; }
  // Connected UDP is covered only when sock:sock_send_length exists (see owner.bpf.c).
  bool sends_covered() const { return sends_covered_; }
  const std::string& cgroup_root() const { return cgroup_root_; }
  // The reader's copy of the flows map, fed by the stamp ring (shared by every reader).
  StampCopy& copy() { return copy_; }
  uint32_t ring_bytes() const { return ring_bytes_; }
  // Stamp counters summed over CPUs, by name (connect, sendto, ...), then the ring's (ringCopied,
  // ringLost, copyResets, copyOverruns).
  std::vector<std::pair<const char*, uint64_t>> Counters() const;
  // Programs attached: ids the kernel gave them (for tests and `ctwatch doctor`).
  std::vector<uint32_t> ProgramIds() const;

 private:
  BpfStamps() = default;
  OpenError Load(uint32_t ring_bytes);

  owner_bpf* skel_ = nullptr;
  int cgroup_fd_ = -1;
  int flows_fd_ = -1;
  int listeners_fd_ = -1;
  int bound_fd_ = -1;
  int counters_fd_ = -1;
  uint64_t attached_ns_ = 0;
  bool sends_covered_ = false;
  std::string cgroup_root_;
  uint32_t ring_bytes_ = 0;
  StampCopy copy_;
};

// The capabilities attribution needs in each mode, as the kernel checks them: the one list docs,
// doctor and the systemd unit are written from (see docs/attribution.md).
struct CapabilityCheck {
  std::vector<std::string> missing;  // names (CAP_BPF, ...) of what the effective set lacks
};
CapabilityCheck CheckBpfCapabilities();

}  // namespace ctwatch
