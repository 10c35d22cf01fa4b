// A copy of the kernel's stamp map (bpf/owner.bpf.c `flows`) in the reader's memory, kept from the
// ring the BPF programs write each stamp to. The join asks it first: a NEW then costs a few memory
// reads instead of a bpf() map lookup (the syscall was ~35 % of the reader thread at the ceiling).
// The copy answers only what it is sure of; the kernel's map stays the authority for the rest.
#pragma once
#include <stdint.h>

#include <mutex>

#include "attribution/bpf/stamp.h"
#include "attribution/tuple_table.h"
#include "errors.h"

struct ring_buffer;

namespace ctwatch {

class StampCopy {
 public:
  StampCopy() = default;
  ~StampCopy();
  StampCopy(const StampCopy&) = delete;
  StampCopy& operator=(const StampCopy&) = delete;

  // `ring_fd` the stamp ring, `lost` the programs' count of stamps the ring had no room for (in
  // their mapped .bss).
  OpenError Open(int ring_fd, const volatile uint64_t* lost);
  // Unmaps the ring (the copy then knows nothing: Find says ask the map).
  void Close();
  // The map's entry for `k` as the copy knows it, after taking what the ring holds. False: the copy
  // does not know this tuple (never stamped since the copy began, pushed out of its bucket, or
  // every entry was dropped after the ring lost a stamp); ask the kernel's map.
  bool Find(const stamp_flow_key& k, stamp_flow* out);
  // Takes what the ring holds; the reader calls it between reads, so the ring does not fill while
  // no NEW of its own comes (the stamps are the whole host's).
  void Drain();

  struct Counters {
    uint64_t copied = 0;  // stamps taken from the ring
    uint64_t lost = 0;    // stamps the ring had no room for
    uint64_t resets = 0;  // times the copy dropped every entry after a loss
  };
  Counters counters() const;

 private:
  struct alignas(64) Slot {
    stamp_flow_key key;  // all zero (family 0): an empty slot, which no flow's key matches
    stamp_flow flow;     // flow.pad holds the generation the slot was written in
  };
  static_assert(sizeof(Slot) == 128, "two cache lines a slot");
  static int Take(void* self, void* data, size_t size);
  void DrainLocked();
  void Put(const stamp_flow_record& r);
  Slot* Bucket(const stamp_flow_key& k) const;

  mutable std::mutex mu_;  // readers of several namespaces share the copy
  ring_buffer* ring_ = nullptr;
  const volatile uint64_t* lost_ = nullptr;
  uint64_t lost_seen_ = 0;
  uint32_t generation_ = 1;  // slots of another generation are empty
  MappedTable table_;
  Slot* slots_ = nullptr;
  uint64_t seed_ = 0;
  Counters c_;
};

}  // namespace ctwatch
