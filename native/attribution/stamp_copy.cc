// Why the copy is never staler than the kernel's map, and what it does when it cannot be sure.
//
// put_flow() (bpf/owner.bpf.c) writes each stamp to the ring before it updates the map, and when
// the ring has no room it counts the loss first. A NEW is queued by the kernel after its stamp was
// written (TCP: the stamp is made before the SYN; the UDP send's stamp, made after, is waited for
// as with the map), so by the time the reader has read a NEW and drained the ring, the ring holds
// the NEW's stamp or the loss count says one was lost. After a loss the copy drops every entry (a
// new generation) and the map answers until the ring has refilled them: which tuple the lost stamp
// was is not known. Records reserved before the loss was seen (below `loss_pos_`, the producer's
// position read after the count) may be older than the lost stamp, so they are passed over, not
// copied: a record still being written when the loss was seen is passed over when it is done. The copy keeps what the map's LRU may already have evicted; such an entry is
// still the tuple's latest stamp and passes the join's age checks as the map's would have.
//
// "Drained" means every record reserved before the drain began was taken. A record still being
// written (reserved, not yet submitted: its CPU was preempted between the two) stops the consumer,
// and records after it may be the NEW's stamp: until it is submitted, the map answers.
//
// The stamps are the whole host's, and any local account can make them (a UDP sendto to a new
// destination each time). So a drain takes at most kDrainBudget records (a drain that stops there
// is not caught up: the map answers that NEW), and all drains kMaxPerWindow a window; stamps that
// come faster than that are an overrun: the copy is dropped, the map answers, the ring is left to
// overflow, and after kResumeNs the copy starts again, passing over what the ring held (as after a
// loss). The reader's time for the copy is bounded however fast stamps come.
//
// A table of STAMP_FLOWS_MAX slots in buckets of two; a stamp pushes out its bucket's older one,
// whose tuple the map then answers for. Of two records of one tuple the one read last wins (the
// ring's order is the order of reservation, the map's the order of updates: two CPUs stamping one
// tuple at once may leave them different, and neither record names the other as the previous
// owner, in the copy as in the map: the race is the map's own).
#include "attribution/stamp_copy.h"

#include <linux/bpf.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "conntrack/clock.h"

namespace ctwatch {

namespace {

constexpr size_t kSlots = STAMP_FLOWS_MAX;
constexpr size_t kBuckets = kSlots / 2;
static_assert((kBuckets & (kBuckets - 1)) == 0, "a power of two: the bucket is the hash's low bits");
constexpr uint64_t kDrainBudget = 4096;           // records a drain: ~0.5 ms at most
constexpr uint64_t kWindowNs = 100'000'000;       // ...
constexpr uint64_t kMaxPerWindow = 100'000;       // records a window: 1 M a second
static_assert(sizeof(unsigned long) == sizeof(uint64_t), "the kernel's ring positions are unsigned long");
constexpr uint64_t kResumeNs = 1'000'000'000;     // after an overrun, the map answers for 1 s

}  // namespace

StampCopy::~StampCopy() { Close(); }

OpenError StampCopy::Open(int ring_fd, uint32_t ring_bytes, const volatile uint64_t* lost) {
  OpenError e = table_.Map(kSlots * sizeof(Slot), "the eBPF attribution's copy of the stamp map");
  if (!e.ok()) return e;
  slots_ = static_cast<Slot*>(table_.base());
  // The kernel's ring layout (kernel/bpf/ringbuf.c): the consumer position's page, which the
  // consumer writes; then, read-only, the producer position's page and the data, mapped twice.
  const long page = sysconf(_SC_PAGESIZE);
  void* consumer = mmap(nullptr, static_cast<size_t>(page), PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0);
  if (consumer == MAP_FAILED) {
    int err = errno;
    return MakeOpenError("ERR_BPF_REFUSED", err, "mmap", std::string("cannot map the eBPF stamp ring's consumer page: ") + strerror(err));
  }
  consumer_map_ = consumer;
  producer_map_bytes_ = static_cast<size_t>(page) + 2 * static_cast<size_t>(ring_bytes);
  void* producer = mmap(nullptr, producer_map_bytes_, PROT_READ, MAP_SHARED, ring_fd, page);
  if (producer == MAP_FAILED) {
    int err = errno;
    return MakeOpenError("ERR_BPF_REFUSED", err, "mmap", std::string("cannot map the eBPF stamp ring: ") + strerror(err));
  }
  producer_map_ = producer;
  consumer_pos_ = static_cast<uint64_t*>(consumer);
  producer_pos_ = static_cast<const uint64_t*>(producer);
  data_ = static_cast<const uint8_t*>(producer) + page;
  mask_ = ring_bytes - 1;
  lost_ = lost;
  lost_seen_ = 0;  // the programs started at 0: a loss before this Open is seen at the first drain
  window_ns_ = MonotonicNs();
  seed_ = (window_ns_ ^ reinterpret_cast<uintptr_t>(slots_)) | 1;
  return {};
}

void StampCopy::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (producer_map_ != nullptr) munmap(producer_map_, producer_map_bytes_);
  if (consumer_map_ != nullptr) munmap(consumer_map_, static_cast<size_t>(sysconf(_SC_PAGESIZE)));
  producer_map_ = consumer_map_ = nullptr;
  consumer_pos_ = nullptr;
  producer_pos_ = nullptr;
  data_ = nullptr;
  slots_ = nullptr;
}

StampCopy::Slot* StampCopy::Bucket(const stamp_flow_key& k) const {
  return &slots_[(FlowKeyHash(k, seed_) & (kBuckets - 1)) * 2];
}

void StampCopy::Put(const stamp_flow_record& r) {
  Slot* b = Bucket(r.key);
  auto live = [&](const Slot& s) { return s.flow.pad == generation_ && memcmp(&s.key, &r.key, sizeof(r.key)) == 0; };
  Slot* slot = live(b[0])                        ? &b[0]
               : live(b[1])                      ? &b[1]
               : b[0].flow.pad != generation_    ? &b[0]
               : b[1].flow.pad != generation_    ? &b[1]
               : b[0].flow.owner.stamp_ns <= b[1].flow.owner.stamp_ns ? &b[0]
                                                                        : &b[1];
  slot->key = r.key;
  slot->flow = r.flow;
  slot->flow.pad = generation_;
}

void StampCopy::NewGenerationLocked() {
  resets_.fetch_add(1, std::memory_order_relaxed);
  if (++generation_ == 0) {
    // 2^32 generations later: a slot of the first one would look current again.
    memset(slots_, 0, kSlots * sizeof(Slot));
    generation_ = 1;
  }
}

// After the drain: a loss counted before a stamp we took is seen, so that stamp's generation ends
// with every other (conservative: the map answers for them until the ring brings them again).
void StampCopy::CheckLostLocked() {
  const uint64_t lost = __atomic_load_n(const_cast<const uint64_t*>(lost_), __ATOMIC_ACQUIRE);
  if (lost == lost_seen_) return;
  lost_count_.fetch_add(lost - lost_seen_, std::memory_order_relaxed);
  lost_seen_ = lost;
  loss_pos_ = __atomic_load_n(producer_pos_, __ATOMIC_ACQUIRE);  // after the count: see the top
  NewGenerationLocked();
}

void StampCopy::OverrunLocked(uint64_t now_ns) {
  tracking_ = false;
  overrun_ns_ = now_ns;
  overruns_.fetch_add(1, std::memory_order_relaxed);
  NewGenerationLocked();
}

StampCopy::Drained StampCopy::DrainLocked(uint64_t now_ns) {
  if (now_ns >= window_ns_ + kWindowNs) {  // (a reader's `now` may be older than the window)
    window_ns_ = now_ns;
    window_records_ = 0;
  }
  uint64_t budget = window_records_ >= kMaxPerWindow ? 0 : std::min<uint64_t>(kDrainBudget, kMaxPerWindow - window_records_);
  uint64_t cons = __atomic_load_n(consumer_pos_, __ATOMIC_ACQUIRE);
  // Everything reserved before now lies below this position.
  const uint64_t prod = __atomic_load_n(producer_pos_, __ATOMIC_ACQUIRE);
  Drained result = Drained::kCaughtUp;
  const uint64_t from = cons;
  uint64_t taken = 0;
  uint64_t passed = 0;
  while (cons < prod) {
    if (taken == budget) {
      result = window_records_ + taken >= kMaxPerWindow ? Drained::kOverWindow : Drained::kBudget;
      break;
    }
    const uint8_t* at = data_ + (cons & mask_);
    const uint32_t len = __atomic_load_n(reinterpret_cast<const uint32_t*>(at), __ATOMIC_ACQUIRE);
    if (len & BPF_RINGBUF_BUSY_BIT) {
      result = Drained::kBusy;
      break;
    }
    const uint32_t size = len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
    if (size > mask_) {
      // Not a length the kernel writes: start over from the producer's head. The records skipped
      // are not counted (how many there were cannot be read from a ring in this state), so the
      // counters' sum falls short by them; never seen, since the kernel writes every header.
      cons = prod;
      loss_pos_ = prod;
      NewGenerationLocked();
      break;
    }
    if (cons < loss_pos_) {
      // reserved before a loss was seen: passed over (see the top)
      if (!(len & BPF_RINGBUF_DISCARD_BIT)) passed++;
    } else if (!(len & BPF_RINGBUF_DISCARD_BIT)) {
      if (size == sizeof(stamp_flow_record)) {
        stamp_flow_record r;
        memcpy(&r, at + BPF_RINGBUF_HDR_SZ, sizeof(r));
        Put(r);
        copied_.fetch_add(1, std::memory_order_relaxed);
      } else {
        // not a record of ours: as good as a lost stamp, and counted as passed over so that
        // written = copied + lost + passed over still holds
        passed++;
        NewGenerationLocked();
      }
    }
    cons += (static_cast<uint64_t>(size) + BPF_RINGBUF_HDR_SZ + 7) & ~7ull;
    taken++;
  }
  window_records_ += taken;
  if (passed != 0) passed_over_.fetch_add(passed, std::memory_order_relaxed);
  // Only when it moved: every CPU that reserves reads this line.
  if (cons != from) __atomic_store_n(consumer_pos_, cons, __ATOMIC_RELEASE);
  return result;
}

void StampCopy::Upkeep() {
  std::lock_guard<std::mutex> lock(mu_);
  if (consumer_pos_ == nullptr) return;
  const uint64_t now = MonotonicNs();
  if (!tracking_) {
    if (now - overrun_ns_ < kResumeNs) return;
    // Start again: what the ring holds now is passed over, as after a loss (the consumer is not
    // moved past a record still being written). The count first, then the position: a loss after
    // the count is seen as new, never missed.
    // What the ring lost while the copy was off is counted here (no drain saw it).
    const uint64_t lost = __atomic_load_n(const_cast<const uint64_t*>(lost_), __ATOMIC_ACQUIRE);
    lost_count_.fetch_add(lost - lost_seen_, std::memory_order_relaxed);
    lost_seen_ = lost;
    loss_pos_ = __atomic_load_n(producer_pos_, __ATOMIC_ACQUIRE);
    NewGenerationLocked();
    tracking_ = true;
    window_ns_ = now;
    window_records_ = 0;
  }
  // Drains until caught up, within the window's bound.
  for (;;) {
    const Drained d = DrainLocked(now);
    CheckLostLocked();
    if (d == Drained::kOverWindow) OverrunLocked(now);
    if (d != Drained::kBudget) return;
  }
}

bool StampCopy::Find(const stamp_flow_key& k, uint64_t now, stamp_flow* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (consumer_pos_ == nullptr || !tracking_) return false;
  const Drained d = DrainLocked(now);
  CheckLostLocked();
  if (d == Drained::kOverWindow) OverrunLocked(now);
  // Not caught up (a record being written, or this drain's budget): the NEW's stamp may be behind.
  if (d != Drained::kCaughtUp) return false;
  const Slot* b = Bucket(k);
  for (int i = 0; i < 2; i++) {
    if (b[i].flow.pad == generation_ && memcmp(&b[i].key, &k, sizeof(k)) == 0) {
      *out = b[i].flow;
      out->pad = 0;
      return true;
    }
  }
  return false;
}

StampCopy::Counters StampCopy::counters() const {
  Counters c;
  c.copied = copied_.load(std::memory_order_relaxed);
  c.lost = lost_count_.load(std::memory_order_relaxed);
  c.passed_over = passed_over_.load(std::memory_order_relaxed);
  c.resets = resets_.load(std::memory_order_relaxed);
  c.overruns = overruns_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace ctwatch
