// Process attribution, native half: socket lookups by exact tuple with sock_diag in one network
// namespace (SockDiag, with its NEW-time capture in capture.cc and the requests in diag.cc), and
// reads of /proc for the inode -> pid index (ScanProcesses, ProcInfo in proc_scan.cc).
// Policy (what to look up, which side of a flow is its own, reasons, pid reuse, enrichment, how
// long an answer is trusted) lives in TypeScript (src/process/). The one thing kept here past a
// socket's life is the NEW-time capture below: what was seen while the socket lived, per tuple,
// bounded, handed to the next lookup of that tuple.
//
// NEW-time capture (option `capture`). A socket that lives a few milliseconds is gone before a
// lookup driven from JavaScript can reach it: the event waits for the reader's batch, the JS
// thread, then a trip here, and under load that is 5-50 ms. With capture on, this thread also
// subscribes to the namespace's conntrack NEW events and, for each burst, at once looks up the
// original-direction socket and maps its inode to a process by reading the descriptors of the few
// processes that owned captured sockets lately (a leaky client is one of them after its first
// connection), or, rate-limited, of every process in the namespace. What it saw is kept per tuple
// (bounded) and answers later lookups for that tuple: a fact recorded while the socket lived, not
// a guess. It costs a second NEW subscription (~1 µs per event to decode) and ~2 µs per lookup.
//
// Threads. SockDiag owns one dedicated std::thread per namespace: it enters the namespace, opens
// the NETLINK_SOCK_DIAG and NETLINK_ROUTE sockets there, goes back (exactly as OpenSockets does for
// conntrack), then serves lookup batches from a queue. Lookups are frequent (every batch of NEW
// events), so they do not go to the libuv pool, where they would queue behind file writes and
// /proc reads; one thread per socket also means the socket needs no lock. /proc scans are rare
// (on a miss, rate-limited in TS) and not tied to a namespace, so they are AsyncWorkers: at most
// one at a time occupies one libuv pool thread for a few milliseconds.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "errors.h"

namespace ctwatch {

struct DiagJob;
struct DiagRequest;
struct CaptureState;

class SockDiag : public Napi::ObjectWrap<SockDiag> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit SockDiag(const Napi::CallbackInfo& info);
  ~SockDiag() override;

 public:
  // Capture counters (written on the namespace thread; public for the scan timers in the .cc).
  std::atomic<uint64_t> cap_hot_us_{0}, cap_discovery_us_{0}, cap_hot_size_{0};

 private:
  // JS-facing
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Lookup(const Napi::CallbackInfo& info);
  Napi::Value LocalRoutes(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);

  Napi::Value Enqueue(Napi::Env env, DiagJob* job);

  // worker thread
  void Run(std::promise<OpenError>* opened);
  void FailQueued(const OpenError& why) noexcept;
  std::atomic<bool> answered_{false};  // Open() has its answer: the thread runs
  void RunLookup(DiagJob* job);
  void RunRoutes(DiagJob* job);
  void LookupMany(const std::vector<DiagRequest>& reqs, uint32_t* out);
  void Capture();
  void FillOwners(const std::vector<DiagRequest>& reqs, uint32_t* out);
  void ResolveUnowned();
  void ScanHot(const std::vector<uint32_t>& wanted, const std::vector<int>& likely);
  void Discover(const std::vector<uint32_t>& wanted);
  void Wake();

  void Stop();  // idempotent; joins the thread, cancels queued jobs, lets the process exit
  static void CleanupHook(void* self);
  static void CallJs(Napi::Env env, Napi::Function callback, SockDiag* self, DiagJob* job);

  using Tsfn = Napi::TypedThreadSafeFunction<SockDiag, DiagJob, CallJs>;
  Tsfn tsfn_;
  bool tsfn_live_ = false;
  Napi::Env env_;
  std::string netns_;

  int diag_fd_ = -1;   // NETLINK_SOCK_DIAG, worker thread only
  int route_fd_ = -1;  // NETLINK_ROUTE, worker thread only
  int ct_fd_ = -1;     // conntrack NEW events (capture only), worker thread only
  int wake_fd_ = -1;   // eventfd: a job was queued, or stop
  bool capture_ = false;
  std::unique_ptr<CaptureState> cap_;  // worker thread only
  std::thread thread_;
  std::mutex mu_;
  std::deque<DiagJob*> queue_;  // guarded by mu_
  bool stopping_ = false;       // guarded by mu_

  bool opened_ = false;      // JS thread only
  bool stopped_ = false;     // JS thread only
  bool hook_added_ = false;  // JS thread only
  uint32_t pending_ = 0;     // JS thread only: jobs handed to the thread and not yet settled

  std::atomic<uint64_t> requests_{0}, found_{0}, not_found_{0}, retried_{0}, batches_{0},
      sends_{0}, busy_us_{0};
  std::atomic<uint64_t> cap_events_{0}, cap_sockets_{0}, cap_owned_{0}, cap_overflows_{0},
      cap_hits_{0}, cap_hot_scans_{0}, cap_hot_reads_{0}, cap_closed_unowned_{0}, cap_discoveries_{0}, cap_us_{0}, cap_evicted_{0};
};

// Adds SockDiag, scanProcesses and procInfo to the module's exports (called from addon.cc's Init).
void RegisterSockDiag(Napi::Env env, Napi::Object exports);

// scanProcesses({ pids?, skipFds?, netns? }) -> Promise<Float64Array>; see proc_scan.cc.
Napi::Value ScanProcesses(const Napi::CallbackInfo& info);
// procInfo(pids: Int32Array) -> Promise<(object | null)[]>; see proc_scan.cc.
Napi::Value ProcInfo(const Napi::CallbackInfo& info);

}  // namespace ctwatch
