// Entry point of the l7mp sockets addon: what Node.js lacks (Unix datagram
// and seqpacket sockets, mkfifo, AF_PACKET, SCTP probing, recvmmsg/sendmmsg
// batching, splice(2) forwarding of bulk TCP/Unix stream sessions). Every fd
// is non-blocking and watched through the reactor (one epoll set whose fd
// libuv polls, reactor.cc), never read in a blocking call, so the gateway's
// single thread never stalls.
#include "common.h"
#include "reactor.h"

#include <cerrno>
#include <cstring>
#include <uv.h>

namespace l7mp {

const char* ErrnoName(int err) {
  // uv_err_name wants a negative libuv code; on Unix that is -errno.
  return uv_err_name(-err);
}

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& detail) {
  std::string msg = std::string(syscall) + " " + ErrnoName(err) + " (" + strerror(err) + ")";
  if (!detail.empty()) msg += " " + detail;
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

}  // namespace l7mp

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
#ifdef __linux__
  l7mp::ReactorInit(env, exports);
  l7mp::InitSyscalls(env, exports);
  l7mp::InitFdSocket(env, exports);
  l7mp::InitSplice(env, exports);
  l7mp::InitForwarder(env, exports);
  l7mp::InitUdpForwarder(env, exports);
  l7mp::InitRawStream(env, exports);
  exports.Set("platform", Napi::String::New(env, "linux"));
#else
  exports.Set("platform", Napi::String::New(env, "unsupported"));
#endif
  return exports;
}

NODE_API_MODULE(l7mp_sockets, Init)
