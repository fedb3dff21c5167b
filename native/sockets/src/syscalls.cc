// Plain system calls the TypeScript side composes into sockets: create, bind,
// connect, listen, mkfifo. Each checks its arguments and every return value and
// throws a Node-style system error; none can crash the process on bad input.
#include "common.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace l7mp {

// A sockaddr_un from a path. An empty path means "autobind" (Linux assigns an
// abstract name), so that a datagram client can receive replies without a file.
bool UnixAddr(const std::string& path, sockaddr_un* sa, socklen_t* len) {
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  if (path.size() >= sizeof(sa->sun_path)) return false;
  if (path.find('\0') != std::string::npos && path[0] != '\0') return false;
  memcpy(sa->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path.empty() || path[0] == '\0' ? 0 : 1));
  return true;
}

bool InetAddr(const std::string& host, int port, sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof(*ss));
  auto* v4 = reinterpret_cast<sockaddr_in*>(ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

// Dotted quad into buf (at least 16 bytes): glibc's inet_ntop formats IPv4
// with sprintf, which was a visible part of accepting a connection.
static void FormatIPv4(uint32_t a, char* buf) {
  char* p = buf;
  for (int shift = 24; shift >= 0; shift -= 8) {
    unsigned v = (a >> shift) & 255;
    if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
    if (v >= 10) *p++ = static_cast<char>('0' + (v / 10) % 10);
    *p++ = static_cast<char>('0' + v % 10);
    *p++ = shift > 0 ? '.' : '\0';
  }
}

bool IpText(const sockaddr_storage& ss, char* buf, int* port) {
  if (ss.ss_family == AF_INET) {
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&ss);
    FormatIPv4(ntohl(v4->sin_addr.s_addr), buf);
    *port = ntohs(v4->sin_port);
    return true;
  }
  if (ss.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (inet_ntop(AF_INET6, &v6->sin6_addr, buf, INET6_ADDRSTRLEN) == nullptr) buf[0] = '\0';
    *port = ntohs(v6->sin6_port);
    return true;
  }
  return false;
}

namespace {

bool ArgInt(const Napi::CallbackInfo& info, size_t i, int64_t min, int64_t max, int64_t* out) {
  if (info.Length() <= i || !info[i].IsNumber()) return false;
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max)) || d != static_cast<double>(static_cast<int64_t>(d))) return false;
  *out = static_cast<int64_t>(d);
  return true;
}

Napi::Value TypeErr(Napi::Env env, const char* what) {
  Napi::TypeError::New(env, what).ThrowAsJavaScriptException();
  return env.Undefined();
}

// socket(family, type, protocol): always non-blocking and close-on-exec, so a
// forked STDIO program never inherits the gateway's sockets.
Napi::Value Socket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t family, type, proto;
  if (!ArgInt(info, 0, 0, 255, &family) || !ArgInt(info, 1, 0, 255, &type) || !ArgInt(info, 2, 0, 65535, &proto)) {
    return TypeErr(env, "socket(family, type, protocol): integers expected");
  }
  int fd = socket(static_cast<int>(family), static_cast<int>(type) | SOCK_NONBLOCK | SOCK_CLOEXEC, static_cast<int>(proto));
  if (fd < 0) {
    ErrnoError(env, errno, "socket").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, 0, INT32_MAX, &fd)) return TypeErr(env, "close(fd): fd expected");
  // EINTR on Linux still releases the fd: never retry close().
  if (close(static_cast<int>(fd)) != 0 && errno != EINTR) {
    ErrnoError(env, errno, "close").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value BindOrConnectUnix(const Napi::CallbackInfo& info, bool connectIt) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, 0, INT32_MAX, &fd) || info.Length() < 2 || !info[1].IsString()) {
    return TypeErr(env, "(fd, path): fd and path expected");
  }
  std::string path = info[1].As<Napi::String>().Utf8Value();
  sockaddr_un sa;
  socklen_t len;
  if (!UnixAddr(path, &sa, &len)) {
    ErrnoError(env, ENAMETOOLONG, connectIt ? "connect" : "bind", path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int r;
  do {
    r = connectIt ? connect(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&sa), len)
                  : bind(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&sa), len);
  } while (r != 0 && errno == EINTR && !connectIt);
  if (r != 0) {
    ErrnoError(env, errno, connectIt ? "connect" : "bind", path).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value BindUnix(const Napi::CallbackInfo& info) { return BindOrConnectUnix(info, false); }
Napi::Value ConnectUnix(const Napi::CallbackInfo& info) { return BindOrConnectUnix(info, true); }

// bindInet(fd, host, port, reuseAddr, reusePort): SO_REUSEPORT lets every
// worker bind its own socket to one address; the kernel then spreads TCP
// connections and UDP 4-tuples over the group (docs/workers.md).
Napi::Value BindInet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, port;
  if (!ArgInt(info, 0, 0, INT32_MAX, &fd) || info.Length() < 3 || !info[1].IsString() || !ArgInt(info, 2, 0, 65535, &port)) {
    return TypeErr(env, "bindInet(fd, host, port, reuseAddr): arguments expected");
  }
  std::string host = info[1].As<Napi::String>().Utf8Value();
  sockaddr_storage ss;
  socklen_t len;
  if (!InetAddr(host, static_cast<int>(port), &ss, &len)) {
    ErrnoError(env, EINVAL, "bind", host).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info.Length() > 3 && info[3].ToBoolean().Value()) {
    int one = 1;
    if (setsockopt(static_cast<int>(fd), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
      ErrnoError(env, errno, "setsockopt", "SO_REUSEADDR").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  if (info.Length() > 4 && info[4].ToBoolean().Value()) {
    int one = 1;
    if (setsockopt(static_cast<int>(fd), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
      ErrnoError(env, errno, "setsockopt", "SO_REUSEPORT").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  if (bind(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    ErrnoError(env, errno, "bind", host + ":" + std::to_string(port)).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// connectInet(fd, host, port): for datagram sockets this only sets the peer.
Napi::Value ConnectInet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, port;
  if (!ArgInt(info, 0, 0, INT32_MAX, &fd) || info.Length() < 3 || !info[1].IsString() || !ArgInt(info, 2, 0, 65535, &port)) {
    return TypeErr(env, "connectInet(fd, host, port): arguments expected");
  }
  std::string host = info[1].As<Napi::String>().Utf8Value();
  sockaddr_storage ss;
  socklen_t len;
  if (!InetAddr(host, static_cast<int>(port), &ss, &len)) {
    ErrnoError(env, EINVAL, "connect", host).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (connect(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
    ErrnoError(env, errno, "connect", host + ":" + std::to_string(port)).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// {family, address, port} | {family:'unix', path} of a socket address.
Napi::Object AddressObject(Napi::Env env, const sockaddr_storage& ss, socklen_t len) {
  Napi::Object o = Napi::Object::New(env);
  char buf[INET6_ADDRSTRLEN] = {0};
  int port = 0;
  if (IpText(ss, buf, &port)) {
    o.Set("family", ss.ss_family == AF_INET ? "IPv4" : "IPv6");
    o.Set("address", buf);
    o.Set("port", port);
  } else if (ss.ss_family == AF_UNIX) {
    auto* un = reinterpret_cast<const sockaddr_un*>(&ss);
    size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    // Abstract names start with NUL; report them with a leading '@' as ss(8) does.
    std::string path(un->sun_path, n);
    if (!path.empty() && path[0] == '\0') path[0] = '@';
    else path = std::string(path.c_str());
    o.Set("family", "unix");
    o.Set("path", path);
  } else {
    o.Set("family", Napi::Number::New(env, ss.ss_family));
  }
  return o;
}

// localAddress(fd) / peerAddress(fd) -> {family, address, port} | {family:'unix', path}
Napi::Value SockAddress(const Napi::CallbackInfo& info, bool peer) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, 0, INT32_MAX, &fd)) return TypeErr(env, peer ? "peerAddress(fd): fd expected" : "localAddress(fd): fd expected");
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  int r = peer ? getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&ss), &len)
               : getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&ss), &len);
  if (r != 0) {
    ErrnoError(env, errno, peer ? "getpeername" : "getsockname").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return AddressObject(env, ss, len);
}

Napi::Value LocalAddress(const Napi::CallbackInfo& info) { return SockAddress(info, false); }

// localPort(fd) -> the bound port of an IPv4 or IPv6 socket: a number, not an
// address object and its strings (the UDP port quarantine asks once per session).
Napi::Value LocalPort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, 0, INT32_MAX, &fd)) return TypeErr(env, "localPort(fd): fd expected");
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    ErrnoError(env, errno, "getsockname").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (ss.ss_family == AF_INET) return Napi::Number::New(env, ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port));
  if (ss.ss_family == AF_INET6) return Napi::Number::New(env, ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port));
  return TypeErr(env, "localPort(fd): not an IP socket");
}
Napi::Value PeerAddress(const Napi::CallbackInfo& info) { return SockAddress(info, true); }

// socketError(fd) -> the pending error's code (SO_ERROR; how a non-blocking
// connect ended), or undefined when there is none.
Napi::Value SocketError(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!ArgInt(info, 0, 0, INT32_MAX, &fd)) return TypeErr(env, "socketError(fd): fd expected");
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == 0) return env.Undefined();
  return Napi::String::New(env, ErrnoName(err));
}

Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, backlog;
  if (!ArgInt(info, 0, 0, INT32_MAX, &fd) || !ArgInt(info, 1, 1, 65535, &backlog)) return TypeErr(env, "listen(fd, backlog)");
  if (listen(static_cast<int>(fd), static_cast<int>(backlog)) != 0) ErrnoError(env, errno, "listen").ThrowAsJavaScriptException();
  return env.Undefined();
}

// shutdown(fd, how): 1 = no more sends (half-close), 2 = both.
Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, how;
  if (!ArgInt(info, 0, 0, INT32_MAX, &fd) || !ArgInt(info, 1, 0, 2, &how)) return TypeErr(env, "shutdown(fd, how)");
  if (shutdown(static_cast<int>(fd), static_cast<int>(how)) != 0 && errno != ENOTCONN) {
    ErrnoError(env, errno, "shutdown").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// bindPacket(fd, ifname, ethertype): bind an AF_PACKET socket to one
// interface. Outgoing frames are ignored, or the gateway would read back
// every frame it sends.
Napi::Value BindPacket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, proto;
  if (!ArgInt(info, 0, 0, INT32_MAX, &fd) || info.Length() < 2 || !info[1].IsString() || !ArgInt(info, 2, 0, 65535, &proto)) {
    return TypeErr(env, "bindPacket(fd, ifname, ethertype)");
  }
  std::string ifname = info[1].As<Napi::String>().Utf8Value();
  if (ifname.empty() || ifname.size() >= IF_NAMESIZE) {
    ErrnoError(env, EINVAL, "if_nametoindex", ifname).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  unsigned idx = if_nametoindex(ifname.c_str());
  if (idx == 0) {
    ErrnoError(env, errno, "if_nametoindex", ifname).ThrowAsJavaScriptException();
    return env.Undefined();
  }
#ifdef PACKET_IGNORE_OUTGOING
  int one = 1;
  if (setsockopt(static_cast<int>(fd), SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) != 0) {
    ErrnoError(env, errno, "setsockopt", "PACKET_IGNORE_OUTGOING").ThrowAsJavaScriptException();
    return env.Undefined();
  }
#endif
  sockaddr_ll sll;
  memset(&sll, 0, sizeof(sll));
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(static_cast<uint16_t>(proto));
  sll.sll_ifindex = static_cast<int>(idx);
  if (bind(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
    ErrnoError(env, errno, "bind", ifname).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// mkfifo(path, mode) -> true if created, false if a FIFO is already there.
Napi::Value MkFifo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t mode;
  if (info.Length() < 2 || !info[0].IsString() || !ArgInt(info, 1, 0, 07777, &mode)) return TypeErr(env, "mkfifo(path, mode)");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.empty() || path.find('\0') != std::string::npos) {
    ErrnoError(env, EINVAL, "mkfifo", path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (mkfifo(path.c_str(), static_cast<mode_t>(mode)) == 0) return Napi::Boolean::New(env, true);
  int err = errno;
  struct stat st;
  if (err == EEXIST && lstat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode)) return Napi::Boolean::New(env, false);
  ErrnoError(env, err, "mkfifo", path).ThrowAsJavaScriptException();
  return env.Undefined();
}

// setBuffers(fd, rcvbuf, sndbuf): 0 leaves a size alone.
Napi::Value SetBuffers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd, rcv, snd;
  if (!ArgInt(info, 0, 0, INT32_MAX, &fd) || !ArgInt(info, 1, 0, 1 << 30, &rcv) || !ArgInt(info, 2, 0, 1 << 30, &snd)) {
    return TypeErr(env, "setBuffers(fd, rcvbuf, sndbuf)");
  }
  int r = static_cast<int>(rcv), s = static_cast<int>(snd);
  if (r > 0 && setsockopt(static_cast<int>(fd), SOL_SOCKET, SO_RCVBUF, &r, sizeof(r)) != 0) {
    ErrnoError(env, errno, "setsockopt", "SO_RCVBUF").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (s > 0 && setsockopt(static_cast<int>(fd), SOL_SOCKET, SO_SNDBUF, &s, sizeof(s)) != 0) {
    ErrnoError(env, errno, "setsockopt", "SO_SNDBUF").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// sctpProbe() -> undefined when the kernel can open an SCTP socket, else why not.
Napi::Value SctpProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_SCTP);
  if (fd >= 0) {
    close(fd);
    return env.Undefined();
  }
  int err = errno;
  if (err == EPROTONOSUPPORT || err == ESOCKTNOSUPPORT || err == EAFNOSUPPORT) {
    return Napi::String::New(env, "SCTP not supported by this kernel (no sctp module: socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) gives " + std::string(ErrnoName(err)) + ")");
  }
  return Napi::String::New(env, std::string("SCTP socket failed: ") + ErrnoName(err) + " (" + strerror(err) + ")");
}

}  // namespace

void InitSyscalls(Napi::Env env, Napi::Object exports) {
  exports.Set("socket", Napi::Function::New(env, Socket, "socket"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("bindUnix", Napi::Function::New(env, BindUnix, "bindUnix"));
  exports.Set("connectUnix", Napi::Function::New(env, ConnectUnix, "connectUnix"));
  exports.Set("bindInet", Napi::Function::New(env, BindInet, "bindInet"));
  exports.Set("connectInet", Napi::Function::New(env, ConnectInet, "connectInet"));
  exports.Set("localAddress", Napi::Function::New(env, LocalAddress, "localAddress"));
  exports.Set("localPort", Napi::Function::New(env, LocalPort, "localPort"));
  exports.Set("peerAddress", Napi::Function::New(env, PeerAddress, "peerAddress"));
  exports.Set("socketError", Napi::Function::New(env, SocketError, "socketError"));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
  exports.Set("listen", Napi::Function::New(env, Listen, "listen"));
  exports.Set("bindPacket", Napi::Function::New(env, BindPacket, "bindPacket"));
  exports.Set("mkfifo", Napi::Function::New(env, MkFifo, "mkfifo"));
  exports.Set("setBuffers", Napi::Function::New(env, SetBuffers, "setBuffers"));
  exports.Set("sctpProbe", Napi::Function::New(env, SctpProbe, "sctpProbe"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("AF_UNIX", Napi::Number::New(env, AF_UNIX));
  c.Set("AF_INET", Napi::Number::New(env, AF_INET));
  c.Set("AF_INET6", Napi::Number::New(env, AF_INET6));
  c.Set("AF_PACKET", Napi::Number::New(env, AF_PACKET));
  c.Set("SOCK_STREAM", Napi::Number::New(env, SOCK_STREAM));
  c.Set("SOCK_DGRAM", Napi::Number::New(env, SOCK_DGRAM));
  c.Set("SOCK_SEQPACKET", Napi::Number::New(env, SOCK_SEQPACKET));
  c.Set("SOCK_RAW", Napi::Number::New(env, SOCK_RAW));
  c.Set("IPPROTO_SCTP", Napi::Number::New(env, IPPROTO_SCTP));
  c.Set("ETH_P_ALL", Napi::Number::New(env, ETH_P_ALL));
  exports.Set("constants", c);
}

}  // namespace l7mp
