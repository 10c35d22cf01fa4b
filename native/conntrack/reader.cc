// The reader thread (named ctwatch-reader): opens the kernel sockets in the target namespace,
// reads events in bursts, decodes them into records (decode.cc) and joins their owners when
// attribution is on; batches.cc hands the records over. What JavaScript calls is reader_js.cc.
#include "conntrack/reader.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <future>

#include "attribution/attribution.h"
#include "conntrack/clock.h"
#include "conntrack/decode.h"
#include "privileges.h"

namespace ctwatch {

namespace {

// A conntrack event message is well under 1 KiB; 8 KiB leaves room for labels and helpers.
constexpr size_t kDatagram = 8192;
constexpr unsigned kBurst = 64;
// How long a partial batch lets events accumulate in the socket between reads.
constexpr uint64_t kLingerMs = 1;
// After a stop, what the kernel had queued is read within these bounds (time; datagrams).
constexpr uint64_t kFinalDrainMs = 1000;
constexpr uint64_t kFinalDrainRecords = 1u << 20;

}  // namespace

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

int Reader::RefreshStats() {
  uint32_t every = stats_every_ms_.load(std::memory_order_relaxed);
  if (every == 0) return -1;
  uint64_t now = MonotonicMs();
  if (now < stats_next_ms_) return static_cast<int>(stats_next_ms_ - now);
  TableStats s;
  OpenError e = QueryStats(sockets_.stats, &s);
  uint64_t taken = MonotonicMs();
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    if (e.ok()) {
      stats_latest_ = std::move(s);
      stats_taken_ms_ = taken == 0 ? 1 : taken;
    }
    stats_error_ = std::move(e);
  }
  stats_next_ms_ = taken + every;
  return static_cast<int>(every);
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
      if (!join_ || !join_->Prompt()) {
        set = &fds[1];
        nfds = 1;
      }
      timeout = static_cast<int>(std::min<uint64_t>(flush_ms_ - age, kLingerMs));
    } else if (!sealed_.empty()) {
      timeout = 1;  // a sealed batch waits for an owner: try it again soon
    }
    int stats_in = RefreshStats();
    if (stats_in >= 0 && (timeout < 0 || stats_in < timeout)) timeout = stats_in;
    if (join_) {
      join_->Upkeep();
      const int upkeep_in = join_->UpkeepMs();
      if (upkeep_in >= 0 && (timeout < 0 || upkeep_in < timeout)) timeout = upkeep_in;
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
  // Who sent each datagram: the kernel's port id is 0. Another socket may unicast to ours — any
  // process with CAP_NET_ADMIN over the namespace (a container's root in its own user namespace)
  // — and what it sends is not the kernel's table: refused, counted as a decode error.
  static thread_local sockaddr_nl from[kBurst];
  for (unsigned i = 0; i < kBurst; i++) {
    iov[i] = {storage.data() + i * kDatagram, kDatagram};
    msgs[i].msg_hdr = msghdr{};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &from[i];
  }
  // Normally until the socket is empty or we are told to stop; the final drain (after the stop)
  // until the socket is empty or the bound is reached.
  while (final_until_ms ? MonotonicMs() < final_until_ms && final_records < kFinalDrainRecords
                        : !stopping_.load(std::memory_order_relaxed)) {
    // What this call reads was queued after the last call that found the socket empty began.
    const uint64_t before = MonotonicNs();
    const ReadWindow window{empty_ns_, before};
    for (unsigned i = 0; i < kBurst; i++) msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);  // in and out
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
      if (msgs[i].msg_hdr.msg_namelen != sizeof(sockaddr_nl) || from[i].nl_pid != 0) {
        ++decode_errors_;  // not from the kernel (see `from` above)
        continue;
      }
      int len = static_cast<int>(msgs[i].msg_len);
      for (auto* nlh = reinterpret_cast<const nlmsghdr*>(iov[i].iov_base); NlmsgOk(nlh, len);
           nlh = NlmsgNext(nlh, &len)) {
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

}  // namespace ctwatch
