// A copy of the kernel's stamp map (bpf/owner.bpf.c `flows`) in the reader's memory, kept from the
// ring the BPF programs write each stamp to. The join asks it first: a NEW then costs a few memory
// reads instead of a bpf() map lookup (the syscall was ~35 % of the reader thread at the ceiling).
// The copy answers only what it is sure of; the kernel's map stays the authority for the rest.
#pragma once
#include <stdint.h>

#include <atomic>
#include <mutex>

#include "attribution/bpf/stamp.h"
#include "attribution/tuple_table.h"
#include "errors.h"

namespace ctwatch {

class StampCopy {
 public:
  StampCopy() = default;
  ~StampCopy();
  StampCopy(const StampCopy&) = delete;
  StampCopy& operator=(const StampCopy&) = delete;

  // `ring_fd` the stamp ring of `ring_bytes`, `lost` the programs' count of stamps the ring had no
  // room for (in their mapped .bss, zero when they were loaded).
  OpenError Open(int ring_fd, uint32_t ring_bytes, const volatile uint64_t* lost);
  // Unmaps the ring (the copy then knows nothing: Find says ask the map).
  void Close();
  // The map's entry for `k` as the copy knows it, after taking what the ring holds. False: ask
  // the kernel's map (the copy does not know this tuple, or cannot be sure of it now: see
  // stamp_copy.cc). `now`: CLOCK_MONOTONIC ns, the caller's (the join reads it per record).
  bool Find(const stamp_flow_key& k, uint64_t now, stamp_flow* out);
  // Between reads: takes what the ring holds, so it does not fill while no NEW of this reader's
  // comes (the stamps are the whole host's), and resumes the copy after an overrun.
  void Upkeep();

  struct Counters {
    uint64_t copied = 0;       // stamps taken from the ring
    uint64_t lost = 0;         // stamps the ring had no room for
    uint64_t passed_over = 0;  // stamps read but not copied: reserved before a seen loss or a resume
    uint64_t resets = 0;       // times the copy dropped every entry (a loss, an overrun, its resume)
    uint64_t overruns = 0;     // times the stamps came faster than the copy may take them
  };
  // Without the lock: never waits for a reader thread in the middle of a drain.
  Counters counters() const;

 private:
  struct alignas(64) Slot {
    stamp_flow_key key;  // all zero (family 0): an empty slot, which no flow's key matches
    stamp_flow flow;     // flow.pad holds the generation the slot was written in
  };
  static_assert(sizeof(Slot) == 128, "two cache lines a slot");
  // kBusy: stopped at a record still being written; kBudget: at the drain's bound; kOverWindow:
  // at the window's bound (an overrun).
  enum class Drained { kCaughtUp, kBusy, kBudget, kOverWindow };
  Drained DrainLocked(uint64_t now_ns);
  void CheckLostLocked();
  void NewGenerationLocked();
  void OverrunLocked(uint64_t now_ns);
  void Put(const stamp_flow_record& r);
  Slot* Bucket(const stamp_flow_key& k) const;

  mutable std::mutex mu_;  // readers of several namespaces share the copy
  // The ring as the kernel maps it (see Open): the consumer page we write, the producer page and
  // the data (mapped twice in a row, so a record that wraps reads as one).
  void* consumer_map_ = nullptr;
  void* producer_map_ = nullptr;
  size_t producer_map_bytes_ = 0;
  uint64_t* consumer_pos_ = nullptr;
  const uint64_t* producer_pos_ = nullptr;
  const uint8_t* data_ = nullptr;
  uint64_t mask_ = 0;
  const volatile uint64_t* lost_ = nullptr;
  uint64_t lost_seen_ = 0;
  uint64_t loss_pos_ = 0;    // records below this ring position are passed over (see the .cc)
  uint32_t generation_ = 1;  // slots of another generation are empty
  bool tracking_ = true;     // false after an overrun: the map answers until Upkeep resumes
  uint64_t overrun_ns_ = 0;
  uint64_t window_ns_ = 0;       // the start of the current rate window
  uint64_t window_records_ = 0;  // records taken in it
  MappedTable table_;
  Slot* slots_ = nullptr;
  uint64_t seed_ = 0;
  std::atomic<uint64_t> copied_{0}, lost_count_{0}, passed_over_{0}, resets_{0}, overruns_{0};
};

}  // namespace ctwatch
