// UdpForwarder: a server-mode UDP listener's flows set up and carried in C,
// with no JavaScript call and no JavaScript object per flow or per datagram
// (docs/compiled-listeners.md). The datagram counterpart of forward.cc.
//
// Why: a UDP session decided in JavaScript costs ~40 CPU-µs to set up (the
// session, its pipeline, a channel per side) and a trip into JavaScript per
// batch each way; nginx spends ~29 µs per session and ~5 µs per datagram
// (bench/README.md). Routes that do not look at the datagrams are decided
// once, in JavaScript, when the configuration changes
// (gateway/src/fastpath/compiled.ts), and carried out here.
//
// It taps the listener's socket (tap.h): every datagram of a batch is
// offered here before JavaScript sees the batch. A datagram of a flow in the
// table goes to that flow's connected upstream socket; one from a new source
// opens a flow when the listener has targets, the source is not one of
// JavaScript's flows (claim), the admission counters shared with
// core/admission.ts have room and the source's token bucket has a token. A
// source over its rate is refused (JavaScript counts and logs it); anything
// else is left to JavaScript, whose admission decides. Replies are read
// from the upstream socket with recvmmsg and leave through the listener's
// socket with sendmmsg, addressed to the client.
//
// UDP drops what it cannot carry: a datagram that finds a socket's send
// buffer full is dropped and counted (stats [10]), never queued. An ICMP
// error on the upstream socket (ECONNREFUSED) ends the flow with the error.
// A flow ends after idleTimeoutMs without a datagram either way, on
// closePair (DELETE, drain's cut) or close. Ended flows leave records as the
// Forwarder's (compiled.h, EndedLog).
#include "common.h"
#include "compiled.h"
#include "reactor.h"
#include "tap.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <list>
#include <unordered_map>
#include <unordered_set>
#include <uv.h>
#include <vector>

namespace l7mp {
namespace {

using compiled::kRecord;

// Replies read per recvmmsg from an upstream socket, and recvmmsg calls per
// edge before the flow yields to the others (it goes on from the idle turn).
constexpr int kReplyBatch = 16;
constexpr int kReplyRounds = 4;
constexpr size_t kReplySlot = 65536;  // the largest UDP payload fits
constexpr int kSmallBatch = 4;        // replies up to this many leave in one sendmmsg
// Early drop, as common/flows.ts pickEvictable: flows looked at per new
// flow when a cap is reached, and how long one must have been quiet.
constexpr int kEvictScan = 64;
constexpr uint64_t kEvictMinIdleMs = 500;

class UdpForwarder;

// One flow: a client address and its connected upstream socket.
struct Flow : public ReactorClient {
  UdpForwarder* owner = nullptr;
  double id = 0, gen = 0;
  uint64_t key = 0;
  sockaddr_storage peer{};
  int fd = -1;
  uint64_t token = 0;
  int target = 0;
  double started = 0;
  uint64_t last = 0;  // loop time (ms) of its last datagram either way
  double bytes[2] = {0, 0}, packets[2] = {0, 0};  // [0] client -> upstream, [1] back
  std::list<Flow*>::iterator pos;  // in the forwarder's eviction order
  void OnEvents(Napi::Env env, uint64_t token, uint32_t events) override;
};

// The replies' receive area, shared by every forwarder (nothing runs concurrently).
struct ReplyArea {
  std::vector<uint8_t> slab;
  mmsghdr msgs[kReplyBatch];
  iovec iov[kReplyBatch];
};

ReplyArea& Replies() {
  static ReplyArea* a = nullptr;
  if (a == nullptr) {
    a = new ReplyArea;
    a->slab.resize(kReplyBatch * kReplySlot);
  }
  return *a;
}

uint64_t KeyOf(const sockaddr_in& sin) {
  return static_cast<uint64_t>(ntohl(sin.sin_addr.s_addr)) * 65536 + ntohs(sin.sin_port);
}

class UdpForwarder : public Napi::ObjectWrap<UdpForwarder>, public DatagramTap {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "UdpForwarder", {
      InstanceMethod<&UdpForwarder::Targets>("targets"),
      InstanceMethod<&UdpForwarder::StopAccepting>("stopAccepting"),
      InstanceMethod<&UdpForwarder::Stats>("stats"),
      InstanceMethod<&UdpForwarder::List>("list"),
      InstanceMethod<&UdpForwarder::TakeEnded>("takeEnded"),
      InstanceMethod<&UdpForwarder::SetDetail>("setDetail"),
      InstanceMethod<&UdpForwarder::SetMax>("setMax"),
      InstanceMethod<&UdpForwarder::ClosePair>("closePair"),
      InstanceMethod<&UdpForwarder::Close>("close"),
      InstanceMethod<&UdpForwarder::Claim>("claim"),
      InstanceMethod<&UdpForwarder::Release>("release"),
    });
  }

  // new UdpForwarder(socket, onEnded(), { max, idleTimeoutMs, listenerLive:
  //   Float64Array(1), global: Float64Array(5), flowRate, flowBurst,
  //   flowSources }): taps the bare socket `socket` (fdOpen, an AF_INET
  //   datagram socket JavaScript reads), which stays JavaScript's to close
  //   once close() has been called here.
  explicit UdpForwarder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpForwarder>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsFunction() || !info[2].IsObject()) {
      Napi::TypeError::New(env, "UdpForwarder(socket, onEnded, options)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[2].As<Napi::Object>();
    idleMs_ = static_cast<uint64_t>(std::max(0.0, compiled::NumberOr(o, "idleTimeoutMs", 0)));
    buckets_.Configure(o);
    cells_.Init(env, o, "UdpForwarder", 1);  // the upstream socket
    if (env.IsExceptionPending()) return;
    socket_ = info[0].As<Napi::Number>().Uint32Value();
    fd_ = TapBareSocket(env, socket_, this);
    if (fd_ < 0) {
      Napi::TypeError::New(env, "UdpForwarder: not an open datagram socket of fdOpen(), or one tapped already").ThrowAsJavaScriptException();
      return;
    }
    socklen_t llen = sizeof(local_);
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&local_), &llen) != 0) local_.ss_family = AF_UNSPEC;
    onEnded_ = Napi::Persistent(info[1].As<Napi::Function>());
    napi_get_uv_event_loop(env, &loop_);
    sweep_ = compiled::NewTimer(loop_, this);
    endedTimer_ = compiled::NewTimer(loop_, this);
    if (idleMs_ > 0) {
      uint64_t every = std::min<uint64_t>(1000, std::max<uint64_t>(50, idleMs_ / 4));
      uv_timer_start(sweep_, Sweep, every, every);
    }
    Ref();  // tapped: not collected before close()
  }

  ~UdpForwarder() override {
    // Environment teardown with the forwarder still open: release the fds,
    // and leave the shared cells alone (their memory may be gone already).
    cells_.TearDown();
    for (auto& kv : byKey_) {
      ReactorForget(kv.second->token, kv.second->fd, false);
      close(kv.second->fd);
      delete kv.second;
    }
    compiled::CloseTimer(sweep_);
    compiled::CloseTimer(endedTimer_);
  }

  // DatagramTap: a datagram the listener's socket read.
  Verdict Offer(Napi::Env env, const uint8_t* data, size_t len, const sockaddr_storage& from, uint64_t now) override {
    if (from.ss_family != AF_INET) return kPass;
    uint64_t key = KeyOf(reinterpret_cast<const sockaddr_in&>(from));
    auto it = byKey_.find(key);
    Flow* f;
    if (it != byKey_.end()) {
      f = it->second;
    } else {
      // At a cap, an idle flow makes room (early drop, as core/admission.ts
      // does for JavaScript's flows); with none, JavaScript's admission decides.
      if (!accepting_ || targets_.empty() || js_.count(key) != 0 || (cells_.Full() && !EvictOne(now))) {
        passed_++;
        return kPass;
      }
      if (!buckets_.Take(from, now)) return kRateRefused;
      f = Open(env, key, from, now);
      if (f == nullptr) {
        passed_++;
        return kPass;  // JavaScript tries the same and says why it failed
      }
    }
    datagrams_++;
    f->last = now;
    // Sent at the next flush, a flow's datagrams in one sendmmsg: one
    // client's burst wakes the upstream a few times, not once per datagram.
    batch_.push_back(Out{f, data, len});
    return kTaken;
  }

  // Each flow's datagrams taken so far leave in order, in one sendmmsg.
  void Flush(Napi::Env) override {
    size_t n = batch_.size();
    for (size_t i = 0; i < n; i++) {
      Flow* f = batch_[i].flow;
      if (f == nullptr) continue;
      unsigned k = 0;
      for (size_t j = i; j < n && k < kMaxOut; j++) {
        if (batch_[j].flow != f) continue;
        out_iov_[k].iov_base = const_cast<uint8_t*>(batch_[j].data);
        out_iov_[k].iov_len = batch_[j].len;
        memset(&out_[k], 0, sizeof(out_[k]));
        out_[k].msg_hdr.msg_iov = &out_iov_[k];
        out_[k].msg_hdr.msg_iovlen = 1;
        batch_[j].flow = nullptr;
        k++;
      }
      unsigned sent = 0;
      int err = 0;
      while (sent < k) {
        int r = sys::SendMmsg(f->fd, out_ + sent, k - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0) {
          if (errno == EINTR) continue;
          err = errno;
          break;
        }
        for (unsigned m = sent; m < sent + static_cast<unsigned>(r); m++) f->bytes[0] += static_cast<double>(out_iov_[m].iov_len);
        f->packets[0] += r;
        sent += static_cast<unsigned>(r);
      }
      dropped_ += k - sent;
      // A full buffer drops (UDP); an ICMP error (ECONNREFUSED) ends the flow.
      if (err != 0 && err != EAGAIN && err != EWOULDBLOCK && err != ENOBUFS) End(f, err, 1, 1);
    }
    batch_.clear();
  }

  void TapClosed() override { fd_ = -1; }

  // An upstream socket's edge: its replies go to the client.
  void Reply(Napi::Env, Flow* f, uint32_t events) {
    if ((events & EPOLLERR) != 0) {
      int soerr = 0;
      socklen_t l = sizeof(soerr);
      if (getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &soerr, &l) == 0 && soerr != 0) {
        End(f, soerr, 1, 1);
        return;
      }
    }
    ReplyArea& a = Replies();
    for (int round = 0; round < kReplyRounds; round++) {
      for (int i = 0; i < kReplyBatch; i++) {
        a.iov[i].iov_base = a.slab.data() + i * kReplySlot;
        a.iov[i].iov_len = kReplySlot;
        memset(&a.msgs[i], 0, sizeof(a.msgs[i]));
        a.msgs[i].msg_hdr.msg_iov = &a.iov[i];
        a.msgs[i].msg_hdr.msg_iovlen = 1;
      }
      int n = sys::RecvMmsg(f->fd, a.msgs, kReplyBatch, MSG_DONTWAIT);
      if (n < 0) {
        int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) return;
        End(f, err, 1, 1);  // an ICMP error on the connected socket
        return;
      }
      if (n == 0) return;
      f->last = uv_now(loop_);
      for (int i = 0; i < n; i++) {
        a.iov[i].iov_len = a.msgs[i].msg_len;
        a.msgs[i].msg_hdr.msg_name = &f->peer;
        a.msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
      }
      // Replies 1, 2, 3-4, 5-8, ... leave in separate sendmmsg calls when
      // the batch is not small, as the listener's batches (fdsock.cc).
      int sent = 0;
      while (fd_ >= 0 && sent < n) {
        int upto = n <= kSmallBatch ? n : std::min(n, sent == 0 ? 1 : sent * 2);
        int r = sys::SendMmsg(fd_, a.msgs + sent, static_cast<unsigned>(upto - sent), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0) {
          if (errno == EINTR) continue;
          break;  // a full buffer (or the client unreachable): the rest is dropped
        }
        for (int i = sent; i < sent + r; i++) f->bytes[1] += a.msgs[i].msg_len;
        f->packets[1] += r;
        sent += r;
        if (r == 0) break;
      }
      dropped_ += n - sent;
      if (n < kReplyBatch) return;
    }
    // A full last batch: more may be waiting, and the edge will not come again.
    ReactorDefer(f->token);
  }

 private:
  Flow* Open(Napi::Env env, uint64_t key, const sockaddr_storage& from, uint64_t now) {
    int ti = targets_.Next();
    const compiled::Target& t = targets_[ti];
    int u = socket(t.addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u < 0) {
      openFailed_++;
      return nullptr;
    }
    if (sys::Connect(u, reinterpret_cast<const sockaddr*>(&t.addr), t.len) != 0) {
      close(u);
      openFailed_++;
      return nullptr;
    }
    auto* f = new Flow;
    f->owner = this;
    f->id = ++lastId_;
    f->gen = gen_;
    f->key = key;
    f->peer = from;
    f->fd = u;
    f->target = ti;
    f->started = compiled::WallMs();
    f->last = now;
    int err = 0;
    f->token = ReactorAdd(env, u, f, &err, EPOLLIN);
    if (f->token == 0) {
      close(u);
      delete f;
      openFailed_++;
      return nullptr;
    }
    byKey_[key] = f;
    byId_[f->id] = f;
    f->pos = order_.insert(order_.end(), f);
    opened_++;
    cells_.Admit();
    return f;
  }

  // A flow is over: its place is given back, its counts folded in, its record kept.
  void End(Flow* f, int err, int side, double kind) {
    ReactorForget(f->token, f->fd, false);
    close(f->fd);
    byKey_.erase(f->key);
    byId_.erase(f->id);
    order_.erase(f->pos);
    cells_.Unadmit();
    endedCount_++;
    if (err != 0) failed_++;
    bytes_[0] += f->bytes[0];
    bytes_[1] += f->bytes[1];
    double now = compiled::WallMs();
    double r[kRecord] = {f->id, f->gen, f->started, std::max(0.0, now - f->started), f->bytes[0], f->packets[0], f->bytes[1],
                         f->packets[1], static_cast<double>(err), kind, static_cast<double>(f->target), static_cast<double>(err != 0 ? side : -1)};
    switch (ended_.Push(r, f->peer, local_)) {
      case compiled::EndedLog::kStartTimer: uv_timer_start(endedTimer_, Due, compiled::kEndedMs, 0); break;
      case compiled::EndedLog::kTellNow: tellSoon_ = true; uv_timer_start(endedTimer_, Due, 0, 0); break;
      default: break;
    }
    delete f;
  }

  // End one quiet flow, one that never had a reply first, else the longest
  // quiet of those looked at; busy ones move to the back. false: none.
  bool EvictOne(uint64_t now) {
    Flow* pick = nullptr;
    int seen = 0;
    for (auto it = order_.begin(); it != order_.end() && seen < kEvictScan; seen++) {
      Flow* f = *it++;
      if (now - f->last < kEvictMinIdleMs) {
        order_.splice(order_.end(), order_, f->pos);
        continue;
      }
      if (f->packets[1] == 0) {
        pick = f;
        break;
      }
      if (pick == nullptr || f->last < pick->last) pick = f;
    }
    if (pick == nullptr) return false;
    End(pick, 0, -1, 0);
    evicted_++;
    return true;
  }

  static void Sweep(uv_timer_t* h) {
    auto* u = static_cast<UdpForwarder*>(h->data);
    uint64_t now = uv_now(u->loop_);
    std::vector<Flow*> idle;
    for (auto& kv : u->byKey_) if (now - kv.second->last >= u->idleMs_) idle.push_back(kv.second);
    for (Flow* f : idle) u->End(f, 0, -1, 0);
  }

  static void Due(uv_timer_t* h) {
    auto* u = static_cast<UdpForwarder*>(h->data);
    u->tellSoon_ = false;
    Napi::Env env = u->Env();
    Napi::HandleScope scope(env);
    if (u->ended_.Waiting() == 0) return;
    // onEnded(): records are waiting. Not again until they have been taken.
    u->ended_.Told();
    compiled::CallJs(env, u->onEnded_, u->Value(), 0, nullptr);
  }

  // targets([[numeric host, port, weight?], ...], generation): where new
  // flows go; [] leaves every new source to JavaScript. Flows remember the
  // generation they began in.
  Napi::Value Targets(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "targets(list, generation)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!targets_.Parse(env, info[0].As<Napi::Array>(), false)) return env.Undefined();
    gen_ = info[1].As<Napi::Number>().DoubleValue();
    return env.Undefined();
  }

  // stopAccepting(): no new flows (new sources go to JavaScript); live flows go on.
  Napi::Value StopAccepting(const Napi::CallbackInfo& info) {
    accepting_ = false;
    return info.Env().Undefined();
  }

  // stats(Float64Array(>= 10)): [live, datagrams taken, flows opened,
  // datagrams left to JavaScript, ended, failed, bytes client->upstream,
  // bytes upstream->client, 0, flows that could not be opened, and where
  // there are cells for them: datagrams dropped (a full socket buffer),
  // flows evicted]; the bytes include the live flows'.
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double* out = compiled::StatsOut(info, 10, "stats(Float64Array(10))");
    if (out == nullptr) return env.Undefined();
    double up = bytes_[0], down = bytes_[1];
    for (auto& kv : byKey_) {
      up += kv.second->bytes[0];
      down += kv.second->bytes[1];
    }
    double v[12] = {static_cast<double>(byKey_.size()), datagrams_, opened_, passed_, endedCount_, failed_, up, down, 0, openFailed_, dropped_, evicted_};
    size_t n = std::min<size_t>(12, info[0].As<Napi::Float64Array>().ElementLength());
    memcpy(out, v, n * sizeof(double));
    return env.Undefined();
  }

  // list() -> [[id, generation, started (ms since the epoch), address, port,
  //   local address, local port, target, bytes c->u, datagrams c->u, bytes
  //   u->c, datagrams u->c], ...]
  Napi::Value List(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env, byId_.size());
    char lbuf[INET6_ADDRSTRLEN] = {0};
    int lport = 0;
    bool lip = IpText(local_, lbuf, &lport);
    uint32_t i = 0;
    for (auto& kv : byId_) {
      Flow* f = kv.second;
      char buf[INET6_ADDRSTRLEN] = {0};
      int port = 0;
      bool ip = IpText(f->peer, buf, &port);
      Napi::Array e = Napi::Array::New(env, 12);
      e.Set(0u, Napi::Number::New(env, f->id));
      e.Set(1u, Napi::Number::New(env, f->gen));
      e.Set(2u, Napi::Number::New(env, f->started));
      e.Set(3u, Napi::String::New(env, ip ? buf : ""));
      e.Set(4u, Napi::Number::New(env, port));
      e.Set(5u, Napi::String::New(env, lip ? lbuf : ""));
      e.Set(6u, Napi::Number::New(env, lport));
      e.Set(7u, Napi::Number::New(env, f->target));
      e.Set(8u, Napi::Number::New(env, f->bytes[0]));
      e.Set(9u, Napi::Number::New(env, f->packets[0]));
      e.Set(10u, Napi::Number::New(env, f->bytes[1]));
      e.Set(11u, Napi::Number::New(env, f->packets[1]));
      out.Set(i++, e);
    }
    return out;
  }

  // takeEnded(out, detail?): as the Forwarder's (compiled.h, EndedLog).
  Napi::Value TakeEnded(const Napi::CallbackInfo& info) {
    bool drained;
    Napi::Value n = ended_.Take(info, &drained);
    if (drained && !tellSoon_) uv_timer_stop(endedTimer_);
    return n;
  }

  Napi::Value SetDetail(const Napi::CallbackInfo& info) {
    ended_.SetDetail(info.Length() > 0 && info[0].ToBoolean().Value());
    return info.Env().Undefined();
  }

  // setMax(n): the listener's cap of live sessions (options.max_sessions).
  Napi::Value SetMax(const Napi::CallbackInfo& info) {
    if (info.Length() > 0 && info[0].IsNumber()) cells_.SetMax(info[0].As<Napi::Number>().DoubleValue());
    return info.Env().Undefined();
  }

  // closePair(id, reset?, kind?) -> whether a live flow had that id; it ends
  // with end kind `kind` (default 2, deleted). UDP has nothing to reset.
  Napi::Value ClosePair(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(env, "closePair(id, reset?, kind?)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto it = byId_.find(info[0].As<Napi::Number>().DoubleValue());
    if (it == byId_.end()) return Napi::Boolean::New(env, false);
    End(it->second, 0, -1, info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 2);
    return Napi::Boolean::New(env, true);
  }

  // close(reset?, kind?): end every flow (with `kind`, default 2) and let go
  // of the listener's socket. Safe to call repeatedly. The records stay for
  // takeEnded.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double kind = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 2;
    accepting_ = false;
    std::vector<Flow*> all;
    for (auto& kv : byKey_) all.push_back(kv.second);
    for (Flow* f : all) End(f, 0, -1, kind);
    uv_timer_stop(sweep_);
    if (closed_) return env.Undefined();
    closed_ = true;
    if (fd_ >= 0) UntapBareSocket(env, socket_, this);
    fd_ = -1;
    // Nothing calls back from here on (see forward.cc's close).
    onEnded_.Reset();
    cells_.Release();
    Unref();
    return env.Undefined();
  }

  // claim(key) / release(key): a source (address * 65536 + port) whose flow
  // JavaScript serves: its datagrams are left to JavaScript.
  Napi::Value Claim(const Napi::CallbackInfo& info) {
    if (info.Length() > 0 && info[0].IsNumber()) js_.insert(static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue()));
    return info.Env().Undefined();
  }

  Napi::Value Release(const Napi::CallbackInfo& info) {
    if (info.Length() > 0 && info[0].IsNumber()) js_.erase(static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue()));
    return info.Env().Undefined();
  }

  // A datagram taken in the current batch, sent at its end (the data is the batch's slab).
  struct Out {
    Flow* flow;
    const uint8_t* data;
    size_t len;
  };
  static constexpr unsigned kMaxOut = 64;  // fdsock.cc's batch
  std::vector<Out> batch_;
  mmsghdr out_[kMaxOut];
  iovec out_iov_[kMaxOut];

  uint32_t socket_ = 0;
  int fd_ = -1;  // the listener's socket, tapped; -1 once closed
  sockaddr_storage local_{};
  uv_loop_t* loop_ = nullptr;
  uint64_t idleMs_ = 0;
  bool accepting_ = true;
  bool closed_ = false;
  bool tellSoon_ = false;
  uv_timer_t* sweep_ = nullptr;
  uv_timer_t* endedTimer_ = nullptr;
  compiled::Targets targets_;
  compiled::FlowBuckets buckets_;
  compiled::Cells cells_;
  compiled::EndedLog ended_;
  double gen_ = 0;
  double lastId_ = 0;
  std::unordered_map<uint64_t, Flow*> byKey_;
  std::unordered_map<double, Flow*> byId_;
  std::unordered_set<uint64_t> js_;
  std::list<Flow*> order_;  // oldest first, busy ones moved back (EvictOne)
  double datagrams_ = 0, opened_ = 0, passed_ = 0, endedCount_ = 0, failed_ = 0, openFailed_ = 0, dropped_ = 0, evicted_ = 0;
  double bytes_[2] = {0, 0};
  Napi::FunctionReference onEnded_;
};

void Flow::OnEvents(Napi::Env env, uint64_t, uint32_t events) {
  owner->Reply(env, this, events);
}

}  // namespace

void InitUdpForwarder(Napi::Env env, Napi::Object exports) {
  exports.Set("UdpForwarder", UdpForwarder::Define(env));
}

}  // namespace l7mp
