// Forwarder: a stream listener whose connections are accepted, connected
// upstream and paired in C, with no JavaScript call and no JavaScript object
// per connection (docs/compiled-listeners.md).
//
// Why: a TCP connection decided in JavaScript costs at least two callbacks
// and a wrapped object, which on the bench VM is about nginx's whole cost
// per connection (bench/README.md, "the floor under JavaScript"); routes
// that do not look at the connection can be decided once, in JavaScript,
// when the configuration changes, and carried out here for each one.
//
// What it does per connection: accept4; if it has a target and room (fewer
// than `max` live pairs), a non-blocking connect to the next target (round
// robin), and when that is over a Pair (pair.h) that owns both sockets.
// Everything else goes to JavaScript through onHandoff(fd, address, port,
// code?), with the client's socket, to take the ordinary path: no target or
// no room (code undefined: JavaScript's admission decides and logs), or a
// connect that failed or did not finish within the connect timeout (code:
// the errno name, or ETIMEDOUT).
//
// JavaScript reads the live pairs (list), their counts and the totals
// (stats) when asked, and can end a pair (closePair) or all (close).
#include "common.h"
#include "pair.h"

#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>
#include <uv.h>
#include <vector>

namespace l7mp {
namespace {

// Connections accepted per listener edge before yielding to the loop.
constexpr int kAcceptBatch = 64;
// How often connects still in progress are checked against their deadline.
constexpr uint64_t kSweepMs = 50;

struct Target {
  sockaddr_storage addr;
  socklen_t len;
};

class Forwarder;

// A connected pair, owned by its Forwarder's table.
class FwdPair : public Pair {
 public:
  FwdPair(Forwarder* f, double id, int client, int upstream, const sockaddr_storage& peer, int target, double started)
      : owner_(f), id_(id), peer_(peer), target_(target), started_(started) {
    side_[0].fd = client;
    side_[1].fd = upstream;
  }
  void Ended(Napi::Env env, int err, int side) override;
  // Stop now: both sockets closed (with RSTs when `reset`), no Ended().
  void Abort(bool reset) {
    if (reset) for (auto& s : side_) if (s.fd >= 0) ResetOnClose(s.fd);
    Release();
    state_ = kDone;
  }
  int Start(Napi::Env env) {
    int err = Register(env);
    if (err == 0) Begin(env);
    return err;
  }
  const Dir& dir(int d) const { return dir_[d]; }

  Forwarder* owner_;
  double id_;
  sockaddr_storage peer_;
  int target_;
  double started_;
};

// A connect in progress: waits for the upstream's first edge, or its deadline.
struct Pending : public ReactorClient {
  Forwarder* owner;
  int client, upstream, target;
  sockaddr_storage peer;
  uint64_t token = 0;
  uint64_t deadline;
  void OnEvents(Napi::Env env, uint64_t token, uint32_t events) override;
};

class Forwarder : public Napi::ObjectWrap<Forwarder>, public ReactorClient {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Forwarder", {
      InstanceMethod<&Forwarder::Targets>("targets"),
      InstanceMethod<&Forwarder::Start>("start"),
      InstanceMethod<&Forwarder::Stats>("stats"),
      InstanceMethod<&Forwarder::List>("list"),
      InstanceMethod<&Forwarder::ClosePair>("closePair"),
      InstanceMethod<&Forwarder::Close>("close"),
    });
  }

  // new Forwarder(listenFd, onHandoff(fd, address, port, code?), { max, connectTimeoutMs })
  // Owns listenFd (a listening, non-blocking stream socket) from here on.
  explicit Forwarder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Forwarder>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsFunction() || !info[2].IsObject()) {
      Napi::TypeError::New(env, "Forwarder(listenFd, onHandoff, { max, connectTimeoutMs })").ThrowAsJavaScriptException();
      return;
    }
    fd_ = info[0].As<Napi::Number>().Int32Value();
    onHandoff_ = Napi::Persistent(info[1].As<Napi::Function>());
    Napi::Object o = info[2].As<Napi::Object>();
    Napi::Value m = o.Get("max"), t = o.Get("connectTimeoutMs");
    max_ = m.IsNumber() ? m.As<Napi::Number>().DoubleValue() : 0;
    timeoutMs_ = t.IsNumber() ? static_cast<uint64_t>(t.As<Napi::Number>().DoubleValue()) : 5000;
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    timer_ = new uv_timer_t;
    uv_timer_init(loop, timer_);
    timer_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
  }

  ~Forwarder() override {
    // Environment teardown with the forwarder still open: release the fds.
    if (fd_ >= 0) close(fd_);
    for (auto& kv : pairs_) {
      kv.second->Abort(false);
      delete kv.second;
    }
    for (Pending* p : pending_) DropPending(p, false);
    if (timer_ != nullptr) uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }

  // targets([[host, port] | [unixPath], ...]): where new connections go, in
  // turn; [] hands every connection to JavaScript.
  Napi::Value Targets(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsArray()) {
      Napi::TypeError::New(env, "targets(list)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array a = info[0].As<Napi::Array>();
    std::vector<Target> ts;
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value e = a.Get(i);
      Target t{};
      bool ok = false;
      if (e.IsArray()) {
        Napi::Array p = e.As<Napi::Array>();
        Napi::Value host = p.Get(0u), port = p.Get(1u);
        if (host.IsString() && port.IsNumber()) {
          ok = InetAddr(host.As<Napi::String>().Utf8Value(), port.As<Napi::Number>().Int32Value(), &t.addr, &t.len);
        } else if (host.IsString() && p.Length() == 1) {
          sockaddr_un su;
          socklen_t l;
          ok = UnixAddr(host.As<Napi::String>().Utf8Value(), &su, &l);
          if (ok) {
            memcpy(&t.addr, &su, l);
            t.len = l;
          }
        }
      }
      if (!ok) {
        Napi::TypeError::New(env, "targets: each is [numeric host, port] or [unix path]").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      ts.push_back(t);
    }
    targets_.swap(ts);
    next_ = 0;
    return env.Undefined();
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0 || token_ != 0) return env.Undefined();
    int err = 0;
    token_ = ReactorAdd(env, fd_, this, &err, EPOLLIN);
    if (token_ == 0) ErrnoError(env, err, "epoll_ctl").ThrowAsJavaScriptException();
    else Ref();  // registered: not collected before close()
    return env.Undefined();
  }

  // stats(Float64Array(10)): [live, accepted, paired, handedOff, ended,
  // failed, bytes client->upstream, bytes upstream->client, pending connects,
  // connect failures]; the bytes include the live pairs'.
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
        info[0].As<Napi::TypedArray>().ElementLength() < 10) {
      Napi::TypeError::New(env, "stats(Float64Array(10))").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Float64Array out = info[0].As<Napi::Float64Array>();
    double up = bytes_[0], down = bytes_[1];
    for (auto& kv : pairs_) {
      up += kv.second->dir(0).bytes;
      down += kv.second->dir(1).bytes;
    }
    out[0] = static_cast<double>(pairs_.size());
    out[1] = accepted_;
    out[2] = paired_;
    out[3] = handedOff_;
    out[4] = ended_;
    out[5] = failed_;
    out[6] = up;
    out[7] = down;
    out[8] = static_cast<double>(pending_.size());
    out[9] = connectFailed_;
    return env.Undefined();
  }

  // list() -> [[id, startedMs, address, port, target, bytes c->u, reads c->u, bytes u->c, reads u->c], ...]
  Napi::Value List(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env, pairs_.size());
    uint32_t i = 0;
    for (auto& kv : pairs_) {
      FwdPair* p = kv.second;
      Napi::Array e = Napi::Array::New(env, 9);
      char buf[INET6_ADDRSTRLEN] = {0};
      int port = 0;
      bool ip = IpText(p->peer_, buf, &port);
      e.Set(0u, Napi::Number::New(env, p->id_));
      e.Set(1u, Napi::Number::New(env, p->started_));
      e.Set(2u, ip ? Napi::String::New(env, buf) : Napi::String::New(env, ""));
      e.Set(3u, Napi::Number::New(env, port));
      e.Set(4u, Napi::Number::New(env, p->target_));
      e.Set(5u, Napi::Number::New(env, p->dir(0).bytes));
      e.Set(6u, Napi::Number::New(env, p->dir(0).reads));
      e.Set(7u, Napi::Number::New(env, p->dir(1).bytes));
      e.Set(8u, Napi::Number::New(env, p->dir(1).reads));
      out.Set(i++, e);
    }
    return out;
  }

  // closePair(id, reset?) -> whether a live pair had that id. Counted as ended.
  Napi::Value ClosePair(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(env, "closePair(id, reset?)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto it = pairs_.find(info[0].As<Napi::Number>().DoubleValue());
    if (it == pairs_.end()) return Napi::Boolean::New(env, false);
    FwdPair* p = it->second;
    p->Abort(info.Length() > 1 && info[1].ToBoolean().Value());
    Count(p, 0);
    pairs_.erase(it);
    delete p;
    return Napi::Boolean::New(env, true);
  }

  // close(reset?): stop accepting, close the listener and every pair and
  // pending connect. Safe to call repeatedly.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    bool reset = info.Length() > 0 && info[0].ToBoolean().Value();
    if (token_ != 0) {
      ReactorForget(token_, fd_, false);
      token_ = 0;
      Unref();
    }
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    for (auto& kv : pairs_) {
      kv.second->Abort(reset);
      Count(kv.second, 0);
      delete kv.second;
    }
    pairs_.clear();
    for (Pending* p : pending_) DropPending(p, reset);
    pending_.clear();
    uv_timer_stop(timer_);
    return info.Env().Undefined();
  }

  // The listener is readable: accept a batch.
  void OnEvents(Napi::Env env, uint64_t, uint32_t) override {
    for (int i = 0; i < kAcceptBatch && fd_ >= 0; i++) {
      sockaddr_storage peer;
      socklen_t plen = sizeof(peer);
      int c = accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        // EMFILE and the like: the listener stays readable; JavaScript hears
        // of it once per edge (fd -1 and the code) and the next edge retries.
        Handoff(env, -1, peer, ErrnoName(errno));
        return;
      }
      accepted_++;
      if (peer.ss_family == AF_INET || peer.ss_family == AF_INET6) NoDelay(c);
      if (targets_.empty() || static_cast<double>(pairs_.size() + pending_.size()) >= max_) {
        Handoff(env, c, peer, nullptr);
        continue;
      }
      Connect(env, c, peer);
    }
    // A full batch: more may be waiting, and the edge will not come again.
    ReactorDefer(token_);
  }

  void PairEnded(FwdPair* p, int err) {
    Count(p, err);
    pairs_.erase(p->id_);
    delete p;  // nothing of the pair runs after Ended()
  }

  void PendingEvent(Napi::Env env, Pending* p) {
    int soerr = 0;
    socklen_t l = sizeof(soerr);
    if (getsockopt(p->upstream, SOL_SOCKET, SO_ERROR, &soerr, &l) != 0) soerr = errno;
    if (soerr == 0) {
      pollfd pf{p->upstream, POLLOUT, 0};
      if (poll(&pf, 1, 0) != 1 || (pf.revents & POLLOUT) == 0) return;  // not over yet
    }
    ReactorForget(p->token, p->upstream, true);
    p->token = 0;
    RemovePending(p);
    if (soerr != 0) {
      close(p->upstream);
      connectFailed_++;
      Handoff(env, p->client, p->peer, ErrnoName(soerr));
    } else {
      MakePair(env, p->client, p->upstream, p->peer, p->target);
    }
    delete p;
  }

 private:
  static void NoDelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // best effort, as net's noDelay
  }

  static double NowMs() {
    return static_cast<double>(uv_hrtime() / 1000000);
  }

  void Connect(Napi::Env env, int c, const sockaddr_storage& peer) {
    int ti = static_cast<int>(next_++ % targets_.size());
    const Target& t = targets_[ti];
    int u = socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u < 0) {
      connectFailed_++;
      Handoff(env, c, peer, ErrnoName(errno));
      return;
    }
    if (t.addr.ss_family != AF_UNIX) NoDelay(u);
    int rc = connect(u, reinterpret_cast<const sockaddr*>(&t.addr), t.len);
    int err = rc == 0 ? 0 : errno;
    if (err == EINPROGRESS || err == EAGAIN) {
      // Loopback runs the handshake inside connect(): usually over already.
      pollfd pf{u, POLLOUT, 0};
      int n = poll(&pf, 1, 0);
      if (n == 1 && (pf.revents & (POLLERR | POLLHUP)) != 0) {
        int soerr = 0;
        socklen_t l = sizeof(soerr);
        getsockopt(u, SOL_SOCKET, SO_ERROR, &soerr, &l);
        err = soerr != 0 ? soerr : ECONNREFUSED;
      } else if (n == 1 && (pf.revents & POLLOUT) != 0) {
        err = 0;
      } else {
        Wait(env, c, u, peer, ti);
        return;
      }
    }
    if (err != 0) {
      close(u);
      connectFailed_++;
      Handoff(env, c, peer, ErrnoName(err));
      return;
    }
    MakePair(env, c, u, peer, ti);
  }

  void MakePair(Napi::Env env, int c, int u, const sockaddr_storage& peer, int ti) {
    double id = ++lastId_;
    auto* p = new FwdPair(this, id, c, u, peer, ti, NowMs());
    pairs_[id] = p;
    paired_++;
    // Start may end the pair at once (PairEnded deletes it): not touched after.
    int err = p->Start(env);
    if (err != 0) {
      // Registering failed: the pair released both sockets; count it as a failure.
      Count(p, err);
      pairs_.erase(id);
      delete p;
    }
  }

  void Wait(Napi::Env env, int c, int u, const sockaddr_storage& peer, int ti) {
    auto* p = new Pending;
    p->owner = this;
    p->client = c;
    p->upstream = u;
    p->target = ti;
    p->peer = peer;
    p->deadline = uv_hrtime() / 1000000 + timeoutMs_;
    int err = 0;
    p->token = ReactorAdd(env, u, p, &err, EPOLLOUT | EPOLLRDHUP);
    if (p->token == 0) {
      close(u);
      delete p;
      connectFailed_++;
      Handoff(env, c, peer, ErrnoName(err));
      return;
    }
    pending_.push_back(p);
    if (pending_.size() == 1) uv_timer_start(timer_, Sweep, kSweepMs, kSweepMs);
  }

  static void Sweep(uv_timer_t* h) {
    auto* f = static_cast<Forwarder*>(h->data);
    uint64_t now = uv_hrtime() / 1000000;
    Napi::Env env = f->Env();
    Napi::HandleScope scope(env);
    std::vector<Pending*> late;
    for (Pending* p : f->pending_) if (p->deadline <= now) late.push_back(p);
    for (Pending* p : late) {
      f->RemovePending(p);
      int c = p->client;
      sockaddr_storage peer = p->peer;
      p->client = -1;
      f->DropPending(p, false);
      f->connectFailed_++;
      f->Handoff(env, c, peer, "ETIMEDOUT");
    }
  }

  void RemovePending(Pending* p) {
    for (size_t i = 0; i < pending_.size(); i++) {
      if (pending_[i] != p) continue;
      pending_[i] = pending_.back();
      pending_.pop_back();
      break;
    }
    if (pending_.empty()) uv_timer_stop(timer_);
  }

  // Close a pending connect's sockets (the client's too, unless taken) and free it.
  void DropPending(Pending* p, bool reset) {
    ReactorForget(p->token, p->upstream, true);
    if (p->upstream >= 0) close(p->upstream);
    if (p->client >= 0) {
      if (reset) ResetOnClose(p->client);
      close(p->client);
    }
    delete p;
  }

  void Count(FwdPair* p, int err) {
    ended_++;
    if (err != 0) failed_++;
    bytes_[0] += p->dir(0).bytes;
    bytes_[1] += p->dir(1).bytes;
  }

  // To JavaScript: fd (the client's socket, now JavaScript's; -1 for an
  // accept error), its address and port, and why (undefined: not tried).
  void Handoff(Napi::Env env, int c, const sockaddr_storage& peer, const char* code) {
    if (c >= 0) handedOff_++;
    char buf[INET6_ADDRSTRLEN] = {0};
    int port = 0;
    bool ip = c >= 0 && IpText(peer, buf, &port);
    napi_value args[4] = {
      Napi::Number::New(env, c),
      ip ? Napi::String::New(env, buf) : env.Undefined(),
      ip ? Napi::Number::New(env, port) : env.Undefined(),
      code != nullptr ? Napi::String::New(env, code) : env.Undefined(),
    };
    onHandoff_.MakeCallback(Value(), 4, args);
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }

  int fd_ = -1;
  uint64_t token_ = 0;
  double max_ = 0;
  uint64_t timeoutMs_ = 5000;
  uv_timer_t* timer_ = nullptr;
  std::vector<Target> targets_;
  uint64_t next_ = 0;
  double lastId_ = 0;
  std::unordered_map<double, FwdPair*> pairs_;
  std::vector<Pending*> pending_;
  double accepted_ = 0, paired_ = 0, handedOff_ = 0, ended_ = 0, failed_ = 0, connectFailed_ = 0;
  double bytes_[2] = {0, 0};
  Napi::FunctionReference onHandoff_;
};

void FwdPair::Ended(Napi::Env, int err, int) {
  owner_->PairEnded(this, err);
}

void Pending::OnEvents(Napi::Env env, uint64_t, uint32_t) {
  owner->PendingEvent(env, this);
}

}  // namespace

void InitForwarder(Napi::Env env, Napi::Object exports) {
  exports.Set("Forwarder", Forwarder::Define(env));
}

}  // namespace l7mp
