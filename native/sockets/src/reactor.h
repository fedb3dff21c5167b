// The reactor: one edge-triggered epoll set of the addon's own, for the
// stream sockets of the raw path and of splice pairs (reactor.cc).
#pragma once
#include <napi.h>
#include <cstdint>

namespace l7mp {

class ReactorClient {
 public:
  virtual ~ReactorClient() = default;
  // epoll events for the socket registered under `token`, or kDeferred when
  // the client asked to be run again (Defer) after spending its budget.
  virtual void OnEvents(Napi::Env env, uint64_t token, uint32_t events) = 0;
};

constexpr uint32_t kDeferred = 1u << 31;

// Make the epoll set when the addon loads: one descriptor for the process's
// life, there before any session counts descriptors.
void ReactorInit(Napi::Env env);

// Register fd (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) once; the token
// names the registration until Forget. 0 and errno on failure.
uint64_t ReactorAdd(Napi::Env env, int fd, ReactorClient* c, int* err);
// Events for `token` go to another client from now on (a RawStream's
// registration taken over by a Splice).
void ReactorRebind(uint64_t token, ReactorClient* c);
// The client is done with `token`. Closing the fd removes it from the set;
// `del`: the fd stays open (handed to Node), so take it out explicitly.
void ReactorForget(uint64_t token, int fd, bool del);
// Run c->OnEvents(kDeferred) on a later loop turn.
void ReactorDefer(uint64_t token);

}  // namespace l7mp
