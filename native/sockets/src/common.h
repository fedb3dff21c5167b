// Shared helpers for the sockets addon: errno-carrying JS errors.
#pragma once
#include <napi.h>
#include <cstdint>
#include <string>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

namespace l7mp {

// The system calls of the per-connection, per-chunk and per-batch paths
// (pair.cc, forward.cc, fdsock.cc), made directly. glibc's wrappers for these are cancellation
// points, and in a process with threads (Node's) each call then pays two
// atomic updates of the thread's cancel state: 1.3 % of the CPU of a TCP
// ping-pong. Nothing in the addon is ever cancelled. Results as the libc
// calls': -1 with errno.
namespace sys {
inline ssize_t Read(int fd, void* buf, size_t n) { return syscall(SYS_read, fd, buf, n); }
inline ssize_t Write(int fd, const void* buf, size_t n) { return syscall(SYS_write, fd, buf, n); }
inline ssize_t Send(int fd, const void* buf, size_t n, int flags) { return syscall(SYS_sendto, fd, buf, n, flags, nullptr, 0); }
inline ssize_t Splice(int in, int out, size_t n, unsigned flags) { return syscall(SYS_splice, in, nullptr, out, nullptr, n, flags); }
inline int Accept4(int fd, sockaddr* sa, socklen_t* len, int flags) { return static_cast<int>(syscall(SYS_accept4, fd, sa, len, flags)); }
inline int Connect(int fd, const sockaddr* sa, socklen_t len) { return static_cast<int>(syscall(SYS_connect, fd, sa, len)); }
inline int Close(int fd) { return static_cast<int>(syscall(SYS_close, fd)); }
inline int SendMmsg(int fd, mmsghdr* v, unsigned n, int flags) { return static_cast<int>(syscall(SYS_sendmmsg, fd, v, n, flags)); }
inline int RecvMmsg(int fd, mmsghdr* v, unsigned n, int flags) { return static_cast<int>(syscall(SYS_recvmmsg, fd, v, n, flags, nullptr)); }
}  // namespace sys

// A JS Error shaped like Node's system errors (code, errno, syscall), so the
// TypeScript side can map it the same way it maps net/dgram errors.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& detail = "");

// The libuv-style name of an errno ("ENOENT"), for codes returned on the hot
// path as negative numbers instead of exceptions.
const char* ErrnoName(int err);

// Socket addresses from strings (syscalls.cc): a Unix path (empty: autobind)
// or a numeric IPv4/IPv6 host. false: the string is not one.
bool UnixAddr(const std::string& path, sockaddr_un* sa, socklen_t* len);
bool InetAddr(const std::string& host, int port, sockaddr_storage* ss, socklen_t* len);
// And back (syscalls.cc): an IPv4 or IPv6 address's text into buf (at least
// INET6_ADDRSTRLEN bytes) and its port. false: another family.
bool IpText(const sockaddr_storage& ss, char* buf, int* port);

// The next close() of this stream socket sends an RST, not a FIN
// (SO_LINGER 0; rawstream.cc): a reset passed on must not read as a
// complete stream. Best effort.
void ResetOnClose(int fd);

// A RawStream's fd and its reactor registration, handed over to a Splice
// (rawstream.cc): the RawStream lets go of both; token 0: not registered yet.
// *readable: an edge that may mean data or EOF was reported to the RawStream
// (edge-triggered, it will not come again).
bool TakeRawStream(Napi::Value v, int* fd, uint64_t* token, bool* readable);

void InitRawStream(Napi::Env env, Napi::Object exports);
void InitSyscalls(Napi::Env env, Napi::Object exports);
void InitFdSocket(Napi::Env env, Napi::Object exports);
void InitSplice(Napi::Env env, Napi::Object exports);
void InitForwarder(Napi::Env env, Napi::Object exports);
void InitUdpForwarder(Napi::Env env, Napi::Object exports);

}  // namespace l7mp
