// Typed errors: every failure that reaches JavaScript carries a stable `code`, the `errno` and a
// message that tells the operator what to do.
#pragma once
#include <napi.h>

#include <string>

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

}  // namespace ctwatch
