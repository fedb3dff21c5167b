// Shared helpers for the sockets addon: errno-carrying JS errors.
#pragma once
#include <napi.h>
#include <string>

namespace l7mp {

// A JS Error shaped like Node's system errors (code, errno, syscall), so the
// TypeScript side can map it the same way it maps net/dgram errors.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& detail = "");

// The libuv-style name of an errno ("ENOENT"), for codes returned on the hot
// path as negative numbers instead of exceptions.
const char* ErrnoName(int err);

void InitSyscalls(Napi::Env env, Napi::Object exports);
void InitFdSocket(Napi::Env env, Napi::Object exports);
void InitSplice(Napi::Env env, Napi::Object exports);

}  // namespace l7mp
