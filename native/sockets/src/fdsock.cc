// One non-blocking socket fd, read and written in batches, watched in the
// reactor's edge-triggered epoll set (reactor.cc): FdCore, behind either a
// wrapped FdSocket with callbacks of its own or a bare socket named by a
// number (fdOpen and the fd* functions, with the environment's callbacks).
//
// Why batches: the gateway's cost per datagram is dominated by the trip into
// JavaScript, not by the system call. A readable event drains up to
// kBatch datagrams with one recvmmsg() and hands them to JavaScript in one
// call; sends queued in one turn of the event loop go out in one sendmmsg().
// The receive buffers are one process-wide slab shared with JavaScript
// (initBatch): callbacks are synchronous, so the slab is free again as soon as
// the callback returns, and no per-packet allocation happens here.
//
// Why the reactor and not a uv_poll_t: libuv's uv_poll_init sets O_NONBLOCK
// again (ioctl) and tries the fd in its epoll set (an add and a delete), its
// start adds it again, and its close deletes it: 5 system calls a UDP
// session's upstream socket pays beyond nginx's one epoll_ctl (strace -c,
// bench/README.md). In the reactor's set the fd is added once and closing it
// takes it out. Edge-triggered, so this side remembers what an edge said
// (`readable_`, until a read finds the socket drained); a readStart that
// finds it set runs from the reactor's idle turn, never inside the
// JavaScript call that asked. Writability is waited for only on request
// (watchWritable adds EPOLLOUT, the edge after removes it): a UDP socket
// signals it for every datagram the peer takes off its queue, an event per
// datagram sent.
#include "common.h"
#include "reactor.h"
#include "tap.h"

#include <cerrno>
#include <cstring>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>
#include <vector>

namespace l7mp {
namespace {

constexpr uint32_t kReadEvents = EPOLLIN | EPOLLRDHUP;
constexpr int kBatch = 64;              // datagrams per recvmmsg/sendmmsg
constexpr size_t kSlot = 65536;         // bytes per receive slot (largest UDP payload fits)
constexpr size_t kAddr = 128;           // bytes per source address slot (sockaddr_storage)
constexpr int kMaxRounds = 8;           // recvmmsg calls per readable event, so one busy fd cannot starve the loop
constexpr int kSmallBatch = 4;          // a tap's batches up to this long are flushed whole (native/fdsocket.ts SMALL_BATCH)

// The slab, its metadata and the source addresses, owned by JavaScript
// buffers that initBatch() pins with references.
class BareFd;

struct BatchArea {
  ~BatchArea();
  uint8_t* slab = nullptr;
  int32_t* meta = nullptr;   // per slot: [length or -1 if truncated, address length]
  uint8_t* addrs = nullptr;
  Napi::Reference<Napi::Value> refs[3];
  // setCallbacks(): the callbacks of every bare socket (fdOpen).
  Napi::FunctionReference onData, onAccepted, onWritable, onError;
  // The open bare sockets by number, and the numbers free for reuse.
  std::vector<BareFd*> bare;
  std::vector<uint32_t> freeIds;
  mmsghdr msgs[kBatch];
  iovec iov[kBatch];
};

BatchArea* Area(Napi::Env env) { return env.GetInstanceData<BatchArea>(); }

BatchArea* AreaOrNew(Napi::Env env) {
  BatchArea* a = Area(env);
  if (a == nullptr) {
    a = new BatchArea();
    env.SetInstanceData<BatchArea>(a);
  }
  return a;
}

uv_loop_t* Loop(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  return loop;
}

size_t ElementBytes(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: return 1;
    case napi_int16_array: case napi_uint16_array: return 2;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: return 4;
    default: return 8;
  }
}

// A typed array's first byte and its length in bytes, from one
// napi_get_typedarray_info: send() asks for every datagram and its address,
// and the wrapper's IsTypedArray/ByteLength/ArrayBuffer/ByteOffset calls cost
// five lookups per buffer. false: not a typed array, or shorter than minLen.
bool ViewOf(Napi::Value v, size_t minLen, uint8_t** data, size_t* bytes = nullptr) {
  napi_typedarray_type type;
  size_t length = 0;
  void* p = nullptr;
  if (napi_get_typedarray_info(v.Env(), v, &type, &length, &p, nullptr, nullptr) != napi_ok) return false;
  size_t n = length * ElementBytes(type);
  if (n < minLen || (p == nullptr && n > 0)) return false;
  *data = static_cast<uint8_t*>(p);
  if (bytes != nullptr) *bytes = n;
  return true;
}

// initBatch(slab: Buffer >= 64*65536, meta: Int32Array >= 128, addrs: Buffer >= 64*128)
Napi::Value InitBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t *slab, *meta, *addrs;
  if (info.Length() < 3 || !ViewOf(info[0], kBatch * kSlot, &slab) || !ViewOf(info[1], kBatch * 2 * sizeof(int32_t), &meta) ||
      !ViewOf(info[2], kBatch * kAddr, &addrs) || (reinterpret_cast<uintptr_t>(meta) % alignof(int32_t)) != 0) {
    Napi::TypeError::New(env, "initBatch(slab, meta, addrs): buffers too small").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  BatchArea* a = AreaOrNew(env);
  a->slab = slab;
  a->meta = reinterpret_cast<int32_t*>(meta);
  a->addrs = addrs;
  for (int i = 0; i < 3; i++) a->refs[i] = Napi::Persistent(info[i]);
  return Napi::Object::New(env);
}

// setCallbacks(onData, onAccepted, onWritable, onError): the callbacks of
// every bare socket (fdOpen), called with its number first: onData(n,
// count) for datagrams, onAccepted(n, fd, ...) for a listening one (the
// arguments after the number as FdSocket's onData), onWritable(n),
// onError(n, code). Set once per environment: a function reference each,
// where a wrapped FdSocket keeps three of its own.
Napi::Value SetCallbacks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsFunction() || !info[1].IsFunction() || !info[2].IsFunction() || !info[3].IsFunction()) {
    Napi::TypeError::New(env, "setCallbacks(onData, onAccepted, onWritable, onError)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  BatchArea* a = AreaOrNew(env);
  a->onData = Napi::Persistent(info[0].As<Napi::Function>());
  a->onAccepted = Napi::Persistent(info[1].As<Napi::Function>());
  a->onWritable = Napi::Persistent(info[2].As<Napi::Function>());
  a->onError = Napi::Persistent(info[3].As<Napi::Function>());
  return env.Undefined();
}

enum Callback { kOnData, kOnWritable, kOnError };

// One socket in the reactor, read and written in batches: everything but its
// JavaScript face, which is either a wrapped FdSocket (own callbacks) or a
// bare one named by a number (BareFd, the shared callbacks of setCallbacks).
class FdCore : public ReactorClient {
 public:
  ~FdCore() override {
    // Only reached with an open fd at environment teardown (an open FdSocket
    // holds a reference; an open BareFd is in the environment's table).
    if (fd_ >= 0) {
      ReactorForget(token_, fd_, false);
      if (held_) ReactorHold(-1);
      close(fd_);
    }
  }

  //   mode 0: data socket; onData(count) after each recvmmsg
  //   mode 1: listening socket; onData(fd) per accepted connection
  //   mode 2: listening TCP socket; onData(fd, peerAddress, peerPort), TCP_NODELAY set
  //   mode 3: as 2, plus (localAddress, localPort) (a wildcard listener's getsockname)
  // false with a JavaScript exception pending when the fd cannot be watched
  // (it stays the caller's then).
  bool Open(Napi::Env env, int fd, int mode) {
    accept_ = mode >= 1 && mode <= 3;
    addresses_ = mode >= 2 ? mode - 1 : 0;
    int err = 0;
    token_ = ReactorAdd(env, fd, this, &err, kReadEvents, false);
    if (token_ == 0) {
      ErrnoError(env, err, "epoll_ctl").ThrowAsJavaScriptException();
      return false;
    }
    fd_ = fd;
    return true;
  }

  int fd() const { return fd_; }
  bool accepting() const { return accept_; }
  DatagramTap* tap() const { return tap_; }
  void SetTap(DatagramTap* t) { tap_ = t; }

  void ReadStart(Napi::Env env) {
    reading_ = true;
    Update(env);
  }

  void ReadStop(Napi::Env env) {
    reading_ = false;
    Update(env);
  }

  void WatchWritable(Napi::Env env, bool on) {
    writing_ = on;
    Update(env);
  }

  // Close the fd (which takes it out of the epoll set); no callback after this.
  void CloseFd() {
    if (fd_ < 0) return;
    if (tap_ != nullptr) {
      DatagramTap* t = tap_;
      tap_ = nullptr;
      t->TapClosed();
    }
    ReactorForget(token_, fd_, false);
    token_ = 0;
    if (held_) ReactorHold(-1);
    held_ = false;
    close(fd_);
    fd_ = -1;
    reading_ = writing_ = false;
  }

 protected:
  // Call JavaScript callback `which` with args; only while the fd is open.
  virtual void Deliver(Napi::Env env, Callback which, size_t argc, const napi_value* args) = 0;

 private:
  // EPOLLOUT in the registration while writing_; adding it reports the
  // current state at once (a socket that is writable already gets its edge).
  // A failure (not with an open, registered fd) is reported from the idle
  // turn, never inside the JavaScript call that asked.
  void ArmWritable() {
    if (writing_ == outArmed_ || fd_ < 0) return;
    int err = ReactorModify(token_, fd_, writing_ ? kReadEvents | EPOLLOUT : kReadEvents);
    outArmed_ = writing_;
    if (err != 0) {
      failed_ = err;
      reading_ = writing_ = false;
    }
  }

  // Hold the loop while waiting for something, as a started uv_poll_t does;
  // a start whose edge came already runs from the reactor's idle turn.
  void Update(Napi::Env env) {
    if (fd_ < 0) return;
    ArmWritable();
    bool want = reading_ || writing_;
    if (want != held_) {
      held_ = want;
      ReactorHold(want ? 1 : -1);
    }
    if ((failed_ != 0 || (reading_ && readable_)) && !deferred_) {
      deferred_ = true;
      ReactorDefer(token_);
    }
  }

 public:
  // send(buffers, count, addresses?) -> datagrams sent (>= 0), or -errno when
  // the first one failed. Fewer than count with no error: the socket buffer is
  // full (EAGAIN); the caller keeps the rest and waits for onWritable.
  Napi::Value Send(const Napi::CallbackInfo& info, size_t base) {
    Napi::Env env = info.Env();
    if (info.Length() < base + 2 || !info[base].IsArray() || !info[base + 1].IsNumber()) {
      Napi::TypeError::New(env, "send(buffers, count, addresses?)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (fd_ < 0) return Napi::Number::New(env, -EBADF);
    Napi::Array bufs = info[base].As<Napi::Array>();
    int64_t count = info[base + 1].As<Napi::Number>().Int64Value();
    if (count < 0 || count > static_cast<int64_t>(bufs.Length())) {
      Napi::RangeError::New(env, "send: count out of range").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    bool hasAddrs = info.Length() > base + 2 && info[base + 2].IsArray();
    Napi::Array addrs = hasAddrs ? info[base + 2].As<Napi::Array>() : Napi::Array();
    mmsghdr msgs[kBatch];
    iovec iov[kBatch];
    int64_t sent = 0;
    while (sent < count) {
      int n = static_cast<int>(std::min<int64_t>(kBatch, count - sent));
      for (int i = 0; i < n; i++) {
        uint8_t* data;
        size_t len;
        Napi::Value b = bufs.Get(static_cast<uint32_t>(sent + i));
        if (!ViewOf(b, 0, &data, &len)) {
          Napi::TypeError::New(env, "send: every buffer must be a Uint8Array").ThrowAsJavaScriptException();
          return env.Undefined();
        }
        iov[i].iov_base = data;
        iov[i].iov_len = len;
        memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        if (hasAddrs) {
          Napi::Value a = addrs.Get(static_cast<uint32_t>(sent + i));
          uint8_t* ad;
          size_t alen;
          if (!ViewOf(a, 2, &ad, &alen) || alen > kAddr) {
            Napi::TypeError::New(env, "send: every address must be a sockaddr buffer").ThrowAsJavaScriptException();
            return env.Undefined();
          }
          msgs[i].msg_hdr.msg_name = ad;
          msgs[i].msg_hdr.msg_namelen = static_cast<socklen_t>(alen);
        }
      }
      int r = sys::SendMmsg(fd_, msgs, static_cast<unsigned>(n), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (r < 0) {
        int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK || sent > 0) break;  // an error after progress surfaces on the next call
        return Napi::Number::New(env, -err);
      }
      sent += r;
      if (r < n) break;
    }
    return Napi::Number::New(env, static_cast<double>(sent));
  }

  void OnEvents(Napi::Env env, uint64_t, uint32_t events) override {
    if (events == kDeferred) {
      deferred_ = false;
    } else {
      // Remember what the edge said even when nobody waits for it: it will
      // not come again.
      if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) readable_ = true;
      if ((events & EPOLLERR) != 0) errored_ = true;
    }
    if (fd_ < 0) return;
    if (failed_ != 0) {
      int err = failed_;
      failed_ = 0;
      Call(env, kOnError, Napi::String::New(env, ErrnoName(err)));
      return;
    }
    if (!(reading_ || writing_)) return;
    if (errored_) {
      // A refused connect, an ICMP error on a connected datagram socket: the
      // socket's pending error says what happened.
      errored_ = false;
      int soerr = 0;
      socklen_t len = sizeof(soerr);
      if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr != 0) {
        reading_ = writing_ = false;
        Update(env);
        Call(env, kOnError, Napi::String::New(env, ErrnoName(soerr)));
        return;
      }
    }
    if (writing_ && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) {  // kDeferred has none of these bits
      writing_ = false;  // one-shot: JavaScript re-arms it if it fills the buffer again
      Update(env);
      Call(env, kOnWritable, env.Undefined());
      if (fd_ < 0) return;
    }
    if (reading_ && readable_) {
      if (accept_) DoAccept(env);
      else DoRead(env, events != kDeferred && (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) == 0);
      // Stopped at the round limit with more to read: go on from the idle turn.
      if (fd_ >= 0 && reading_ && readable_ && !deferred_) {
        deferred_ = true;
        ReactorDefer(token_);
      }
    }
  }

 private:
  // Invoke a JavaScript callback from the reactor. MakeCallback runs the microtask
  // queue afterwards (the batched sends flush there); an exception becomes an
  // uncaught exception, as it would from any Node event handler.
  void Call(Napi::Env env, Callback which, Napi::Value arg) {
    napi_value a = arg;
    Call(env, which, 1, &a);
  }

  void Call(Napi::Env env, Callback which, size_t argc, const napi_value* args) {
    if (fd_ < 0) return;  // closed
    Deliver(env, which, argc, args);
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }

  // `shortDrains`: the edge had no error or hang-up in it, so a short batch
  // means the queue is empty (a new datagram brings a new edge), and the
  // recvmmsg that would only say EAGAIN is skipped.
  void DoRead(Napi::Env env, bool shortDrains) {
    BatchArea* a = Area(env);
    if (a == nullptr || a->slab == nullptr) {
      reading_ = false;
      Update(env);
      Call(env, kOnError, Napi::String::New(env, "ENOBUFS"));
      return;
    }
    for (int round = 0; round < kMaxRounds && reading_ && fd_ >= 0; round++) {
      for (int i = 0; i < kBatch; i++) {
        a->iov[i].iov_base = a->slab + i * kSlot;
        a->iov[i].iov_len = kSlot;
        memset(&a->msgs[i], 0, sizeof(a->msgs[i]));
        a->msgs[i].msg_hdr.msg_iov = &a->iov[i];
        a->msgs[i].msg_hdr.msg_iovlen = 1;
        a->msgs[i].msg_hdr.msg_name = a->addrs + i * kAddr;
        a->msgs[i].msg_hdr.msg_namelen = kAddr;
      }
      int n = sys::RecvMmsg(fd_, a->msgs, kBatch, MSG_DONTWAIT);
      if (n < 0) {
        int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) {
          readable_ = false;
          return;
        }
        // ECONNREFUSED and friends (ICMP errors on connected datagram
        // sockets) end this socket's session, never the process.
        reading_ = false;
        Update(env);
        Call(env, kOnError, Napi::String::New(env, ErrnoName(err)));
        return;
      }
      if (n == 0) {
        readable_ = false;
        return;
      }
      if (n < kBatch && shortDrains) readable_ = false;
      int left = n;
      uint64_t now = tap_ != nullptr ? uv_now(Loop(env)) : 0;
      for (int i = 0; i < n; i++) {
        bool trunc = (a->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        a->meta[2 * i] = trunc ? -1 : static_cast<int32_t>(a->msgs[i].msg_len);
        a->meta[2 * i + 1] = static_cast<int32_t>(a->msgs[i].msg_hdr.msg_namelen);
        if (tap_ == nullptr || trunc) continue;
        DatagramTap::Verdict v = tap_->Offer(env, a->slab + i * kSlot, a->msgs[i].msg_len, *reinterpret_cast<sockaddr_storage*>(a->addrs + i * kAddr), now);
        if (v == DatagramTap::kTaken) {
          a->meta[2 * i] = -2;
          left--;
        } else if (v == DatagramTap::kRateRefused) {
          a->meta[2 * i] = -3;
        }
        // After datagram 1, 2, 4, 8, ... of a batch that is not small, as
        // native/fdsocket.ts flushes: a batch held whole travels as one
        // convoy (bench/README.md, "the batch convoy").
        if (n > kSmallBatch && (i & (i + 1)) == 0) tap_->Flush(env);
      }
      if (tap_ != nullptr) tap_->Flush(env);
      if (left > 0) Call(env, kOnData, Napi::Number::New(env, n));
      if (n < kBatch) return;
    }
  }

  void DoAccept(Napi::Env env) {
    for (int i = 0; i < kBatch && reading_ && fd_ >= 0; i++) {
      sockaddr_storage peer;
      socklen_t plen = sizeof(peer);
      int c = accept4(fd_, addresses_ > 0 ? reinterpret_cast<sockaddr*>(&peer) : nullptr, addresses_ > 0 ? &plen : nullptr,
                      SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) {
        int err = errno;
        if (err == EINTR || err == ECONNABORTED) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) {
          readable_ = false;
          return;
        }
        // EMFILE and the like: the fd stays readable, so stop watching it and
        // let JavaScript retry later instead of spinning.
        reading_ = false;
        Update(env);
        Call(env, kOnError, Napi::String::New(env, ErrnoName(err)));
        return;
      }
      if (addresses_ == 0) {
        Call(env, kOnData, Napi::Number::New(env, c));
        continue;
      }
      int one = 1;
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // best effort, as net's noDelay
      napi_value args[5];
      args[0] = Napi::Number::New(env, c);
      SetAddress(env, peer, &args[1]);
      size_t argc = 3;
      if (addresses_ == 2) {
        sockaddr_storage local;
        socklen_t llen = sizeof(local);
        if (getsockname(c, reinterpret_cast<sockaddr*>(&local), &llen) != 0) memset(&local, 0, sizeof(local));
        SetAddress(env, local, &args[3]);
        argc = 5;
      }
      Call(env, kOnData, argc, args);
    }
  }

  // An IP address as (string, port) in out[0], out[1], as net.Socket shows it.
  static void SetAddress(Napi::Env env, const sockaddr_storage& ss, napi_value* out) {
    char buf[INET6_ADDRSTRLEN] = {0};
    int port = 0;
    IpText(ss, buf, &port);
    out[0] = Napi::String::New(env, buf);
    out[1] = Napi::Number::New(env, port);
  }

  int fd_ = -1;
  uint64_t token_ = 0;
  bool accept_ = false;
  int addresses_ = 0;  // 0: none, 1: peer, 2: peer and local
  bool reading_ = false;
  bool writing_ = false;
  bool held_ = false;      // holding the loop (ReactorHold)
  bool deferred_ = false;  // a run from the idle turn is queued
  bool readable_ = false;  // an edge said data, EOF or an error, and no read has found the socket drained since
  bool outArmed_ = false;  // EPOLLOUT is in the registration
  int failed_ = 0;         // the registration could not be changed: reported from the idle turn
  DatagramTap* tap_ = nullptr;  // takes datagrams before JavaScript (tap.h)
  bool errored_ = false;   // an edge carried EPOLLERR not yet looked into
};

// new FdSocket(fd, mode, onData, onWritable, onError): a socket with its own
// callbacks, called with the FdSocket as `this` (a listener's accept socket,
// the bench's bare proxy, tests).
class FdSocket : public Napi::ObjectWrap<FdSocket>, public FdCore {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdSocket", {
      InstanceMethod<&FdSocket::JsReadStart>("readStart"),
      InstanceMethod<&FdSocket::JsReadStop>("readStop"),
      InstanceMethod<&FdSocket::JsWatchWritable>("watchWritable"),
      InstanceMethod<&FdSocket::JsSend>("send"),
      InstanceMethod<&FdSocket::JsClose>("close"),
      InstanceAccessor<&FdSocket::JsFd>("fd"),
    });
  }

  explicit FdSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdSocket>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 5 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsFunction() || !info[3].IsFunction() ||
        !info[4].IsFunction()) {
      Napi::TypeError::New(env, "FdSocket(fd, mode, onData, onWritable, onError)").ThrowAsJavaScriptException();
      return;
    }
    int fd = info[0].As<Napi::Number>().Int32Value();
    if (fd < 0) {
      Napi::TypeError::New(env, "FdSocket: bad fd").ThrowAsJavaScriptException();
      return;
    }
    onData_ = Napi::Persistent(info[2].As<Napi::Function>());
    onWritable_ = Napi::Persistent(info[3].As<Napi::Function>());
    onError_ = Napi::Persistent(info[4].As<Napi::Function>());
    if (!Open(env, fd, info[1].As<Napi::Number>().Int32Value())) return;
    // The fd belongs to this object from here on; keep the wrapper alive while
    // the fd is open, as Node keeps a handle alive while it is active.
    Ref();
  }

 protected:
  void Deliver(Napi::Env, Callback which, size_t argc, const napi_value* args) override {
    Napi::FunctionReference& fn = which == kOnData ? onData_ : which == kOnWritable ? onWritable_ : onError_;
    ReactorCallsJs();
    if (!fn.IsEmpty()) fn.MakeCallback(Value(), argc, args);
  }

 private:
  Napi::Value JsFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd()); }

  Napi::Value JsReadStart(const Napi::CallbackInfo& info) {
    ReadStart(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value JsReadStop(const Napi::CallbackInfo& info) {
    ReadStop(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value JsWatchWritable(const Napi::CallbackInfo& info) {
    WatchWritable(info.Env(), info.Length() > 0 && info[0].ToBoolean().Value());
    return info.Env().Undefined();
  }

  Napi::Value JsSend(const Napi::CallbackInfo& info) { return Send(info, 0); }

  Napi::Value JsClose(const Napi::CallbackInfo& info) {
    if (fd() < 0) return info.Env().Undefined();
    CloseFd();
    // The callbacks close over the JavaScript side that holds this wrapper:
    // strong references kept past the close are a cycle through a GC root
    // (the socket's session would never be collected). Close may run inside
    // one of them (MakeCallback holds what it calls).
    onData_.Reset();
    onWritable_.Reset();
    onError_.Reset();
    Unref();
    return info.Env().Undefined();
  }

  Napi::FunctionReference onData_, onWritable_, onError_;
};

// A socket named by a number (fdOpen): no JavaScript object, reference or
// finalizer of its own, where a wrapped FdSocket costs three heap objects, a
// global handle and a weak callback; the gateway opens one per UDP session.
// Its callbacks are the environment's (setCallbacks), with the number first.
// fdClose frees it, or the reactor turn it is closed in.
class BareFd : public FdCore {
 public:
  explicit BareFd(uint32_t id) : id_(id) {}

  void OnEvents(Napi::Env env, uint64_t token, uint32_t events) override {
    depth_++;
    FdCore::OnEvents(env, token, events);
    if (--depth_ == 0 && dead_) delete this;  // closed from one of its own callbacks
  }

  // Closed and out of the table: free it, now or once its callback returns.
  void Release() {
    CloseFd();
    if (depth_ > 0) dead_ = true;
    else delete this;
  }

 protected:
  void Deliver(Napi::Env env, Callback which, size_t argc, const napi_value* args) override {
    BatchArea* a = Area(env);
    Napi::FunctionReference& fn =
        which == kOnData ? (accepting() ? a->onAccepted : a->onData) : which == kOnWritable ? a->onWritable : a->onError;
    napi_value all[6];
    all[0] = Napi::Number::New(env, id_);
    for (size_t i = 0; i < argc && i < 5; i++) all[i + 1] = args[i];
    ReactorCallsJs();
    fn.MakeCallback(env.Global(), argc + 1, all);
  }

 private:
  uint32_t id_;
  int depth_ = 0;      // OnEvents frames of this socket on the stack
  bool dead_ = false;  // released inside one of them
};

// The bare socket a call names (its first argument), or null with a TypeError
// pending for a number that is not one; a closed one's number names nothing.
BareFd* BareArg(const Napi::CallbackInfo& info, bool* bad) {
  *bad = false;
  BatchArea* a = Area(info.Env());
  if (info.Length() < 1 || !info[0].IsNumber() || a == nullptr) {
    Napi::TypeError::New(info.Env(), "expected a socket number from fdOpen()").ThrowAsJavaScriptException();
    *bad = true;
    return nullptr;
  }
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  return id < a->bare.size() ? a->bare[id] : nullptr;
}

// fdOpen(fd, mode) -> number: the fd (modes as FdSocket's) watched in the
// reactor, its callbacks those of setCallbacks(), called with the number.
Napi::Value FdOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  BatchArea* a = Area(env);
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber() || a == nullptr || a->onData.IsEmpty()) {
    Napi::TypeError::New(env, "fdOpen(fd, mode) after setCallbacks()").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd < 0) {
    Napi::TypeError::New(env, "fdOpen: bad fd").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint32_t id;
  if (!a->freeIds.empty()) {
    id = a->freeIds.back();
    a->freeIds.pop_back();
  } else {
    id = static_cast<uint32_t>(a->bare.size());
    a->bare.push_back(nullptr);
  }
  auto* s = new BareFd(id);
  if (!s->Open(env, fd, info[1].As<Napi::Number>().Int32Value())) {
    delete s;
    a->freeIds.push_back(id);
    return env.Undefined();
  }
  a->bare[id] = s;
  return Napi::Number::New(env, id);
}

Napi::Value FdReadStart(const Napi::CallbackInfo& info) {
  bool bad;
  BareFd* s = BareArg(info, &bad);
  if (s != nullptr) s->ReadStart(info.Env());
  return info.Env().Undefined();
}

Napi::Value FdReadStop(const Napi::CallbackInfo& info) {
  bool bad;
  BareFd* s = BareArg(info, &bad);
  if (s != nullptr) s->ReadStop(info.Env());
  return info.Env().Undefined();
}

Napi::Value FdWatchWritable(const Napi::CallbackInfo& info) {
  bool bad;
  BareFd* s = BareArg(info, &bad);
  if (s != nullptr) s->WatchWritable(info.Env(), info.Length() > 1 && info[1].ToBoolean().Value());
  return info.Env().Undefined();
}

// fdSend(number, buffers, count, addresses?): as FdSocket's send.
Napi::Value FdSend(const Napi::CallbackInfo& info) {
  bool bad;
  BareFd* s = BareArg(info, &bad);
  if (bad) return info.Env().Undefined();
  if (s == nullptr) return Napi::Number::New(info.Env(), -EBADF);
  return s->Send(info, 1);
}

// fdClose(number): closes the fd; the number may name another socket afterwards.
Napi::Value FdClose(const Napi::CallbackInfo& info) {
  bool bad;
  BareFd* s = BareArg(info, &bad);
  if (s == nullptr) return info.Env().Undefined();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  BatchArea* a = Area(info.Env());
  a->bare[id] = nullptr;
  a->freeIds.push_back(id);
  s->Release();
  return info.Env().Undefined();
}

BatchArea::~BatchArea() {
  // Environment teardown: the sockets still open close with it.
  for (BareFd* s : bare) delete s;
}

}  // namespace

int TapBareSocket(Napi::Env env, uint32_t id, DatagramTap* tap) {
  BatchArea* a = Area(env);
  BareFd* s = a != nullptr && id < a->bare.size() ? a->bare[id] : nullptr;
  if (s == nullptr || s->fd() < 0 || s->accepting() || s->tap() != nullptr) return -1;
  s->SetTap(tap);
  return s->fd();
}

void UntapBareSocket(Napi::Env env, uint32_t id, DatagramTap* tap) {
  BatchArea* a = Area(env);
  BareFd* s = a != nullptr && id < a->bare.size() ? a->bare[id] : nullptr;
  if (s != nullptr && s->tap() == tap) s->SetTap(nullptr);
}

void InitFdSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("FdSocket", FdSocket::Define(env));
  exports.Set("initBatch", Napi::Function::New(env, InitBatch, "initBatch"));
  exports.Set("setCallbacks", Napi::Function::New(env, SetCallbacks, "setCallbacks"));
  exports.Set("fdOpen", Napi::Function::New(env, FdOpen, "fdOpen"));
  exports.Set("fdReadStart", Napi::Function::New(env, FdReadStart, "fdReadStart"));
  exports.Set("fdReadStop", Napi::Function::New(env, FdReadStop, "fdReadStop"));
  exports.Set("fdWatchWritable", Napi::Function::New(env, FdWatchWritable, "fdWatchWritable"));
  exports.Set("fdSend", Napi::Function::New(env, FdSend, "fdSend"));
  exports.Set("fdClose", Napi::Function::New(env, FdClose, "fdClose"));
  Napi::Object b = Napi::Object::New(env);
  b.Set("batch", Napi::Number::New(env, kBatch));
  b.Set("slot", static_cast<double>(kSlot));
  b.Set("addr", static_cast<double>(kAddr));
  exports.Set("batchLayout", b);
}

}  // namespace l7mp
