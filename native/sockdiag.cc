#include "sockdiag.h"

#include "netns.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <unordered_map>
#include <unordered_set>

#include "decode.h"
#include "record.h"

#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

namespace ctwatch {

// One socket to look up: ours is `local`; `remote` unset with `listener`.
struct DiagRequest {
  uint8_t family = 0;  // AF_INET / AF_INET6; 0: do not send (bad line, or answered already)
  uint8_t proto = 0;   // IPPROTO_TCP / IPPROTO_UDP
  bool listener = false;
  bool live = false;   // ask the kernel now, whatever the capture saw
  uint8_t local[16] = {};
  uint8_t remote[16] = {};
  uint16_t lport = 0;
  uint16_t rport = 0;
};

// A flow's identity as the capture keys it: the original direction, ours first.
struct TupleKey {
  uint8_t family = 0, proto = 0;
  uint16_t lport = 0, rport = 0;
  uint8_t local[16] = {}, remote[16] = {};
  bool operator==(const TupleKey& o) const { return memcmp(this, &o, sizeof(*this)) == 0; }
};
static_assert(sizeof(TupleKey) == 38, "TupleKey must have no padding (it is hashed and compared as bytes)");

struct TupleHash {
  size_t operator()(const TupleKey& k) const {
    // FNV-1a over the bytes: the key is small and fixed.
    uint64_t h = 1469598103934665603ull;
    const auto* b = reinterpret_cast<const uint8_t*>(&k);
    for (size_t i = 0; i < sizeof(k); i++) h = (h ^ b[i]) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

TupleKey KeyOf(const DiagRequest& r) {
  TupleKey k;
  k.family = r.family;
  k.proto = r.proto;
  k.lport = r.lport;
  k.rport = r.rport;
  memcpy(k.local, r.local, 16);
  memcpy(k.remote, r.remote, 16);
  return k;
}

TupleKey PairOf(TupleKey k) {
  k.lport = 0;
  return k;
}

// What the capture saw of a flow's socket while it lived.
struct CapturedSocket {
  uint32_t inode, uid, state, pid, start;
};

struct Owner {
  int pid;
  uint32_t start;  // clock ticks after boot, low 32 bits
};

struct CaptureState {
  uint64_t netns_ino = 0;  // the namespace's inode: which processes discovery may read
  std::unordered_map<TupleKey, CapturedSocket, TupleHash> sockets;
  std::deque<TupleKey> order;  // oldest first, for eviction
  std::unordered_map<uint32_t, Owner> owners;  // inode -> process, for the hot processes' sockets
  std::vector<int> hot;                        // pids that owned captured sockets, most recent first
  // A hot process: its /proc/PID directory held open (once the process exits, reads through it
  // fail, even if the pid is taken again: no start time to re-read), and what it held last.
  struct HotProc {
    int dirfd;
    uint32_t start;
    std::vector<uint32_t> held;
  };
  std::unordered_map<int, HotProc> procs;
  // Captured sockets whose owner is not known yet: (inode, flow, when captured, likely owner).
  struct Unowned {
    uint32_t inode;
    TupleKey key;
    uint64_t at_us;
    int likely;  // the last owner of a socket between the same two addresses (0: none)
  };
  std::vector<Unowned> unowned;
  // Who last owned a socket from this local address to this remote address and port (the local
  // port zeroed): a pool or a leaky client keeps opening the same pair, so its process is read
  // first instead of every hot process in turn. Only an order: an owner is what /proc shows.
  std::unordered_map<TupleKey, int, TupleHash> pair_owner;
  uint64_t next_scan_us = 0;       // reading hot processes again is allowed from then on
  uint64_t next_discovery_us = 0;  // reading every process of the namespace, from then on
  // pid -> its network namespace inode, as last seen by a discovery (re-read every few rounds).
  std::unordered_map<int, double> pid_netns;
  unsigned discoveries = 0;
  int discovery_cursor = 0;  // where the last round ran out of time
};

void NotePairOwner(CaptureState* cap, const TupleKey& key, int pid) {
  // Bounded by starting over: the pairs that matter are the busy ones, and they come back at once.
  if (cap->pair_owner.size() >= 4096) cap->pair_owner.clear();
  cap->pair_owner[PairOf(key)] = pid;
}

// One queued unit of work for the namespace thread. Results are filled on the thread and turned
// into JavaScript values in CallJs, on the JS thread.
struct DiagJob {
  enum Kind { kLookup, kRoutes } kind = kLookup;
  Napi::Promise::Deferred deferred;
  explicit DiagJob(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
  std::string text;               // kLookup: the requests, one per line (see Lookup)
  std::vector<uint32_t> results;  // kLookup: kResultWidth words per request
  std::vector<std::string> routes;  // kRoutes: "family prefix/len" for each local route
  OpenError error;                // a failure of the whole job (the socket, the thread)
};

namespace {

// Per-request result words: errno (0 = found), socket inode (0 = no struct socket: TIME_WAIT,
// NEW_SYN_RECV, or accepted by the kernel but not yet by the process), uid, TCP state (TCP_* from
// include/net/tcp_states.h; UDP reports 1 connected / 7 unconnected), remote port the kernel
// returned (0 for a listener or an unconnected UDP socket), the local port, flags (bit 0: the
// answer is what the capture saw at NEW time), and the owner if this thread knows it: pid and the
// low 32 bits of its start time (0, 0 when not known).
constexpr size_t kResultWidth = 9;
constexpr uint32_t kFromCapture = 1;
// Capture bounds: flows remembered (a lookup from JS comes within seconds), hot processes, and
// how often every process of the namespace may be read to find an unknown owner.
constexpr size_t kCaptureMax = 1 << 17;
constexpr size_t kHotMax = 16;
constexpr uint64_t kDiscoveryMinUs = 50'000;
// Reading descriptors costs ~3 µs each: after a read of the hot processes that took T, the next
// waits 4 T (a fifth of this thread at most), and after a discovery that took T, the next waits
// 20 T (a twentieth), however busy the namespace.
constexpr uint64_t kScanCostFactor = 4;
constexpr uint64_t kDiscoveryCostFactor = 20;
constexpr uint64_t kDiscoveryBudgetUs = 5'000;
// An owner not found this long after capture is given up (JS may still find it in /proc).
constexpr uint64_t kUnownedMaxUs = 200'000;
constexpr int kCtRcvbuf = 8 << 20;
// Requests per sendmsg. Each answer is one skb in our receive queue, charged by its truesize
// (~1-2 KiB); 128 answers fit easily in the 4 MiB we ask for, and the kernel handles every request
// of a send synchronously inside sendmsg(), so after it returns all answers are already queued.
constexpr size_t kChunk = 128;
constexpr int kRcvbuf = 4 << 20;

OpenError Fail(const char* code, int err, const char* syscall, std::string message) {
  return MakeOpenError(code, err, syscall, std::move(message));
}

uint64_t ThreadCpuUs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

uint64_t MonotonicUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

OpenError OpenNetlink(int protocol, const char* what, const std::string& where, int* out) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) {
    int err = errno;
    if (err == EPROTONOSUPPORT || err == EAFNOSUPPORT) {
      return Fail("ERR_NO_SOCK_DIAG", err, "socket",
                  std::string("the kernel's ") + what + " netlink interface is not available" + where +
                      ": load it with 'modprobe inet_diag tcp_diag udp_diag' (CONFIG_INET_DIAG)");
    }
    return Fail("ERR_SOCKDIAG", err, "socket",
                std::string("cannot open the ") + what + " netlink socket" + where + ": " + strerror(err));
  }
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) < 0) {
    int err = errno;
    close(fd);
    return Fail("ERR_SOCKDIAG", err, "bind",
                std::string("cannot bind the ") + what + " netlink socket" + where + ": " + strerror(err));
  }
  // Errors carry only the header of the failed request back, not the whole request.
  int on = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof(on));
  int size = kRcvbuf;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
  // A reply that never comes must not hang the thread (and close()) forever.
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  *out = fd;
  return {};
}

// Next space-separated field of [*p, end), or false when there is none.
bool NextField(const char** p, const char* end, const char** f, size_t* n) {
  while (*p < end && **p == ' ') ++*p;
  const char* start = *p;
  while (*p < end && **p != ' ') ++*p;
  *f = start;
  *n = static_cast<size_t>(*p - start);
  return *n > 0;
}

bool ParseUint(const char* f, size_t n, unsigned max, unsigned* out) {
  if (n == 0 || n > 5) return false;
  unsigned v = 0;
  for (size_t i = 0; i < n; i++) {
    if (f[i] < '0' || f[i] > '9') return false;
    v = v * 10 + static_cast<unsigned>(f[i] - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

bool ParseAddr(int family, const char* f, size_t n, uint8_t* out) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (n == 0 || n >= sizeof(buf)) return false;
  memcpy(buf, f, n);
  buf[n] = 0;
  return inet_pton(family, buf, out) == 1;
}

// "F P LOCAL LPORT REMOTE RPORT": F is 4 or 6 (14 or 16: skip the capture, ask the kernel now),
// P is 6 (TCP) or 17 (UDP), REMOTE may be '*' (and RPORT 0) to ask for the listening /
// unconnected socket bound to LOCAL:LPORT. Parsed by hand: sscanf was an eighth of the thread's
// time.
bool ParseRequest(const char* p, const char* end, DiagRequest* r) {
  const char* f;
  size_t n;
  unsigned fam, proto, lport, rport;
  if (!NextField(&p, end, &f, &n) || !ParseUint(f, n, 16, &fam)) return false;
  r->live = fam >= 10;
  if (r->live) fam -= 10;
  if (fam != 4 && fam != 6) return false;
  if (!NextField(&p, end, &f, &n) || !ParseUint(f, n, 255, &proto)) return false;
  if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) return false;
  r->family = fam == 4 ? AF_INET : AF_INET6;
  r->proto = static_cast<uint8_t>(proto);
  if (!NextField(&p, end, &f, &n) || !ParseAddr(r->family, f, n, r->local)) return false;
  if (!NextField(&p, end, &f, &n) || !ParseUint(f, n, 65535, &lport)) return false;
  if (!NextField(&p, end, &f, &n)) return false;
  if (n == 1 && *f == '*') {
    r->listener = true;
  } else if (!ParseAddr(r->family, f, n, r->remote)) {
    return false;
  }
  if (!NextField(&p, end, &f, &n) || !ParseUint(f, n, 65535, &rport)) return false;
  r->lport = static_cast<uint16_t>(lport);
  r->rport = r->listener ? 0 : static_cast<uint16_t>(rport);
  const char* rest;
  return !NextField(&p, end, &rest, &n);
}

size_t AddrLen(uint8_t family) { return family == AF_INET ? 4 : 16; }

// Builds one exact-match SOCK_DIAG_BY_FAMILY request (no NLM_F_DUMP: the kernel answers with the
// one socket or an NLMSG_ERROR, ENOENT when there is none).
void PutDiagRequest(char* at, const DiagRequest& r, uint32_t seq) {
  auto* nlh = reinterpret_cast<nlmsghdr*>(at);
  nlh->nlmsg_len = NLMSG_LENGTH(sizeof(inet_diag_req_v2));
  nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  nlh->nlmsg_flags = NLM_F_REQUEST;
  nlh->nlmsg_seq = seq;
  nlh->nlmsg_pid = 0;
  auto* req = static_cast<inet_diag_req_v2*>(NLMSG_DATA(nlh));
  memset(req, 0, sizeof(*req));
  req->sdiag_family = r.family;
  req->sdiag_protocol = r.proto;
  req->idiag_states = ~0u;
  req->id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  req->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  const size_t alen = AddrLen(r.family);
  if (r.proto == IPPROTO_TCP) {
    // inet_diag_find_one_icsk() looks up (saddr=dst, daddr=src): src is our end. A miss in the
    // established hash falls back to the listener on src:sport, which the state (LISTEN) shows.
    req->id.idiag_sport = htons(r.lport);
    req->id.idiag_dport = htons(r.rport);
    memcpy(req->id.idiag_src, r.local, alen);
    memcpy(req->id.idiag_dst, r.remote, alen);
  } else {
    // udp_dump_one(): "src and dst are swapped for historical reasons" — the lookup is in receive
    // orientation, src is the remote end and dst ours.
    req->id.idiag_sport = htons(r.rport);
    req->id.idiag_dport = htons(r.lport);
    memcpy(req->id.idiag_src, r.remote, alen);
    memcpy(req->id.idiag_dst, r.local, alen);
  }
}

constexpr size_t kReqSpace = NLMSG_SPACE(sizeof(inet_diag_req_v2));


// Reads a small /proc file whole (they are generated on read; one read() usually gets it all).
bool ReadSmall(const char* path, std::string* out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  out->clear();
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > (1 << 20)) break;
  }
  close(fd);
  return !out->empty();
}

struct Stat {
  std::string comm;
  double ppid = 0;
  double starttime = 0;  // clock ticks after boot: with the pid, the process's identity
};

// /proc/PID/stat: "pid (comm) state ppid ... starttime(22nd field) ...". comm may hold spaces and parentheses,
// so fields are counted from the last ')'.
bool ParseStat(const std::string& text, Stat* st) {
  size_t open_paren = text.find('(');
  size_t close_paren = text.rfind(')');
  if (open_paren == std::string::npos || close_paren == std::string::npos || close_paren < open_paren) return false;
  st->comm = text.substr(open_paren + 1, close_paren - open_paren - 1);
  const char* p = text.c_str() + close_paren + 1;
  // Fields after ')' start at field 3 (state); ppid is field 4, starttime field 22.
  int field = 2;
  while (*p && field < 22) {
    while (*p == ' ') p++;
    field++;
    if (field == 4) st->ppid = strtod(p, nullptr);
    if (field == 22) {
      st->starttime = strtod(p, nullptr);
      return true;
    }
    while (*p && *p != ' ') p++;
  }
  return false;
}

bool ReadStat(int pid, Stat* st) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  std::string text;
  return ReadSmall(path, &text) && ParseStat(text, st);
}

double NetnsInode(int pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
  struct stat sb;
  if (stat(path, &sb) < 0) return -1;
  return static_cast<double>(sb.st_ino);
}

// Appends the inode of every socket in an open /proc/PID/fd directory ("socket:[INODE]"), then
// closes it.
void ReadSocketLinks(DIR* dir, std::vector<double>* out) {
  const int dfd = dirfd(dir);
  char link[64];
  while (dirent* ent = readdir(dir)) {
    if (ent->d_name[0] == '.') continue;
    ssize_t n = readlinkat(dfd, ent->d_name, link, sizeof(link) - 1);
    if (n < 9 || memcmp(link, "socket:[", 8) != 0) continue;
    link[n] = 0;
    out->push_back(strtod(link + 8, nullptr));
  }
  closedir(dir);
}

// Appends the inode of every socket among the process's open files.
void SocketInodes(int pid, std::vector<double>* out) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/fd", pid);
  DIR* dir = opendir(path);
  if (dir != nullptr) ReadSocketLinks(dir, out);
}

// The same two reads through an open /proc/PID directory.
bool ReadStatAt(int proc_dir, Stat* st) {
  int fd = openat(proc_dir, "stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n;
  do {
    n = read(fd, buf, sizeof(buf) - 1);
  } while (n < 0 && errno == EINTR);
  close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  return ParseStat(std::string(buf, static_cast<size_t>(n)), st);
}

bool SocketInodesAt(int proc_dir, std::vector<double>* out) {
  int fd = openat(proc_dir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    close(fd);
    return false;
  }
  ReadSocketLinks(dir, out);
  return true;
}

std::vector<int> ListPids() {
  std::vector<int> pids;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return pids;
  while (dirent* ent = readdir(dir)) {
    const char* s = ent->d_name;
    if (*s < '1' || *s > '9') continue;
    char* end;
    long v = strtol(s, &end, 10);
    if (*end == 0 && v > 0) pids.push_back(static_cast<int>(v));
  }
  closedir(dir);
  return pids;
}

}  // namespace

Napi::Function SockDiag::Init(Napi::Env env) {
  return DefineClass(env, "SockDiag",
                     {
                         InstanceMethod<&SockDiag::Open>("open"),
                         InstanceMethod<&SockDiag::Lookup>("lookup"),
                         InstanceMethod<&SockDiag::LocalRoutes>("localRoutes"),
                         InstanceMethod<&SockDiag::Close>("close"),
                         InstanceMethod<&SockDiag::Counters>("counters"),
                     });
}

// Arguments are validated in TypeScript (src/process/sockdiag.ts); here we only read them.
SockDiag::SockDiag(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SockDiag>(info), env_(info.Env()) {
  if (info.Length() > 0 && info[0].IsObject()) {
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value netns = o.Get("netns");
    if (netns.IsString()) netns_ = netns.As<Napi::String>().Utf8Value();
    capture_ = o.Get("capture").ToBoolean().Value();
  }
}

SockDiag::~SockDiag() { Stop(); }

Napi::Value SockDiag::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (opened_) return env.Undefined();
  opened_ = true;
  // The callback is unused (CallJs settles promises itself); a no-op keeps the TSFN happy.
  Napi::Function noop = Napi::Function::New(env, [](const Napi::CallbackInfo&) {});
  tsfn_ = Tsfn::New(env, noop, "ctwatch-sockdiag", 0, 1, this);
  tsfn_live_ = true;
  // Idle, the thread must not keep the process alive; Enqueue refs it while jobs are out.
  tsfn_.Unref(env);

  std::promise<OpenError> opened;
  std::future<OpenError> result = opened.get_future();
  thread_ = std::thread(&SockDiag::Run, this, &opened);
  OpenError e = result.get();
  if (!e.ok()) {
    thread_.join();
    tsfn_.Release();
    tsfn_live_ = false;
    stopped_ = true;
    throw MakeError(env, e);
  }
  napi_add_env_cleanup_hook(env, CleanupHook, this);
  hook_added_ = true;
  return env.Undefined();
}

namespace {

// The capture's own subscription: NEW events only, on a plain netlink socket (recvmmsg, no
// library state), with a buffer large enough for a burst while a lookup batch runs.
OpenError OpenConntrackNew(const std::string& where, int* out) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
  if (fd < 0) {
    int err = errno;
    return Fail("ERR_NO_CTNETLINK", err, "socket",
                "the kernel's conntrack netlink interface is not available" + where +
                    ": load it with 'modprobe nf_conntrack_netlink'");
  }
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups = 1;  // NF_NETLINK_CONNTRACK_NEW, a bind() bitmask
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) < 0) {
    int err = errno;
    close(fd);
    if (err == EPERM || err == EACCES) {
      return Fail("ERR_NO_CAP_NET_ADMIN", err, "bind",
                  "capturing sockets at NEW time reads conntrack events, which needs CAP_NET_ADMIN" + where +
                      ": run ctwatch as root, or turn capture off");
    }
    return Fail("ERR_SOCKDIAG", err, "bind", "cannot subscribe to conntrack events" + where + ": " + strerror(err));
  }
  int size = kCtRcvbuf;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
  *out = fd;
  return {};
}

uint32_t Low32(double v) { return static_cast<uint32_t>(static_cast<uint64_t>(v) & 0xffffffffu); }

}  // namespace

void SockDiag::Run(std::promise<OpenError>* opened) {
  const std::string where = netns_.empty() ? "" : " in network namespace " + netns_;
  int self_ns = -1;
  OpenError e = EnterNetns(netns_, &self_ns);
  if (e.ok()) e = OpenNetlink(NETLINK_SOCK_DIAG, "sock_diag", where, &diag_fd_);
  if (e.ok()) e = OpenNetlink(NETLINK_ROUTE, "rtnetlink", where, &route_fd_);
  if (e.ok() && capture_) {
    e = OpenConntrackNew(where, &ct_fd_);
    struct stat sb;
    cap_.reset(new CaptureState());
    // Still inside the namespace: this thread's view of it is the namespace's identity.
    if (stat("/proc/thread-self/ns/net", &sb) == 0) cap_->netns_ino = sb.st_ino;
  }
  LeaveNetns(self_ns);
  if (e.ok()) {
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) e = Fail("ERR_SOCKDIAG", errno, "eventfd", std::string("cannot create an eventfd: ") + strerror(errno));
  }
  if (!e.ok()) {
    for (int* fd : {&diag_fd_, &route_fd_, &ct_fd_, &wake_fd_}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
  }
  bool ok = e.ok();
  opened->set_value(std::move(e));  // `opened` is dead after this line
  if (!ok) return;

  pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {ct_fd_, POLLIN, 0}};
  const nfds_t nfds = ct_fd_ >= 0 ? 2 : 1;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
    }
    // A socket may close any moment: NEW events first, then the lookups JavaScript asked for.
    if (ct_fd_ >= 0) {
      const uint64_t t0 = MonotonicUs();
      Capture();
      ResolveUnowned();
      cap_us_ += MonotonicUs() - t0;
    }
    for (;;) {
      DiagJob* job = nullptr;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_ || queue_.empty()) break;
        job = queue_.front();
        queue_.pop_front();
      }
      const uint64_t t0 = MonotonicUs();
      if (job->kind == DiagJob::kLookup) RunLookup(job);
      else RunRoutes(job);
      busy_us_ += MonotonicUs() - t0;
      if (tsfn_.NonBlockingCall(job) != napi_ok) delete job;  // only while the env is torn down
      if (ct_fd_ >= 0) {
        const uint64_t t1 = MonotonicUs();
        Capture();
        ResolveUnowned();
        cap_us_ += MonotonicUs() - t1;
      }
    }
    fds[0].revents = fds[1].revents = 0;
    int timeout = -1;
    if (cap_ && !cap_->unowned.empty()) {
      const uint64_t now = MonotonicUs();
      timeout = cap_->next_scan_us > now ? static_cast<int>((cap_->next_scan_us - now + 999) / 1000) : 0;
    }
    if (poll(fds, nfds, timeout) < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      ssize_t ignored = read(wake_fd_, &v, sizeof(v));
      (void)ignored;
    }
  }
  // Jobs still queued are settled as cancelled (CallJs rejects them with ERR_SOCKDIAG_CLOSED).
  std::deque<DiagJob*> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(queue_);
  }
  for (DiagJob* job : left) {
    job->error = Fail("ERR_SOCKDIAG_CLOSED", 0, "", "the socket lookup was cancelled: the SockDiag was closed");
    if (tsfn_.NonBlockingCall(job) != napi_ok) delete job;
  }
  for (int* fd : {&diag_fd_, &route_fd_, &ct_fd_, &wake_fd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
  if (cap_) {
    for (auto& kv : cap_->procs) close(kv.second.dirfd);
    cap_->procs.clear();
  }
}

void SockDiag::Wake() {
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    ssize_t ignored = write(wake_fd_, &one, sizeof(one));
    (void)ignored;
  }
}

void SockDiag::RunLookup(DiagJob* job) {
  // Parse every line first; a line that does not parse gets EINVAL and is never sent.
  std::vector<DiagRequest> reqs;
  std::vector<uint32_t>& out = job->results;
  const char* p = job->text.data();
  const char* end = p + job->text.size();
  while (p < end) {
    const char* nl = static_cast<const char*>(memchr(p, '\n', static_cast<size_t>(end - p)));
    const char* stop = nl ? nl : end;
    DiagRequest r;
    bool ok = ParseRequest(p, stop, &r);
    if (!ok) r.family = 0;
    reqs.push_back(r);
    out.insert(out.end(), kResultWidth, 0);
    out[out.size() - kResultWidth] = ok ? EAGAIN : EINVAL;  // EAGAIN until answered
    p = nl ? nl + 1 : end;
  }
  requests_ += reqs.size();
  ++batches_;
  // What the capture saw at NEW time answers first: the socket may be gone by now.
  if (cap_) {
    for (size_t i = 0; i < reqs.size(); i++) {
      if (reqs[i].family == 0 || reqs[i].listener || reqs[i].live) continue;
      auto it = cap_->sockets.find(KeyOf(reqs[i]));
      if (it == cap_->sockets.end()) continue;
      const CapturedSocket& c = it->second;
      uint32_t* res = &out[i * kResultWidth];
      res[0] = 0;
      res[1] = c.inode;
      res[2] = c.uid;
      res[3] = c.state;
      res[4] = reqs[i].rport;
      res[5] = reqs[i].lport;
      res[6] = kFromCapture;
      res[7] = c.pid;
      res[8] = c.start;
      reqs[i].family = 0;
      ++cap_hits_;
    }
  }
  LookupMany(reqs, out.data());
  // The owner of a live socket, if a hot process holds it (no /proc read here: JS decides).
  if (cap_) FillOwners(reqs, out.data());
}

void SockDiag::LookupMany(const std::vector<DiagRequest>& reqs, uint32_t* out) {
  std::vector<char> tx(kChunk * kReqSpace);
  constexpr unsigned kBurst = 64;
  constexpr size_t kAnswer = 1024;  // an answer without extensions is ~150 bytes
  std::vector<char> rx(kBurst * kAnswer);
  mmsghdr msgs[kBurst];
  iovec iov[kBurst];
  for (unsigned i = 0; i < kBurst; i++) {
    iov[i] = {rx.data() + i * kAnswer, kAnswer};
    msgs[i].msg_hdr = msghdr{};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  std::vector<size_t> todo;
  static std::atomic<uint32_t> seq_base{static_cast<uint32_t>(time(nullptr)) << 8};

  for (size_t start = 0; start < reqs.size(); start += kChunk) {
    const size_t stop = std::min(reqs.size(), start + kChunk);
    todo.clear();
    for (size_t i = start; i < stop; i++) {
      if (reqs[i].family != 0) todo.push_back(i);
    }
    // Answers can be lost only if our receive queue overflows; then the missing ones go once more.
    for (int attempt = 0; attempt < 2 && !todo.empty(); attempt++) {
      if (attempt > 0) retried_ += todo.size();
      const uint32_t base = seq_base.fetch_add(static_cast<uint32_t>(kChunk));
      size_t len = 0;
      for (size_t k = 0; k < todo.size(); k++) {
        PutDiagRequest(tx.data() + len, reqs[todo[k]], base + static_cast<uint32_t>(k));
        len += kReqSpace;
      }
      sockaddr_nl kernel{};
      kernel.nl_family = AF_NETLINK;
      ssize_t sent;
      do {
        sent = sendto(diag_fd_, tx.data(), len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
      } while (sent < 0 && errno == EINTR);
      ++sends_;
      if (sent < 0) {
        int err = errno;
        for (size_t idx : todo) out[idx * kResultWidth] = static_cast<uint32_t>(err);
        todo.clear();
        break;
      }
      size_t answered = 0;
      for (;;) {
        // Each answer is its own datagram: take up to kBurst per system call.
        int got = recvmmsg(diag_fd_, msgs, kBurst, MSG_DONTWAIT, nullptr);
        if (got < 0) {
          if (errno == EINTR || errno == ENOBUFS) continue;  // ENOBUFS: some answers were dropped
          break;                                            // EAGAIN: everything queued is read
        }
        for (int g = 0; g < got; g++) {
          int left = static_cast<int>(msgs[g].msg_len);
          for (auto* m = static_cast<nlmsghdr*>(iov[g].iov_base); NLMSG_OK(m, left); m = NLMSG_NEXT(m, left)) {
            uint32_t k = m->nlmsg_seq - base;
            if (k >= todo.size()) continue;  // a late answer to an earlier attempt
            uint32_t* res = &out[todo[k] * kResultWidth];
            if (res[0] != EAGAIN) continue;
            if (m->nlmsg_type == NLMSG_ERROR) {
              auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(m));
              res[0] = static_cast<uint32_t>(e->error < 0 ? -e->error : ENOENT);
              ++not_found_;
              answered++;
            } else if (m->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
                       m->nlmsg_len >= NLMSG_LENGTH(sizeof(inet_diag_msg))) {
              auto* d = static_cast<inet_diag_msg*>(NLMSG_DATA(m));
              res[0] = 0;
              res[1] = d->idiag_inode;
              res[2] = d->idiag_uid;
              res[3] = d->idiag_state;
              // For UDP the kernel reports the socket's own view (sport = local), whatever the
              // orientation of the request.
              res[4] = ntohs(d->id.idiag_dport);
              res[5] = ntohs(d->id.idiag_sport);
              ++found_;
              answered++;
            }
          }
        }
        if (answered == todo.size() || got < static_cast<int>(kBurst)) break;
      }
      std::vector<size_t> again;
      for (size_t idx : todo) {
        if (out[idx * kResultWidth] == EAGAIN) again.push_back(idx);
      }
      todo.swap(again);
    }
  }
}

// Reads the NEW events queued on the capture socket, looks their sockets up at once, and records
// what it found (with the owner when a hot process, or a rate-limited discovery, has the inode).
void SockDiag::Capture() {
  constexpr unsigned kBurst = 64;
  static thread_local std::vector<char> storage(kBurst * 8192);
  static thread_local mmsghdr msgs[kBurst];
  static thread_local iovec iov[kBurst];
  for (unsigned i = 0; i < kBurst; i++) {
    iov[i] = {storage.data() + i * 8192, 8192};
    msgs[i].msg_hdr = msghdr{};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  std::vector<DiagRequest> reqs;
  Record rec;
  // A bounded amount per call, so that queued JS lookups are not starved by a flood.
  for (int burst = 0; burst < 32; burst++) {
    int got = recvmmsg(ct_fd_, msgs, kBurst, MSG_DONTWAIT, nullptr);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        ++cap_overflows_;  // lost NEW events: those flows fall back to the lookup from JS
        continue;
      }
      break;
    }
    for (int i = 0; i < got; i++) {
      int len = static_cast<int>(msgs[i].msg_len);
      for (auto* nlh = static_cast<const nlmsghdr*>(iov[i].iov_base); NLMSG_OK(nlh, len); nlh = NLMSG_NEXT(nlh, len)) {
        if (nlh->nlmsg_type < NLMSG_MIN_TYPE) continue;
        memset(&rec, 0, sizeof(rec));
        if (!DecodeMessage(nlh, 0, 0, &rec) || rec.kind != kNew) continue;
        if ((rec.proto != IPPROTO_TCP && rec.proto != IPPROTO_UDP) || !(rec.present & kHasPorts)) continue;
        DiagRequest r;
        r.family = rec.family;
        r.proto = rec.proto;
        memcpy(r.local, rec.src, 16);
        memcpy(r.remote, rec.dst, 16);
        r.lport = rec.sport;
        r.rport = rec.dport;
        reqs.push_back(r);
      }
    }
    if (got < static_cast<int>(kBurst)) break;
  }
  if (reqs.empty()) return;
  cap_events_ += reqs.size();
  std::vector<uint32_t> out(reqs.size() * kResultWidth, 0);
  for (size_t i = 0; i < reqs.size(); i++) out[i * kResultWidth] = EAGAIN;
  LookupMany(reqs, out.data());
  FillOwners(reqs, out.data());
  const uint64_t now = MonotonicUs();
  for (size_t i = 0; i < reqs.size(); i++) {
    const uint32_t* res = &out[i * kResultWidth];
    // Only a socket with a file is worth keeping; a listener means this end had no socket of its
    // own (the flow did not start here).
    if (res[0] != 0 || res[1] == 0 || (reqs[i].proto == IPPROTO_TCP && res[3] == 10)) continue;
    TupleKey key = KeyOf(reqs[i]);
    auto ins = cap_->sockets.insert_or_assign(key, CapturedSocket{res[1], res[2], res[3], res[7], res[8]});
    if (ins.second) cap_->order.push_back(key);
    ++cap_sockets_;
    if (res[7] != 0) {
      ++cap_owned_;
      NotePairOwner(cap_.get(), key, static_cast<int>(res[7]));
    } else {
      auto likely = cap_->pair_owner.find(PairOf(key));
      cap_->unowned.push_back({res[1], key, now, likely != cap_->pair_owner.end() ? likely->second : 0});
    }
  }
  while (cap_->order.size() > kCaptureMax) {
    cap_->sockets.erase(cap_->order.front());
    cap_->order.pop_front();
    ++cap_evicted_;
  }
}

// Finds owners for captured sockets that have none yet, within the scan budget: the hot
// processes first, then (rate-limited) every process of the namespace.
void SockDiag::ResolveUnowned() {
  auto& un = cap_->unowned;
  if (un.empty()) return;
  const uint64_t now = MonotonicUs();
  if (now < cap_->next_scan_us) return;
  // The budget counts CPU, not wall time: on a saturated host this thread is often preempted
  // mid-read, and counting that as cost would make reads rarer exactly when churn is highest.
  const uint64_t cpu0 = ThreadCpuUs();
  // Sockets closed since their capture can no longer be found in /proc: ask the kernel which are
  // still there (~2 µs each, against ~50 µs per process read), so that a round stops as soon as
  // the live ones have their owner instead of reading every hot process for the dead ones.
  {
    std::vector<DiagRequest> reqs(un.size());
    for (size_t i = 0; i < un.size(); i++) {
      const TupleKey& k = un[i].key;
      reqs[i].family = k.family;
      reqs[i].proto = k.proto;
      reqs[i].lport = k.lport;
      reqs[i].rport = k.rport;
      memcpy(reqs[i].local, k.local, 16);
      memcpy(reqs[i].remote, k.remote, 16);
    }
    std::vector<uint32_t> out(reqs.size() * kResultWidth, 0);
    for (size_t i = 0; i < reqs.size(); i++) out[i * kResultWidth] = EAGAIN;
    LookupMany(reqs, out.data());
    std::vector<CaptureState::Unowned> alive;
    for (size_t i = 0; i < un.size(); i++) {
      const uint32_t* res = &out[i * kResultWidth];
      // Gone only when the kernel says so (no such socket, or another socket on the tuple now);
      // an unanswered query (our receive queue overflowed, sendto failed) keeps the socket wanted.
      const bool gone = res[0] == ENOENT || (res[0] == 0 && res[1] != un[i].inode);
      if (gone) ++cap_closed_unowned_;
      else alive.push_back(un[i]);
    }
    un.swap(alive);
    if (un.empty()) return;
  }
  std::vector<uint32_t> wanted;
  std::vector<int> likely;
  for (const auto& u : un) {
    wanted.push_back(u.inode);
    // Only hot processes are read in a round: at most kHotMax candidates, however many sockets.
    if (u.likely != 0 && std::find(likely.begin(), likely.end(), u.likely) == likely.end() &&
        std::find(cap_->hot.begin(), cap_->hot.end(), u.likely) != cap_->hot.end()) {
      likely.push_back(u.likely);
    }
  }
  ScanHot(wanted, likely);
  uint64_t done = MonotonicUs();
  const uint64_t cpu1 = ThreadCpuUs();
  cap_->next_scan_us = done + (cpu1 - cpu0) * kScanCostFactor;
  bool missing = false;
  for (const auto& u : un) missing = missing || !cap_->owners.count(u.inode);
  if (missing && done >= cap_->next_discovery_us) {
    Discover(wanted);
    const uint64_t after = MonotonicUs();
    cap_->next_discovery_us = after + std::max(kDiscoveryMinUs, (ThreadCpuUs() - cpu1) * kDiscoveryCostFactor);
    done = after;
  }
  std::vector<CaptureState::Unowned> left;
  for (const auto& u : un) {
    auto o = cap_->owners.find(u.inode);
    if (o != cap_->owners.end()) {
      auto it = cap_->sockets.find(u.key);
      if (it != cap_->sockets.end() && it->second.inode == u.inode && it->second.pid == 0) {
        it->second.pid = static_cast<uint32_t>(o->second.pid);
        it->second.start = o->second.start;
        ++cap_owned_;
        NotePairOwner(cap_.get(), u.key, o->second.pid);
      }
    } else if (done - u.at_us < kUnownedMaxUs) {
      left.push_back(u);
    }
  }
  un.swap(left);
}

// Fills pid and start for answers whose inode a hot process held at its last read (no /proc).
void SockDiag::FillOwners(const std::vector<DiagRequest>& reqs, uint32_t* out) {
  for (size_t i = 0; i < reqs.size(); i++) {
    uint32_t* res = &out[i * kResultWidth];
    if (res[0] != 0 || res[1] == 0 || res[7] != 0) continue;
    auto it = cap_->owners.find(res[1]);
    if (it == cap_->owners.end()) continue;
    res[7] = static_cast<uint32_t>(it->second.pid);
    res[8] = it->second.start;
    // Most recent first: the next read starts with the busiest processes.
    auto& hot = cap_->hot;
    auto h = std::find(hot.begin(), hot.end(), it->second.pid);
    if (h != hot.begin() && h != hot.end()) std::rotate(hot.begin(), h, h + 1);
  }
}

namespace {

void Forget(CaptureState* cap, int pid) {
  auto h = cap->procs.find(pid);
  if (h == cap->procs.end()) return;
  for (uint32_t ino : h->second.held) {
    auto it = cap->owners.find(ino);
    if (it != cap->owners.end() && it->second.pid == pid) cap->owners.erase(it);
  }
  close(h->second.dirfd);
  cap->procs.erase(h);
}

// Replaces what `pid` is known to hold; returns false when the process is gone.
bool ReadOwner(CaptureState* cap, int pid) {
  auto it = cap->procs.find(pid);
  if (it == cap->procs.end()) {
    char path[32];
    snprintf(path, sizeof(path), "/proc/%d", pid);
    int proc_dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (proc_dir < 0) return false;
    // Through the directory: the start time of the very process the directory belongs to.
    Stat st;
    if (!ReadStatAt(proc_dir, &st)) {
      close(proc_dir);
      return false;
    }
    it = cap->procs.emplace(pid, CaptureState::HotProc{proc_dir, Low32(st.starttime), {}}).first;
  }
  std::vector<double> inodes;
  if (!SocketInodesAt(it->second.dirfd, &inodes)) return false;
  auto& held = it->second.held;
  for (uint32_t ino : held) {
    auto o = cap->owners.find(ino);
    if (o != cap->owners.end() && o->second.pid == pid) cap->owners.erase(o);
  }
  held.clear();
  const Owner owner{pid, it->second.start};
  for (double d : inodes) {
    const uint32_t ino = static_cast<uint32_t>(d);
    held.push_back(ino);
    cap->owners[ino] = owner;
  }
  return true;
}

bool AllKnown(const CaptureState* cap, const std::vector<uint32_t>& wanted) {
  for (uint32_t ino : wanted) {
    if (!cap->owners.count(ino)) return false;
  }
  return true;
}

}  // namespace

void SockDiag::ScanHot(const std::vector<uint32_t>& wanted, const std::vector<int>& likely) {
  ++cap_hot_scans_;
  const uint64_t t0 = MonotonicUs();
  struct Done { SockDiag* self; uint64_t t0; ~Done() { self->cap_hot_us_ += MonotonicUs() - t0; } } done{this, t0};
  auto& hot = cap_->hot;
  // The likely owners first (reading one process instead of every hot one is what makes a round
  // cheap enough to run often), then the rest, most recent first, until every socket has its owner.
  std::vector<int> order;
  for (int pid : likely) {
    if (std::find(hot.begin(), hot.end(), pid) != hot.end()) order.push_back(pid);
  }
  const size_t first = order.size();
  for (int pid : hot) {
    if (std::find(order.begin(), order.begin() + static_cast<long>(first), pid) == order.begin() + static_cast<long>(first)) order.push_back(pid);
  }
  if (AllKnown(cap_.get(), wanted)) order.clear();
  for (int pid : order) {
    ++cap_hot_reads_;
    if (!ReadOwner(cap_.get(), pid)) {
      Forget(cap_.get(), pid);
      auto h = std::find(hot.begin(), hot.end(), pid);
      if (h != hot.end()) hot.erase(h);
      continue;
    }
    if (AllKnown(cap_.get(), wanted)) break;
  }
  cap_hot_size_ = hot.size();
}

void SockDiag::Discover(const std::vector<uint32_t>& wanted) {
  ++cap_discoveries_;
  const uint64_t t0 = MonotonicUs();
  struct Done { SockDiag* self; uint64_t t0; ~Done() { self->cap_discovery_us_ += MonotonicUs() - t0; } } done{this, t0};
  std::unordered_set<uint32_t> want(wanted.begin(), wanted.end());
  std::vector<double> inodes;
  // Namespaces of processes seldom change: remember them, and forget it all every 16 rounds.
  if (++cap_->discoveries % 16 == 0) cap_->pid_netns.clear();
  // Processes new since the last round first (a new process is the likeliest owner of a socket
  // no hot process holds), then the others from where the last round stopped: a round reads for
  // at most kDiscoveryBudgetUs, so a server holding thousands of sockets costs a few rounds, not
  // one long stall of the capture.
  std::vector<int> order;
  std::vector<int> known;
  for (int pid : ListPids()) (cap_->pid_netns.count(pid) ? known : order).push_back(pid);
  if (!known.empty()) {
    auto from = std::lower_bound(known.begin(), known.end(), cap_->discovery_cursor);
    order.insert(order.end(), from, known.end());
    order.insert(order.end(), known.begin(), from);
  }
  std::unordered_map<int, double> seen;
  for (int pid : order) {
    auto k = cap_->pid_netns.find(pid);
    seen[pid] = k != cap_->pid_netns.end() ? k->second : NetnsInode(pid);
  }
  const uint64_t deadline = t0 + kDiscoveryBudgetUs;
  for (int pid : order) {
    if (MonotonicUs() > deadline) {
      cap_->discovery_cursor = pid;
      break;
    }
    if (std::find(cap_->hot.begin(), cap_->hot.end(), pid) != cap_->hot.end()) continue;
    if (cap_->netns_ino != 0 && seen[pid] != static_cast<double>(cap_->netns_ino)) continue;
    inodes.clear();
    SocketInodes(pid, &inodes);
    bool owns = false;
    for (double d : inodes) {
      if (want.count(static_cast<uint32_t>(d))) owns = true;
    }
    if (!owns) continue;
    if (!ReadOwner(cap_.get(), pid)) {
      // It exited between the two reads: let go of the /proc/PID directory ReadOwner opened.
      Forget(cap_.get(), pid);
      continue;
    }
    // A new hot process: the least recent one makes room.
    cap_->hot.insert(cap_->hot.begin(), pid);
    if (cap_->hot.size() > kHotMax) {
      Forget(cap_.get(), cap_->hot.back());
      cap_->hot.pop_back();
    }
    if (AllKnown(cap_.get(), wanted)) break;
  }
  cap_->pid_netns.swap(seen);  // dead pids leave
}

void SockDiag::RunRoutes(DiagJob* job) {
  // The local routing table lists every address this namespace answers for, including whole
  // prefixes (127.0.0.0/8) that no interface address shows.
  for (uint8_t family : {AF_INET, AF_INET6}) {
    struct {
      nlmsghdr nlh;
      rtmsg rtm;
    } req{};
    req.nlh.nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
    req.nlh.nlmsg_type = RTM_GETROUTE;
    req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    static std::atomic<uint32_t> seq{1};
    req.nlh.nlmsg_seq = seq++;
    req.rtm.rtm_family = family;
    req.rtm.rtm_table = RT_TABLE_LOCAL;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(route_fd_, &req, req.nlh.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
      job->error = Fail("ERR_SOCKDIAG", errno, "sendto", std::string("cannot list local routes: ") + strerror(errno));
      return;
    }
    std::vector<char> rx(1 << 16);
    bool done = false;
    while (!done) {
      ssize_t n = recv(route_fd_, rx.data(), rx.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        job->error = Fail("ERR_SOCKDIAG", errno, "recv", std::string("cannot list local routes: ") + strerror(errno));
        return;
      }
      int left = static_cast<int>(n);
      for (auto* m = reinterpret_cast<nlmsghdr*>(rx.data()); NLMSG_OK(m, left); m = NLMSG_NEXT(m, left)) {
        if (m->nlmsg_seq != req.nlh.nlmsg_seq) continue;
        if (m->nlmsg_type == NLMSG_DONE || m->nlmsg_type == NLMSG_ERROR) {
          done = true;
          break;
        }
        if (m->nlmsg_type != RTM_NEWROUTE) continue;
        auto* rtm = static_cast<rtmsg*>(NLMSG_DATA(m));
        if (rtm->rtm_type != RTN_LOCAL) continue;
        int alen = static_cast<int>(RTM_PAYLOAD(m));
        for (auto* a = RTM_RTA(rtm); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
          if (a->rta_type != RTA_DST) continue;
          char text[INET6_ADDRSTRLEN];
          if (inet_ntop(rtm->rtm_family, RTA_DATA(a), text, sizeof(text)) == nullptr) continue;
          job->routes.push_back(std::string(text) + "/" + std::to_string(rtm->rtm_dst_len));
        }
      }
    }
  }
}

Napi::Value SockDiag::Enqueue(Napi::Env env, DiagJob* job) {
  Napi::Promise promise = job->deferred.Promise();
  if (stopped_ || !opened_) {
    OpenError e = Fail("ERR_SOCKDIAG_CLOSED", 0, "", "the SockDiag is closed: open a new one");
    job->deferred.Reject(MakeError(env, e).Value());
    delete job;
    return promise;
  }
  // While jobs are out, the thread-safe function (the thread's only way back) keeps the event loop
  // alive and the wrapper keeps this object from being collected under the thread.
  if (pending_++ == 0) {
    tsfn_.Ref(env);
    Ref();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(job);
  }
  Wake();
  return promise;
}

// lookup(text: string): Promise<Uint32Array> — text holds one request per line
// ("F P LOCAL LPORT REMOTE RPORT"), the answer kResultWidth words per request, in order.
Napi::Value SockDiag::Lookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* job = new DiagJob(env);
  job->kind = DiagJob::kLookup;
  job->text = info[0].As<Napi::String>().Utf8Value();
  return Enqueue(env, job);
}

// localRoutes(): Promise<string[]> — "prefix/len" of every RTN_LOCAL route in the namespace.
Napi::Value SockDiag::LocalRoutes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* job = new DiagJob(env);
  job->kind = DiagJob::kRoutes;
  return Enqueue(env, job);
}

void SockDiag::CallJs(Napi::Env env, Napi::Function /*callback*/, SockDiag* self, DiagJob* job) {
  // A null env means the environment is being torn down: free the job, settle nothing.
  if (env == nullptr) {
    delete job;
    return;
  }
  if (!job->error.ok()) {
    job->deferred.Reject(MakeError(env, job->error).Value());
  } else if (job->kind == DiagJob::kLookup) {
    Napi::Uint32Array out = Napi::Uint32Array::New(env, job->results.size());
    if (!job->results.empty()) memcpy(out.Data(), job->results.data(), job->results.size() * sizeof(uint32_t));
    job->deferred.Resolve(out);
  } else {
    Napi::Array out = Napi::Array::New(env, job->routes.size());
    for (size_t i = 0; i < job->routes.size(); i++) out.Set(i, Napi::String::New(env, job->routes[i]));
    job->deferred.Resolve(out);
  }
  delete job;
  if (self->pending_ > 0 && --self->pending_ == 0) {
    if (self->tsfn_live_) self->tsfn_.Unref(env);
    self->Unref();
  }
}

void SockDiag::CleanupHook(void* self) {
  auto* diag = static_cast<SockDiag*>(self);
  diag->hook_added_ = false;  // the environment is removing it for us
  diag->Stop();
}

void SockDiag::Stop() {
  if (stopped_ || !opened_) {
    stopped_ = true;
    return;
  }
  stopped_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  // Settled jobs already queued on the TSFN are still delivered; then it finalizes and no longer
  // holds the event loop open.
  if (tsfn_live_) {
    tsfn_.Release();
    tsfn_live_ = false;
  }
  if (hook_added_) {
    napi_remove_env_cleanup_hook(env_, CleanupHook, this);
    hook_added_ = false;
  }
}

Napi::Value SockDiag::Close(const Napi::CallbackInfo& info) {
  Stop();
  return info.Env().Undefined();
}

Napi::Value SockDiag::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("requests", Napi::Number::New(env, static_cast<double>(requests_.load())));
  o.Set("found", Napi::Number::New(env, static_cast<double>(found_.load())));
  o.Set("notFound", Napi::Number::New(env, static_cast<double>(not_found_.load())));
  o.Set("retried", Napi::Number::New(env, static_cast<double>(retried_.load())));
  o.Set("batches", Napi::Number::New(env, static_cast<double>(batches_.load())));
  o.Set("sends", Napi::Number::New(env, static_cast<double>(sends_.load())));
  o.Set("busyUs", Napi::Number::New(env, static_cast<double>(busy_us_.load())));
  o.Set("pending", Napi::Number::New(env, pending_));
  Napi::Object c = Napi::Object::New(env);
  c.Set("enabled", Napi::Boolean::New(env, capture_));
  c.Set("events", Napi::Number::New(env, static_cast<double>(cap_events_.load())));
  c.Set("sockets", Napi::Number::New(env, static_cast<double>(cap_sockets_.load())));
  c.Set("owned", Napi::Number::New(env, static_cast<double>(cap_owned_.load())));
  c.Set("hits", Napi::Number::New(env, static_cast<double>(cap_hits_.load())));
  c.Set("overflows", Napi::Number::New(env, static_cast<double>(cap_overflows_.load())));
  c.Set("hotScans", Napi::Number::New(env, static_cast<double>(cap_hot_scans_.load())));
  c.Set("hotReads", Napi::Number::New(env, static_cast<double>(cap_hot_reads_.load())));
  c.Set("closedUnowned", Napi::Number::New(env, static_cast<double>(cap_closed_unowned_.load())));
  c.Set("discoveries", Napi::Number::New(env, static_cast<double>(cap_discoveries_.load())));
  c.Set("evicted", Napi::Number::New(env, static_cast<double>(cap_evicted_.load())));
  c.Set("busyUs", Napi::Number::New(env, static_cast<double>(cap_us_.load())));
  c.Set("hotScanUs", Napi::Number::New(env, static_cast<double>(cap_hot_us_.load())));
  c.Set("discoveryUs", Napi::Number::New(env, static_cast<double>(cap_discovery_us_.load())));
  c.Set("hotPids", Napi::Number::New(env, static_cast<double>(cap_hot_size_.load())));
  o.Set("capture", c);
  return o;
}

// ---------------------------------------------------------------------------------------------
// /proc reads (JS-facing workers)

namespace {

std::vector<int> IntArray(Napi::Value v) {
  std::vector<int> out;
  if (!v.IsTypedArray()) return out;
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_int32_array) return out;
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  out.assign(a.Data(), a.Data() + a.ElementLength());
  return out;
}

std::vector<double> DoubleArray(Napi::Value v) {
  std::vector<double> out;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) return out;
  Napi::Float64Array a = v.As<Napi::Float64Array>();
  out.assign(a.Data(), a.Data() + a.ElementLength());
  return out;
}

// The scan: for each process, [pid, starttime, netns inode, n, inode × n], with n = -1 when its
// descriptors were not read (a namespace outside the filter), and [pid, -1, -1, -1] for a pid in
// skipFds (alive, nothing read). A process that vanished while being read is left out; `listed`
// is whether the pids came from /proc.
class ScanWorker : public Napi::AsyncWorker {
 public:
  ScanWorker(Napi::Env env, std::vector<int> pids, bool listed, std::vector<int> skip, std::vector<double> netns)
      : Napi::AsyncWorker(env, "ctwatch-proc-scan"),
        deferred_(Napi::Promise::Deferred::New(env)),
        pids_(std::move(pids)),
        listed_(listed),
        skip_(skip.begin(), skip.end()),
        netns_(netns.begin(), netns.end()) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    const uint64_t t0 = MonotonicUs();
    if (listed_) pids_ = ListPids();
    out_.reserve(pids_.size() * 6);
    Stat st;
    for (int pid : pids_) {
      if (skip_.count(pid)) {
        // Known to the caller: listed only (still alive), without the ~20 µs of /proc/PID/stat.
        out_.insert(out_.end(), {static_cast<double>(pid), -1, -1, -1});
        continue;
      }
      if (!ReadStat(pid, &st)) continue;
      out_.push_back(pid);
      out_.push_back(st.starttime);
      double ns = NetnsInode(pid);
      out_.push_back(ns);
      if (ns < 0 || (!netns_.empty() && !netns_.count(ns))) {
        out_.push_back(-1);
        continue;
      }
      size_t count_at = out_.size();
      out_.push_back(0);
      SocketInodes(pid, &out_);
      out_[count_at] = static_cast<double>(out_.size() - count_at - 1);
      fds_scanned_++;
    }
    us_ = MonotonicUs() - t0;
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Float64Array arr = Napi::Float64Array::New(env, out_.size());
    if (!out_.empty()) memcpy(arr.Data(), out_.data(), out_.size() * sizeof(double));
    Napi::Object o = Napi::Object::New(env);
    o.Set("records", arr);
    o.Set("processes", Napi::Number::New(env, static_cast<double>(pids_.size())));
    o.Set("fdScans", Napi::Number::New(env, static_cast<double>(fds_scanned_)));
    o.Set("us", Napi::Number::New(env, static_cast<double>(us_)));
    deferred_.Resolve(o);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<int> pids_;
  bool listed_;
  std::unordered_set<int> skip_;
  std::unordered_set<double> netns_;
  std::vector<double> out_;
  size_t fds_scanned_ = 0;
  uint64_t us_ = 0;
};

struct Info {
  bool ok = false;
  Stat st;
  std::string exe;
  double uid = -1;
  std::string cgroup;
};

class InfoWorker : public Napi::AsyncWorker {
 public:
  InfoWorker(Napi::Env env, std::vector<int> pids)
      : Napi::AsyncWorker(env, "ctwatch-proc-info"), deferred_(Napi::Promise::Deferred::New(env)), pids_(std::move(pids)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    infos_.resize(pids_.size());
    char path[64];
    std::string text;
    for (size_t i = 0; i < pids_.size(); i++) {
      Info& in = infos_[i];
      const int pid = pids_[i];
      if (!ReadStat(pid, &in.st)) continue;
      in.ok = true;
      snprintf(path, sizeof(path), "/proc/%d/exe", pid);
      char buf[4096];
      ssize_t n = readlink(path, buf, sizeof(buf) - 1);
      if (n > 0) in.exe.assign(buf, static_cast<size_t>(n));
      snprintf(path, sizeof(path), "/proc/%d/status", pid);
      if (ReadSmall(path, &text)) {
        size_t at = text.find("\nUid:");
        if (at != std::string::npos) in.uid = strtod(text.c_str() + at + 5, nullptr);  // real uid
      }
      snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
      if (ReadSmall(path, &text)) in.cgroup = text;
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array arr = Napi::Array::New(env, infos_.size());
    for (size_t i = 0; i < infos_.size(); i++) {
      const Info& in = infos_[i];
      if (!in.ok) {
        arr.Set(i, env.Null());
        continue;
      }
      Napi::Object o = Napi::Object::New(env);
      o.Set("pid", Napi::Number::New(env, pids_[i]));
      o.Set("ppid", Napi::Number::New(env, in.st.ppid));
      o.Set("starttime", Napi::Number::New(env, in.st.starttime));
      o.Set("comm", Napi::String::New(env, in.st.comm));
      if (!in.exe.empty()) o.Set("exe", Napi::String::New(env, in.exe));
      if (in.uid >= 0) o.Set("uid", Napi::Number::New(env, in.uid));
      o.Set("cgroup", Napi::String::New(env, in.cgroup));
      arr.Set(i, o);
    }
    deferred_.Resolve(arr);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<int> pids_;
  std::vector<Info> infos_;
};

}  // namespace

// scanProcesses({ pids?: Int32Array, skipFds?: Int32Array, netns?: Float64Array }): Promise<{
//   records: Float64Array, processes, fdScans, us }>. Without `pids`, every process in /proc.
Napi::Value ScanProcesses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  Napi::Value pids = o.Get("pids");
  bool listed = !pids.IsTypedArray();
  auto* w = new ScanWorker(env, IntArray(pids), listed, IntArray(o.Get("skipFds")), DoubleArray(o.Get("netns")));
  Napi::Promise promise = w->Promise();
  w->Queue();
  return promise;
}

// procInfo(pids: Int32Array): Promise<({ pid, ppid, starttime, comm, exe?, uid?, cgroup } | null)[]>
Napi::Value ProcInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* w = new InfoWorker(env, IntArray(info[0]));
  Napi::Promise promise = w->Promise();
  w->Queue();
  return promise;
}

void RegisterSockDiag(Napi::Env env, Napi::Object exports) {
  exports.Set("SockDiag", SockDiag::Init(env));
  exports.Set("scanProcesses", Napi::Function::New<ScanProcesses>(env, "scanProcesses"));
  exports.Set("procInfo", Napi::Function::New<ProcInfo>(env, "procInfo"));
}

}  // namespace ctwatch
