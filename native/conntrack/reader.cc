#include "conntrack/reader.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <future>

#include "attribution/attribution.h"
#include "conntrack/decode.h"
#include "privileges.h"

namespace ctwatch {

namespace {

uint64_t RealtimeUs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

uint32_t GetU32(const Napi::Object& o, const char* key, uint32_t fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : fallback;
}

// A conntrack event message is well under 1 KiB; 8 KiB leaves room for labels and helpers.
constexpr size_t kDatagram = 8192;
constexpr unsigned kBurst = 64;
// How long a partial batch lets events accumulate in the socket between reads.
constexpr uint64_t kLingerMs = 1;
// After a stop, what the kernel had queued is read within these bounds (time; datagrams).
constexpr uint64_t kFinalDrainMs = 1000;
constexpr uint64_t kFinalDrainRecords = 1u << 20;

uint64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// A batch whose records wait for their owner is tried again this often (each try costs a few
// map lookups per record).
constexpr uint64_t kRetryNs = 500'000;

// Reads the filter TypeScript compiled (src/source/filter.ts); it has already been validated.
void ReadFilter(const Napi::Object& f, KernelFilter* out) {
  out->present = true;
  auto each = [&](const char* key, auto&& fn) {
    Napi::Value v = f.Get(key);
    if (!v.IsArray()) return;
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) fn(a.Get(i));
  };
  auto u32 = [](Napi::Value v) { return v.As<Napi::Number>().Uint32Value(); };
  auto pair = [&](Napi::Value v) {
    Napi::Array a = v.As<Napi::Array>();
    return std::make_pair(u32(a.Get(0u)), u32(a.Get(1u)));
  };
  auto eight = [&](Napi::Value v) {
    Napi::Array a = v.As<Napi::Array>();
    std::array<uint32_t, 8> r{};
    for (uint32_t i = 0; i < 8; i++) r[i] = u32(a.Get(i));
    return r;
  };
  each("protos", [&](Napi::Value v) { out->protos.push_back(u32(v)); });
  each("states", [&](Napi::Value v) {
    auto p = pair(v);
    out->states.emplace_back(static_cast<uint16_t>(p.first), static_cast<uint16_t>(p.second));
  });
  each("src4", [&](Napi::Value v) { out->src4.push_back(pair(v)); });
  each("dst4", [&](Napi::Value v) { out->dst4.push_back(pair(v)); });
  each("src6", [&](Napi::Value v) { out->src6.push_back(eight(v)); });
  each("dst6", [&](Napi::Value v) { out->dst6.push_back(eight(v)); });
  each("marks", [&](Napi::Value v) { out->marks.push_back(pair(v)); });
}

}  // namespace

Napi::Function Reader::Init(Napi::Env env) {
  return DefineClass(env, "Reader",
                     {
                         InstanceMethod<&Reader::Open>("open"),
                         InstanceMethod<&Reader::Close>("close"),
                         InstanceMethod<&Reader::Release>("release"),
                         InstanceMethod<&Reader::Dump>("dump"),
                         InstanceMethod<&Reader::Stats>("stats"),
                         InstanceMethod<&Reader::Counters>("counters"),
                         InstanceMethod<&Reader::SetRcvbuf>("setRcvbuf"),
                         InstanceMethod<&Reader::Ref>("ref"),
                         InstanceMethod<&Reader::Unref>("unref"),
                         InstanceMethod<&Reader::Failure>("failure"),
                     });
}

// Arguments are validated and defaulted in TypeScript (src/source/live.ts); here we only read them.
Reader::Reader(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Reader>(info), env_(info.Env()) {
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Value netns = o.Get("netns");
  if (netns.IsString()) options_.netns = netns.As<Napi::String>().Utf8Value();
  options_.groups = GetU32(o, "groups", 1 | 4);
  options_.rcvbuf = static_cast<int>(GetU32(o, "rcvbuf", 32u << 20));
  options_.reliable = o.Get("reliable").ToBoolean().Value();
  Napi::Value filter = o.Get("filter");
  if (filter.IsObject()) ReadFilter(filter.As<Napi::Object>(), &options_.filter);
  batch_size_ = std::max<uint32_t>(1, GetU32(o, "batchSize", 1024));
  max_batches_ = std::max<uint32_t>(1, GetU32(o, "maxBatches", 64));
  flush_ms_ = GetU32(o, "flushMs", 5);
  join_factory_ = Attribution::FactoryOf(o.Get("attribution"));
  callback_ = Napi::Persistent(info[1].As<Napi::Function>());
}

Reader::~Reader() { Stop(); }

Napi::Value Reader::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (opened_) return env.Undefined();
  // The first batch and the thread can fail (out of memory; the task limit of a pids cgroup or
  // RLIMIT_NPROC): typed errors, never std::terminate.
  std::unique_ptr<Batch> first = Guarded(env, "cannot allocate the conntrack reader's batches", [&] {
    std::unique_ptr<Batch> b(new Batch());
    b->records.reserve(batch_size_);
    return b;
  });
  opened_ = true;
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  current_ = first.release();
  tsfn_ = Tsfn::New(env, callback_.Value(), "ctwatch-reader", 0, 1, this);
  tsfn_live_ = true;

  std::promise<OpenError> opened;
  std::future<OpenError> result = opened.get_future();
  OpenError e;
  try {
    thread_ = std::thread(&Reader::Run, this, &opened);
    e = result.get();
  } catch (...) {
    e = CurrentException("cannot start the conntrack reader thread");
  }
  if (!e.ok()) {
    if (thread_.joinable()) thread_.join();
    tsfn_.Release();
    tsfn_live_ = false;
    stopped_ = true;
    close(wake_fd_);
    wake_fd_ = -1;
    delete current_;
    current_ = nullptr;
    throw MakeError(env, e);
  }
  napi_add_env_cleanup_hook(env, CleanupHook, this);
  hook_added_ = true;
  RegisterReaderThread(this, [this](std::function<void()> fn) { return RunOnThread(std::move(fn)); });
  return env.Undefined();
}

void Reader::CleanupHook(void* self) {
  auto* reader = static_cast<Reader*>(self);
  reader->hook_added_ = false;  // the environment is removing it for us
  reader->Stop();
}

void Reader::Stop() {
  if (stopped_ || !opened_) {
    stopped_ = true;
    return;
  }
  stopped_ = true;
  UnregisterReaderThread(this);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  credit_cv_.notify_all();
  Wake();
  if (thread_.joinable()) thread_.join();
  // Batches already queued (including the final kEnd) are still delivered to JavaScript; after that
  // the thread-safe function finalizes and no longer holds the event loop open.
  if (tsfn_live_) {
    tsfn_.Release();
    tsfn_live_ = false;
  }
  sockets_.Close();
  if (wake_fd_ >= 0) close(wake_fd_);
  wake_fd_ = -1;
  delete current_;
  current_ = nullptr;
  for (Batch* b : sealed_) delete b;  // the thread settled and sent them; this is for a failed open
  sealed_.clear();
  // The join holds the attribution programs: a closed reader lets go of them now.
  join_.reset();
  join_factory_.reset();
  if (hook_added_) {
    napi_remove_env_cleanup_hook(env_, CleanupHook, this);
    hook_added_ = false;
  }
}

bool Reader::RunOnThread(std::function<void()> fn) {
  std::unique_lock<std::mutex> lock(task_mu_);
  task_ = std::move(fn);
  task_done_ = false;
  task_pending_ = true;
  // The reader may be waiting for a batch credit rather than in poll(): wake it there too. Taking
  // mu_ once orders the flag before its predicate check (no lost wake-up).
  { std::lock_guard<std::mutex> credit(mu_); }
  credit_cv_.notify_all();
  Wake();
  bool done = task_cv_.wait_for(lock, std::chrono::seconds(2), [&] { return task_done_; });
  if (!done) {
    task_ = nullptr;
    task_pending_ = false;
  }
  return done;
}

// Reader thread: runs the step another thread is waiting for, if there is one.
void Reader::RunPendingTask() {
  std::lock_guard<std::mutex> lock(task_mu_);
  if (task_) {
    task_();
    task_ = nullptr;
    task_done_ = true;
    task_cv_.notify_all();
  }
  task_pending_ = false;
}

void Reader::Wake() {
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    ssize_t ignored = write(wake_fd_, &one, sizeof(one));
    (void)ignored;
  }
}

// The thread's entry: nothing may escape it (an exception leaving a std::thread is std::terminate).
// Before Open() has its answer, a failure is that answer; after, it ends the stream with the end
// marker, and failure() tells JavaScript why.
void Reader::Run(std::promise<OpenError>* opened) {
  bool answered = false;
  try {
    RunLoop(opened, &answered);
  } catch (...) {
    OpenError e = CurrentException("the conntrack reader thread failed");
    if (!answered) {
      opened->set_value(std::move(e));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(failure_mu_);
      failure_ = std::move(e);
    }
    EndAfterFailure();
  }
}

void Reader::EndAfterFailure() noexcept {
  try {
    // What was read still goes out, as it is (no new allocation of a full batch), then the end.
    // Records still waiting for their owner go without one.
    while (!sealed_.empty()) {
      Batch* b = sealed_.front();
      sealed_.pop_front();
      ++batches_;
      if (tsfn_.NonBlockingCall(b) != napi_ok) delete b;
    }
    if (current_ != nullptr && !current_->records.empty()) {
      Batch* rest = current_;
      current_ = nullptr;
      ++batches_;
      if (tsfn_.NonBlockingCall(rest) != napi_ok) delete rest;
    }
    Batch* end = new Batch();
    end->records.resize(1);
    end->records[0].kind = kEnd;
    end->records[0].time_us = RealtimeUs();
    if (tsfn_.NonBlockingCall(end) != napi_ok) delete end;
  } catch (...) {
    // Out of memory even for one record: nothing more can be said from here.
  }
}

Napi::Value Reader::Failure(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(failure_mu_);
  if (failure_.ok()) return info.Env().Null();
  return MakeError(info.Env(), failure_).Value();
}

void Reader::RunLoop(std::promise<OpenError>* opened, bool* answered) {
  // `top -H` and /proc/PID/task/*/comm show where the time goes only if threads have names.
  pthread_setname_np(pthread_self(), "ctwatch-reader");
  OpenError e = OpenSockets(options_, &sockets_);
  if (e.ok()) rcvbuf_ = sockets_.rcvbuf;
  empty_ns_ = MonotonicNs();
  if (e.ok() && join_factory_) {
    join_ = join_factory_->NewJoin();
    e = join_->Open(options_.netns, nfct_fd(sockets_.events));
    if (!e.ok()) sockets_.Close();
  }
  bool ok = e.ok();
  *answered = true;
  opened->set_value(std::move(e));  // `opened` is dead after this line
  if (!ok) return;

  const int fd = nfct_fd(sockets_.events);
  pollfd fds[2] = {{fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  while (!stopping_.load(std::memory_order_relaxed)) {
    // With an empty batch, sleep until the kernel has something. With a partial one, linger on the
    // wake fd alone for a moment so that events pile up in the socket and the next Drain() takes
    // many per syscall; the batch goes out once it is flush_ms old (or full).
    int nfds = 2;
    pollfd* set = fds;
    int timeout = -1;
    if (!current_->records.empty()) {
      uint64_t age = MonotonicMs() - batch_started_ms_;
      if (age >= flush_ms_) {
        Deliver(false);
        continue;
      }
      set = &fds[1];
      nfds = 1;
      timeout = static_cast<int>(std::min<uint64_t>(flush_ms_ - age, kLingerMs));
    } else if (!sealed_.empty()) {
      timeout = 1;  // a sealed batch waits for an owner: try it again soon
    }
    fds[0].revents = 0;
    fds[1].revents = 0;
    int rc = poll(set, nfds, timeout);
    if (rc < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents & POLLIN) {
      uint64_t v;
      ssize_t ignored = read(wake_fd_, &v, sizeof(v));
      (void)ignored;
    }
    if (stopping_.load(std::memory_order_relaxed)) break;
    int want = rcvbuf_request_.exchange(0);
    if (want > 0) rcvbuf_ = SetReceiveBuffer(fd, want);
    if (task_pending_.load()) RunPendingTask();
    if (dump_requested_.exchange(false)) {
      // Read what the kernel queued before the dump first: those events are older than the dump,
      // and stamping them after it would make a resync keep flows that are already gone.
      Drain();
      RunDump();
      Deliver(false);
    }
    Drain();
    if (!sealed_.empty()) Pump(false, false);
  }
  // What the kernel had already queued for us when we were told to stop is read too, within a
  // bound (a SIGTERM must not drop events that were already on their way); then whatever was
  // read is delivered, and a kEnd record tells JavaScript nothing follows.
  Drain(MonotonicMs() + kFinalDrainMs);
  Record* end = Append(true);
  end->kind = kEnd;
  end->time_us = RealtimeUs();
  Deliver(true);
}

void Reader::Drain(uint64_t final_until_ms) {
  const int fd = nfct_fd(sockets_.events);
  uint64_t final_records = 0;
  // recvmmsg takes up to kBurst datagrams (one event each, usually) per system call.
  static thread_local std::vector<char> storage(kBurst * kDatagram);
  static thread_local mmsghdr msgs[kBurst];
  static thread_local iovec iov[kBurst];
  for (unsigned i = 0; i < kBurst; i++) {
    iov[i] = {storage.data() + i * kDatagram, kDatagram};
    msgs[i].msg_hdr = msghdr{};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  // Normally until the socket is empty or we are told to stop; the final drain (after the stop)
  // until the socket is empty or the bound is reached.
  while (final_until_ms ? MonotonicMs() < final_until_ms && final_records < kFinalDrainRecords
                        : !stopping_.load(std::memory_order_relaxed)) {
    // What this call reads was queued after the last call that found the socket empty began.
    const uint64_t before = MonotonicNs();
    const ReadWindow window{empty_ns_, before};
    int got = recvmmsg(fd, msgs, kBurst, MSG_DONTWAIT, nullptr);
    if (got > 0) final_records += static_cast<uint64_t>(got);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        empty_ns_ = before;
        return;
      }
      if (errno == ENOBUFS) {
        // The kernel dropped events because our buffer was full. This record is the only trace of
        // that loss, so it is never coalesced or skipped.
        uint64_t count = ++overflows_;
        Record* r = Append(final_until_ms != 0);
        r->kind = kOverflow;
        r->time_us = RealtimeUs();
        r->id = static_cast<uint32_t>(count);
        continue;
      }
      ++decode_errors_;
      return;
    }
    const uint64_t now = RealtimeUs();
    for (int i = 0; i < got; i++) {
      if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
        ++decode_errors_;
        continue;
      }
      int len = static_cast<int>(msgs[i].msg_len);
      for (auto* nlh = reinterpret_cast<const nlmsghdr*>(iov[i].iov_base); mnl_nlmsg_ok(nlh, len);
           nlh = mnl_nlmsg_next(nlh, &len)) {
        if (nlh->nlmsg_type < NLMSG_MIN_TYPE) continue;  // NOOP / ERROR / DONE carry no entry
        Record* r = Append(final_until_ms != 0);
        if (DecodeMessage(nlh, 0, now, r)) {
          ++events_;
          if (join_ && r->kind == kNew) Attribute(r, window);
        } else {
          current_->records.pop_back();
          ++decode_errors_;
        }
      }
    }
    if (got < static_cast<int>(kBurst)) {  // the socket is drained
      empty_ns_ = before;
      return;
    }
  }
}

void Reader::Attribute(Record* r, const ReadWindow& window) {
  if (join_->Attach(r, window, false)) return;
  Batch::Unsettled u{static_cast<uint32_t>(current_->records.size() - 1), window};
  current_->unsettled.push_back(u);
  current_->deadline_ns = std::max(current_->deadline_ns, window.read_ns + join_->WaitNs());
  std::lock_guard<std::mutex> lock(join_mu_);
  join_counters_.waited++;
}

void Reader::RunDump() {
  uint32_t count = 0;
  ++dumps_;
  OpenError e = DumpTable(sockets_.dump, [&](const nlmsghdr* m) {
    Record* r = Append(false);
    if (DecodeMessage(m, kSnapshot, RealtimeUs(), r)) {
      ++count;
      if (join_) {
        const uint64_t now = MonotonicNs();
        join_->Attach(r, ReadWindow{now, now}, true);
      }
    } else {
      current_->records.pop_back();
      ++decode_errors_;
    }
  });
  if (!e.ok()) {
    Record* r = Append(false);
    r->kind = kDumpError;
    r->time_us = RealtimeUs();
    r->status = static_cast<uint32_t>(e.err);
  }
  Record* done = Append(false);
  done->kind = kSnapshotDone;
  done->time_us = RealtimeUs();
  done->id = count;
  // A failed dump is incomplete: whoever reconciles with it must know (0: complete).
  done->status = e.ok() ? 0 : static_cast<uint32_t>(e.err ? e.err : EIO);
}

Record* Reader::Append(bool ignore_credits) {
  if (current_->records.size() >= batch_size_) Deliver(ignore_credits);
  if (current_->records.empty()) batch_started_ms_ = MonotonicMs();
  current_->records.emplace_back();
  return &current_->records.back();
}

void Reader::Deliver(bool ignore_credits) {
  // A step another thread waits for runs between batches, even in a long dump.
  if (task_pending_.load()) RunPendingTask();
  if (!current_->records.empty()) {
    // The next batch first: if that allocation fails, nothing has been sealed or counted.
    std::unique_ptr<Batch> next(new Batch());
    next->records.reserve(batch_size_);
    sealed_.push_back(current_);
    current_ = next.release();
  }
  // At the end (ignore_credits) nothing more will come: every record settles now.
  Pump(ignore_credits, ignore_credits);
}

// Hands over sealed batches in order; one whose records still wait for an owner holds back the
// ones behind it until they settle or its deadline passes.
void Reader::Pump(bool ignore_credits, bool force) {
  while (!sealed_.empty()) {
    Batch* batch = sealed_.front();
    if (!batch->unsettled.empty()) {
      const uint64_t now = MonotonicNs();
      const bool last = force || now >= batch->deadline_ns;
      if (!last && now < batch->next_try_ns) return;
      batch->next_try_ns = now + kRetryNs;
      size_t keep = 0;
      for (const Batch::Unsettled& u : batch->unsettled) {
        if (!join_->Attach(&batch->records[u.index], u.window, last)) batch->unsettled[keep++] = u;
      }
      batch->unsettled.resize(keep);
      if (keep > 0) return;
    }
    sealed_.pop_front();
    Send(batch, ignore_credits);
  }
}

void Reader::Send(Batch* batch, bool ignore_credits) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!ignore_credits) {
      // Backpressure: wait for JavaScript to finish a batch. While we wait, nothing reads the
      // socket, so a sustained backlog ends in ENOBUFS, which Drain() turns into a record.
      // A step another thread waits for (the privilege switch, a stats request) still runs: the
      // thread waiting may be the very one that would give the credits back.
      for (;;) {
        credit_cv_.wait(lock, [&] { return in_flight_ < max_batches_ || stopping_.load() || task_pending_.load(); });
        if (in_flight_ < max_batches_ || stopping_.load()) break;
        lock.unlock();
        RunPendingTask();
        lock.lock();
      }
    }
    ++in_flight_;
    uint64_t hw = high_water_.load();
    if (in_flight_ > hw) high_water_ = in_flight_;
  }
  if (join_) {
    std::lock_guard<std::mutex> lock(join_mu_);
    const uint64_t waited = join_counters_.waited;
    join_->Counters(&join_counters_);
    join_counters_.waited = waited;
  }
  ++batches_;
  if (tsfn_.NonBlockingCall(batch) != napi_ok) delete batch;  // only while the env is torn down
}

void Reader::CallJs(Napi::Env env, Napi::Function callback, Reader* /*context*/, Batch* batch) {
  // A null env means the environment is being torn down: free the data, call nothing.
  if (env == nullptr || callback == nullptr) {
    delete batch;
    return;
  }
  const size_t bytes = batch->records.size() * sizeof(Record);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, bytes);
  memcpy(ab.Data(), batch->records.data(), bytes);
  delete batch;
  callback.Call({ab});
}

Napi::Value Reader::Release(const Napi::CallbackInfo& info) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (in_flight_ > 0) --in_flight_;
  }
  credit_cv_.notify_one();
  return info.Env().Undefined();
}

Napi::Value Reader::Close(const Napi::CallbackInfo& info) {
  Stop();
  return info.Env().Undefined();
}

Napi::Value Reader::Dump(const Napi::CallbackInfo& info) {
  if (!stopped_ && opened_) {
    dump_requested_ = true;
    Wake();
  }
  return info.Env().Undefined();
}

Napi::Value Reader::SetRcvbuf(const Napi::CallbackInfo& info) {
  rcvbuf_request_ = static_cast<int>(info[0].As<Napi::Number>().Int32Value());
  Wake();
  return info.Env().Undefined();
}

Napi::Value Reader::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (stopped_ || !opened_) {
    OpenError e;
    e.code = "ERR_SOURCE_CLOSED";
    e.message = "the conntrack source is closed";
    throw MakeError(env, e);
  }
  {
    std::lock_guard<std::mutex> lock(failure_mu_);
    if (!failure_.ok()) throw MakeError(env, failure_);
  }
  // Sent from the reader thread, which keeps CAP_NET_ADMIN after --user: the JavaScript thread
  // keeps no capability at all (native/privileges.h).
  TableStats s;
  OpenError e;
  if (!RunOnThread([&] { e = QueryStats(sockets_.stats, &s); })) {
    e = OpenError{"ERR_STATS_TIMEOUT", ETIMEDOUT, "", "the conntrack reader thread did not answer a table stats request within 2 s"};
  }
  if (!e.ok()) throw MakeError(env, e);
  Napi::Object out = Napi::Object::New(env);
  out.Set("entries", s.entries >= 0 ? Napi::Value(Napi::Number::New(env, s.entries)) : env.Null());
  out.Set("max", s.max >= 0 ? Napi::Value(Napi::Number::New(env, s.max)) : env.Null());
  Napi::Array cpus = Napi::Array::New(env, s.cpus.size());
  for (size_t i = 0; i < s.cpus.size(); i++) {
    Napi::Object c = Napi::Object::New(env);
    for (const auto& kv : s.cpus[i]) c.Set(kv.first, Napi::Number::New(env, kv.second));
    cpus.Set(i, c);
  }
  out.Set("cpus", cpus);
  return out;
}

Napi::Value Reader::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("events", Napi::Number::New(env, static_cast<double>(events_.load())));
  o.Set("batches", Napi::Number::New(env, static_cast<double>(batches_.load())));
  o.Set("overflows", Napi::Number::New(env, static_cast<double>(overflows_.load())));
  o.Set("decodeErrors", Napi::Number::New(env, static_cast<double>(decode_errors_.load())));
  o.Set("queueHighWater", Napi::Number::New(env, static_cast<double>(high_water_.load())));
  o.Set("dumps", Napi::Number::New(env, static_cast<double>(dumps_.load())));
  o.Set("rcvbuf", Napi::Number::New(env, rcvbuf_.load()));
  if (join_factory_) {
    std::lock_guard<std::mutex> lock(join_mu_);
    o.Set("attribution", JoinCountersObject(env, join_factory_->mode(), join_counters_));
  }
  return o;
}

Napi::Value Reader::Ref(const Napi::CallbackInfo& info) {
  if (tsfn_live_) tsfn_.Ref(info.Env());
  return info.Env().Undefined();
}

Napi::Value Reader::Unref(const Napi::CallbackInfo& info) {
  if (tsfn_live_) tsfn_.Unref(info.Env());
  return info.Env().Undefined();
}

}  // namespace ctwatch
