// Process attribution, native half: socket lookups by exact tuple with sock_diag in one network
// namespace (SockDiag), and reads of /proc for the inode -> pid index (ScanProcesses, ProcInfo).
// Policy (what to look up, when to scan, how to cache) lives in TypeScript (src/process/).
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
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "errors.h"

namespace ctwatch {

struct DiagJob;

class SockDiag : public Napi::ObjectWrap<SockDiag> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit SockDiag(const Napi::CallbackInfo& info);
  ~SockDiag() override;

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
  void RunLookup(DiagJob* job);
  void RunRoutes(DiagJob* job);

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
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<DiagJob*> queue_;  // guarded by mu_
  bool stopping_ = false;       // guarded by mu_

  bool opened_ = false;      // JS thread only
  bool stopped_ = false;     // JS thread only
  bool hook_added_ = false;  // JS thread only
  uint32_t pending_ = 0;     // JS thread only: jobs handed to the thread and not yet settled

  std::atomic<uint64_t> requests_{0}, found_{0}, not_found_{0}, retried_{0}, batches_{0},
      sends_{0}, busy_us_{0};
};

// Adds SockDiag, scanProcesses and procInfo to the module's exports (called from addon.cc's Init).
void RegisterSockDiag(Napi::Env env, Napi::Object exports);

// scanProcesses({ pids?, skipFds?, netns? }) -> Promise<Float64Array>; see sockdiag.cc.
Napi::Value ScanProcesses(const Napi::CallbackInfo& info);
// procInfo(pids: Int32Array) -> Promise<(object | null)[]>; see sockdiag.cc.
Napi::Value ProcInfo(const Napi::CallbackInfo& info);

}  // namespace ctwatch
