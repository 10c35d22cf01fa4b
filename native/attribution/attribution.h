// The addon's attribution handle, as JavaScript sees it: new Attribution({ mode }), open() (a typed
// error when the mode cannot run here), info(), close(). A Reader given the handle joins every NEW
// with its owner on its own thread (join.h). Which mode to try, and what to say about it, is
// TypeScript's (src/process/attribution.ts).
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "attribution/bpf_stamps.h"
#include "attribution/join.h"

namespace ctwatch {

class Attribution : public Napi::ObjectWrap<Attribution> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Attribution(const Napi::CallbackInfo& info);
  // The factory of an opened handle, or null when `v` is not one (or it is closed).
  static std::shared_ptr<JoinFactory> FactoryOf(Napi::Value v);

 private:
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  std::string mode_;
  uint32_t ring_bytes_ = 0;   // the stamp ring's size (0: the default), for programs this handle loads
  std::string ring_refused_;  // a stampRingBytes that is not a size, as given
  std::shared_ptr<JoinFactory> factory_;
  std::shared_ptr<BpfStamps> stamps_;  // ebpf mode: what info() describes
};

// Writes a join's counters as a JavaScript object (for Reader.counters()).
Napi::Object JoinCountersObject(Napi::Env env, const char* mode, const JoinCounters& c);
// Named counters (BpfStamps::Counters, JoinFactory::SharedCounters) as a JavaScript object.
Napi::Object NamedCountersObject(Napi::Env env, const std::vector<std::pair<const char*, uint64_t>>& counters);

}  // namespace ctwatch
