// Forwarder: a stream listener whose connections are accepted, connected
// upstream and paired in C, with no JavaScript call and no JavaScript object
// per connection (docs/compiled-listeners.md).
//
// Why: a TCP connection decided in JavaScript costs at least two callbacks
// and a wrapped object, which on the bench VM is about nginx's whole cost
// per connection (bench/README.md, "the floor under JavaScript"); routes
// that do not look at the connection are decided once, in JavaScript, when
// the configuration changes (gateway/src/fastpath/compiled.ts), and carried
// out here for each one.
//
// Per connection: accept4; the admission checks of core/admission.ts, on
// counters shared with it (the listener's live sessions, the gateway's live
// sessions and cap, the descriptor budget's sample and estimate) and a
// per-source token bucket of its own; a non-blocking connect to the next
// target (smooth weighted round robin); and when that is over, a Pair
// (pair.h) that owns both sockets. What it does not take goes to JavaScript
// through onHandoff(fd, address, port, code, target, generation) with the
// client's socket:
//   code undefined   a cap or the budget is reached, or there is no target:
//                    JavaScript's admission decides (and counts and logs);
//   "flow_rate"      the source is over its rate: JavaScript refuses it;
//   an errno name    the connect to target (of that generation) failed, or
//                    did not finish in time (ETIMEDOUT): the session goes on
//                    in JavaScript from its first attempt's failure, with the
//                    retries its route allows.
//
// A pair that ends leaves a record (id, generation, start, duration, counts,
// errno, end kind) for JavaScript to take (takeEnded) for metrics: onEnded()
// says when records are waiting. JavaScript reads the live pairs (list) and
// totals (stats) when asked and ends pairs (closePair, close).
#include "common.h"
#include "compiled.h"
#include "pair.h"
#include "reactor.h"

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <ctime>
#include <list>
#include <unordered_map>
#include <uv.h>
#include <vector>

namespace l7mp {
namespace {

// Connections accepted per listener edge before yielding to the loop.
constexpr int kAcceptBatch = 64;
// How often connects still in progress are checked against their deadline.
constexpr uint64_t kSweepMs = 50;
using compiled::WallMs;
using compiled::kRecord;

class Forwarder;

// A connected pair, owned by its Forwarder's table.
class FwdPair : public Pair {
 public:
  FwdPair(Forwarder* f, double id, double gen, int client, int upstream, const sockaddr_storage& peer, int target, double started)
      : owner_(f), id_(id), gen_(gen), peer_(peer), target_(target), started_(started) {
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
  int ClientFd() const { return side_[0].fd; }

  Forwarder* owner_;
  double id_;
  double gen_;
  sockaddr_storage peer_;
  sockaddr_storage local_{};  // kept in detail mode (the local end of a wildcard listener)
  int target_;
  double started_;
};

// A connect in progress: waits for the upstream's first edge, or its deadline.
struct Pending : public ReactorClient {
  Forwarder* owner;
  int client, upstream, target;
  double gen;
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
      InstanceMethod<&Forwarder::StopAccepting>("stopAccepting"),
      InstanceMethod<&Forwarder::Stats>("stats"),
      InstanceMethod<&Forwarder::List>("list"),
      InstanceMethod<&Forwarder::TakeEnded>("takeEnded"),
      InstanceMethod<&Forwarder::SetDetail>("setDetail"),
      InstanceMethod<&Forwarder::SetMax>("setMax"),
      InstanceMethod<&Forwarder::ClosePair>("closePair"),
      InstanceMethod<&Forwarder::Close>("close"),
    });
  }

  // new Forwarder(listenFd, onHandoff(fd, address, port, code), onEnded(), {
  //   max, connectTimeoutMs, listenerLive: Float64Array(1), global: Float64Array(5),
  //   flowRate, flowBurst, flowSources })
  // Owns listenFd (a listening, non-blocking stream socket) from here on.
  // listenerLive and global are the admission counters it shares with
  // core/admission.ts (a pair counts in both while it lives); without them it
  // keeps counters of its own.
  explicit Forwarder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Forwarder>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsFunction() || !info[2].IsFunction() || !info[3].IsObject()) {
      Napi::TypeError::New(env, "Forwarder(listenFd, onHandoff, onEnded, options)").ThrowAsJavaScriptException();
      return;
    }
    fd_ = info[0].As<Napi::Number>().Int32Value();
    onHandoff_ = Napi::Persistent(info[1].As<Napi::Function>());
    onEnded_ = Napi::Persistent(info[2].As<Napi::Function>());
    Napi::Object o = info[3].As<Napi::Object>();
    timeoutMs_ = static_cast<uint64_t>(compiled::NumberOr(o, "connectTimeoutMs", 5000));
    flows_.Configure(o);
    cells_.Init(env, o, "Forwarder", 2);
    if (env.IsExceptionPending()) return;
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    sweep_ = compiled::NewTimer(loop, this);
    endedTimer_ = compiled::NewTimer(loop, this);
  }

  ~Forwarder() override {
    // Environment teardown with the forwarder still open: release the fds,
    // and leave the shared cells alone (their memory may be gone already).
    cells_.TearDown();
    if (fd_ >= 0) close(fd_);
    for (auto& kv : pairs_) {
      kv.second->Abort(false);
      delete kv.second;
    }
    for (Pending* p : pending_) DropPending(p, false);
    compiled::CloseTimer(sweep_);
    compiled::CloseTimer(endedTimer_);
  }

  // targets([[host, port, weight?] | [unixPath, -1?, weight?], ...], generation,
  // connectTimeoutMs?): where new connections go (weight: a share, 1 when
  // absent, 0 never); [] hands every connection to JavaScript. Pairs remember
  // the generation they began in.
  Napi::Value Targets(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "targets(list, generation, connectTimeoutMs?)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!targets_.Parse(env, info[0].As<Napi::Array>(), true)) return env.Undefined();
    gen_ = info[1].As<Napi::Number>().DoubleValue();
    if (info.Length() > 2 && info[2].IsNumber()) timeoutMs_ = static_cast<uint64_t>(info[2].As<Napi::Number>().DoubleValue());
    return env.Undefined();
  }

  // start(): watch the listener (again, after an accept error).
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0 || token_ != 0) return env.Undefined();
    int err = 0;
    token_ = ReactorAdd(env, fd_, this, &err, EPOLLIN);
    if (token_ == 0) ErrnoError(env, err, "epoll_ctl").ThrowAsJavaScriptException();
    else Ref();  // registered: not collected before close()
    return env.Undefined();
  }

  // stopAccepting(): close the listening socket; live pairs go on (drain).
  Napi::Value StopAccepting(const Napi::CallbackInfo& info) {
    CloseListener();
    return info.Env().Undefined();
  }

  // stats(Float64Array(10)): [live, accepted, paired, handedOff, ended,
  // failed, bytes client->upstream, bytes upstream->client, pending connects,
  // connect failures]; the bytes include the live pairs'.
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double* out = compiled::StatsOut(info, 10, "stats(Float64Array(10))");
    if (out == nullptr) return env.Undefined();
    double up = bytes_[0], down = bytes_[1];
    for (auto& kv : pairs_) {
      up += kv.second->dir(0).bytes;
      down += kv.second->dir(1).bytes;
    }
    out[0] = static_cast<double>(pairs_.size());
    out[1] = accepted_;
    out[2] = paired_;
    out[3] = handedOff_;
    out[4] = endedCount_;
    out[5] = failed_;
    out[6] = up;
    out[7] = down;
    out[8] = static_cast<double>(pending_.size());
    out[9] = connectFailed_;
    return env.Undefined();
  }

  // list() -> [[id, generation, started (ms since the epoch), address, port,
  //   local address, local port, target, bytes c->u, reads c->u, bytes u->c,
  //   reads u->c], ...] (addresses "" for Unix peers)
  Napi::Value List(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env, pairs_.size());
    uint32_t i = 0;
    for (auto& kv : pairs_) {
      FwdPair* p = kv.second;
      Napi::Array e = Napi::Array::New(env, 12);
      char buf[INET6_ADDRSTRLEN] = {0}, lbuf[INET6_ADDRSTRLEN] = {0};
      int port = 0, lport = 0;
      bool ip = IpText(p->peer_, buf, &port);
      sockaddr_storage local;
      socklen_t llen = sizeof(local);
      bool lip = p->ClientFd() >= 0 && getsockname(p->ClientFd(), reinterpret_cast<sockaddr*>(&local), &llen) == 0 && IpText(local, lbuf, &lport);
      e.Set(0u, Napi::Number::New(env, p->id_));
      e.Set(1u, Napi::Number::New(env, p->gen_));
      e.Set(2u, Napi::Number::New(env, p->started_));
      e.Set(3u, Napi::String::New(env, ip ? buf : ""));
      e.Set(4u, Napi::Number::New(env, port));
      e.Set(5u, Napi::String::New(env, lip ? lbuf : ""));
      e.Set(6u, Napi::Number::New(env, lport));
      e.Set(7u, Napi::Number::New(env, p->target_));
      e.Set(8u, Napi::Number::New(env, p->dir(0).bytes));
      e.Set(9u, Napi::Number::New(env, p->dir(0).reads));
      e.Set(10u, Napi::Number::New(env, p->dir(1).bytes));
      e.Set(11u, Napi::Number::New(env, p->dir(1).reads));
      out.Set(i++, e);
    }
    return out;
  }

  // takeEnded(out: Float64Array, detail?: Array) -> records written (at most
  // out.length / 12): [id, generation, started, duration ms, bytes c->u,
  // reads c->u, bytes u->c, reads u->c, errno (0: none), end kind (0
  // completed, 1 error, 2 deleted, 3 drain_timeout, 4 shutdown), target,
  // side of the error (0 client, 1 upstream, -1)] each, oldest first. In
  // detail mode, `detail` gets [address, port, local address, local port]
  // for each record taken (addresses "" for Unix sockets).
  Napi::Value TakeEnded(const Napi::CallbackInfo& info) {
    bool drained;
    Napi::Value n = ended_.Take(info, &drained);
    if (drained) uv_timer_stop(endedTimer_);
    return n;
  }

  // setDetail(on): keep each pair's addresses for its ended record (an
  // access log or ended sessions kept listed need them; off by default).
  Napi::Value SetDetail(const Napi::CallbackInfo& info) {
    ended_.SetDetail(info.Length() > 0 && info[0].ToBoolean().Value());
    return info.Env().Undefined();
  }

  // setMax(n): the listener's cap of live sessions (options.max_sessions).
  Napi::Value SetMax(const Napi::CallbackInfo& info) {
    if (info.Length() > 0 && info[0].IsNumber()) cells_.SetMax(info[0].As<Napi::Number>().DoubleValue());
    return info.Env().Undefined();
  }

  // closePair(id, reset?, kind?) -> whether a live pair had that id; it ends
  // with end kind `kind` (default 2, deleted).
  Napi::Value ClosePair(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(env, "closePair(id, reset?, kind?)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto it = pairs_.find(info[0].As<Napi::Number>().DoubleValue());
    if (it == pairs_.end()) return Napi::Boolean::New(env, false);
    FwdPair* p = it->second;
    p->Abort(info.Length() > 1 && info[1].ToBoolean().Value());
    pairs_.erase(it);
    Record(env, p, 0, info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 2);
    delete p;
    return Napi::Boolean::New(env, true);
  }

  // close(reset?, kind?): stop accepting, close the listener and every pair
  // (ended with `kind`, default 2) and pending connect. Safe to call
  // repeatedly. The records stay for takeEnded.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bool reset = info.Length() > 0 && info[0].ToBoolean().Value();
    double kind = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 2;
    CloseListener();
    std::unordered_map<double, FwdPair*> all;
    all.swap(pairs_);
    for (auto& kv : all) {
      kv.second->Abort(reset);
      Record(env, kv.second, 0, kind);
      delete kv.second;
    }
    for (Pending* p : pending_) DropPending(p, reset);
    pending_.clear();
    uv_timer_stop(sweep_);
    // Nothing calls back from here on. The callbacks close over the listener
    // that holds this wrapper: strong references kept past the end are a
    // cycle through a GC root, and the listener would never be collected.
    onHandoff_.Reset();
    onEnded_.Reset();
    cells_.Release();
    return env.Undefined();
  }

  // The listener is readable: accept a batch.
  void OnEvents(Napi::Env env, uint64_t, uint32_t) override {
    uint64_t now = uv_hrtime() / 1000000;
    for (int i = 0; i < kAcceptBatch && fd_ >= 0; i++) {
      sockaddr_storage peer;
      socklen_t plen = sizeof(peer);
      int c = sys::Accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        // EMFILE and the like: stop watching the listener (it stays
        // readable: watching would spin) and tell JavaScript (fd -1 and the
        // code), which calls start() again after a pause (accept-retry.ts).
        int err = errno;
        ReactorForget(token_, fd_, true);
        token_ = 0;
        Unref();
        Handoff(env, -1, peer, ErrnoName(err));
        return;
      }
      accepted_++;
      if (peer.ss_family == AF_INET || peer.ss_family == AF_INET6) NoDelay(c);
      if (targets_.empty() || cells_.Full()) {
        Handoff(env, c, peer, nullptr);
        continue;
      }
      if (!flows_.Take(peer, now)) {
        Handoff(env, c, peer, "flow_rate");
        continue;
      }
      Connect(env, c, peer);
    }
    // A full batch: more may be waiting, and the edge will not come again.
    if (fd_ >= 0) ReactorDefer(token_);
  }

  void PairEnded(Napi::Env env, FwdPair* p, int err, int side) {
    pairs_.erase(p->id_);
    Record(env, p, err, err != 0 ? 1 : 0, side);
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
    cells_.Unadmit();
    if (soerr != 0) {
      close(p->upstream);
      connectFailed_++;
      Handoff(env, p->client, p->peer, ErrnoName(soerr), p->target, p->gen);
    } else {
      MakePair(env, p->client, p->upstream, p->peer, p->target);
    }
    delete p;
  }

 private:
  void CloseListener() {
    if (token_ != 0) {
      ReactorForget(token_, fd_, false);
      token_ = 0;
      Unref();
    }
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  static void NoDelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // best effort, as net's noDelay
  }

  void Connect(Napi::Env env, int c, const sockaddr_storage& peer) {
    int ti = targets_.Next();
    const compiled::Target& t = targets_[ti];
    int u = socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u < 0) {
      connectFailed_++;
      Handoff(env, c, peer, ErrnoName(errno), ti, gen_);
      return;
    }
    if (t.addr.ss_family != AF_UNIX) NoDelay(u);
    int rc = sys::Connect(u, reinterpret_cast<const sockaddr*>(&t.addr), t.len);
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
      Handoff(env, c, peer, ErrnoName(err), ti, gen_);
      return;
    }
    MakePair(env, c, u, peer, ti);
  }

  void MakePair(Napi::Env env, int c, int u, const sockaddr_storage& peer, int ti) {
    double id = ++lastId_;
    auto* p = new FwdPair(this, id, gen_, c, u, peer, ti, WallMs());
    if (ended_.detail()) {
      socklen_t llen = sizeof(p->local_);
      if (getsockname(c, reinterpret_cast<sockaddr*>(&p->local_), &llen) != 0) p->local_.ss_family = AF_UNSPEC;
    }
    pairs_[id] = p;
    paired_++;
    cells_.Admit();
    // Start may end the pair at once (PairEnded deletes it): not touched after.
    int err = p->Start(env);
    if (err != 0) {
      // Registering failed: the pair released both sockets.
      pairs_.erase(id);
      Record(env, p, err, 1);
      delete p;
    }
  }

  void Wait(Napi::Env env, int c, int u, const sockaddr_storage& peer, int ti) {
    auto* p = new Pending;
    p->owner = this;
    p->client = c;
    p->upstream = u;
    p->target = ti;
    p->gen = gen_;
    p->peer = peer;
    p->deadline = uv_hrtime() / 1000000 + timeoutMs_;
    int err = 0;
    p->token = ReactorAdd(env, u, p, &err, EPOLLOUT | EPOLLRDHUP);
    if (p->token == 0) {
      close(u);
      delete p;
      connectFailed_++;
      Handoff(env, c, peer, ErrnoName(err), ti, gen_);
      return;
    }
    pending_.push_back(p);
    cells_.Admit();
    if (pending_.size() == 1) uv_timer_start(sweep_, Sweep, kSweepMs, kSweepMs);
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
      f->cells_.Unadmit();
      int c = p->client, target = p->target;
      double gen = p->gen;
      sockaddr_storage peer = p->peer;
      p->client = -1;
      f->DropPending(p, false);
      f->connectFailed_++;
      f->Handoff(env, c, peer, "ETIMEDOUT", target, gen);
    }
  }

  void RemovePending(Pending* p) {
    for (size_t i = 0; i < pending_.size(); i++) {
      if (pending_[i] != p) continue;
      pending_[i] = pending_.back();
      pending_.pop_back();
      break;
    }
    if (pending_.empty()) uv_timer_stop(sweep_);
  }

  // Close a pending connect's sockets (the client's too, unless taken) and free it.
  void DropPending(Pending* p, bool reset) {
    ReactorForget(p->token, p->upstream, true);
    if (p->upstream >= 0) close(p->upstream);
    if (p->client >= 0) {
      if (reset) ResetOnClose(p->client);
      close(p->client);
      cells_.Unadmit();
    }
    delete p;
  }

  // A pair is over: its place is given back, its counts folded in, its record kept.
  void Record(Napi::Env env, FwdPair* p, int err, double kind, int side = -1) {
    cells_.Unadmit();
    endedCount_++;
    if (err != 0) failed_++;
    bytes_[0] += p->dir(0).bytes;
    bytes_[1] += p->dir(1).bytes;
    double now = WallMs();
    double r[kRecord] = {p->id_, p->gen_, p->started_, std::max(0.0, now - p->started_), p->dir(0).bytes, p->dir(0).reads,
                         p->dir(1).bytes, p->dir(1).reads, static_cast<double>(err), kind, static_cast<double>(p->target_),
                         static_cast<double>(side)};
    switch (ended_.Push(r, p->peer_, p->local_)) {
      case compiled::EndedLog::kStartTimer: uv_timer_start(endedTimer_, Due, compiled::kEndedMs, 0); break;
      case compiled::EndedLog::kTellNow: Tell(env); break;
      default: break;
    }
  }

  static void Due(uv_timer_t* h) {
    auto* f = static_cast<Forwarder*>(h->data);
    Napi::Env env = f->Env();
    Napi::HandleScope scope(env);
    if (f->ended_.Waiting() > 0) f->Tell(env);
  }

  // onEnded(): records are waiting. Not again until they have been taken.
  void Tell(Napi::Env env) {
    ended_.Told();
    uv_timer_stop(endedTimer_);
    compiled::CallJs(env, onEnded_, Value(), 0, nullptr);
  }

  // To JavaScript: fd (the client's socket, now JavaScript's; -1 for an
  // accept error), its address and port, why (undefined: not tried), and for
  // a connect that failed, the target it was made to and its generation.
  void Handoff(Napi::Env env, int c, const sockaddr_storage& peer, const char* code, int target = -1, double gen = 0) {
    if (onHandoff_.IsEmpty()) {  // closed: nobody to take it
      if (c >= 0) close(c);
      return;
    }
    if (c >= 0) handedOff_++;
    char buf[INET6_ADDRSTRLEN] = {0};
    int port = 0;
    bool ip = c >= 0 && IpText(peer, buf, &port);
    napi_value args[6] = {
      Napi::Number::New(env, c),
      ip ? Napi::String::New(env, buf) : env.Undefined(),
      ip ? Napi::Number::New(env, port) : env.Undefined(),
      code != nullptr ? Napi::String::New(env, code) : env.Undefined(),
      Napi::Number::New(env, target),
      Napi::Number::New(env, gen),
    };
    compiled::CallJs(env, onHandoff_, Value(), 6, args);
  }

  int fd_ = -1;
  uint64_t token_ = 0;
  uint64_t timeoutMs_ = 5000;
  uv_timer_t* sweep_ = nullptr;
  uv_timer_t* endedTimer_ = nullptr;
  compiled::Targets targets_;
  double gen_ = 0;
  double lastId_ = 0;
  std::unordered_map<double, FwdPair*> pairs_;
  std::vector<Pending*> pending_;
  compiled::FlowBuckets flows_;
  compiled::Cells cells_;
  compiled::EndedLog ended_;
  double accepted_ = 0, paired_ = 0, handedOff_ = 0, endedCount_ = 0, failed_ = 0, connectFailed_ = 0;
  double bytes_[2] = {0, 0};
  Napi::FunctionReference onHandoff_;
  Napi::FunctionReference onEnded_;
};

void FwdPair::Ended(Napi::Env env, int err, int side) {
  owner_->PairEnded(env, this, err, side);
}

void Pending::OnEvents(Napi::Env env, uint64_t, uint32_t) {
  owner->PendingEvent(env, this);
}

}  // namespace

void InitForwarder(Napi::Env env, Napi::Object exports) {
  exports.Set("Forwarder", Forwarder::Define(env));
}

}  // namespace l7mp
