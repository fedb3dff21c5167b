// RawStream: a TCP or Unix stream socket held below net.Socket, for the raw
// stream path (gateway/src/fastpath/raw.ts).
//
// Why: a proxied connection on net.Socket costs two Socket objects, their
// stream machinery and about 27 system calls; nginx needs 17. A session whose
// route needs no user-space bytes can go from accept4 to a Splice pair (which
// copies or splices in C) with one small object per socket and one epoll
// registration per fd (reactor.cc): the registration that waited for the
// connect is the one the Splice keeps (TakeRawStream).
//
// A RawStream either ends in a Splice (TakeRawStream), or gives its fd to
// Node (release(): a session that turned out to need the JavaScript path), or
// is closed (close(reset)).
#include "common.h"
#include "reactor.h"

#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <uv.h>

namespace l7mp {
namespace {

// How a non-blocking connect stands: true when it is over and succeeded, the
// error's code when it failed, undefined while it is in progress. A loopback
// connect is usually over by the time connect() returns (the handshake runs
// in the caller's softirq), and then the session needs no wait for an edge:
// one poll() instead of the SO_ERROR read the wait would end with.
Napi::Value ConnectState(Napi::Env env, int fd) {
  if (fd < 0) return Napi::String::New(env, ErrnoName(EBADF));
  pollfd p = {fd, POLLOUT, 0};
  int n = poll(&p, 1, 0);
  if (n < 0) return Napi::String::New(env, ErrnoName(errno));
  if (n == 0 || (p.revents & (POLLOUT | POLLERR | POLLHUP)) == 0) return env.Undefined();
  if ((p.revents & POLLERR) != 0) {
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = errno;
    return Napi::String::New(env, ErrnoName(soerr != 0 ? soerr : ECONNREFUSED));
  }
  return Napi::Boolean::New(env, true);
}

// Close a stream socket; with reset, the peer gets an RST.
void CloseStream(int fd, bool reset) {
  if (reset) ResetOnClose(fd);
  close(fd);
}

// The same for a bare fd (the raw path's sockets before a Splice takes them):
// connectedNow(fd) and closeStream(fd, reset?).
Napi::Value ConnectedNowFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "connectedNow(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return ConnectState(env, info[0].As<Napi::Number>().Int32Value());
}

Napi::Value CloseStreamFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 0) {
    Napi::TypeError::New(env, "closeStream(fd, reset?)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  CloseStream(info[0].As<Napi::Number>().Int32Value(), info.Length() > 1 && info[1].ToBoolean().Value());
  return env.Undefined();
}

// Tags RawStream objects so that TakeRawStream never unwraps anything else.
constexpr napi_type_tag kRawTag = {0x6c376d7072617731ULL, 0x73747265616d0001ULL};

class RawStream : public Napi::ObjectWrap<RawStream>, public ReactorClient {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RawStream", {
      InstanceMethod<&RawStream::ConnectedNow>("connectedNow"),
      InstanceMethod<&RawStream::WaitConnect>("waitConnect"),
      InstanceMethod<&RawStream::Release>("release"),
      InstanceMethod<&RawStream::Close>("close"),
      InstanceAccessor<&RawStream::Fd>("fd"),
    });
  }

  // new RawStream(fd): the socket (connected, or connecting) belongs to this
  // object from here on.
  explicit RawStream(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RawStream>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 0) {
      Napi::TypeError::New(env, "RawStream(fd)").ThrowAsJavaScriptException();
      return;
    }
    fd_ = info[0].As<Napi::Number>().Int32Value();
    napi_type_tag_object(env, info.This(), &kRawTag);
  }

  ~RawStream() override {
    // Collected with the fd still ours (JavaScript dropped it without close):
    // release the descriptor and its registration.
    if (fd_ >= 0) {
      ReactorForget(token_, fd_, false);
      close(fd_);
    }
  }

  // Hand the fd and its registration (token 0: none yet) to a Splice; false
  // if this stream no longer has an fd.
  bool Take(int* fd, uint64_t* token, bool* readable) {
    if (fd_ < 0) return false;
    *fd = fd_;
    *token = token_;
    *readable = readable_;
    fd_ = -1;
    token_ = 0;
    EndWait();
    return true;
  }

 private:
  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

  // connectedNow(): ConnectState of this stream's fd.
  Napi::Value ConnectedNow(const Napi::CallbackInfo& info) { return ConnectState(info.Env(), fd_); }

  // waitConnect(cb(code?)): once the non-blocking connect is over, cb gets
  // undefined (connected) or the error's code (SO_ERROR).
  Napi::Value WaitConnect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) {
      Napi::TypeError::New(env, "waitConnect(cb)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (fd_ < 0 || waiting_) {
      Napi::Error::New(env, "waitConnect: the stream is closed or already waiting").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (token_ == 0) {
      int err = 0;
      token_ = ReactorAdd(env, fd_, this, &err);
      if (token_ == 0) {
        ErrnoError(env, err, "epoll_ctl").ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
    onConnect_ = Napi::Persistent(info[0].As<Napi::Function>());
    waiting_ = true;
    Ref();  // registered: keep the wrapper until it reports
    // A connect that is over already (Unix sockets) reported its edge when
    // the socket was added; one that ends later reports one then.
    return env.Undefined();
  }

  void OnEvents(Napi::Env env, uint64_t, uint32_t events) override {
    // Edge-triggered: data (or EOF) from a peer that speaks first is left
    // for the Splice, which is told to read at start.
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) readable_ = true;
    if (!waiting_ || (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    int err = 0;
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) err = errno;
    else if (soerr != 0) err = soerr;
    else if ((events & EPOLLERR) != 0) err = ECONNREFUSED;
    Napi::Object recv = Value();  // a handle: keeps the wrapper alive through the call
    Napi::FunctionReference cb = std::move(onConnect_);
    EndWait();
    ReactorCallsJs();
    cb.MakeCallback(recv, {err != 0 ? Napi::Value(Napi::String::New(env, ErrnoName(err))) : env.Undefined()});
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }

  void EndWait() {
    if (!waiting_) return;
    waiting_ = false;
    onConnect_.Reset();
    Unref();
  }

  // release() -> fd: Node takes the socket over (net.Socket({ fd })).
  Napi::Value Release(const Napi::CallbackInfo& info) {
    int fd = fd_;
    ReactorForget(token_, fd_, true);  // the fd stays open: out of our set before libuv adds it to its own
    token_ = 0;
    EndWait();
    fd_ = -1;
    return Napi::Number::New(info.Env(), fd);
  }

  // close(reset?): with reset, SO_LINGER 0 first, so the peer gets an RST.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (fd_ >= 0) {
      ReactorForget(token_, fd_, false);
      token_ = 0;
      CloseStream(fd_, info.Length() > 0 && info[0].ToBoolean().Value());  // takes it out of the epoll set
      fd_ = -1;
    }
    EndWait();
    return info.Env().Undefined();
  }

  int fd_ = -1;
  uint64_t token_ = 0;
  bool waiting_ = false;
  bool readable_ = false;
  Napi::FunctionReference onConnect_;
};

Napi::Value Fail(Napi::Env env, int fd, int err, const char* syscall, const std::string& what) {
  if (fd >= 0) close(fd);
  ErrnoError(env, err, syscall, what).ThrowAsJavaScriptException();
  return env.Undefined();
}

// connectStream(host, port, bindHost?, bindPort?) -> fd, or
// connectStream(path, -1) for a Unix stream socket. The connect is
// non-blocking (EINPROGRESS is normal: waitConnect says how it ended); TCP
// sockets get TCP_NODELAY, as the net.Socket path sets noDelay.
Napi::Value ConnectStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "connectStream(host, port, bindHost?, bindPort?)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string target = info[0].As<Napi::String>().Utf8Value();
  int port = info[1].As<Napi::Number>().Int32Value();
  if (port < 0) {
    sockaddr_un sa;
    socklen_t len;
    if (!UnixAddr(target, &sa, &len) || target.empty()) return Fail(env, -1, ENAMETOOLONG, "connect", target);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Fail(env, -1, errno, "socket", target);
    // A Unix connect completes at once or fails (EAGAIN: the backlog is full), as in libuv.
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0 && errno != EINPROGRESS) return Fail(env, fd, errno, "connect", target);
    return Napi::Number::New(env, fd);
  }
  sockaddr_storage ss;
  socklen_t len;
  if (port > 65535 || !InetAddr(target, port, &ss, &len)) return Fail(env, -1, EINVAL, "connect", target);
  // The error's detail, spelled out only for an error.
  auto what = [&target, port]() { return target + ":" + std::to_string(port); };
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    return Fail(env, -1, e, "socket", what());
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // best effort, as Node's setNoDelay
  bool hasBindHost = info.Length() > 2 && info[2].IsString();
  int bindPort = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 0;
  if (hasBindHost || bindPort > 0) {
    std::string bh = hasBindHost ? info[2].As<Napi::String>().Utf8Value() : (ss.ss_family == AF_INET6 ? "::" : "0.0.0.0");
    sockaddr_storage bs;
    socklen_t blen;
    if (bindPort < 0 || bindPort > 65535 || !InetAddr(bh, bindPort, &bs, &blen)) return Fail(env, fd, EINVAL, "bind", bh);
    if (bind(fd, reinterpret_cast<sockaddr*>(&bs), blen) != 0) {
      int e = errno;
      return Fail(env, fd, e, "bind", bh + ":" + std::to_string(bindPort));
    }
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
    int e = errno;
    return Fail(env, fd, e, "connect", what());
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

void ResetOnClose(int fd) {
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

bool TakeRawStream(Napi::Value v, int* fd, uint64_t* token, bool* readable) {
  if (!v.IsObject()) return false;
  bool tagged = false;
  if (napi_check_object_type_tag(v.Env(), v, &kRawTag, &tagged) != napi_ok || !tagged) return false;
  RawStream* r = RawStream::Unwrap(v.As<Napi::Object>());
  return r != nullptr && r->Take(fd, token, readable);
}

void InitRawStream(Napi::Env env, Napi::Object exports) {
  exports.Set("RawStream", RawStream::Define(env));
  exports.Set("connectStream", Napi::Function::New(env, ConnectStream, "connectStream"));
  exports.Set("connectedNow", Napi::Function::New(env, ConnectedNowFd, "connectedNow"));
  exports.Set("closeStream", Napi::Function::New(env, CloseStreamFd, "closeStream"));
}

}  // namespace l7mp
