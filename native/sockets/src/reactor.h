// The reactor: one edge-triggered epoll set of the addon's own per
// environment, for every socket the addon watches (reactor.cc).
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
// life, there before any session counts descriptors. Exports reactorStats.
void ReactorInit(Napi::Env env, Napi::Object exports);

// What a stream socket waits for: everything, for good.
constexpr uint32_t kStreamEvents = 0x001 | 0x004 | 0x2000;  // EPOLLIN | EPOLLOUT | EPOLLRDHUP

// Register fd once for `events` (edge-triggered is added); the token names
// the registration until Forget. 0 and errno on failure. `hold`: the
// registration keeps the event loop alive until Forget; a client that is
// sometimes idle (an FdSocket that is not reading) passes false and holds
// the loop with ReactorHold while it waits for something.
uint64_t ReactorAdd(Napi::Env env, int fd, ReactorClient* c, int* err, uint32_t events = kStreamEvents, bool hold = true);
// Change what fd's registration waits for (EPOLL_CTL_MOD, edge-triggered is
// added): the socket's current state is reported at once as an edge. errno, or 0.
int ReactorModify(uint64_t token, int fd, uint32_t events);
// +1 / -1: one more / one fewer reason to keep the loop alive.
void ReactorHold(int delta);
// Events for `token` go to another client from now on (a RawStream's
// registration taken over by a Splice).
void ReactorRebind(uint64_t token, ReactorClient* c);
// The client is done with `token`. Closing the fd removes it from the set;
// `del`: the fd stays open (handed to Node), so take it out explicitly.
// A registration made with hold = true stops holding the loop here.
void ReactorForget(uint64_t token, int fd, bool del);
// Run c->OnEvents(kDeferred) on a later loop turn.
void ReactorDefer(uint64_t token);
// A client is about to call JavaScript: the reactor does not wait in its own
// set after this batch (reactor.cc, "Owning the wait").
void ReactorCallsJs();

}  // namespace l7mp
