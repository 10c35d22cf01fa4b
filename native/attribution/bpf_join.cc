// Which stamp is a flow's, and when to refuse one.
//
// A flow started here (its original source is a local address) belongs to the socket that
// started it: the stamp keyed by the original tuple. A flow that arrived (its original source is
// not local) belongs to the listener that accepted it: the listener keyed by the reply's source,
// the address the local socket really has after DNAT. A flow local at both ends belongs to its
// originator. A stamp from another namespace counts only for a flow that neither starts nor ends
// here (a container's connection seen in the host's table, after its NAT).
//
// The map keeps the latest stamp per tuple, and a tuple can change hands: the NEW we read may be
// older than a reuse of its tuple by another process. The reader knows its record was queued
// after `queued_after_ns` (it last saw the socket empty then); the map remembers when the owner
// of a tuple last changed and the previous owner's last stamp. If the owner changed after the
// record may have been queued, the previous owner used the tuple recently enough to have made
// this flow, and the reader has not already read that owner's NEW, the record is `ambiguous`:
// never a guess. A stamp too old to have made the flow (a
// TCP SYN is retried for up to ~2 minutes; a UDP sender re-stamps at least every second) is not
// the flow's either. A connected UDP socket is stamped just after its send, when conntrack's NEW
// already exists, so a local UDP flow without a stamp waits a few ms for it (WaitNs).
#include "attribution/bpf_join.h"

#include <bpf/bpf.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "attribution/bpf/stamp.h"
#include "attribution/seed.h"
#include "conntrack/clock.h"
#include "netns.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace ctwatch {

namespace {

constexpr uint64_t kTcpSpanNs = 130'000'000'000ull;  // SYN retries: 1+2+4+...+64 s
constexpr uint64_t kUdpSpanNs = STAMP_REFRESH_NS + 100'000'000ull;
constexpr uint64_t kWaitNs = 5'000'000;
// The joined table (BpfJoin::joined_): as many tuples as the kernel's map holds (STAMP_FLOWS_MAX),
// in buckets of two slots (a cache line each): 4 MiB.
constexpr size_t kJoinedSlots = STAMP_FLOWS_MAX;
constexpr size_t kJoinedBuckets = kJoinedSlots / 2;
static_assert((kJoinedBuckets & (kJoinedBuckets - 1)) == 0, "a power of two: the bucket is the hash's low bits");

bool Zero(const uint8_t* a, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (a[i] != 0) return false;
  }
  return true;
}

}  // namespace

OpenError BpfJoin::Open(const std::string& netns, int conntrack_fd) {
  // Once, for the reader's life: the join allocates nothing per record. The pages come zeroed
  // (empty slots).
  static_assert(sizeof(Joined) == 64, "a line a slot");
  OpenError mapped = joined_table_.Map(kJoinedSlots * sizeof(Joined), "the eBPF join's table of joined tuples");
  if (!mapped.ok()) return mapped;
  joined_ = static_cast<Joined*>(joined_table_.base());
  const uintptr_t base = reinterpret_cast<uintptr_t>(joined_);
  socklen_t len = sizeof(cookie_);
  if (getsockopt(conntrack_fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie_, &len) != 0) {
    return MakeOpenError("ERR_BPF_REFUSED", errno, "getsockopt",
                         "cannot read the network namespace cookie (SO_NETNS_COOKIE, Linux 5.14+), which eBPF attribution keys on");
  }
  int self_ns = -1;
  OpenError e = EnterNetns(netns, &self_ns);
  if (!e.ok()) return e;
  e = local_.Open(MonotonicNs());
  if (e.ok()) {
    // A crafted set of tuples that share a bucket makes their records ambiguous at worst (see
    // Consumed).
    joined_seed_ = (MonotonicNs() ^ cookie_ ^ base) | 1;
    SeedResult seeded = SeedListeners(stamps_->listeners_fd(), stamps_->bound_fd(), cookie_, stamps_->cgroup_root());
    c_.seeded = seeded.seeded;
    c_.seed_denied = seeded.denied;
  }
  LeaveNetns(self_ns);
  return e;
}

uint64_t BpfJoin::WaitNs() const { return kWaitNs; }

void BpfJoin::Upkeep() { stamps_->copy().Upkeep(); }

BpfJoin::Verdict BpfJoin::Origin(const Record& r, const ReadWindow& w, bool local, uint64_t now, stamp_flow* out) {
  stamp_flow_key k{};
  k.family = r.family;
  k.proto = r.proto;
  k.sport = r.sport;
  k.dport = r.dport;
  const size_t alen = r.family == AF_INET ? 4 : 16;
  memcpy(k.src, r.src, alen);
  memcpy(k.dst, r.dst, alen);
  const uint64_t span = r.proto == IPPROTO_TCP ? kTcpSpanNs : kUdpSpanNs;
  const uint64_t lo = r.kind == kSnapshot ? stamps_->attached_ns() : w.queued_after_ns;
  // The tuple's bucket is a cache miss (4 MiB, one random line pair per NEW): asked for now, it
  // arrives while the stamp is looked up.
  Joined* bucket = Bucket(k);
  __builtin_prefetch(&bucket[0], 1);
  __builtin_prefetch(&bucket[1], 1);
  // UDP: the exact tuple, then the socket bound to the wildcard address (stamped without a source).
  for (int attempt = 0; attempt < (r.proto == IPPROTO_UDP ? 2 : 1); attempt++) {
    if (attempt == 1) {
      if (Zero(k.src, alen)) break;
      memset(k.src, 0, sizeof(k.src));
      bucket = Bucket(k);
    }
    if (stamps_->copy().Find(k, now, out)) {
      c_.from_copy++;
    } else {
      c_.lookups++;
      if (bpf_map_lookup_elem(stamps_->flows_fd(), &k, out) != 0) continue;
    }
    if (local && out->owner.netns != cookie_) continue;  // another namespace's own tuple
    if (out->owner.stamp_ns + span < lo) continue;       // older than this flow can be
    if (out->changed_ns >= lo && out->prev_pid != 0 && out->prev_stamp_ns + span >= lo && !Consumed(bucket, k, *out, r.proto)) {
      return Verdict::kAmbiguous;
    }
    Remember(bucket, k, out->owner);
    return Verdict::kOwner;
  }
  return Verdict::kMissing;
}

// The bucket of a tuple: its two slots.
BpfJoin::Joined* BpfJoin::Bucket(const stamp_flow_key& k) const {
  return &joined_[(FlowKeyHash(k, joined_seed_) & (kJoinedBuckets - 1)) * 2];
}

// A tuple's slot holds the stamp its last NEW was joined with: its own slot if it has one, else
// the bucket's slot with the older stamp (an empty slot's is 0). One slot per key, so the lookup
// never meets a stale second copy.
void BpfJoin::Remember(Joined* b, const stamp_flow_key& k, const stamp_owner& o) {
  Joined* slot = memcmp(&b[0].key, &k, sizeof(k)) == 0   ? &b[0]
                 : memcmp(&b[1].key, &k, sizeof(k)) == 0 ? &b[1]
                 : b[0].stamp_ns <= b[1].stamp_ns        ? &b[0]
                                                         : &b[1];
  slot->key = k;
  slot->stamp_ns = o.stamp_ns;
  slot->pid = o.pid;
}

// Whether the previous owner's last stamp already went to a NEW this reader read. A TCP connect
// makes one NEW, so its stamp must match exactly; a UDP sender re-stamps while its flow lives, so
// a later stamp of the same process within the refresh interval is the same flow's.
// The table forgets: a tuple's slot is taken over by another tuple of its bucket. The full key is
// compared, so a forgotten tuple is only "not consumed", and its record `ambiguous`, never given
// to the wrong owner; the same as the map this replaced, which started over at 65 536 tuples.
bool BpfJoin::Consumed(const Joined* b, const stamp_flow_key& k, const stamp_flow& f, uint8_t proto) const {
  const Joined* j = memcmp(&b[0].key, &k, sizeof(k)) == 0 ? &b[0] : memcmp(&b[1].key, &k, sizeof(k)) == 0 ? &b[1] : nullptr;
  if (j == nullptr || j->pid != f.prev_pid) return false;
  if (proto == IPPROTO_TCP) return j->stamp_ns == f.prev_stamp_ns;
  return f.prev_stamp_ns >= j->stamp_ns && f.prev_stamp_ns - j->stamp_ns <= STAMP_REFRESH_NS;
}

bool BpfJoin::Listener(const Record& r, stamp_listener* out) {
  stamp_listener_key k{};
  k.netns = cookie_;
  k.family = r.family;
  k.proto = r.proto;
  k.port = r.reply_sport;
  const size_t alen = r.family == AF_INET ? 4 : 16;
  memcpy(k.addr, r.reply_src, alen);
  const int fd = stamps_->listeners_fd();
  c_.lookups++;
  if (bpf_map_lookup_elem(fd, &k, out) == 0) return true;
  memset(k.addr, 0, sizeof(k.addr));
  c_.lookups++;
  if (bpf_map_lookup_elem(fd, &k, out) == 0) return true;
  if (r.family != AF_INET) return false;
  // An IPv6 socket on the wildcard address takes IPv4 too, unless it is IPV6_V6ONLY.
  k.family = AF_INET6;
  c_.lookups++;
  return bpf_map_lookup_elem(fd, &k, out) == 0 && out->v6only != 1;
}

void BpfJoin::Fill(Record* r, const stamp_owner& o, uint8_t side, const ReadWindow& w) {
  r->present |= kHasAttribution | kHasOwner;
  r->unattributed = kAttributed;
  r->owner_pid = o.pid;
  r->owner_tid = o.tid;
  r->owner_uid = o.uid;
  r->owner_cgroup = o.cgroup;
  r->owner_start_ns = o.start_ns;
  memcpy(r->owner_comm, o.comm, sizeof(r->owner_comm));
  r->owner_side = side;
  r->owner_via = o.via;
  const uint64_t age = w.read_ns > o.stamp_ns ? (w.read_ns - o.stamp_ns) / 1000 : 0;
  r->owner_age_us = age > 0xffffffffu ? 0xffffffffu : static_cast<uint32_t>(age);
  c_.records++;
  if (side == kSideOrigin) c_.origin++;
  else c_.listener++;
}

void BpfJoin::Settle(Record* r, uint8_t reason) {
  r->present |= kHasAttribution;
  r->present &= ~kHasOwner;
  r->unattributed = reason;
  c_.records++;
  c_.reasons[reason & 15]++;
}

bool BpfJoin::Attach(Record* r, const ReadWindow& w, bool last) {
  const uint64_t t0 = MonotonicNs();
  struct Busy {
    JoinCounters* c;
    uint64_t t0;
    ~Busy() { c->busy_ns += MonotonicNs() - t0; }
  } busy{&c_, t0};
  if ((r->proto != IPPROTO_TCP && r->proto != IPPROTO_UDP) || !(r->present & kHasPorts)) {
    Settle(r, kUnsupported);
    return true;
  }
  const bool orig_local = local_.Contains(r->family, r->src, t0);
  const bool reply_local = (r->present & kHasReplyTuple) && local_.Contains(r->family, r->reply_src, t0);
  if (orig_local || !reply_local) {
    // Started here, or passing through (a container's flow after its NAT): the originator's.
    stamp_flow flow;
    switch (Origin(*r, w, orig_local, t0, &flow)) {
      case Verdict::kOwner:
        Fill(r, flow.owner, kSideOrigin, w);
        return true;
      case Verdict::kAmbiguous:
        Settle(r, kAmbiguous);
        return true;
      case Verdict::kMissing:
        break;
    }
  } else {
    // Arrived here: the listener's that accepted it.
    stamp_listener listener;
    if (Listener(*r, &listener)) {
      Fill(r, listener.owner, kSideListener, w);
      return true;
    }
  }
  // A connected UDP socket is stamped right after its send: give the stamp a moment.
  const bool may_come = r->proto == IPPROTO_UDP && r->kind == kNew && stamps_->sends_covered() && (orig_local || !reply_local);
  if (may_come && !last) return false;
  if (r->kind == kSnapshot) Settle(r, kPreexisting);
  else if (orig_local && r->proto == IPPROTO_UDP && !stamps_->sends_covered()) Settle(r, kNoHook);
  else if (orig_local || reply_local) Settle(r, kNoStamp);
  else Settle(r, kNotLocal);
  return true;
}

}  // namespace ctwatch
