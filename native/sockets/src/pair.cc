// The engine of Splice and Forwarder pairs (pair.h says how it moves bytes).
#include "pair.h"

#include "common.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

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

}  // namespace

Pair::~Pair() {
  // Only reached with resources left at environment teardown (an active
  // pair is kept alive by its owner): release the fds, leave the loop alone.
  for (auto& s : side_) if (s.fd >= 0) close(s.fd);
  for (auto& d : dir_) {
    if (d.pr >= 0) close(d.pr);
    if (d.pw >= 0) close(d.pw);
  }
}

int Pair::Register(Napi::Env env) {
  for (int i = 0; i < 2; i++) {
    if (side_[i].token != 0) {
      ReactorRebind(side_[i].token, this);
      continue;
    }
    int err = 0;
    side_[i].token = ReactorAdd(env, side_[i].fd, this, &err);
    if (side_[i].token == 0) {
      Release();
      state_ = kFailed;
      return err;
    }
  }
  state_ = kReady;
  return 0;
}

void Pair::Begin(Napi::Env env) {
  if (state_ != kReady) return;
  state_ = kActive;
  // A socket this pair added to the reactor needs nothing here: adding it
  // reported whatever was ready, as an event on the next loop turn.
  for (int i = 0; i < 2 && state_ == kActive; i++) {
    int err = 0, side = -1;
    if ((dir_[i].inPipe > 0 || side_[i].readable) && !Pump(i, 0, &err, &side)) return Finish(env, err, side);
  }
  Settle(env);
}

void Pair::Finish(Napi::Env env, int err, int side) {
  if (state_ != kActive) return;
  // A peer that reset its connection gets the other peer reset too, as the
  // JavaScript path does (stream/channel.ts): a FIN would read as a
  // complete stream.
  if ((err == ECONNRESET || err == EPIPE) && (side == 0 || side == 1) && side_[1 - side].fd >= 0) ResetOnClose(side_[1 - side].fd);
  Release();
  state_ = kDone;
  Ended(env, err, side);
}

// A pipe for direction d; 0 or the errno.
int Pair::MakePipe(Dir& x) {
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) return errno;
  x.pr = p[0];
  x.pw = p[1];
  fcntl(p[1], F_SETPIPE_SZ, kPipeSize);  // best effort, see kPipeSize
  int sz = fcntl(p[1], F_GETPIPE_SZ);
  x.cap = sz > 0 ? static_cast<size_t>(sz) : 65536;
  return 0;
}

// Move bytes for direction d until both ends would block, EOF has been
// passed on, or the budget is spent. false: an error, *side tells whose.
// `events`: what the reactor reported for the source (0: none, read until
// EAGAIN).
bool Pair::Pump(int d, uint32_t events, int* err, int* side) {
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
bool Pair::Copy(int d, uint32_t events, int* err, int* side) {
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
    ssize_t n = sys::Read(src, buf, sizeof(buf));
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
      ssize_t w = sys::Send(dst, buf + done, static_cast<size_t>(n) - done, MSG_NOSIGNAL | MSG_DONTWAIT);
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
      ssize_t w = sys::Write(x.pw, buf + off, static_cast<size_t>(n) - off);
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
bool Pair::PassEof(int d, int* err, int* side) {
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

bool Pair::SplicePipe(int d, int* err, int* side) {
  Dir& x = dir_[d];
  int src = side_[d].fd, dst = side_[1 - d].fd;
  size_t moved = 0;
  for (;;) {
    while (x.inPipe > 0) {
      ssize_t n = sys::Splice(x.pr, dst, x.inPipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
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
    ssize_t n = sys::Splice(src, x.pw, x.cap - x.inPipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
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
void Pair::Settle(Napi::Env env) {
  if (state_ != kActive) return;
  if (dir_[0].shut && dir_[1].shut) return Finish(env, 0, -1);
  if ((dir_[0].more || dir_[1].more) && !deferred_) {
    deferred_ = true;
    ReactorDefer(side_[0].token);
  }
}

void Pair::OnEvents(Napi::Env env, uint64_t token, uint32_t events) {
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
void Pair::Release() {
  for (auto& s : side_) {
    ReactorForget(s.token, s.fd, false);
    s.token = 0;
    if (s.fd >= 0) sys::Close(s.fd);
    s.fd = -1;
  }
  for (auto& d : dir_) {
    if (d.pr >= 0) sys::Close(d.pr);
    if (d.pw >= 0) sys::Close(d.pw);
    d.pr = d.pw = -1;
    d.inPipe = 0;
  }
}

}  // namespace l7mp
