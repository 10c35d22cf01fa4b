// The Reader as JavaScript sees it (src/source/native.ts): its construction from the options
// src/source/live.ts validated, and the calls that read its state or ask its thread for something.
// The thread itself is reader.cc; the batches it hands over, batches.cc.
#include <algorithm>
#include <array>
#include <utility>

#include "attribution/attribution.h"
#include "conntrack/clock.h"
#include "conntrack/reader.h"

namespace ctwatch {

namespace {

uint32_t GetU32(const Napi::Object& o, const char* key, uint32_t fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : fallback;
}

// Reads the filter TypeScript compiled (src/source/filter.ts); it has already been validated.
void ReadFilter(const Napi::Object& f, KernelFilter* out) {
  out->present = true;
  auto each = [&](const char* key, auto&& fn) {
    Napi::Value v = f.Get(key);
    if (!v.IsArray()) return;
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) fn(a.Get(i));
  };
  auto u32 = [](Napi::Value v) { return v.As<Napi::Number>().Uint32Value(); };
  auto pair = [&](Napi::Value v) {
    Napi::Array a = v.As<Napi::Array>();
    return std::make_pair(u32(a.Get(0u)), u32(a.Get(1u)));
  };
  auto eight = [&](Napi::Value v) {
    Napi::Array a = v.As<Napi::Array>();
    std::array<uint32_t, 8> r{};
    for (uint32_t i = 0; i < 8; i++) r[i] = u32(a.Get(i));
    return r;
  };
  each("protos", [&](Napi::Value v) { out->protos.push_back(u32(v)); });
  each("states", [&](Napi::Value v) {
    auto p = pair(v);
    out->states.emplace_back(static_cast<uint16_t>(p.first), static_cast<uint16_t>(p.second));
  });
  each("src4", [&](Napi::Value v) { out->src4.push_back(pair(v)); });
  each("dst4", [&](Napi::Value v) { out->dst4.push_back(pair(v)); });
  each("src6", [&](Napi::Value v) { out->src6.push_back(eight(v)); });
  each("dst6", [&](Napi::Value v) { out->dst6.push_back(eight(v)); });
  each("marks", [&](Napi::Value v) { out->marks.push_back(pair(v)); });
}

Napi::Object StatsObject(Napi::Env env, const TableStats& s) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("entries", s.entries >= 0 ? Napi::Value(Napi::Number::New(env, s.entries)) : env.Null());
  out.Set("max", s.max >= 0 ? Napi::Value(Napi::Number::New(env, s.max)) : env.Null());
  Napi::Array cpus = Napi::Array::New(env, s.cpus.size());
  for (size_t i = 0; i < s.cpus.size(); i++) {
    Napi::Object c = Napi::Object::New(env);
    for (const auto& kv : s.cpus[i]) c.Set(kv.first, Napi::Number::New(env, kv.second));
    cpus.Set(i, c);
  }
  out.Set("cpus", cpus);
  return out;
}

}  // namespace

Napi::Function Reader::Init(Napi::Env env) {
  return DefineClass(env, "Reader",
                     {
                         InstanceMethod<&Reader::Open>("open"),
                         InstanceMethod<&Reader::Close>("close"),
                         InstanceMethod<&Reader::Release>("release"),
                         InstanceMethod<&Reader::Dump>("dump"),
                         InstanceMethod<&Reader::Stats>("stats"),
                         InstanceMethod<&Reader::LatestStats>("latestStats"),
                         InstanceMethod<&Reader::StatsEvery>("statsEvery"),
                         InstanceMethod<&Reader::Counters>("counters"),
                         InstanceMethod<&Reader::SetRcvbuf>("setRcvbuf"),
                         InstanceMethod<&Reader::Ref>("ref"),
                         InstanceMethod<&Reader::Unref>("unref"),
                         InstanceMethod<&Reader::Failure>("failure"),
                     });
}

// Arguments are validated and defaulted in TypeScript (src/source/live.ts); here we only read them.
Reader::Reader(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Reader>(info), env_(info.Env()) {
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Value netns = o.Get("netns");
  if (netns.IsString()) options_.netns = netns.As<Napi::String>().Utf8Value();
  options_.groups = GetU32(o, "groups", 1 | 4);
  options_.rcvbuf = static_cast<int>(GetU32(o, "rcvbuf", 32u << 20));
  options_.reliable = o.Get("reliable").ToBoolean().Value();
  Napi::Value filter = o.Get("filter");
  if (filter.IsObject()) ReadFilter(filter.As<Napi::Object>(), &options_.filter);
  batch_size_ = std::max<uint32_t>(1, GetU32(o, "batchSize", 1024));
  max_batches_ = std::max<uint32_t>(1, GetU32(o, "maxBatches", 64));
  flush_ms_ = GetU32(o, "flushMs", 2);
  join_factory_ = Attribution::FactoryOf(o.Get("attribution"));
  callback_ = Napi::Persistent(info[1].As<Napi::Function>());
}

Napi::Value Reader::Failure(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(failure_mu_);
  if (failure_.ok()) return info.Env().Null();
  return MakeError(info.Env(), failure_).Value();
}

Napi::Value Reader::Close(const Napi::CallbackInfo& info) {
  Stop();
  return info.Env().Undefined();
}

Napi::Value Reader::Dump(const Napi::CallbackInfo& info) {
  if (!stopped_ && opened_) {
    dump_requested_ = true;
    Wake();
  }
  return info.Env().Undefined();
}

Napi::Value Reader::SetRcvbuf(const Napi::CallbackInfo& info) {
  rcvbuf_request_ = static_cast<int>(info[0].As<Napi::Number>().Int32Value());
  Wake();
  return info.Env().Undefined();
}

Napi::Value Reader::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (stopped_ || !opened_) {
    OpenError e;
    e.code = "ERR_SOURCE_CLOSED";
    e.message = "the conntrack source is closed";
    throw MakeError(env, e);
  }
  {
    std::lock_guard<std::mutex> lock(failure_mu_);
    if (!failure_.ok()) throw MakeError(env, failure_);
  }
  // Sent from the reader thread, which keeps CAP_NET_ADMIN after --user: the JavaScript thread
  // keeps no capability at all (native/privileges.h).
  TableStats s;
  OpenError e;
  if (!RunOnThread([&] { e = QueryStats(sockets_.stats, &s); })) {
    e = OpenError{"ERR_STATS_TIMEOUT", ETIMEDOUT, "", "the conntrack reader thread did not answer a table stats request within 2 s"};
  }
  if (!e.ok()) throw MakeError(env, e);
  return StatsObject(env, s);
}

Napi::Value Reader::LatestStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TableStats s;
  uint64_t taken;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    if (!stats_error_.ok()) throw MakeError(env, stats_error_);
    taken = stats_taken_ms_;
    if (taken != 0) s = stats_latest_;
  }
  if (taken == 0) return env.Null();
  Napi::Object out = StatsObject(env, s);
  out.Set("ageMs", Napi::Number::New(env, static_cast<double>(MonotonicMs() - taken)));
  return out;
}

Napi::Value Reader::StatsEvery(const Napi::CallbackInfo& info) {
  stats_every_ms_ = info[0].As<Napi::Number>().Uint32Value();
  Wake();
  return info.Env().Undefined();
}

Napi::Value Reader::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("events", Napi::Number::New(env, static_cast<double>(events_.load())));
  o.Set("batches", Napi::Number::New(env, static_cast<double>(batches_.load())));
  o.Set("overflows", Napi::Number::New(env, static_cast<double>(overflows_.load())));
  o.Set("decodeErrors", Napi::Number::New(env, static_cast<double>(decode_errors_.load())));
  o.Set("queueHighWater", Napi::Number::New(env, static_cast<double>(high_water_.load())));
  o.Set("dumps", Napi::Number::New(env, static_cast<double>(dumps_.load())));
  o.Set("rcvbuf", Napi::Number::New(env, rcvbuf_.load()));
  if (join_factory_) {
    Napi::Object a;
    {
      std::lock_guard<std::mutex> lock(join_mu_);
      a = JoinCountersObject(env, join_factory_->mode(), join_counters_);
    }
    // outside the lock: reading them may take syscalls (the programs' per-CPU counters)
    const auto shared = join_factory_->SharedCounters();
    if (!shared.empty()) a.Set("stamps", NamedCountersObject(env, shared));
    o.Set("attribution", a);
  }
  return o;
}

Napi::Value Reader::Ref(const Napi::CallbackInfo& info) {
  if (tsfn_live_) tsfn_.Ref(info.Env());
  return info.Env().Undefined();
}

Napi::Value Reader::Unref(const Napi::CallbackInfo& info) {
  if (tsfn_live_) tsfn_.Unref(info.Env());
  return info.Env().Undefined();
}

}  // namespace ctwatch
