#include "attribution/sockdiag.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>

#include "attribution/capture.h"
#include "attribution/diag.h"
#include "netns.h"

namespace ctwatch {

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
  OpenError e;
  try {
    // The entry catches everything: an exception leaving a std::thread is std::terminate.
    thread_ = std::thread([this, &opened] {
      try {
        Run(&opened);
      } catch (...) {
        OpenError failed = CurrentException("the socket lookup thread failed");
        if (!answered_) opened.set_value(failed);
        else FailQueued(failed);
      }
    });
    e = result.get();
  } catch (...) {
    e = CurrentException("cannot start the socket lookup thread");
  }
  if (!e.ok()) {
    if (thread_.joinable()) thread_.join();
    tsfn_.Release();
    tsfn_live_ = false;
    stopped_ = true;
    throw MakeError(env, e);
  }
  napi_add_env_cleanup_hook(env, CleanupHook, this);
  hook_added_ = true;
  return env.Undefined();
}


void SockDiag::Run(std::promise<OpenError>* opened) {
  // Named for top -H and /proc/PID/task/*/comm (at most 15 characters, or the name is refused).
  pthread_setname_np(pthread_self(), "ctwatch-attrib");
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
  answered_ = true;
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
      try {
        if (job->kind == DiagJob::kLookup) RunLookup(job);
        else RunRoutes(job);
      } catch (...) {
        job->error = CurrentException("a socket lookup failed");  // this one, not the thread
      }
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

// After the thread failed: nothing more will be answered, so every queued lookup is rejected now
// rather than left waiting.
void SockDiag::FailQueued(const OpenError& why) noexcept {
  try {
    std::deque<DiagJob*> left;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      left.swap(queue_);
    }
    for (DiagJob* job : left) {
      job->error = why;
      if (tsfn_.NonBlockingCall(job) != napi_ok) delete job;
    }
  } catch (...) {
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


}  // namespace ctwatch
