// ReuseportGroup: the main process's handle on one shared UDP listener's
// SO_REUSEPORT group (offload/reuseport_flows.bpf.c, docs/workers.md).
//
// The workers own the group's sockets; the main process, which outlives
// them, owns the program and its maps. A worker reports the fd number of
// its socket; add() takes a duplicate of it from the worker (pidfd_open +
// pidfd_getfd), checks that it really is that listener's socket, puts it in
// the worker's slot of the socket array, attaches the program to the group
// through it, and closes the duplicate. The kernel empties the slot by itself
// when the worker's socket closes (its death included), so a dead worker
// never holds a slot.
//
// Every call is a handful of syscalls, made when a worker binds a listener,
// never per packet.

#include "reuseport.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "reuseport_flows.h"

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif

namespace {

// Marks our objects, so that a shareWith argument is checked before it is unwrapped.
const napi_type_tag kGroupTag = {0x6c376d70a1b2c3d4ULL, 0x72657573e5f60718ULL};

Napi::Value Fail(Napi::Env env, const std::string& what, int err) {
  if (err < 0) err = -err;
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// Closes a descriptor when it goes out of scope: every path of add() drops its duplicate.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

class ReuseportGroup : public Napi::ObjectWrap<ReuseportGroup> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ReuseportGroup", {
      InstanceMethod("add", &ReuseportGroup::Add),
      InstanceMethod("live", &ReuseportGroup::Live),
      InstanceMethod("close", &ReuseportGroup::Close),
    });
  }

  // new ReuseportGroup(objectPath, workers, shareWith?): load the selector
  // with one socket slot per worker. With shareWith (an open group) its
  // record of displaced flows is shared: keys are 4-tuple hashes, distinct
  // across listeners, so one table bounds the memory of all of them.
  explicit ReuseportGroup(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ReuseportGroup>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "ReuseportGroup(objectPath: string, workers: number, shareWith?: ReuseportGroup)").ThrowAsJavaScriptException();
      return;
    }
    info.This().As<Napi::Object>().TypeTag(&kGroupTag);
    int shareFd = -1;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      Napi::Object other = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object();
      ReuseportGroup* g = !other.IsEmpty() && other.CheckTypeTag(&kGroupTag) ? Unwrap(other) : nullptr;
      if (g == nullptr || !g->obj_) {
        Napi::TypeError::New(env, "ReuseportGroup(): shareWith must be an open ReuseportGroup").ThrowAsJavaScriptException();
        return;
      }
      shareFd = g->flowsFd_;
    }
    std::string path = info[0].As<Napi::String>().Utf8Value();
    int64_t workers = info[1].As<Napi::Number>().Int64Value();
    if (workers < 1 || workers > L7MP_RP_MAX_WORKERS) {
      Napi::RangeError::New(env, "workers must be 1.." + std::to_string(L7MP_RP_MAX_WORKERS)).ThrowAsJavaScriptException();
      return;
    }
    workers_ = static_cast<__u32>(workers);
    bpf_object* obj = bpf_object__open_file(path.c_str(), nullptr);
    int err = libbpf_get_error(obj);
    if (err) {
      Fail(env, "cannot open " + path, err);
      return;
    }
    obj_.reset(obj);
    bpf_program* prog = bpf_object__find_program_by_name(obj, "l7mp_reuseport_select");
    bpf_map* socks = bpf_object__find_map_by_name(obj, "l7mp_rp_socks");
    bpf_map* flows = bpf_object__find_map_by_name(obj, "l7mp_rp_flows");
    bpf_map* conf = bpf_object__find_map_by_name(obj, "l7mp_rp_conf");
    if (!prog || !socks || !flows || !conf) {
      Release();
      Fail(env, path + " lacks the l7mp_reuseport_select program or its maps", ENOENT);
      return;
    }
    bpf_map__set_max_entries(socks, workers_);
    if (shareFd >= 0 && (err = bpf_map__reuse_fd(flows, shareFd))) {
      Release();
      Fail(env, "cannot share the displaced-flow table", err);
      return;
    }
    err = bpf_object__load(obj);
    if (err) {
      Release();
      Fail(env, "cannot load " + path + " (needs CAP_BPF or CAP_SYS_ADMIN, and a kernel with SK_REUSEPORT programs)", err);
      return;
    }
    progFd_ = bpf_program__fd(prog);
    socksFd_ = bpf_map__fd(socks);
    confFd_ = bpf_map__fd(conf);
    flowsFd_ = bpf_map__fd(flows);
    __u32 zero = 0;
    if (bpf_map_update_elem(confFd_, &zero, &workers_, BPF_ANY)) {
      err = errno;
      Release();
      Fail(env, "cannot set the worker count", err);
    }
  }

  ~ReuseportGroup() override { Release(); }

 private:
  struct ObjectCloser {
    void operator()(bpf_object* o) const { bpf_object__close(o); }
  };
  std::unique_ptr<bpf_object, ObjectCloser> obj_;
  int progFd_ = -1;
  int socksFd_ = -1;
  int confFd_ = -1;
  int flowsFd_ = -1;
  __u32 workers_ = 0;

  void Release() {
    obj_.reset();
    progFd_ = socksFd_ = confFd_ = flowsFd_ = -1;
  }

  static Napi::Value Closed(Napi::Env env) {
    Napi::Error::New(env, "the reuseport group is closed").ThrowAsJavaScriptException();
    return env.Undefined();
  }

  // add(pid, fd, slot, address, port): put worker `pid`'s socket `fd` (a UDP
  // socket bound to address:port with SO_REUSEPORT) into `slot` and make
  // the selector the group's. The fd number comes over IPC and the worker
  // may have closed and reused it since: anything but that listener's socket
  // is refused before it is touched.
  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!obj_) return Closed(env);
    if (info.Length() < 5 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsString() || !info[4].IsNumber()) {
      Napi::TypeError::New(env, "add(pid: number, fd: number, slot: number, address: string, port: number)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int pid = info[0].As<Napi::Number>().Int32Value();
    int fd = info[1].As<Napi::Number>().Int32Value();
    int64_t slot = info[2].As<Napi::Number>().Int64Value();
    std::string address = info[3].As<Napi::String>().Utf8Value();
    int64_t port = info[4].As<Napi::Number>().Int64Value();
    struct in_addr want;
    if (pid <= 0 || fd < 0 || slot < 0 || slot >= workers_ || port <= 0 || port > 65535 || inet_pton(AF_INET, address.c_str(), &want) != 1) {
      Napi::RangeError::New(env, "add(): bad pid, fd, slot, IPv4 address or port").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::string who = "worker " + std::to_string(pid) + " fd " + std::to_string(fd);
    Fd pidfd, dup;
    pidfd.fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (pidfd.fd < 0) return Fail(env, "pidfd_open(" + std::to_string(pid) + ")", errno);
    dup.fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.fd, fd, 0));
    if (dup.fd < 0) return Fail(env, "cannot take " + who + " (pidfd_getfd; needs ptrace access to the worker)", errno);

    int type = 0, reuse = 0;
    socklen_t len = sizeof(type);
    struct sockaddr_in local;
    socklen_t alen = sizeof(local);
    memset(&local, 0, sizeof(local));
    if (getsockopt(dup.fd, SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_DGRAM ||
        (len = sizeof(reuse), getsockopt(dup.fd, SOL_SOCKET, SO_REUSEPORT, &reuse, &len)) || !reuse ||
        getsockname(dup.fd, reinterpret_cast<struct sockaddr*>(&local), &alen) || local.sin_family != AF_INET ||
        local.sin_port != htons(static_cast<uint16_t>(port)) || local.sin_addr.s_addr != want.s_addr)
      return Fail(env, who + " is not the SO_REUSEPORT UDP socket of " + address + ":" + std::to_string(port), EBADF);

    __u32 key = static_cast<__u32>(slot);
    __u64 value = static_cast<__u64>(dup.fd);
    if (bpf_map_update_elem(socksFd_, &key, &value, BPF_ANY)) return Fail(env, "cannot put " + who + " into slot " + std::to_string(slot), errno);
    // Attached through every member: attaching again is harmless, and a
    // group that was emptied and formed anew gets the program back.
    if (setsockopt(dup.fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &progFd_, sizeof(progFd_)))
      return Fail(env, "cannot attach the selector to the group of " + address + ":" + std::to_string(port), errno);
    return env.Undefined();
  }

  // live() -> how many slots hold a socket (the kernel empties a closed socket's slot).
  Napi::Value Live(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!obj_) return Closed(env);
    uint32_t n = 0;
    for (__u32 i = 0; i < workers_; i++) {
      __u64 cookie;
      if (bpf_map_lookup_elem(socksFd_, &i, &cookie) == 0) n++;
    }
    return Napi::Number::New(env, n);
  }

  // close(): the selector stops choosing (a worker count of 0: the kernel's
  // own pick applies to the group again), and the program and maps are
  // released here. A group that still has the program attached keeps it
  // until its last socket closes.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    __u32 zero = 0;
    if (obj_) bpf_map_update_elem(confFd_, &zero, &zero, BPF_ANY);
    Release();
    return info.Env().Undefined();
  }
};

}  // namespace

void InitReuseport(Napi::Env env, Napi::Object exports) {
  exports.Set("ReuseportGroup", ReuseportGroup::Init(env));
}
