// The JS-facing /proc readers of the fallback: scanProcesses and procInfo, each an AsyncWorker on
// the libuv pool (rare, and not tied to a namespace).
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <unordered_set>

#include "attribution/diag.h"
#include "attribution/procfs.h"
#include "attribution/sockdiag.h"

namespace ctwatch {

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
      // Another user's process without CAP_SYS_PTRACE: neither its namespace nor its descriptors
      // can be read. Counted, so the misses it causes are reported as `denied`, not `no-pid`.
      if (ns < 0 && (errno == EACCES || errno == EPERM)) denied_++;
      out_.push_back(ns);
      if (ns < 0 || (!netns_.empty() && !netns_.count(ns))) {
        out_.push_back(-1);
        continue;
      }
      size_t count_at = out_.size();
      out_.push_back(0);
      if (!SocketInodes(pid, &out_) && (errno == EACCES || errno == EPERM)) denied_++;
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
    o.Set("denied", Napi::Number::New(env, static_cast<double>(denied_)));
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
  size_t denied_ = 0;  // processes whose namespace or descriptors were refused (EACCES/EPERM)
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
