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

// Empties the calling thread's capability bounding set (per thread, like everything here): no
// later execve can gain a capability, whatever file capabilities or set-uid bits it meets.
// Needs CAP_SETPCAP; a unit that does not grant it (CapabilityBoundingSet= without it) leaves the
// set as it is, and NO_NEW_PRIVS alone keeps exec from gaining anything. *dropped says which.
int DropBoundingSet(bool* dropped) {
  *dropped = false;
  if (prctl(PR_CAPBSET_READ, CAP_SETPCAP) != 1) return 0;  // not even in our bounding set
  for (int cap = 0; cap < 64; cap++) {
    if (prctl(PR_CAPBSET_READ, cap) < 0) break;  // past the kernel's last capability
    if (prctl(PR_CAPBSET_DROP, cap) != 0) return errno == EPERM && cap == 0 ? 0 : errno;  // EPERM at once: no CAP_SETPCAP
  }
  *dropped = true;
  return 0;
}

// A thread that gives up everything it could gain: no new privileges on exec (always), and no
// bounding set (when it may drop it).
int Harden(bool* bounding_dropped) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  return DropBoundingSet(bounding_dropped);
}

// Capabilities of the calling thread, effective | permitted (low word: CAP_NET_ADMIN is 12).
uint64_t ThreadCapabilities() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &hdr, data) != 0) return ~0ull;
  return (static_cast<uint64_t>(data[1].effective | data[1].permitted) << 32) | (data[0].effective | data[0].permitted);
}

// dropPrivileges(uid, gid): see the header comment for the order of steps and why. Any step that
// fails fails the whole switch, loudly: a daemon that meant to give up root must not go on as root.
Napi::Value DropPrivileges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uid_t uid = info[0].As<Napi::Number>().Uint32Value();
  const gid_t gid = info[1].As<Napi::Number>().Uint32Value();
  return Guarded(env, "could not give up root", [&]() -> Napi::Value {
    std::lock_guard<std::mutex> lock(registry_mu);
    // 1. While still root: every thread we control empties its bounding set and sets
    //    NO_NEW_PRIVS; the reader threads also ask to keep their permitted set across the uid
    //    change. (Threads created later inherit this from the JS thread that creates them.)
    bool dropped = false;
    int err = Harden(&dropped);
    if (err != 0) throw Fail(env, "ERR_PRIVILEGES", err, std::string("could not set NO_NEW_PRIVS or drop the capability bounding set: ") + strerror(err));
    for (auto& [key, run] : Registry()) {
      int thread_err = 0;
      if (!run([&] {
            bool thread_dropped = false;
            thread_err = Harden(&thread_dropped);
            if (thread_err == 0 && prctl(PR_SET_KEEPCAPS, 1) != 0) thread_err = errno;
          })) {
        throw Fail(env, "ERR_PRIVILEGES", ETIMEDOUT, "a conntrack reader thread did not answer within 2 s (it is stuck): not switching users");
      }
      if (thread_err != 0) throw Fail(env, "ERR_PRIVILEGES", thread_err, std::string("could not harden a reader thread: ") + strerror(thread_err));
    }
    // 2. Groups, gid, uid: glibc applies each to every thread of the process. Threads that did
    //    not ask to keep capabilities (this one, V8's, libuv's) lose them all here.
    if (setgroups(0, nullptr) != 0) throw Fail(env, "ERR_PRIVILEGES", errno, std::string("setgroups failed: ") + strerror(errno));
    if (setgid(gid) != 0) throw Fail(env, "ERR_PRIVILEGES", errno, std::string("setgid failed: ") + strerror(errno));
    if (setuid(uid) != 0) throw Fail(env, "ERR_PRIVILEGES", errno, std::string("setuid failed: ") + strerror(errno));
    // 3. The reader threads keep CAP_NET_ADMIN alone: they send every netlink request (dumps,
    //    stats, receive buffer changes).
    for (auto& [key, run] : Registry()) {
      int thread_err = 0;
      if (!run([&] { thread_err = KeepOnlyNetAdmin(); prctl(PR_SET_KEEPCAPS, 0); }) || thread_err != 0) {
        throw Fail(env, "ERR_PRIVILEGES", thread_err ? thread_err : ETIMEDOUT, "could not limit a reader thread's capabilities");
      }
    }
    // 4. This (the JavaScript) thread keeps nothing; check rather than trust.
    if (ThreadCapabilities() != 0) {
      __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
      __user_cap_data_struct none[2] = {};
      if (syscall(SYS_capset, &hdr, none) != 0 || ThreadCapabilities() != 0) {
        throw Fail(env, "ERR_PRIVILEGES", errno, "the JavaScript thread kept capabilities after the switch");
      }
    }
    // 5. Not dumpable, whatever fs.suid_dumpable says: the setuid already made us so when it is 0
    //    (the default), but with 1 another process of the account could ptrace us and read the
    //    sink tokens in memory, /proc/PID/environ and /proc/PID/mem. Dumpable belongs to the whole
    //    process (its mm), so once is enough.
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) throw Fail(env, "ERR_PRIVILEGES", errno, std::string("could not make the process non-dumpable: ") + strerror(errno));
    Napi::Object result = Napi::Object::New(env);
    result.Set("boundingSetDropped", Napi::Boolean::New(env, dropped));
    return result;
  });
}

void InitPrivileges(Napi::Env env, Napi::Object exports) {
  exports.Set("dropPrivileges", Napi::Function::New(env, DropPrivileges, "dropPrivileges"));
}

}  // namespace ctwatch
