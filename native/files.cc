// File locks Node has no call for: flock(2) on a descriptor JavaScript opened (src/util/safe-file.ts).
// A lock held by flock belongs to the open file description, so it lasts exactly as long as the
// descriptor stays open and the kernel drops it when the process dies, however it dies: a stale
// lock cannot outlive its holder, and no pid is read back and trusted.
#include "files.h"

#include <errno.h>
#include <string.h>
#include <sys/file.h>

#include "errors.h"

namespace ctwatch {

namespace {

// flock(fd, exclusive): true when the lock is now held, false when another open file description
// holds it (never waits: LOCK_NB). Any other failure is a typed error (ERR_LOCK, errno).
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, "flock", [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) {
      throw Napi::TypeError::New(env, "flock(fd, exclusive?) needs a file descriptor");
    }
    const int fd = info[0].As<Napi::Number>().Int32Value();
    const bool exclusive = info.Length() < 2 || info[1].ToBoolean().Value();
    int rc;
    do {
      rc = flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB);
    } while (rc != 0 && errno == EINTR);
    if (rc == 0) return Napi::Boolean::New(env, true);
    const int err = errno;
    if (err == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    OpenError e;
    e.code = "ERR_LOCK";
    e.err = err;
    e.syscall = "flock";
    e.message = std::string("cannot lock: ") + strerror(err);
    throw MakeError(env, e);
  });
}

}  // namespace

void InitFiles(Napi::Env env, Napi::Object exports) {
  exports.Set("flock", Napi::Function::New(env, Flock, "flock"));
}

}  // namespace ctwatch
