// Pair: what moves the bytes between two connected stream sockets (TCP or
// Unix) in C, for the JavaScript-facing Splice (splice.cc) and for the
// Forwarder (forward.cc), which pairs the sockets it accepts and connects
// itself, with no JavaScript object per connection.
//
// Each direction moves socket -> socket through one process-wide buffer
// (copy mode: two system calls per chunk) and, once a write is short or a
// read fills the buffer (a bulk transfer), socket -> pipe -> socket with
// splice(2). Per direction the pair knows how many bytes sit in its pipe, so
// EAGAIN is never ambiguous about "pipe full" against "socket empty": a
// direction waits either for its source to be readable (pipe empty) or for
// its destination to be writable (pipe not empty), and every wait ends in
// EAGAIN, so the next edge of the reactor's edge-triggered epoll set comes.
// EOF from a source, once its pipe is drained, becomes shutdown(SHUT_WR) on
// the destination (half-close); the other direction carries on. Both
// directions finished, or an error on either socket, releases everything and
// calls Ended() once. Byte and read counts are kept per direction.
//
// Errors end this pair only: every system call's result is checked.
#pragma once
#include "reactor.h"

#include <cstddef>
#include <cstdint>

namespace l7mp {

class Pair : public ReactorClient {
 public:
  enum StateKind { kFailed, kReady, kActive, kDone };

  ~Pair() override;

 protected:
  struct Side {
    int fd = -1;
    uint64_t token = 0;     // the reactor registration
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

  // A pipe for direction x; 0 or the errno.
  static int MakePipe(Dir& x);
  // Register the sides not registered yet (a RawStream's registration is
  // rebound instead). 0, or the errno (the pair is released then).
  int Register(Napi::Env env);
  // Move what is already there (primed bytes, data whose edge came before the
  // pair took the socket) and go on from the reactor's events.
  void Begin(Napi::Env env);
  // Leave the reactor and close every fd the pair owns (idempotent).
  void Release();
  // The pair is over: release everything, then Ended() once.
  void Finish(Napi::Env env, int err, int side);
  // The pair has ended: cleanly (err 0: both directions passed EOF on) or
  // with errno `err` on socket `side`. Everything is released already.
  virtual void Ended(Napi::Env env, int err, int side) = 0;

  void OnEvents(Napi::Env env, uint64_t token, uint32_t events) override;

  StateKind state_ = kFailed;
  bool deferred_ = false;
  Side side_[2];
  Dir dir_[2];

 private:
  bool Pump(int d, uint32_t events, int* err, int* side);
  bool Copy(int d, uint32_t events, int* err, int* side);
  bool PassEof(int d, int* err, int* side);
  bool SplicePipe(int d, int* err, int* side);
  void Settle(Napi::Env env);
};

}  // namespace l7mp
