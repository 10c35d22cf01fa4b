// The reader's batches on their way to JavaScript: records are appended to the current batch, a
// full or old enough one is sealed, sealed batches go out in order once their records' owners are
// settled (attribution/join.h), and each one handed over takes a credit that JavaScript gives back
// with release() (reader.h says why credits are the backpressure).
#include <cstring>
#include <memory>

#include "conntrack/clock.h"
#include "conntrack/reader.h"

namespace ctwatch {

namespace {

// A batch whose records wait for their owner is tried again this often (each try costs a few
// map lookups per record).
constexpr uint64_t kRetryNs = 500'000;

}  // namespace

Record* Reader::Append(bool ignore_credits) {
  if (current_->records.size() >= batch_size_) Deliver(ignore_credits);
  if (current_->records.empty()) batch_started_ms_ = MonotonicMs();
  current_->records.emplace_back();
  return &current_->records.back();
}

void Reader::Deliver(bool ignore_credits) {
  // A step another thread waits for runs between batches, even in a long dump.
  if (task_pending_.load()) RunPendingTask();
  RefreshStats();  // due or not: a busy reader delivers often, an idle one polls with its timeout
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

}  // namespace ctwatch
