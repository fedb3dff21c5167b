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
// reactor's edge-triggered epoll set (reactor.cc). Per direction we keep how
// many bytes sit in its pipe, so EAGAIN from splice() is never ambiguous
// about "pipe full" vs "socket empty": a direction waits either for its
// source to be readable (pipe empty) or for its destination to be writable
// (pipe not empty), and every wait ends in EAGAIN, so the next edge comes. EOF
// from a source, once its pipe is drained, becomes shutdown(SHUT_WR) on the
// destination (half-close); the other direction carries on. Both directions
// finished, or an error on either socket, closes everything and calls
// onDone(code | undefined, side). Byte and read counts are kept per direction
// and read synchronously by counts(), so JavaScript counters are exact
// whenever they are read, with no per-chunk callback.
//
// Errors end this pair only: every syscall result is checked, and nothing
// here throws after construction.
#include "common.h"
#include "reactor.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

namespace l7mp {
namespace {

// Pipe size asked for with F_SETPIPE_SZ: fewer, larger splices per wakeup.
// Unprivileged users past fs.pipe-user-pages-soft get EPERM; the default
// pipe (64 KiB) is then used as is.
constexpr int kPipeSize = 256 * 1024;
// Bytes one direction may move per event before yielding to the loop (the
// reactor runs the pair again on a later turn: Defer).
constexpr size_t kBudget = 1024 * 1024;
// Copy mode's buffer (one per process): what one read() may take.
constexpr size_t kCopyChunk = 64 * 1024;

class Splice : public Napi::ObjectWrap<Splice>, public ReactorClient {
  struct Dir;

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
    for (int i = 0; i < 2; i++) {
      if (side_[i].token != 0) {
        ReactorRebind(side_[i].token, this);
        continue;
      }
      int err = 0;
      side_[i].token = ReactorAdd(env, side_[i].fd, this, &err);
      if (side_[i].token == 0) {
        Fail(env, err, "epoll_ctl");
        return;
      }
    }
    state_ = kReady;
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

  // A pipe for direction d; 0 or the errno.
  static int MakePipe(Dir& x) {
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) return errno;
    x.pr = p[0];
    x.pw = p[1];
    fcntl(p[1], F_SETPIPE_SZ, kPipeSize);  // best effort, see kPipeSize
    int sz = fcntl(p[1], F_GETPIPE_SZ);
    x.cap = sz > 0 ? static_cast<size_t>(sz) : 65536;
    return 0;
  }

  ~Splice() override {
    // Only reached with resources left at environment teardown (an active
    // pair holds a reference): release the fds, leave the loop alone.
    for (auto& s : side_) if (s.fd >= 0) close(s.fd);
    for (auto& d : dir_) {
      if (d.pr >= 0) close(d.pr);
      if (d.pw >= 0) close(d.pw);
    }
  }

 private:
  enum StateKind { kFailed, kReady, kActive, kDone };
  struct Side {
    int fd = -1;
    uint64_t token = 0;  // the reactor registration
    bool readable = false;  // an edge for data or EOF came before we registered
  };
  struct Dir {
    int pr = -1, pw = -1;
    size_t cap = 0;
    size_t inPipe = 0;  // bytes spliced into the pipe and not yet out of it
    bool eof = false;   // the source sent FIN
    bool shut = false;  // EOF passed on: shutdown(SHUT_WR) on the destination
    bool wantRead = false, wantWrite = false;
    bool more = false;  // stopped at the budget with work left: run again from the reactor
    double bytes = 0, reads = 0;  // doubles: exact to 2^53, what JavaScript reads anyway
  };

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
    state_ = kActive;
    // Move what is already there: primed bytes, and data whose edge went to
    // a RawStream before the pair took its socket over. A socket this pair
    // added to the reactor needs nothing here: adding it reported whatever
    // was ready, as an event on the next loop turn.
    for (int i = 0; i < 2 && state_ == kActive; i++) {
      int err = 0, side = -1;
      if ((dir_[i].inPipe > 0 || side_[i].readable) && !Pump(i, 0, &err, &side)) return Finish(env, err, side), env.Undefined();
    }
    Settle(env);
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

  // Move bytes for direction d until both ends would block, EOF has been
  // passed on, or the budget is spent. false: an error, *side tells whose.
  // `events`: what the reactor reported for the source (0: none, read until
  // EAGAIN).
  bool Pump(int d, uint32_t events, int* err, int* side) {
    Dir& x = dir_[d];
    x.wantRead = x.wantWrite = x.more = false;
    if (x.shut) return true;
    return x.pr < 0 ? Copy(d, events, err, side) : SplicePipe(d, err, side);
  }

  // Copy mode (a direction without a pipe, RawStream pairs): read into one
  // process-wide buffer and write it straight out; two system calls per
  // chunk, like splice, without the pipe's four descriptors per session.
  // A write the destination cannot take whole, or a full buffer (a bulk
  // transfer), moves the direction to a pipe for good: the rest of the chunk
  // goes into the fresh pipe (it fits: a pipe holds at least 64 KiB).
  //
  // A short read after an edge with no hang-up in it has drained the socket:
  // more data, or the FIN, brings a new edge, so the read that would only
  // say EAGAIN is skipped (nginx does the same with EPOLLRDHUP).
  bool Copy(int d, uint32_t events, int* err, int* side) {
    bool drainedOnShort = events != 0 && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0;
    static uint8_t buf[kCopyChunk];
    Dir& x = dir_[d];
    int src = side_[d].fd, dst = side_[1 - d].fd;
    size_t moved = 0;
    for (;;) {
      if (x.eof) return PassEof(d, err, side);
      if (moved >= kBudget) {
        x.wantRead = x.more = true;
        return true;
      }
      ssize_t n = read(src, buf, sizeof(buf));
      if (n == 0) {
        x.eof = true;
        continue;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          x.wantRead = true;
          return true;
        }
        *err = errno;
        *side = d;
        return false;
      }
      x.bytes += static_cast<double>(n);
      x.reads++;
      moved += static_cast<size_t>(n);
      size_t done = 0;
      while (done < static_cast<size_t>(n)) {
        ssize_t w = send(dst, buf + done, static_cast<size_t>(n) - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
          done += static_cast<size_t>(w);
          continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        *err = w < 0 ? errno : EIO;
        *side = 1 - d;
        return false;
      }
      if (done == static_cast<size_t>(n) && static_cast<size_t>(n) < sizeof(buf)) {
        if (drainedOnShort) {
          x.wantRead = true;
          return true;
        }
        continue;
      }
      int e = MakePipe(x);
      if (e != 0) {
        if (done == static_cast<size_t>(n)) continue;  // nothing held: stay in copy mode
        *err = e;
        *side = d;
        return false;
      }
      for (size_t off = done; off < static_cast<size_t>(n);) {
        ssize_t w = write(x.pw, buf + off, static_cast<size_t>(n) - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          *err = w < 0 ? errno : EIO;
          *side = d;
          return false;
        }
        off += static_cast<size_t>(w);
        x.inPipe += static_cast<size_t>(w);
      }
      return SplicePipe(d, err, side);
    }
  }

  // The source's EOF, once nothing is held for the destination, becomes a
  // half-close (shutdown(SHUT_WR)) of the destination.
  bool PassEof(int d, int* err, int* side) {
    Dir& x = dir_[d];
    bool blocked = x.inPipe > 0;
    // The other direction is over too: closing both sockets (Finish) sends
    // this FIN; a shutdown first would be one more system call for nothing.
    if (!blocked && dir_[1 - d].shut) {
      x.shut = true;
      return true;
    }
    if (!blocked) {
      // ENOTCONN: the peer is gone already; the other direction will see it.
      if (shutdown(side_[1 - d].fd, SHUT_WR) < 0 && errno != ENOTCONN) {
        *err = errno;
        *side = 1 - d;
        return false;
      }
      x.shut = true;
    }
    x.wantWrite = blocked;
    return true;
  }

  bool SplicePipe(int d, int* err, int* side) {
    Dir& x = dir_[d];
    int src = side_[d].fd, dst = side_[1 - d].fd;
    size_t moved = 0;
    for (;;) {
      while (x.inPipe > 0) {
        ssize_t n = splice(x.pr, nullptr, dst, nullptr, x.inPipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          x.inPipe -= static_cast<size_t>(n);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        *err = n < 0 ? errno : EIO;
        *side = 1 - d;
        return false;
      }
      bool blocked = x.inPipe > 0;
      if (x.eof) return PassEof(d, err, side);
      if (blocked && x.inPipe >= x.cap) {
        x.wantWrite = true;
        return true;
      }
      if (moved >= kBudget) {
        x.wantRead = !blocked;
        x.wantWrite = blocked;
        x.more = true;
        return true;
      }
      ssize_t n = splice(src, nullptr, x.pw, nullptr, x.cap - x.inPipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        x.inPipe += static_cast<size_t>(n);
        x.bytes += static_cast<double>(n);
        x.reads++;
        moved += static_cast<size_t>(n);
        continue;
      }
      if (n == 0) {
        x.eof = true;
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        // Pipe not empty: the destination is blocked, and the pipe may be out
        // of slots rather than the socket out of data; wait for writable and
        // read again after draining (watching a readable source here would spin).
        x.wantRead = !blocked;
        x.wantWrite = blocked;
        return true;
      }
      *err = errno;
      *side = d;
      return false;
    }
  }

  // After pumping: finish when both directions are done; a direction that
  // stopped at its budget runs again on a later loop turn.
  void Settle(Napi::Env env) {
    if (state_ != kActive) return;
    if (dir_[0].shut && dir_[1].shut) return Finish(env, 0, -1);
    if ((dir_[0].more || dir_[1].more) && !deferred_) {
      deferred_ = true;
      ReactorDefer(side_[0].token);
    }
  }

  void OnEvents(Napi::Env env, uint64_t token, uint32_t events) override {
    if (state_ != kActive) return;  // before start(): start() reads until EAGAIN
    int err = 0, side = -1;
    if (events == kDeferred) {
      deferred_ = false;
      for (int d = 0; d < 2 && state_ == kActive; d++) {
        if (dir_[d].more && !Pump(d, 0, &err, &side)) return Finish(env, err, side);
      }
      return Settle(env);
    }
    int i = token == side_[0].token ? 0 : 1;
    bool hup = (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) != 0;
    // Readable (or hung up): the direction this socket feeds, unless it waits
    // for its destination. Writable: the direction it drains, if that waits.
    if (((events & EPOLLIN) != 0 || hup) && !dir_[i].wantWrite && !Pump(i, events, &err, &side)) return Finish(env, err, side);
    if (((events & EPOLLOUT) != 0 || hup) && dir_[1 - i].wantWrite && !Pump(1 - i, 0, &err, &side)) return Finish(env, err, side);
    Settle(env);
  }

  // Leave the reactor and close every fd we own (idempotent). Closing a
  // socket takes it out of the epoll set (it was never dup()ed after being
  // added).
  void Release() {
    for (auto& s : side_) {
      ReactorForget(s.token, s.fd, false);
      s.token = 0;
      if (s.fd >= 0) close(s.fd);
      s.fd = -1;
    }
    for (auto& d : dir_) {
      if (d.pr >= 0) close(d.pr);
      if (d.pw >= 0) close(d.pw);
      d.pr = d.pw = -1;
      d.inPipe = 0;
    }
  }

  // The pair is over: release everything, then tell JavaScript once.
  void Finish(Napi::Env env, int err, int side) {
    if (state_ != kActive) return;
    // A peer that reset its connection gets the other peer reset too, as the
    // JavaScript path does (stream/channel.ts): a FIN would read as a
    // complete stream.
    if ((err == ECONNRESET || err == EPIPE) && (side == 0 || side == 1) && side_[1 - side].fd >= 0) ResetOnClose(side_[1 - side].fd);
    Release();
    state_ = kDone;
    Napi::Value code = err != 0 ? Napi::String::New(env, ErrnoName(err)) : env.Undefined();
    // Released by the end of this call (see Close): the callback reaches the
    // wrapper through the JavaScript side, and must not outlive the pair.
    Napi::FunctionReference done = std::move(onDone_);
    // MakeCallback: microtasks run afterwards, as after any Node event. A
    // throw becomes an uncaught exception, as from any event handler.
    done.MakeCallback(Value(), {code, Napi::Number::New(env, side)});
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
    Unref();  // last: JavaScript may drop its last reference in the callback
  }

  StateKind state_ = kFailed;
  bool deferred_ = false;
  Side side_[2];
  Dir dir_[2];
  Napi::FunctionReference onDone_;
};

}  // namespace

void InitSplice(Napi::Env env, Napi::Object exports) {
  exports.Set("Splice", Splice::Define(env));
}

}  // namespace l7mp
