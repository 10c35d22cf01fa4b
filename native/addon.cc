// Module entry: the Reader class and the record layout, so the TypeScript decoder reads offsets
// from the one place they are defined (record.h) instead of repeating them.
#include <napi.h>

#include <cstddef>

#include "attribution/attribution.h"
#include "files.h"
#include "privileges.h"
#include "conntrack/reader.h"
#include "conntrack/record.h"

namespace ctwatch {

Napi::Object Layout(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
#define FIELD(name) o.Set(#name, Napi::Number::New(env, offsetof(Record, name)))
  FIELD(kind); FIELD(family); FIELD(proto); FIELD(tcp_state); FIELD(present); FIELD(id);
  FIELD(status); FIELD(mark); FIELD(timeout); FIELD(zone); FIELD(sport); FIELD(dport);
  FIELD(reply_sport); FIELD(reply_dport); FIELD(icmp_type); FIELD(icmp_code); FIELD(icmp_id);
  FIELD(src); FIELD(dst); FIELD(reply_src); FIELD(reply_dst); FIELD(orig_packets);
  FIELD(orig_bytes); FIELD(reply_packets); FIELD(reply_bytes); FIELD(ts_start); FIELD(ts_stop);
  FIELD(time_us); FIELD(secmark); FIELD(owner_pid); FIELD(owner_tid); FIELD(owner_uid);
  FIELD(owner_age_us); FIELD(owner_cgroup); FIELD(owner_start_ns); FIELD(owner_comm); FIELD(owner_side);
  FIELD(owner_via); FIELD(unattributed);
#undef FIELD
  o.Set("size", Napi::Number::New(env, sizeof(Record)));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Reader", Reader::Init(env));
  exports.Set("layout", Layout(env));
  exports.Set("Attribution", Attribution::Init(env));
  InitPrivileges(env, exports);
  InitFiles(env, exports);
  return exports;
}

NODE_API_MODULE(ctwatch, Init)

}  // namespace ctwatch
