// The reactor: the addon's sockets (the raw stream path's, splice pairs',
// FdSockets') live in one epoll set of its own per environment,
// edge-triggered, and that set's fd is the only thing libuv polls for them.
//
// Why: libuv polls level-triggered and re-registers an fd each time what it
// waits for changes (a connect's writable, then readable; stopped at EOF),
// with uv_poll_init setting O_NONBLOCK again (ioctl) on the way: 13
// epoll_ctl and 2 ioctl calls per proxied connection, 5 calls per UDP
// session socket, measured with strace.
// Here each socket is added once, for everything, edge-triggered (as nginx
// does), and closing it removes it; the clients read until EAGAIN, so no
// edge is lost. A client that stops early to let others run asks to be run
// again (Defer) from an idle handle, which keeps the loop from blocking
// while such work is left.
//
// Registrations are named by tokens, never by pointers in epoll_data: a
// batch from epoll_wait may still hold events of a socket that a callback
// earlier in the same batch closed, and its token then finds no client.
//
// Owning the wait. libuv wakes for the set's fd, then the set is read: two
// epoll calls and one whole turn of Node's loop (its check phase alone makes
// a JavaScript object) per wakeup, where nginx makes one epoll_wait. After a
// batch, while libuv has nothing to do (no timer due, no idle handle, no
// watcher change or close waiting), the reactor waits in its own set instead,
// with libuv's backend fd added to it and the set taken out of libuv's
// (they may not hold each other): a socket of libuv's that becomes ready, a
// signal, a thread's wakeup (uv_async) or the next timer's time ends the wait
// and both sets are put back as they were. So the control plane is served
// as soon as it has something, and a busy data plane runs with one
// epoll_wait per wakeup. Only batches that ran no JavaScript lead to such a
// wait (the pairs of compiled and raw stream sessions): where JavaScript
// runs per batch (UDP sessions), it measured no faster and UDP session
// setup 12-20 % slower, so those batches return to libuv as before.
// L7MP_REACTOR_WAIT=off leaves every wait to libuv.
//
// Busy polling. In that wait, while traffic is dense, the reactor first
// polls its set without sleeping (epoll_wait with no timeout, yielding the
// core between polls) for up to L7MP_BUSY_POLL_US (default 30 µs), and only
// then sleeps. A sleeping process woken by a loopback packet costs tens of
// µs on the bench VM before it runs, and in a ping-pong every hop pays it:
// polled, the event is seen within a microsecond or two (bench/README.md,
// "Busy polling": UDP ping-pong 96k -> 192k datagrams/s, TCP 91k -> 104k
// messages/s). Dense means the previous wait ended with an event within
// kDenseFactor times the poll budget; a quiet gateway sleeps at once, and
// sched_yield gives the core to anything else runnable on it (the load
// generator and the echo server in the bench). L7MP_BUSY_POLL_US=0 turns it
// off; the kernel's own busy polling (SO_BUSY_POLL) is for NIC queues and
// does nothing for loopback.
//
// A token is a slot in a table and the slot's generation, so finding the
// client is an index and a compare, on every event (a hash lookup was 1 %
// of a ping-pong's CPU).
#include "reactor.h"

#include "common.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sched.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <uv.h>
#include <vector>

namespace l7mp {
namespace {

constexpr int kEvents = 256;
// The longest the reactor waits in its own set before libuv runs a turn,
// whatever its timers say: a bound on anything libuv would do that it cannot
// see from here (an unreferenced immediate, say).
constexpr uint64_t kOwnMaxMs = 10;
// A wait that ended with an event within this many busy-poll budgets means
// traffic is dense, and the next wait polls first.
constexpr uint64_t kDenseFactor = 4;
// libuv's backend fd in the set while the reactor owns the wait; never a token.
constexpr uint64_t kLibuv = 0;

struct Registration {
  ReactorClient* client = nullptr;  // nullptr: the slot is free
  uint32_t gen = 0;
  bool hold = false;
};

uint64_t TokenOf(uint32_t slot, uint32_t gen) { return (static_cast<uint64_t>(gen) << 32) | (slot + 1); }

struct Reactor {
  int epfd = -1;
  uv_loop_t* loop = nullptr;
  bool own = true;   // L7MP_REACTOR_WAIT is not "off"
  uint64_t pollNs = 30000;  // L7MP_BUSY_POLL_US
  bool dense = false;       // the last wait ended soon: poll before sleeping
  int skip = 0;      // wakeups to leave to libuv after a wait it ended at once
  bool js = false;   // a client called JavaScript in this batch (ReactorCallsJs)
  // reactorStats(): owned waits begun, wakeups served in them, and how the
  // waits ended: libuv had a ready fd, its work changed, or the deadline.
  double waits = 0, wakeups = 0, endLibuv = 0, endWork = 0, endDeadline = 0;
  uv_poll_t poll;
  uv_idle_t idle;
  bool idling = false;
  size_t holds = 0;  // registrations and clients keeping the loop alive
  int open = 0;      // libuv handles not yet closed (teardown)
  napi_async_cleanup_hook_handle cleanup = nullptr;
  std::vector<Registration> slots;
  std::vector<uint32_t> free;  // slots to reuse
  std::vector<uint64_t> deferred;
  napi_env env = nullptr;
};

// One per thread: an environment (the main thread's, a worker thread's) runs
// on one thread with its own loop, and every call here comes from it.
thread_local Reactor* gReactor = nullptr;

// Ref the poll handle while anything holds the loop.
void Hold(size_t before, size_t after) {
  if (before == 0 && after > 0) uv_ref(reinterpret_cast<uv_handle_t*>(&gReactor->poll));
  if (before > 0 && after == 0) uv_unref(reinterpret_cast<uv_handle_t*>(&gReactor->poll));
}

// The live registration `token` names, or nullptr (forgotten, maybe earlier
// in this batch).
Registration* Find(uint64_t token) {
  uint64_t slot = (token & 0xffffffffu) - 1;
  if (slot >= gReactor->slots.size()) return nullptr;
  Registration& r = gReactor->slots[slot];
  return r.client != nullptr && r.gen == static_cast<uint32_t>(token >> 32) ? &r : nullptr;
}

void Dispatch(uint64_t token, uint32_t events) {
  Registration* r = Find(token);
  if (r != nullptr) r->client->OnEvents(Napi::Env(gReactor->env), token, events);
}

// Read the set and dispatch, without blocking. false: nothing was ready.
bool Harvest(epoll_event* evs) {
  gReactor->js = false;
  for (int round = 0; round < 4; round++) {
    int n = epoll_wait(gReactor->epfd, evs, kEvents, 0);
    if (n <= 0) return round > 0;
    for (int i = 0; i < n; i++) Dispatch(evs[i].data.u64, evs[i].events);
    if (n < kEvents) return true;
  }
  return true;
}

// libuv has nothing to do before its next timer: no timer due, no idle
// handle (Node's refed immediates, our deferred clients), no pending
// callback or closing handle (uv_backend_timeout says all that), and no
// watcher whose registration waits for its next poll. ms to wait, or -1.
int64_t LibuvIdleFor(uv_loop_t* loop) {
#if UV_VERSION_HEX >= 0x012e00
  if (loop->watcher_queue.next != &loop->watcher_queue) return -1;
#else
  return -1;  // no way to see pending watchers: never own the wait
#endif
  int t = uv_backend_timeout(loop);
  if (t == 0) return -1;
  return t < 0 ? static_cast<int64_t>(kOwnMaxMs) : std::min<int64_t>(t, kOwnMaxMs);
}

// See "Busy polling" above: events polled for (0: none came, sleep).
int BusyPoll(epoll_event* evs) {
  if (!gReactor->dense) return 0;
  uint64_t t0 = uv_hrtime();
  for (;;) {
    int n = epoll_wait(gReactor->epfd, evs, kEvents, 0);
    if (n != 0) return n < 0 ? 0 : n;
    if (uv_hrtime() - t0 >= gReactor->pollNs) return 0;
    sched_yield();
  }
}

// See "Owning the wait" above. Returns with both sets as they were.
void OwnWait(epoll_event* evs) {
  uv_loop_t* loop = gReactor->loop;
  int64_t wait = LibuvIdleFor(loop);
  if (wait < 0) return;
  int lfd = uv_backend_fd(loop);
  epoll_event ev{};
  if (epoll_ctl(lfd, EPOLL_CTL_DEL, gReactor->epfd, &ev) != 0) return;
  ev.events = EPOLLIN;
  ev.data.u64 = kLibuv;
  if (epoll_ctl(gReactor->epfd, EPOLL_CTL_ADD, lfd, &ev) == 0) {
    uint64_t deadline = uv_now(loop) + static_cast<uint64_t>(wait);
    bool first = true;
    gReactor->waits++;
    for (;;) {
      uint64_t now = uv_now(loop);
      if (now >= deadline) {
        gReactor->endDeadline++;
        break;
      }
      int n = BusyPoll(evs);
      if (n == 0) {
        uint64_t t0 = uv_hrtime();
        n = epoll_wait(gReactor->epfd, evs, kEvents, static_cast<int>(deadline - now));
        gReactor->dense = gReactor->pollNs > 0 && n > 0 && uv_hrtime() - t0 <= gReactor->pollNs * kDenseFactor;
      }
      uv_update_time(loop);  // what JavaScript run from here schedules starts now
      if (n < 0 && errno != EINTR) break;
      bool libuv = false;
      gReactor->js = false;
      for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == kLibuv) libuv = true;
        else Dispatch(evs[i].data.u64, evs[i].events);
      }
      if (n > 0) gReactor->wakeups++;
      if (gReactor->js) {
        // JavaScript runs in these batches: leave the next few to libuv
        // rather than switch sets for each.
        gReactor->endWork++;
        gReactor->skip = 8;
        break;
      }
      if (libuv) {
        gReactor->endLibuv++;
        // Ready before any of ours: libuv has a busy fd; let it run the next
        // wakeups rather than pay for the switch each time.
        if (first && n == 1) gReactor->skip = 64;
        break;
      }
      first = false;
      int64_t next = LibuvIdleFor(loop);
      if (next < 0) {
        gReactor->endWork++;
        break;
      }
      deadline = std::min(deadline, uv_now(loop) + static_cast<uint64_t>(next));
    }
    epoll_ctl(gReactor->epfd, EPOLL_CTL_DEL, lfd, &ev);
  }
  // Back as libuv registered it (uv_poll_start, UV_READABLE: level-triggered
  // POLLIN, the fd as data); libuv's own state never changed.
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  ev.data.fd = gReactor->epfd;
  if (epoll_ctl(lfd, EPOLL_CTL_ADD, gReactor->epfd, &ev) != 0) {
    // Without it the data plane would never wake again.
    fprintf(stderr, "l7mp sockets: re-adding the reactor to libuv's epoll set failed: %s\n", strerror(errno));
    abort();
  }
}

void OnReady(uv_poll_t*, int, int) {
  Napi::Env env(gReactor->env);
  Napi::HandleScope scope(env);
  epoll_event evs[kEvents];
  if (!Harvest(evs) || !gReactor->own || gReactor->js) return;
  if (gReactor->skip > 0) {
    gReactor->skip--;
    return;
  }
  OwnWait(evs);
}

void OnIdle(uv_idle_t* h) {
  std::vector<uint64_t> run;
  run.swap(gReactor->deferred);
  if (gReactor->deferred.empty()) {
    uv_idle_stop(h);
    gReactor->idling = false;
  }
  Napi::Env env(gReactor->env);
  Napi::HandleScope scope(env);
  for (uint64_t t : run) Dispatch(t, kDeferred);
}

// The environment is going away (a worker thread ending, process exit):
// close the set and libuv's handles for it, or the thread's loop would end
// with open handles, which aborts the process. An async cleanup hook, so the
// environment waits for the closes: the close callbacks are this addon's
// code, which a worker thread unloads once its cleanup is over.
void Closed(uv_handle_t* h) {
  auto* r = static_cast<Reactor*>(h->data);
  if (--r->open > 0) return;
  napi_remove_async_cleanup_hook(r->cleanup);
  delete r;
}

void Teardown(napi_async_cleanup_hook_handle handle, void* arg) {
  auto* r = static_cast<Reactor*>(arg);
  if (gReactor == r) gReactor = nullptr;
  r->cleanup = handle;
  r->open = 2;
  uv_close(reinterpret_cast<uv_handle_t*>(&r->poll), Closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&r->idle), Closed);
  close(r->epfd);  // after the poll handle stopped watching it
  r->epfd = -1;
}

bool Init(Napi::Env env, int* err) {
  if (gReactor != nullptr) return true;
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    *err = EINVAL;
    return false;
  }
  auto* r = new Reactor();
  r->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (r->epfd < 0) {
    *err = errno;
    delete r;
    return false;
  }
  int rc = uv_poll_init(loop, &r->poll, r->epfd);
  if (rc == 0) rc = uv_poll_start(&r->poll, UV_READABLE, OnReady);
  if (rc != 0) {
    *err = -rc;
    close(r->epfd);
    delete r;  // never started: libuv holds no reference yet
    return false;
  }
  uv_idle_init(loop, &r->idle);
  r->loop = loop;
  const char* w = getenv("L7MP_REACTOR_WAIT");
  r->own = w == nullptr || strcmp(w, "off") != 0;
  const char* bp = getenv("L7MP_BUSY_POLL_US");
  if (bp != nullptr) r->pollNs = static_cast<uint64_t>(std::min(1000L, std::max(0L, strtol(bp, nullptr, 10)))) * 1000;
  r->poll.data = r;
  r->idle.data = r;
  // The set keeps the loop alive while it holds sockets (Hold), as libuv's
  // own handles would; the idle handle only runs deferred work.
  uv_unref(reinterpret_cast<uv_handle_t*>(&r->poll));
  uv_unref(reinterpret_cast<uv_handle_t*>(&r->idle));
  r->env = env;
  gReactor = r;
  napi_add_async_cleanup_hook(env, Teardown, r, nullptr);
  return true;
}

}  // namespace

void ReactorInit(Napi::Env env, Napi::Object exports) {
  int err = 0;
  Init(env, &err);  // a failure is reported by the first ReactorAdd
  // reactorStats(out: Float64Array(5)): waits, wakeups, ended by libuv's fd,
  // by libuv's work, by the deadline (see "Owning the wait").
  exports.Set("reactorStats", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
        info[0].As<Napi::Float64Array>().ElementLength() < 5) {
      Napi::TypeError::New(env, "reactorStats(out: Float64Array(5))").ThrowAsJavaScriptException();
      return;
    }
    Napi::Float64Array out = info[0].As<Napi::Float64Array>();
    const Reactor* r = gReactor;
    out[0] = r != nullptr ? r->waits : 0;
    out[1] = r != nullptr ? r->wakeups : 0;
    out[2] = r != nullptr ? r->endLibuv : 0;
    out[3] = r != nullptr ? r->endWork : 0;
    out[4] = r != nullptr ? r->endDeadline : 0;
  }));
}

uint64_t ReactorAdd(Napi::Env env, int fd, ReactorClient* c, int* err, uint32_t events, bool hold) {
  static_assert(kStreamEvents == (EPOLLIN | EPOLLOUT | EPOLLRDHUP), "kStreamEvents");
  if (!Init(env, err)) return 0;
  if (gReactor->free.empty()) {
    gReactor->free.push_back(static_cast<uint32_t>(gReactor->slots.size()));
    gReactor->slots.emplace_back();
  }
  uint32_t slot = gReactor->free.back();
  Registration& r = gReactor->slots[slot];
  uint64_t token = TokenOf(slot, r.gen);
  epoll_event ev;
  ev.events = events | EPOLLET;
  ev.data.u64 = token;
  if (epoll_ctl(gReactor->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    *err = errno;
    return 0;  // the slot stays free
  }
  gReactor->free.pop_back();
  r.client = c;
  r.hold = hold;
  if (hold) ReactorHold(1);
  return token;
}

int ReactorModify(uint64_t token, int fd, uint32_t events) {
  if (gReactor == nullptr || token == 0) return EBADF;
  epoll_event ev;
  ev.events = events | EPOLLET;
  ev.data.u64 = token;
  return epoll_ctl(gReactor->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : errno;
}

void ReactorHold(int delta) {
  if (gReactor == nullptr) return;
  size_t before = gReactor->holds;
  gReactor->holds = delta > 0 ? before + 1 : (before > 0 ? before - 1 : 0);
  Hold(before, gReactor->holds);
}

void ReactorRebind(uint64_t token, ReactorClient* c) {
  if (gReactor == nullptr || token == 0) return;
  Registration* r = Find(token);
  if (r != nullptr) r->client = c;
}

void ReactorForget(uint64_t token, int fd, bool del) {
  if (gReactor == nullptr || token == 0) return;
  Registration* r = Find(token);
  if (r == nullptr) return;
  bool held = r->hold;
  r->client = nullptr;
  r->gen++;  // the token names nothing from now on, even once the slot is reused
  gReactor->free.push_back(static_cast<uint32_t>((token & 0xffffffffu) - 1));
  if (held) ReactorHold(-1);
  if (del && fd >= 0) {
    epoll_event ev{};
    epoll_ctl(gReactor->epfd, EPOLL_CTL_DEL, fd, &ev);
  }
}

void ReactorCallsJs() {
  if (gReactor != nullptr) gReactor->js = true;
}

void ReactorDefer(uint64_t token) {
  if (gReactor == nullptr || token == 0) return;
  gReactor->deferred.push_back(token);
  if (!gReactor->idling) {
    gReactor->idling = true;
    uv_idle_start(&gReactor->idle, OnIdle);
  }
}

}  // namespace l7mp
