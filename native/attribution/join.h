// The join: one reader's process attribution. The reader thread calls it for each NEW and
// snapshot record as it reads them, so the record that reaches JavaScript already names the
// process that owns the flow's local socket, or says why none is known (record.h: owner_*,
// unattributed). Two implementations: BpfJoin (stamps written by eBPF when the socket was used)
// and DiagJoin (the sock_diag fallback). Mode choice, logging and enrichment are TypeScript's.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "conntrack/record.h"
#include "errors.h"

namespace ctwatch {

// When a record could have been queued by the kernel: after `queued_after_ns` (the last moment
// the reader saw its socket empty) and before `read_ns` (when it was read). CLOCK_MONOTONIC.
struct ReadWindow {
  uint64_t queued_after_ns = 0;
  uint64_t read_ns = 0;
};

struct JoinCounters {
  uint64_t records = 0;     // records the join settled
  uint64_t origin = 0;      // ... attributed to the socket that started the flow
  uint64_t listener = 0;    // ... attributed to the socket that accepted it
  uint64_t reasons[16] = {};  // ... unattributed, by Unattributed code
  uint64_t waited = 0;      // records that waited for their stamp (connected UDP)
  uint64_t lookups = 0;     // map or socket lookups made (in the kernel: a syscall each)
  uint64_t from_copy = 0;   // stamps found in the reader's copy of the map (eBPF; no syscall)
  uint64_t busy_ns = 0;     // reader-thread time spent joining
  uint64_t seeded = 0;      // listeners found at start (sock_diag + /proc)
  uint64_t seed_denied = 0;  // processes whose descriptors could not be read at start
};

class Join {
 public:
  virtual ~Join() = default;
  // On the reader thread, once, before the first record: `netns` is the reader's namespace file
  // ("" for its own), `conntrack_fd` its event socket (which lives in that namespace).
  virtual OpenError Open(const std::string& netns, int conntrack_fd) = 0;
  // Fills r's attribution. Returns true when settled (an owner, or a final reason), false when
  // the owner may still come; then call again (same window) until `last`, which always settles.
  virtual bool Attach(Record* r, const ReadWindow& window, bool last) = 0;
  // How long an unsettled record may wait, ns after it was read.
  virtual uint64_t WaitNs() const = 0;
  // Whether each event must be read as soon as it is queued (the reader then does not linger to
  // let events pile up): a join that looks the socket up when it reads the event (sock_diag) finds
  // a socket that lived a millisecond only if it reads within that millisecond.
  virtual bool Prompt() const { return false; }
  virtual void Counters(JoinCounters* out) const = 0;
  // Work of the join's own between reads (the reader calls it each time round its loop, and at
  // least every UpkeepMs when that is not negative, even with no event coming).
  virtual void Upkeep() {}
  virtual int UpkeepMs() const { return -1; }
};

// What a reader is given: the mode's shared state, from which each reader makes its own join.
class JoinFactory {
 public:
  virtual ~JoinFactory() = default;
  virtual std::unique_ptr<Join> NewJoin() = 0;
  virtual const char* mode() const = 0;
  // What the mode's shared state counts for all its readers together (ebpf: the programs' stamps
  // by hook, the stamp ring and the copies), read from any thread; empty when it counts nothing.
  virtual std::vector<std::pair<const char*, uint64_t>> SharedCounters() const { return {}; }
};

}  // namespace ctwatch
