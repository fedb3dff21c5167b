// A tap on a datagram socket of fdsock.cc: what the addon's UDP flow table
// (udpfwd.cc) takes of a listener socket's datagrams before JavaScript sees
// the batch. Datagrams it takes are marked in the batch (length -2) and
// skipped by JavaScript, those it refuses for their source's flow rate are
// marked -3 for JavaScript to count; a batch it takes whole makes no
// JavaScript call.
#pragma once
#include <napi.h>
#include <cstdint>
#include <sys/socket.h>

namespace l7mp {

class DatagramTap {
 public:
  virtual ~DatagramTap() = default;
  enum Verdict { kPass, kTaken, kRateRefused };
  // One datagram of the batch: kPass leaves it to JavaScript.
  virtual Verdict Offer(Napi::Env env, const uint8_t* data, size_t len, const sockaddr_storage& from, uint64_t nowMs) = 0;
  // Send what was taken so far (during a large batch, and at its end).
  virtual void Flush(Napi::Env) {}
  // The socket closed (its fd is gone): the tap may not use it any more.
  virtual void TapClosed() = 0;
};

// Tap the bare socket `id` (fdOpen): its fd, or -1 when the number names no
// open data socket (or one tapped already). UntapBareSocket undoes it.
int TapBareSocket(Napi::Env env, uint32_t id, DatagramTap* tap);
void UntapBareSocket(Napi::Env env, uint32_t id, DatagramTap* tap);

}  // namespace l7mp
