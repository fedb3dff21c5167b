// l7mp_bpf: the gateway's handle on the tc-bpf UDP fast path (offload/).
//
// Loads offload/build/udp_offload.bpf.o with libbpf, attaches its program at
// the clsact ingress hook of interfaces (bpf_tc_*), and edits the flow table
// (add, remove, read counters). Every call is a short synchronous syscall, so
// nothing here runs on a worker thread: the gateway calls it at session
// setup and teardown and when it reads counters, never per packet.
//
// Errors become JavaScript exceptions that carry errno text and, for a failed
// load, the tail of libbpf's log (which holds the verifier's reason).

#include <napi.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>
#include <unistd.h>

#include "reuseport.h"
#include "udp_offload.h"

namespace {

// Priority and handle of our tc filter. Fixed, so that a restarted gateway
// replaces its predecessor's filter instead of stacking a second one; other
// filters on the same hook (other priorities) are left alone.
constexpr __u32 kTcPriority = 0x7a7;
constexpr __u32 kTcHandle = 0x7a7;

// libbpf's log of the current call; the tail goes into error messages.
std::string g_log;

int CollectLog(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[1024];
  int n = vsnprintf(buf, sizeof(buf), fmt, args);
  if (n > 0) {
    g_log.append(buf, static_cast<size_t>(n) < sizeof(buf) ? static_cast<size_t>(n) : sizeof(buf) - 1);
    if (g_log.size() > 8192) g_log.erase(0, g_log.size() - 8192);
  }
  return 0;
}

std::string LogTail() {
  std::string tail = g_log.size() > 1500 ? g_log.substr(g_log.size() - 1500) : g_log;
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  return tail;
}

Napi::Value Fail(Napi::Env env, const std::string& what, int err) {
  std::string msg = what + ": " + strerror(err < 0 ? -err : err);
  std::string tail = LogTail();
  if (!tail.empty()) msg += "\nlibbpf: " + tail;
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("errno", Napi::Number::New(env, err < 0 ? -err : err));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value TypeFail(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

// {address: "a.b.c.d", port: n} fields of a JS object, into network order.
bool ReadAddr(Napi::Object o, const char* addrKey, const char* portKey, __u32* addr, __u16* port) {
  Napi::Value a = o.Get(addrKey);
  Napi::Value p = o.Get(portKey);
  if (!a.IsString() || !p.IsNumber()) return false;
  std::string s = a.As<Napi::String>().Utf8Value();
  struct in_addr in;
  if (inet_pton(AF_INET, s.c_str(), &in) != 1) return false;
  int64_t n = p.As<Napi::Number>().Int64Value();
  if (n < 0 || n > 65535) return false;
  *addr = in.s_addr;
  *port = htons(static_cast<__u16>(n));
  return true;
}

bool ReadKey(Napi::Value v, l7mp_flow_key* key) {
  if (!v.IsObject()) return false;
  memset(key, 0, sizeof(*key));
  Napi::Object o = v.As<Napi::Object>();
  key->proto = IPPROTO_UDP;
  return ReadAddr(o, "srcAddr", "srcPort", &key->saddr, &key->sport) &&
         ReadAddr(o, "dstAddr", "dstPort", &key->daddr, &key->dport);
}

class Program : public Napi::ObjectWrap<Program> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Program", {
      InstanceMethod("attach", &Program::Attach),
      InstanceMethod("detach", &Program::Detach),
      InstanceMethod("add", &Program::Add),
      InstanceMethod("remove", &Program::Remove),
      InstanceMethod("read", &Program::Read),
      InstanceMethod("count", &Program::Count),
      InstanceMethod("mapFd", &Program::MapFd),
      InstanceMethod("removeOwner", &Program::RemoveOwner),
      InstanceMethod("close", &Program::Close),
    });
  }

  // new Program(objectPath): open and load (verify) the BPF object.
  // new Program(mapFd): the flow table only, from a map fd this process
  // inherited (a worker: the main process loaded and attached the program).
  explicit Program(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Program>(info) {
    Napi::Env env = info.Env();
    if (info.Length() >= 1 && info[0].IsNumber()) {
      int fd = info[0].As<Napi::Number>().Int32Value();
      struct bpf_map_info mi;
      __u32 len = sizeof(mi);
      memset(&mi, 0, sizeof(mi));
      // Check that it is our table before trusting its layout.
      if (bpf_obj_get_info_by_fd(fd, &mi, &len)) {
        Fail(env, "fd " + std::to_string(fd) + " is not a BPF map", errno);
        return;
      }
      if (mi.key_size != sizeof(l7mp_flow_key) || mi.value_size != sizeof(l7mp_flow_value)) {
        Fail(env, "fd " + std::to_string(fd) + " is not an l7mp flow table (key/value sizes differ)", EINVAL);
        return;
      }
      mapFd_ = fd;
      ownsMapFd_ = true;
      return;
    }
    if (info.Length() < 1 || !info[0].IsString()) {
      TypeFail(env, "Program(objectPath: string | mapFd: number)");
      return;
    }
    std::string path = info[0].As<Napi::String>().Utf8Value();
    g_log.clear();
    obj_ = bpf_object__open_file(path.c_str(), nullptr);
    int err = libbpf_get_error(obj_);
    if (err) {
      obj_ = nullptr;
      Fail(env, "cannot open " + path, err);
      return;
    }
    err = bpf_object__load(obj_);
    if (err) {
      Fail(env, "cannot load " + path + " (verifier, privileges or kernel support)", err);
      bpf_object__close(obj_);
      obj_ = nullptr;
      return;
    }
    bpf_program* prog = bpf_object__find_program_by_name(obj_, "l7mp_udp_offload");
    bpf_map* map = bpf_object__find_map_by_name(obj_, "l7mp_flows");
    if (!prog || !map) {
      Fail(env, path + " lacks the l7mp_udp_offload program or the l7mp_flows map", ENOENT);
      bpf_object__close(obj_);
      obj_ = nullptr;
      return;
    }
    progFd_ = bpf_program__fd(prog);
    mapFd_ = bpf_map__fd(map);
  }

  ~Program() override { Release(); }

 private:
  bpf_object* obj_ = nullptr;
  int progFd_ = -1;
  int mapFd_ = -1;
  // Opened from an inherited map fd: closed by us; otherwise libbpf's.
  bool ownsMapFd_ = false;

  void Release() {
    if (obj_) bpf_object__close(obj_);
    if (ownsMapFd_ && mapFd_ >= 0) close(mapFd_);
    obj_ = nullptr;
    ownsMapFd_ = false;
    progFd_ = mapFd_ = -1;
  }

  // The flow table is there (a loaded object, or an inherited map).
  bool Open(Napi::Env env) {
    if (mapFd_ >= 0) return true;
    Napi::Error::New(env, "the offload program is closed").ThrowAsJavaScriptException();
    return false;
  }

  // attach(ifindex) -> {created}: create the clsact qdisc if missing, then
  // put our filter at ingress (replacing our own earlier one).
  Napi::Value Attach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsNumber()) return TypeFail(env, "attach(ifindex: number)");
    if (!obj_) return Fail(env, "attach(): this handle holds the flow table only, not the program", EINVAL);
    int ifindex = info[0].As<Napi::Number>().Int32Value();
    g_log.clear();
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    int err = bpf_tc_hook_create(&hook);
    bool created = err == 0;
    if (err && err != -EEXIST) return Fail(env, "cannot create the clsact qdisc on ifindex " + std::to_string(ifindex), err);
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = progFd_, .flags = BPF_TC_F_REPLACE, .handle = kTcHandle,
                .priority = kTcPriority);
    err = bpf_tc_attach(&hook, &opts);
    if (err) return Fail(env, "cannot attach the program at ingress of ifindex " + std::to_string(ifindex), err);
    Napi::Object r = Napi::Object::New(env);
    r.Set("created", Napi::Boolean::New(env, created));
    return r;
  }

  // detach(ifindex, destroyQdisc): remove our filter; remove the clsact
  // qdisc too only when we created it (it may hold other filters).
  Napi::Value Detach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) return TypeFail(env, "detach(ifindex: number, destroyQdisc?: boolean)");
    int ifindex = info[0].As<Napi::Number>().Int32Value();
    bool destroy = info.Length() > 1 && info[1].ToBoolean().Value();
    g_log.clear();
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
    int err = bpf_tc_detach(&hook, &opts);
    if (err && err != -ENOENT && err != -ENODEV && err != -EINVAL)
      return Fail(env, "cannot detach from ifindex " + std::to_string(ifindex), err);
    if (destroy) {
      hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
      err = bpf_tc_hook_destroy(&hook);
      if (err && err != -ENOENT && err != -ENODEV && err != -EINVAL)
        return Fail(env, "cannot remove the clsact qdisc of ifindex " + std::to_string(ifindex), err);
    }
    return env.Undefined();
  }

  // add(key, rewrite): key {srcAddr, srcPort, dstAddr, dstPort} as the packet
  // arrives; rewrite {srcAddr, srcPort, dstAddr, dstPort, oif?} as it leaves.
  // Counters start at zero (an existing entry for the key is replaced).
  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    l7mp_flow_key key;
    l7mp_flow_value val;
    memset(&val, 0, sizeof(val));
    if (info.Length() < 2 || !ReadKey(info[0], &key) || !info[1].IsObject())
      return TypeFail(env, "add(key: {srcAddr, srcPort, dstAddr, dstPort}, rewrite: {srcAddr, srcPort, dstAddr, dstPort, oif?}) with IPv4 addresses");
    Napi::Object rw = info[1].As<Napi::Object>();
    if (!ReadAddr(rw, "srcAddr", "srcPort", &val.new_saddr, &val.new_sport) ||
        !ReadAddr(rw, "dstAddr", "dstPort", &val.new_daddr, &val.new_dport))
      return TypeFail(env, "add(): the rewrite needs IPv4 srcAddr/dstAddr and ports");
    Napi::Value oif = rw.Get("oif");
    if (oif.IsNumber()) val.oif = oif.As<Napi::Number>().Uint32Value();
    Napi::Value owner = rw.Get("owner");
    if (owner.IsNumber()) val.owner = owner.As<Napi::Number>().Uint32Value();
    if (bpf_map_update_elem(mapFd_, &key, &val, BPF_ANY)) return Fail(env, "cannot add a flow", errno);
    return env.Undefined();
  }

  // remove(key) -> whether an entry was there.
  Napi::Value Remove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    l7mp_flow_key key;
    if (info.Length() < 1 || !ReadKey(info[0], &key)) return TypeFail(env, "remove(key)");
    if (bpf_map_delete_elem(mapFd_, &key)) {
      if (errno == ENOENT) return Napi::Boolean::New(env, false);
      return Fail(env, "cannot remove a flow", errno);
    }
    return Napi::Boolean::New(env, true);
  }

  // read(key) -> {packets, bytes, lastNs} or null when there is no entry
  // (never added, removed, or evicted from the LRU table).
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    l7mp_flow_key key;
    l7mp_flow_value val;
    if (info.Length() < 1 || !ReadKey(info[0], &key)) return TypeFail(env, "read(key)");
    if (bpf_map_lookup_elem(mapFd_, &key, &val)) {
      if (errno == ENOENT) return env.Null();
      return Fail(env, "cannot read a flow", errno);
    }
    Napi::Object r = Napi::Object::New(env);
    // Doubles hold counts exactly up to 2^53: years at line rate.
    r.Set("packets", Napi::Number::New(env, static_cast<double>(val.packets)));
    r.Set("bytes", Napi::Number::New(env, static_cast<double>(val.bytes)));
    r.Set("lastNs", Napi::Number::New(env, static_cast<double>(val.last_ns)));
    return r;
  }

  // count() -> number of entries in the flow table (diagnostics, tests).
  Napi::Value Count(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    l7mp_flow_key cur, next;
    l7mp_flow_key* prev = nullptr;
    uint32_t n = 0;
    while (bpf_map_get_next_key(mapFd_, prev, &next) == 0 && n <= L7MP_FLOW_MAX) {
      n++;
      cur = next;
      prev = &cur;
    }
    return Napi::Number::New(env, n);
  }

  // mapFd() -> the flow table's fd, for a worker process to inherit.
  Napi::Value MapFd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    return Napi::Number::New(env, mapFd_);
  }

  // removeOwner(owner) -> how many entries that owner had: removes them all
  // (a dead worker's flows). Keys are collected first, then deleted, so the
  // walk never continues from a deleted key.
  Napi::Value RemoveOwner(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsNumber()) return TypeFail(env, "removeOwner(owner: number)");
    __u32 owner = info[0].As<Napi::Number>().Uint32Value();
    std::vector<l7mp_flow_key> doomed;
    l7mp_flow_key cur, next;
    l7mp_flow_key* prev = nullptr;
    l7mp_flow_value val;
    uint32_t n = 0;
    while (bpf_map_get_next_key(mapFd_, prev, &next) == 0 && n++ <= L7MP_FLOW_MAX) {
      if (bpf_map_lookup_elem(mapFd_, &next, &val) == 0 && val.owner == owner) doomed.push_back(next);
      cur = next;
      prev = &cur;
    }
    uint32_t removed = 0;
    for (const l7mp_flow_key& k : doomed)
      if (bpf_map_delete_elem(mapFd_, &k) == 0) removed++;
    return Napi::Number::New(env, removed);
  }

  // close(): release the object. The program stays attached to interfaces
  // until detached (tc holds its own reference).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }
};

Napi::Value IfIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return TypeFail(env, "ifindex(name: string)");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  return Napi::Number::New(env, if_nametoindex(name.c_str()));
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(CollectLog);
  exports.Set("Program", Program::Init(env));
  exports.Set("ifindex", Napi::Function::New(env, IfIndex));
  InitReuseport(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(l7mp_bpf, InitModule)
