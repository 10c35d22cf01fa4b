// The event source: a dedicated reader thread that owns the kernel sockets, decodes messages into
// fixed-size records, and hands them to JavaScript a batch at a time through a thread-safe
// function. Backpressure is a credit count: at most `max_batches` batches may be in JavaScript's
// hands; when they are all out, the reader stops reading, the kernel socket fills, and the kernel's
// ENOBUFS becomes an overflow record. Nothing is dropped without a record saying so.
#pragma once
#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "attribution/join.h"
#include "conntrack/record.h"
#include "conntrack/sockets.h"

namespace ctwatch {

struct Batch {
  std::vector<Record> records;
  // Records whose owner may still come (attribution/join.h): the batch waits for them, at most
  // until `deadline_ns`, and batches behind it wait too, so order is kept.
  struct Unsettled {
    uint32_t index;
    ReadWindow window;
  };
  std::vector<Unsettled> unsettled;
  uint64_t deadline_ns = 0;
  uint64_t next_try_ns = 0;
};

class Reader : public Napi::ObjectWrap<Reader> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Reader(const Napi::CallbackInfo& info);
  ~Reader() override;

 private:
  // JS-facing
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Release(const Napi::CallbackInfo& info);
  Napi::Value Dump(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  // The reading the reader thread took last (no wait), and how often it takes one (0: never).
  Napi::Value LatestStats(const Napi::CallbackInfo& info);
  Napi::Value StatsEvery(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value SetRcvbuf(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  // null, or the error that ended the reader thread (the stream then ends early)
  Napi::Value Failure(const Napi::CallbackInfo& info);

  // reader thread
  void Run(std::promise<OpenError>* opened);
  void RunLoop(std::promise<OpenError>* opened, bool* answered);
  void EndAfterFailure() noexcept;
  void RunPendingTask();
  // final_until_ms: 0 while running; after a stop, read what is queued until then (bounded)
  void Drain(uint64_t final_until_ms = 0);
  void RunDump();
  Record* Append(bool ignore_credits);
  void Deliver(bool ignore_credits);
  void Pump(bool ignore_credits, bool force);
  void Send(Batch* batch, bool ignore_credits);
  void Attribute(Record* r, const ReadWindow& window);
  void Wake();
  // reader thread: takes a table stats reading when one is due; returns ms until the next (-1: none)
  int RefreshStats();

  void Stop();  // idempotent; joins the thread and lets the process exit
  static void CleanupHook(void* self);
  static void CallJs(Napi::Env env, Napi::Function callback, Reader* context, Batch* batch);

  using Tsfn = Napi::TypedThreadSafeFunction<Reader, Batch, CallJs>;
  Tsfn tsfn_;
  bool tsfn_live_ = false;
  Napi::Env env_;

  SocketOptions options_;
  Sockets sockets_;
  int wake_fd_ = -1;
  std::thread thread_;
  size_t batch_size_ = 1024;
  uint32_t max_batches_ = 64;
  Batch* current_ = nullptr;
  uint64_t batch_started_ms_ = 0;  // reader thread only
  uint64_t flush_ms_ = 5;
  // Attribution (absent when off): the mode's factory, this reader's join (reader thread only),
  // batches sealed but waiting for an owner, and the join's counters as last published.
  std::shared_ptr<JoinFactory> join_factory_;
  std::unique_ptr<Join> join_;
  std::deque<Batch*> sealed_;
  uint64_t empty_ns_ = 0;  // reader thread: when the event socket was last seen empty
  std::mutex join_mu_;
  JoinCounters join_counters_;  // guarded by join_mu_

  std::mutex mu_;
  std::condition_variable credit_cv_;
  uint32_t in_flight_ = 0;  // guarded by mu_
  std::atomic<bool> stopping_{false};  // written under mu_ so the credit wait sees it
  bool opened_ = false;     // JS thread only
  bool stopped_ = false;    // JS thread only
  bool hook_added_ = false; // JS thread only
  Napi::FunctionReference callback_;

  std::atomic<bool> dump_requested_{false};
  // A step the reader thread runs for someone else (privileges.cc): credentials are per thread.
  std::mutex task_mu_;
  std::condition_variable task_cv_;
  std::function<void()> task_;
  bool task_done_ = false;
  std::atomic<bool> task_pending_{false};
  std::mutex failure_mu_;
  OpenError failure_;  // guarded by failure_mu_
  bool RunOnThread(std::function<void()> fn);
  std::atomic<uint64_t> events_{0}, batches_{0}, overflows_{0}, decode_errors_{0},
      high_water_{0}, dumps_{0};
  std::atomic<int> rcvbuf_{0};
  std::atomic<int> rcvbuf_request_{0};
  // Table statistics the reader thread reads on its own clock, so that the once-a-second tick takes
  // the latest reading without waiting for a busy reader thread (RunOnThread) to get to the query.
  std::atomic<uint32_t> stats_every_ms_{0};
  uint64_t stats_next_ms_ = 0;  // reader thread only
  std::mutex stats_mu_;
  TableStats stats_latest_;     // guarded by stats_mu_
  uint64_t stats_taken_ms_ = 0; // guarded by stats_mu_; 0: no reading yet
  OpenError stats_error_;       // guarded by stats_mu_: the last reading's failure
};

}  // namespace ctwatch
