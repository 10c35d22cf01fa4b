// What the reader's fixed tables of tuples share (bpf_join.cc's joined tuples, stamp_copy.cc's copy
// of the stamp map): memory mapped once, on huge pages where the kernel has them, and the hash
// that picks a tuple's bucket. Nothing is allocated per record.
#pragma once
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <cstddef>
#include <string>

#include "attribution/bpf/stamp.h"
#include "errors.h"
#include "netns.h"  // MakeOpenError

namespace ctwatch {

// `bytes` of zeroed memory starting on a huge page boundary (one huge page of slack is mapped),
// so that a random slot is not a TLB miss too (a page walk per NEW, a two-level one in a VM).
// Pages are touched as slots fill.
class MappedTable {
 public:
  static constexpr uintptr_t kHugePage = 2u << 20;
  MappedTable() = default;
  MappedTable(const MappedTable&) = delete;
  MappedTable& operator=(const MappedTable&) = delete;
  ~MappedTable() {
    if (map_ != nullptr) munmap(map_, mapped_);
  }
  // `what` names the table in the error (out of memory: raise the memory limit).
  OpenError Map(size_t bytes, const char* what) {
    mapped_ = bytes + kHugePage;
    void* at = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (at == MAP_FAILED) {
      return MakeOpenError("ERR_NO_MEMORY", errno, "mmap",
                           std::string("cannot map ") + what + ": out of memory (raise the memory limit)");
    }
    map_ = at;
    base_ = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(at) + kHugePage - 1) & ~(kHugePage - 1));
    madvise(base_, bytes, MADV_HUGEPAGE);  // advice only: 4 KiB pages work the same
    return {};
  }
  void* base() const { return base_; }

 private:
  void* map_ = nullptr;
  void* base_ = nullptr;
  size_t mapped_ = 0;
};

// The bucket hash of a flow key (40 bytes, five words). The seed is not a secret, only not the
// same on every host: a crafted set of tuples that share a bucket costs its records the table's
// help at worst (each table says what that means for it).
inline uint64_t FlowKeyHash(const stamp_flow_key& k, uint64_t seed) {
  static_assert(sizeof(stamp_flow_key) == 40, "the hash reads the key as five words");
  uint64_t w[5];
  memcpy(w, &k, sizeof(w));
  uint64_t h = seed;
  for (uint64_t x : w) {
    h = (h ^ x) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
  }
  return h;
}

}  // namespace ctwatch
