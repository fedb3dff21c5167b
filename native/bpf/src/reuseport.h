// The SO_REUSEPORT selector's loader (reuseport.cc): adds ReuseportGroup to the addon's exports.
#pragma once
#include <napi.h>

void InitReuseport(Napi::Env env, Napi::Object exports);
