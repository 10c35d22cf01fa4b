#include "attribution/diag_join.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "conntrack/record.h"
#include "netns.h"

namespace ctwatch {

namespace {

// How long a NEW whose socket was found may wait for its owner: the first connection of a new
// process needs a discovery (at most every kDiscoveryMinUs); a batch waiting holds back the ones
// behind it, so this stays short.
constexpr uint64_t kWaitNs = 100'000'000;
constexpr size_t kWaitingMax = 65536;
constexpr uint8_t kViaSockDiag = 7;
constexpr uint32_t kTcpListen = 10;
constexpr uint32_t kTcpSynRecv = 3;
constexpr uint32_t kTcpEstablished = 1;

DiagRequest RequestFor(const Record& r, bool reply, bool listener) {
  DiagRequest q;
  q.family = r.family;
  q.proto = r.proto;
  q.listener = listener;
  memcpy(q.local, reply ? r.reply_src : r.src, 16);
  q.lport = reply ? r.reply_sport : r.sport;
  if (!listener) {
    memcpy(q.remote, reply ? r.reply_dst : r.dst, 16);
    q.rport = reply ? r.reply_dport : r.dport;
  }
  return q;
}

}  // namespace

DiagJoin::~DiagJoin() {
  if (diag_fd_ >= 0) close(diag_fd_);
}

OpenError DiagJoin::Open(const std::string& netns, int /*conntrack_fd*/) {
  const std::string where = netns.empty() ? "" : " in network namespace " + netns;
  int self_ns = -1;
  OpenError e = EnterNetns(netns, &self_ns);
  if (!e.ok()) return e;
  e = OpenNetlink(NETLINK_SOCK_DIAG, "sock_diag", where, &diag_fd_);
  if (e.ok()) e = local_.Open(MonotonicUs() * 1000);
  uint64_t netns_ino = 0;
  struct stat sb;
  // Still inside the namespace: this thread's view of it is the namespace's identity.
  if (e.ok() && stat("/proc/thread-self/ns/net", &sb) == 0) netns_ino = sb.st_ino;
  LeaveNetns(self_ns);
  if (e.ok()) index_.reset(new OwnerIndex(netns_ino, cgroup_root_));
  return e;
}

uint64_t DiagJoin::WaitNs() const { return kWaitNs; }

TupleKey DiagJoin::KeyOf(const Record& r) {
  TupleKey k;
  k.family = r.family;
  k.proto = r.proto;
  k.lport = r.sport;
  k.rport = r.dport;
  memcpy(k.local, r.src, 16);
  memcpy(k.remote, r.dst, 16);
  return k;
}

bool DiagJoin::Lookup(DiagRequest* q, uint32_t* res) {
  std::vector<DiagRequest> reqs(1, *q);
  uint32_t out[kResultWidth] = {EAGAIN};
  c_.lookups++;
  DiagLookupMany(diag_fd_, reqs, out, &diag_);
  memcpy(res, out, sizeof(out));
  return out[0] == 0;
}

void DiagJoin::Settle(Record* r, uint8_t reason) {
  r->present |= kHasAttribution;
  r->present &= ~kHasOwner;
  r->unattributed = reason;
  c_.records++;
  c_.reasons[reason & 15]++;
}

void DiagJoin::Fill(Record* r, const ProcOwner& o, uint8_t side) {
  r->present |= kHasAttribution | kHasOwner;
  r->unattributed = kAttributed;
  r->owner_pid = static_cast<uint32_t>(o.pid);
  r->owner_tid = static_cast<uint32_t>(o.pid);
  r->owner_uid = o.uid;
  r->owner_cgroup = o.cgroup;
  r->owner_start_ns = o.start_ns;
  memcpy(r->owner_comm, o.comm, sizeof(r->owner_comm));
  r->owner_side = side;
  r->owner_via = kViaSockDiag;
  r->owner_age_us = 0;
  c_.records++;
  if (side == kSideOrigin) c_.origin++;
  else c_.listener++;
}

// Finds the flow's socket (see the header for which); settles the record when there is none.
DiagJoin::Found DiagJoin::Look(Record* r, Seen* out, bool orig_local, bool reply_local) {
  const bool tcp = r->proto == IPPROTO_TCP;
  uint32_t res[kResultWidth];
  out->at_us = MonotonicUs();
  if (orig_local || !reply_local) {
    DiagRequest q = RequestFor(*r, false, false);
    if (!Lookup(&q, res)) {
      Settle(r, res[0] == ENOENT ? kGone : kOverload);
      return Found::kSettled;
    }
    // A listener means this end has no socket of its own any more (the kernel fell back to it);
    // no inode: TCP closed by its process (TIME_WAIT), UDP a kernel socket.
    if ((tcp && res[3] == kTcpListen) || res[1] == 0) {
      Settle(r, tcp ? kGone : kNoPid);
      return Found::kSettled;
    }
    out->inode = res[1];
    out->side = kSideOrigin;
    out->gone = false;
    out->query = q;
    return Found::kSocket;
  }
  // Arrived here: the accepted socket, else (in the accept queue, no file yet) the listener.
  DiagRequest q = RequestFor(*r, true, false);
  const bool found = Lookup(&q, res);
  if (found && res[1] != 0) {
    out->inode = res[1];
    out->side = kSideListener;
    out->gone = false;
    out->query = q;
    return Found::kSocket;
  }
  if (tcp && (!found || res[3] == kTcpSynRecv || res[3] == kTcpEstablished)) {
    q = RequestFor(*r, true, true);
    if (Lookup(&q, res) && res[1] != 0) {
      out->inode = res[1];
      out->side = kSideListener;
      out->gone = false;
      out->query = q;
      return Found::kSocket;
    }
  }
  Settle(r, found || res[0] == ENOENT ? kGone : kOverload);
  return Found::kSettled;
}

bool DiagJoin::Attach(Record* r, const ReadWindow& /*window*/, bool last) {
  const uint64_t t0 = MonotonicUs();
  struct Busy {
    JoinCounters* c;
    uint64_t t0;
    ~Busy() { c->busy_ns += (MonotonicUs() - t0) * 1000; }
  } busy{&c_, t0};
  if ((r->proto != IPPROTO_TCP && r->proto != IPPROTO_UDP) || !(r->present & kHasPorts)) {
    Settle(r, kUnsupported);
    return true;
  }
  const bool orig_local = local_.Contains(r->family, r->src, t0 * 1000);
  const bool reply_local = (r->present & kHasReplyTuple) && local_.Contains(r->family, r->reply_src, t0 * 1000);
  if (!orig_local && !reply_local) {
    Settle(r, kNotLocal);
    return true;
  }
  const TupleKey key = KeyOf(*r);
  Seen seen;
  auto w = waiting_.find(key);
  if (w != waiting_.end()) {
    seen = w->second;
  } else if (Look(r, &seen, orig_local, reply_local) == Found::kSettled) {
    return true;
  }
  TupleKey pair = key;
  pair.lport = 0;
  bool shared = false;
  const ProcOwner* o = index_->Find(seen.inode, &shared);
  if (!o && !seen.gone && (index_->Due() || r->kind == kSnapshot)) {
    Round(seen, pair, r->kind == kSnapshot && t0 >= next_forced_us_);
    if (r->kind == kSnapshot && t0 >= next_forced_us_) next_forced_us_ = t0 + 1'000'000;
    o = index_->Find(seen.inode, &shared);
    if (w != waiting_.end()) seen.gone = w->second.gone;
  }
  if (o) {
    if (w != waiting_.end()) waiting_.erase(w);
    if (shared) {
      Settle(r, kShared);
      return true;
    }
    index_->NotePair(pair, o->pid);
    Fill(r, *o, seen.side);
    return true;
  }
  if (!last && !seen.gone && r->kind == kNew && waiting_.size() < kWaitingMax) {
    if (w == waiting_.end()) waiting_.emplace(key, seen);
    return false;
  }
  if (w != waiting_.end()) waiting_.erase(w);
  // No owner: gone meanwhile, no one we can read, or not found in time.
  uint32_t res[kResultWidth];
  const bool still = r->kind == kSnapshot || (!seen.gone && Lookup(&seen.query, res) && res[1] == seen.inode);
  const bool searched = index_->last_discovery_us() >= seen.at_us;
  if (!still) Settle(r, kGone);
  else if (index_->counters().denied > 0) Settle(r, kDenied);
  else if (searched || r->kind == kSnapshot) Settle(r, kNoPid);
  else Settle(r, kLate);
  return true;
}

// One round of /proc reads for every socket still waiting (and `self`): first ask the kernel which
// of them still exist (~2 µs each, against ~50-150 µs per process read), so a round reads only for
// live sockets and stops once they have their owners; the closed ones settle `gone` at once.
void DiagJoin::Round(const Seen& self, const TupleKey& pair, bool force) {
  std::vector<DiagRequest> reqs;
  std::vector<Seen*> of;
  for (auto& kv : waiting_) {
    if (kv.second.gone) continue;
    reqs.push_back(kv.second.query);
    of.push_back(&kv.second);
  }
  std::vector<uint32_t> out(reqs.size() * kResultWidth, 0);
  for (size_t i = 0; i < reqs.size(); i++) out[i * kResultWidth] = EAGAIN;
  if (!reqs.empty()) {
    c_.lookups += reqs.size();
    DiagLookupMany(diag_fd_, reqs, out.data(), &diag_);
  }
  std::vector<uint32_t> wanted(1, self.inode);
  std::vector<int> likely;
  if (int l = index_->Likely(pair)) likely.push_back(l);
  for (size_t i = 0; i < of.size(); i++) {
    const uint32_t* res = &out[i * kResultWidth];
    // Gone only when the kernel says so (no such socket, or another one on the tuple now); an
    // unanswered query keeps the socket wanted.
    if (res[0] == ENOENT || (res[0] == 0 && res[1] != of[i]->inode)) {
      of[i]->gone = true;
      continue;
    }
    wanted.push_back(of[i]->inode);
    TupleKey p;
    p.family = of[i]->query.family;
    p.proto = of[i]->query.proto;
    p.rport = of[i]->query.rport;
    memcpy(p.local, of[i]->query.local, 16);
    memcpy(p.remote, of[i]->query.remote, 16);
    if (int l = index_->Likely(p)) {
      if (likely.size() < kHotMax) likely.push_back(l);
    }
  }
  index_->Resolve(wanted, likely, force);
}

void DiagJoin::Counters(JoinCounters* out) const {
  *out = c_;
}

}  // namespace ctwatch
