// Splice: kernel zero-copy forwarding between two connected stream sockets
// (TCP or Unix), for the gateway's bulk ("elephant") byte-stream sessions.
//
// Why: on the JavaScript path every byte is copied into a fresh 64 KiB
// buffer, through Node's stream machinery, and copied out again. Here each
// direction moves socket -> pipe -> socket with splice(2), so the payload
// never enters user space and nothing is allocated per chunk; JavaScript is
// called once, when the session is over.
//
// How it fits the loop: the sockets are dup()s of the fds Node had (the
// caller closes its own copies right after), or RawStreams' fds, each in the
// reactor's edge-triggered epoll set (reactor.cc); the bytes move as pair.h
// says. Both directions finished, or an error on either socket, closes
// everything and calls onDone(code | undefined, side). Byte and read counts
// are read synchronously by counts(), so JavaScript counters are exact
// whenever they are read, with no per-chunk callback.
#include "common.h"
#include "pair.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

namespace l7mp {
namespace {

class Splice : public Napi::ObjectWrap<Splice>, public Pair {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Splice", {
      InstanceMethod<&Splice::Prime>("prime"),
      InstanceMethod<&Splice::Space>("space"),
      InstanceMethod<&Splice::Start>("start"),
      InstanceMethod<&Splice::Counts>("counts"),
      InstanceMethod<&Splice::Close>("close"),
      InstanceAccessor<&Splice::State>("state"),
    });
  }

  // new Splice(fdA, fdB, onDone(code?: string, side: 0 | 1 | -1))
  // Duplicates fdA and fdB (the caller keeps and closes its own) and makes
  // one pipe per direction (0: A -> B, 1: B -> A). Nothing moves until start().
  //
  // new Splice(rawA, rawB, onDone): two RawStreams (rawstream.cc), taken over
  // with their fds and registrations: no dup, and no pipe until a direction
  // needs one (copy mode below).
  //
  // new Splice(a, b, onDone, true): each of a and b is a RawStream or a bare
  // stream fd (connected, never registered) that the pair owns from here on,
  // even when the constructor throws: the raw path hands accepted sockets and
  // upstreams connected at once over as numbers, without a wrapped object
  // (and its reference and finalizer) per socket.
  explicit Splice(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Splice>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[2].IsFunction()) {
      Napi::TypeError::New(env, "Splice(fdA, fdB, onDone)").ThrowAsJavaScriptException();
      return;
    }
    onDone_ = Napi::Persistent(info[2].As<Napi::Function>());
    if (info.Length() > 3 && info[3].ToBoolean().Value()) {
      if (!TakeOwned(env, info)) return;
    } else if (info[0].IsObject() && info[1].IsObject()) {
      if (!TakeRaw(env, info[0], info[1])) return;
    } else if (!DupFds(env, info)) {
      return;
    }
    int err = Register(env);
    if (err != 0) {
      ErrnoError(env, err, "epoll_ctl").ThrowAsJavaScriptException();
      return;
    }
    // Registered from here on: the wrapper must not be collected before
    // close() or the end of the pair releases the sockets.
    Ref();
  }

  bool DupFds(Napi::Env env, const Napi::CallbackInfo& info) {
    if (!info[0].IsNumber() || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "Splice(fdA, fdB, onDone)").ThrowAsJavaScriptException();
      return false;
    }
    int fds[2] = {info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value()};
    if (fds[0] < 0 || fds[1] < 0 || fds[0] == fds[1]) {
      Napi::TypeError::New(env, "Splice: bad fd").ThrowAsJavaScriptException();
      return false;
    }
    for (int i = 0; i < 2; i++) {
      // F_DUPFD_CLOEXEC: a forked child (STDIO-fork clusters) must not keep
      // the connection open.
      int d = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
      if (d < 0) return Fail(env, errno, "fcntl(F_DUPFD_CLOEXEC)"), false;
      side_[i].fd = d;
      int fl = fcntl(d, F_GETFL);
      if (fl < 0 || ((fl & O_NONBLOCK) == 0 && fcntl(d, F_SETFL, fl | O_NONBLOCK) < 0)) return Fail(env, errno, "fcntl(O_NONBLOCK)"), false;
      int e = MakePipe(dir_[i]);
      if (e != 0) return Fail(env, e, "pipe2"), false;
    }
    return true;
  }

  bool TakeOwned(Napi::Env env, const Napi::CallbackInfo& info) {
    // Take both sides before anything can fail, so that Fail() closes both.
    bool ok[2];
    for (int i = 0; i < 2; i++) {
      Napi::Value v = info[i];
      if (v.IsNumber()) {
        int fd = v.As<Napi::Number>().Int32Value();
        ok[i] = fd >= 0;
        if (ok[i]) side_[i].fd = fd;
      } else {
        ok[i] = TakeRawStream(v, &side_[i].fd, &side_[i].token, &side_[i].readable);
      }
    }
    if (!ok[0] || !ok[1] || side_[0].fd == side_[1].fd) {
      if (ok[0] && ok[1]) side_[1].fd = -1;  // the same fd twice: close it once
      Fail(env, EBADF, "Splice(owned)");
      return false;
    }
    return true;
  }

  bool TakeRaw(Napi::Env env, Napi::Value a, Napi::Value b) {
    uint64_t ta = 0, tb = 0;
    int fa = -1, fb = -1;
    // Both or neither: a RawStream taken here is ours to close.
    if (!TakeRawStream(a, &fa, &ta, &side_[0].readable)) {
      Napi::TypeError::New(env, "Splice: the first RawStream is closed or not a RawStream").ThrowAsJavaScriptException();
      return false;
    }
    side_[0].fd = fa;
    side_[0].token = ta;
    if (!TakeRawStream(b, &fb, &tb, &side_[1].readable)) {
      Fail(env, EBADF, "Splice(RawStream)");
      return false;
    }
    side_[1].fd = fb;
    side_[1].token = tb;
    return true;
  }

 private:
  void Fail(Napi::Env env, int err, const char* syscall) {
    Release();
    state_ = kFailed;
    ErrnoError(env, err, syscall).ThrowAsJavaScriptException();
  }

  // prime(dir, chunk) -> bytes queued (all of chunk) or -errno.
  // Data JavaScript read but had not forwarded yet goes into that direction's
  // pipe first, so byte order is kept across the handover.
  Napi::Value Prime(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsTypedArray()) {
      Napi::TypeError::New(env, "prime(dir, chunk)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int d = info[0].As<Napi::Number>().Int32Value();
    if (d != 0 && d != 1) {
      Napi::RangeError::New(env, "prime: dir must be 0 or 1").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (state_ != kReady || dir_[d].pw < 0) return Napi::Number::New(env, -EBADF);
    Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
    const uint8_t* p = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    size_t len = ta.ByteLength();
    if (dir_[d].inPipe + len > dir_[d].cap) return Napi::Number::New(env, -ENOSPC);
    size_t off = 0;
    while (off < len) {
      ssize_t n = write(dir_[d].pw, p + off, len - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Napi::Number::New(env, n < 0 ? -errno : -EIO);
      off += static_cast<size_t>(n);
    }
    dir_[d].inPipe += len;
    return Napi::Number::New(env, static_cast<double>(len));
  }

  // space(dir) -> bytes prime() can still queue in that direction's pipe.
  Napi::Value Space(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int d = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
    if (d != 0 && d != 1) {
      Napi::RangeError::New(env, "space: dir must be 0 or 1").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Number::New(env, state_ == kReady ? static_cast<double>(dir_[d].cap - dir_[d].inPipe) : 0);
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (state_ != kReady) return env.Undefined();
    Begin(env);
    return env.Undefined();
  }

  // counts(out: Float64Array(4)): [bytes A->B, reads A->B, bytes B->A, reads B->A]
  Napi::Value Counts(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
        info[0].As<Napi::TypedArray>().ElementLength() < 4) {
      Napi::TypeError::New(env, "counts(Float64Array(4))").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Float64Array out = info[0].As<Napi::Float64Array>();
    out[0] = dir_[0].bytes;
    out[1] = dir_[0].reads;
    out[2] = dir_[1].bytes;
    out[3] = dir_[1].reads;
    return env.Undefined();
  }

  // close(reset?): stop at once and close both sockets (an abort: what is
  // still in the pipes is dropped). With reset, SO_LINGER 0 first, so both
  // peers get an RST rather than a FIN that would read as a complete stream.
  // No onDone call. Safe to call any time, repeatedly.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    bool held = state_ == kReady || state_ == kActive;
    if (info.Length() > 0 && info[0].ToBoolean().Value()) {
      for (auto& s : side_) if (s.fd >= 0) ResetOnClose(s.fd);
    }
    Release();
    if (state_ != kFailed) state_ = kDone;
    // The callback closes over the JavaScript side that holds this wrapper:
    // a strong reference kept past the end is a cycle through a GC root, and
    // the session it reaches would never be collected.
    onDone_.Reset();
    if (held) Unref();
    return info.Env().Undefined();
  }

  Napi::Value State(const Napi::CallbackInfo& info) {
    static const char* names[] = {"failed", "ready", "active", "done"};
    return Napi::String::New(info.Env(), names[state_]);
  }

  // The pair is over (Pair::Finish released it): tell JavaScript once.
  void Ended(Napi::Env env, int err, int side) override {
    Napi::Value code = err != 0 ? Napi::String::New(env, ErrnoName(err)) : env.Undefined();
    // Released by the end of this call (see Close): the callback reaches the
    // wrapper through the JavaScript side, and must not outlive the pair.
    Napi::FunctionReference done = std::move(onDone_);
    // MakeCallback: microtasks run afterwards, as after any Node event. A
    // throw becomes an uncaught exception, as from any event handler.
    ReactorCallsJs();
    done.MakeCallback(Value(), {code, Napi::Number::New(env, side)});
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
    Unref();  // last: JavaScript may drop its last reference in the callback
  }

  Napi::FunctionReference onDone_;
};

}  // namespace

void InitSplice(Napi::Env env, Napi::Object exports) {
  exports.Set("Splice", Splice::Define(env));
}

}  // namespace l7mp
