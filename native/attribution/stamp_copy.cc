// Why the copy is never staler than the kernel's map, and what it does when it cannot be sure.
//
// put_flow() (bpf/owner.bpf.c) writes each stamp to the ring before it updates the map, and when
// the ring has no room it counts the loss first. A NEW is queued by the kernel after its stamp was
// written (TCP: the stamp is made before the SYN; the UDP send's stamp, made after, is waited for
// as with the map), so by the time the reader has read a NEW and drained the ring, the ring holds
// the NEW's stamp or the loss count says one was lost. After a loss the copy drops every entry (a
// new generation) and the map answers until the ring has refilled them: which tuple the lost stamp
// was is not known. The copy keeps what the map's LRU may already have evicted; such an entry is
// still the tuple's latest stamp and passes the join's age checks as the map's would have.
//
// A table of STAMP_FLOWS_MAX slots in buckets of two; a stamp pushes out its bucket's older one,
// whose tuple the map then answers for. Of two stamps of one tuple (two CPUs at once) the later
// stamp is kept.
#include "attribution/stamp_copy.h"

#include <bpf/libbpf.h>
#include <time.h>

namespace ctwatch {

namespace {

constexpr size_t kSlots = STAMP_FLOWS_MAX;
constexpr size_t kBuckets = kSlots / 2;
static_assert((kBuckets & (kBuckets - 1)) == 0, "a power of two: the bucket is the hash's low bits");

}  // namespace

StampCopy::~StampCopy() { Close(); }

void StampCopy::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (ring_ != nullptr) ring_buffer__free(ring_);
  ring_ = nullptr;
  slots_ = nullptr;
}

OpenError StampCopy::Open(int ring_fd, const volatile uint64_t* lost) {
  OpenError e = table_.Map(kSlots * sizeof(Slot), "the eBPF attribution's copy of the stamp map");
  if (!e.ok()) return e;
  slots_ = static_cast<Slot*>(table_.base());
  ring_ = ring_buffer__new(ring_fd, &StampCopy::Take, this, nullptr);
  if (ring_ == nullptr) {
    int err = errno;
    return MakeOpenError("ERR_BPF_REFUSED", err, "mmap", std::string("cannot map the eBPF stamp ring: ") + strerror(err));
  }
  lost_ = lost;
  lost_seen_ = __atomic_load_n(const_cast<const uint64_t*>(lost_), __ATOMIC_ACQUIRE);
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  seed_ = (static_cast<uint64_t>(ts.tv_nsec) ^ reinterpret_cast<uintptr_t>(slots_) ^ (static_cast<uint64_t>(ts.tv_sec) << 32)) | 1;
  return {};
}

StampCopy::Slot* StampCopy::Bucket(const stamp_flow_key& k) const {
  return &slots_[(FlowKeyHash(k, seed_) & (kBuckets - 1)) * 2];
}

int StampCopy::Take(void* self, void* data, size_t size) {
  auto* copy = static_cast<StampCopy*>(self);
  if (size == sizeof(stamp_flow_record)) {
    stamp_flow_record r;
    memcpy(&r, data, sizeof(r));
    copy->Put(r);
    copy->c_.copied++;
  }
  return 0;
}

void StampCopy::Put(const stamp_flow_record& r) {
  Slot* b = Bucket(r.key);
  auto live = [&](const Slot& s) { return s.flow.pad == generation_ && memcmp(&s.key, &r.key, sizeof(r.key)) == 0; };
  Slot* slot;
  if (live(b[0]) || live(b[1])) {
    slot = live(b[0]) ? &b[0] : &b[1];
    if (slot->flow.owner.stamp_ns > r.flow.owner.stamp_ns) return;  // a later stamp is kept
  } else if (b[0].flow.pad != generation_) {
    slot = &b[0];
  } else if (b[1].flow.pad != generation_) {
    slot = &b[1];
  } else {
    slot = b[0].flow.owner.stamp_ns <= b[1].flow.owner.stamp_ns ? &b[0] : &b[1];
  }
  slot->key = r.key;
  slot->flow = r.flow;
  slot->flow.pad = generation_;
}

void StampCopy::DrainLocked() {
  if (ring_ == nullptr) return;
  ring_buffer__consume(ring_);
  // After the drain: a loss counted before a stamp we took is seen, so that stamp's generation ends
  // with every other (conservative: the map answers for them until the ring brings them again).
  const uint64_t lost = __atomic_load_n(const_cast<const uint64_t*>(lost_), __ATOMIC_ACQUIRE);
  if (lost != lost_seen_) {
    c_.lost += lost - lost_seen_;
    lost_seen_ = lost;
    c_.resets++;
    if (++generation_ == 0) generation_ = 1;  // 0 is an empty slot's
  }
}

void StampCopy::Drain() {
  std::lock_guard<std::mutex> lock(mu_);
  DrainLocked();
}

bool StampCopy::Find(const stamp_flow_key& k, stamp_flow* out) {
  std::lock_guard<std::mutex> lock(mu_);
  DrainLocked();
  if (slots_ == nullptr) return false;
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
  std::lock_guard<std::mutex> lock(mu_);
  return c_;
}

}  // namespace ctwatch
