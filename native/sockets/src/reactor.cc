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
#include "reactor.h"

#include "common.h"

#include <cerrno>
#include <sys/epoll.h>
#include <unistd.h>
#include <unordered_map>
#include <uv.h>
#include <vector>

namespace l7mp {
namespace {

constexpr int kEvents = 256;

struct Registration {
  ReactorClient* client;
  bool hold;
};

struct Reactor {
  int epfd = -1;
  uv_poll_t poll;
  uv_idle_t idle;
  bool idling = false;
  uint64_t next = 1;
  size_t holds = 0;  // registrations and clients keeping the loop alive
  int open = 0;      // libuv handles not yet closed (teardown)
  napi_async_cleanup_hook_handle cleanup = nullptr;
  std::unordered_map<uint64_t, Registration> clients;
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

void Dispatch(uint64_t token, uint32_t events) {
  auto it = gReactor->clients.find(token);
  if (it == gReactor->clients.end()) return;  // closed earlier in this batch
  it->second.client->OnEvents(Napi::Env(gReactor->env), token, events);
}

void OnReady(uv_poll_t*, int, int) {
  Napi::Env env(gReactor->env);
  Napi::HandleScope scope(env);
  epoll_event evs[kEvents];
  for (int round = 0; round < 4; round++) {
    int n = epoll_wait(gReactor->epfd, evs, kEvents, 0);
    if (n <= 0) return;
    for (int i = 0; i < n; i++) Dispatch(evs[i].data.u64, evs[i].events);
    if (n < kEvents) return;
  }
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

void ReactorInit(Napi::Env env) {
  int err = 0;
  Init(env, &err);  // a failure is reported by the first ReactorAdd
}

uint64_t ReactorAdd(Napi::Env env, int fd, ReactorClient* c, int* err, uint32_t events, bool hold) {
  static_assert(kStreamEvents == (EPOLLIN | EPOLLOUT | EPOLLRDHUP), "kStreamEvents");
  if (!Init(env, err)) return 0;
  uint64_t token = gReactor->next++;
  epoll_event ev;
  ev.events = events | EPOLLET;
  ev.data.u64 = token;
  if (epoll_ctl(gReactor->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    *err = errno;
    return 0;
  }
  gReactor->clients[token] = Registration{c, hold};
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
  auto it = gReactor->clients.find(token);
  if (it != gReactor->clients.end()) it->second.client = c;
}

void ReactorForget(uint64_t token, int fd, bool del) {
  if (gReactor == nullptr || token == 0) return;
  auto it = gReactor->clients.find(token);
  if (it == gReactor->clients.end()) return;
  bool held = it->second.hold;
  gReactor->clients.erase(it);
  if (held) ReactorHold(-1);
  if (del && fd >= 0) {
    epoll_event ev{};
    epoll_ctl(gReactor->epfd, EPOLL_CTL_DEL, fd, &ev);
  }
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
