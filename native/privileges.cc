#include "privileges.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <map>
#include <mutex>

#include "errors.h"
#include "netns.h"

namespace ctwatch {

namespace {

std::mutex registry_mu;
std::map<void*, std::function<bool(std::function<void()>)>>& Registry() {
  static std::map<void*, std::function<bool(std::function<void()>)>> r;
  return r;
}

Napi::Error Fail(Napi::Env env, const char* code, int err, const std::string& msg) {
  return MakeError(env, MakeOpenError(code, err, "", msg));
}

}  // namespace

void RegisterReaderThread(void* key, std::function<bool(std::function<void()>)> run_on_thread) {
  std::lock_guard<std::mutex> lock(registry_mu);
  Registry()[key] = std::move(run_on_thread);
}

void UnregisterReaderThread(void* key) {
  std::lock_guard<std::mutex> lock(registry_mu);
  Registry().erase(key);
}

int KeepOnlyNetAdmin() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  data[0].effective = data[0].permitted = 1u << CAP_NET_ADMIN;
  return syscall(SYS_capset, &hdr, data) == 0 ? 0 : errno;
}

// dropPrivileges(uid, gid): see the header comment for the order of steps and why.
Napi::Value DropPrivileges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uid_t uid = info[0].As<Napi::Number>().Uint32Value();
  const gid_t gid = info[1].As<Napi::Number>().Uint32Value();
  std::lock_guard<std::mutex> lock(registry_mu);
  // 1. Our threads ask to keep their permitted set across the uid change.
  if (prctl(PR_SET_KEEPCAPS, 1) != 0) throw Fail(env, "ERR_PRIVILEGES", errno, "prctl(PR_SET_KEEPCAPS) failed");
  for (auto& [key, run] : Registry()) {
    if (!run([] { prctl(PR_SET_KEEPCAPS, 1); })) throw Fail(env, "ERR_PRIVILEGES", ETIMEDOUT, "a reader thread did not answer");
  }
  // 2. Groups, gid, uid: glibc applies each to every thread of the process.
  if (setgroups(0, nullptr) != 0) throw Fail(env, "ERR_PRIVILEGES", errno, std::string("setgroups failed: ") + strerror(errno));
  if (setgid(gid) != 0) throw Fail(env, "ERR_PRIVILEGES", errno, std::string("setgid failed: ") + strerror(errno));
  if (setuid(uid) != 0) throw Fail(env, "ERR_PRIVILEGES", errno, std::string("setuid failed: ") + strerror(errno));
  // 3. Our threads keep CAP_NET_ADMIN alone; the rest of the process has nothing left.
  int err = KeepOnlyNetAdmin();
  if (err != 0) throw Fail(env, "ERR_PRIVILEGES", err, std::string("capset failed: ") + strerror(err));
  for (auto& [key, run] : Registry()) {
    int thread_err = 0;
    if (!run([&] { thread_err = KeepOnlyNetAdmin(); prctl(PR_SET_KEEPCAPS, 0); }) || thread_err != 0) {
      throw Fail(env, "ERR_PRIVILEGES", thread_err ? thread_err : ETIMEDOUT, "could not limit a reader thread's capabilities");
    }
  }
  prctl(PR_SET_KEEPCAPS, 0);
  return env.Undefined();
}

void InitPrivileges(Napi::Env env, Napi::Object exports) {
  exports.Set("dropPrivileges", Napi::Function::New(env, DropPrivileges, "dropPrivileges"));
}

}  // namespace ctwatch
