// File calls Node has none of (flock); see files.cc.
#pragma once
#include <napi.h>

namespace ctwatch {

void InitFiles(Napi::Env env, Napi::Object exports);

}  // namespace ctwatch
