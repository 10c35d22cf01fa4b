#include "attribution/attribution.h"

#include "attribution/bpf_join.h"
#include "attribution/diag_join.h"
#include "attribution/seed.h"
#include "conntrack/record.h"

namespace ctwatch {

namespace {
// Marks handles this addon made, so a Reader never unwraps a stranger's object.
const napi_type_tag kTag = {0x63747761747472ull, 0x69627574696f6e31ull};
}  // namespace

Napi::Function Attribution::Init(Napi::Env env) {
  return DefineClass(env, "Attribution",
                     {
                         InstanceMethod<&Attribution::Open>("open"),
                         InstanceMethod<&Attribution::Info>("info"),
                         InstanceMethod<&Attribution::Close>("close"),
                     });
}

// Arguments are validated in TypeScript; here we only read them.
Attribution::Attribution(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Attribution>(info) {
  if (info.Length() > 0 && info[0].IsObject()) {
    Napi::Value mode = info[0].As<Napi::Object>().Get("mode");
    if (mode.IsString()) mode_ = mode.As<Napi::String>().Utf8Value();
    Napi::Value ring = info[0].As<Napi::Object>().Get("stampRingBytes");
    if (!ring.IsUndefined()) {
      // Not a whole number in range: refused by open(), never a size it wrapped to.
      const double d = ring.IsNumber() ? ring.As<Napi::Number>().DoubleValue() : -1;
      if (d >= 1 && d <= BpfStamps::kMaxRingBytes && d == static_cast<double>(static_cast<uint32_t>(d))) {
        ring_bytes_ = static_cast<uint32_t>(d);
      } else {
        ring_refused_ = ring.IsNumber() || ring.IsString() ? ring.ToString().Utf8Value() : std::string("a value of type ") + (ring.IsObject() ? "object" : "other");
      }
    }
  }
  napi_type_tag_object(info.Env(), info.This(), &kTag);
}

std::shared_ptr<JoinFactory> Attribution::FactoryOf(Napi::Value v) {
  if (!v.IsObject()) return nullptr;
  bool ours = false;
  if (napi_check_object_type_tag(v.Env(), v, &kTag, &ours) != napi_ok || !ours) return nullptr;
  return Unwrap(v.As<Napi::Object>())->factory_;
}

Napi::Value Attribution::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (factory_) return env.Undefined();
  if (mode_ == "ebpf") {
    OpenError e;
    if (!ring_refused_.empty()) throw MakeError(env, BpfStamps::RingSizeRefused(ring_refused_));
    std::shared_ptr<BpfStamps> stamps = BpfStamps::Acquire(&e, ring_bytes_);
    if (!stamps) throw MakeError(env, e);
    stamps_ = stamps;
    factory_ = std::make_shared<BpfJoinFactory>(std::move(stamps));
    return env.Undefined();
  }
  if (mode_ == "sockdiag") {
    // Nothing to load: each reader opens its sock_diag socket in its namespace (DiagJoin::Open).
    factory_ = std::make_shared<DiagJoinFactory>(CgroupV2Root());
    return env.Undefined();
  }
  OpenError e;
  e.code = "ERR_ATTRIBUTION_MODE";
  e.message = "unknown attribution mode '" + mode_ + "'";
  throw MakeError(env, e);
}

Napi::Value Attribution::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("mode", mode_);
  o.Set("open", Napi::Boolean::New(env, factory_ != nullptr));
  if (stamps_) {
    const auto& s = stamps_;
    o.Set("sendsCovered", Napi::Boolean::New(env, s->sends_covered()));
    o.Set("cgroupRoot", s->cgroup_root());
    o.Set("stampRingBytes", Napi::Number::New(env, s->ring_bytes()));
    std::vector<uint32_t> ids = s->ProgramIds();
    Napi::Array a = Napi::Array::New(env, ids.size());
    for (size_t i = 0; i < ids.size(); i++) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, ids[i]));
    o.Set("programIds", a);
    o.Set("stamps", NamedCountersObject(env, s->Counters()));
  }
  return o;
}

// Lets go of this handle's share: the programs stay attached while a reader still joins with them
// and are detached when the last one closes.
Napi::Value Attribution::Close(const Napi::CallbackInfo& info) {
  factory_.reset();
  stamps_.reset();
  return info.Env().Undefined();
}

Napi::Object NamedCountersObject(Napi::Env env, const std::vector<std::pair<const char*, uint64_t>>& counters) {
  Napi::Object o = Napi::Object::New(env);
  for (const auto& kv : counters) o.Set(kv.first, Napi::Number::New(env, static_cast<double>(kv.second)));
  return o;
}

Napi::Object JoinCountersObject(Napi::Env env, const char* mode, const JoinCounters& c) {
  static const char* const kReasons[] = {nullptr,      "not-local", "unsupported", "no-stamp", "preexisting",
                                         "ambiguous",  "no-hook",   "gone",        "no-pid",   "denied",
                                         "shared",     "late",      "overload"};
  Napi::Object o = Napi::Object::New(env);
  auto num = [&](uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
  o.Set("mode", mode);
  o.Set("records", num(c.records));
  o.Set("origin", num(c.origin));
  o.Set("listener", num(c.listener));
  Napi::Object reasons = Napi::Object::New(env);
  for (size_t i = 1; i < sizeof(kReasons) / sizeof(kReasons[0]); i++) reasons.Set(kReasons[i], num(c.reasons[i]));
  o.Set("reasons", reasons);
  o.Set("waited", num(c.waited));
  o.Set("lookups", num(c.lookups));
  o.Set("fromCopy", num(c.from_copy));
  o.Set("busyUs", num(c.busy_ns / 1000));
  o.Set("seeded", num(c.seeded));
  o.Set("seedDenied", num(c.seed_denied));
  return o;
}

}  // namespace ctwatch
