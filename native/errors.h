// Typed errors: every failure that reaches JavaScript carries a stable `code`, the `errno` and a
// message that tells the operator what to do.
#pragma once
#include <napi.h>

#include <errno.h>
#include <string.h>

#include <exception>
#include <new>
#include <string>
#include <system_error>

namespace ctwatch {

struct OpenError {
  std::string code;     // empty when there is no error
  int err = 0;          // errno
  std::string syscall;
  std::string message;
  bool ok() const { return code.empty(); }
};

inline Napi::Error MakeError(Napi::Env env, const OpenError& e) {
  Napi::Error error = Napi::Error::New(env, e.message);
  error.Set("code", Napi::String::New(env, e.code));
  error.Set("errno", Napi::Number::New(env, e.err));
  if (!e.syscall.empty()) error.Set("syscall", Napi::String::New(env, e.syscall));
  return error;
}

// A C++ exception (not a Napi::Error) as a typed error. Call from a catch block: it rethrows the
// exception in flight to tell its kind. std::thread throws std::system_error when the process is at
// its task limit (a pids cgroup, RLIMIT_NPROC, kernel.threads-max); allocations throw bad_alloc.
// Uncaught, either one ends in std::terminate: "terminate called", SIGABRT, exit 134.
inline OpenError CurrentException(const std::string& doing) {
  OpenError e;
  try {
    throw;
  } catch (const std::system_error& x) {
    const int err = x.code().category() == std::generic_category() || x.code().category() == std::system_category() ? x.code().value() : 0;
    e.code = err == EAGAIN ? "ERR_TASK_LIMIT" : "ERR_NATIVE";
    e.err = err;
    e.message = doing + ": " + (err ? strerror(err) : x.what()) +
                (err == EAGAIN ? " (the process is at its task limit: raise the pids cgroup limit (systemd TasksMax), RLIMIT_NPROC or kernel.threads-max)" : "");
  } catch (const std::bad_alloc&) {
    e.code = "ERR_NO_MEMORY";
    e.err = ENOMEM;
    e.message = doing + ": out of memory (raise the memory limit, or lower --rcvbuf and batch sizes)";
  } catch (const std::exception& x) {
    e.code = "ERR_NATIVE";
    e.message = doing + ": " + x.what();
  } catch (...) {
    e.code = "ERR_NATIVE";
    e.message = doing + ": an unknown native exception";
  }
  return e;
}

// For an N-API method: runs `body`; a Napi::Error passes as it is, any other exception becomes
// a typed JavaScript error instead of aborting the process.
template <typename F>
auto Guarded(Napi::Env env, const char* doing, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw MakeError(env, CurrentException(doing));
  }
}

}  // namespace ctwatch
