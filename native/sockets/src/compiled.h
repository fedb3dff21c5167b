// What the addon's two compiled listeners share (forward.cc for streams,
// udpfwd.cc for datagrams): the admission counters they share with
// core/admission.ts, the per-source flow rate, the targets and their smooth
// weighted round robin, and the records of ended sessions that JavaScript
// takes for metrics and the access log (gateway/src/fastpath/compiled.ts).
#pragma once
#include "common.h"
#include "reactor.h"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <list>
#include <netinet/in.h>
#include <string>
#include <unordered_map>
#include <uv.h>
#include <vector>

namespace l7mp {
namespace compiled {

// Doubles per ended record (takeEnded).
constexpr int kRecord = 12;
// Ended records waiting before JavaScript is told (onEnded); it is also told
// of fewer within kEndedMs.
constexpr size_t kEndedBatch = 256;
constexpr uint64_t kEndedMs = 100;

inline double WallMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) * 1000 + static_cast<double>(ts.tv_nsec / 1000000);
}

// A number from options, or `d`.
inline double NumberOr(Napi::Object o, const char* key, double d) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : d;
}

// A timer that never keeps the loop alive, with `data` for its callback; CloseTimer frees it.
inline uv_timer_t* NewTimer(uv_loop_t* loop, void* data) {
  auto* t = new uv_timer_t;
  uv_timer_init(loop, t);
  t->data = data;
  uv_unref(reinterpret_cast<uv_handle_t*>(t));
  return t;
}

inline void CloseTimer(uv_timer_t* t) {
  if (t != nullptr) uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

// Token buckets per source address, as api/security.ts RateLimiter: `burst`
// at most, refilled at `rate` per second; at most `max` sources, the least
// recently seen dropped first.
class FlowBuckets {
 public:
  // From options {flowRate (0: no limit), flowBurst, flowSources}.
  void Configure(Napi::Object o) {
    Configure(NumberOr(o, "flowRate", 0), NumberOr(o, "flowBurst", 0), static_cast<size_t>(NumberOr(o, "flowSources", 65536)));
  }
  void Configure(double rate, double burst, size_t max) {
    rate_ = rate;
    burst_ = burst;
    max_ = max > 0 ? max : 1;
    map_.clear();
    lru_.clear();
  }
  bool Take(const sockaddr_storage& ss, uint64_t nowMs) {
    if (rate_ <= 0) return true;
    std::string key;
    if (ss.ss_family == AF_INET) key.assign(reinterpret_cast<const char*>(&reinterpret_cast<const sockaddr_in&>(ss).sin_addr), 4);
    else if (ss.ss_family == AF_INET6) key.assign(reinterpret_cast<const char*>(&reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr), 16);
    else return true;  // Unix peers have no address to limit
    auto it = map_.find(key);
    Bucket* b;
    if (it != map_.end()) {
      b = &it->second;
      b->tokens = std::min(burst_, b->tokens + static_cast<double>(nowMs - b->last) / 1000 * rate_);
      b->last = nowMs;
      lru_.splice(lru_.end(), lru_, b->pos);
    } else {
      if (map_.size() >= max_) {
        map_.erase(lru_.front());
        lru_.pop_front();
      }
      lru_.push_back(key);
      b = &map_[key];
      b->tokens = burst_;
      b->last = nowMs;
      b->pos = std::prev(lru_.end());
    }
    if (b->tokens >= 1) {
      b->tokens -= 1;
      return true;
    }
    return false;
  }

 private:
  struct Bucket {
    double tokens;
    uint64_t last;
    std::list<std::string>::iterator pos;
  };
  double rate_ = 0, burst_ = 0;
  size_t max_ = 1;
  std::unordered_map<std::string, Bucket> map_;
  std::list<std::string> lru_;
};

// The admission counters shared with core/admission.ts (Float64Arrays): the
// listener's live sessions (1 cell) and [live sessions, max_sessions,
// descriptors sampled, sessions since the sample, descriptor ceiling or -1];
// counters of its own when JavaScript passes none.
class Cells {
 public:
  enum Global { kLive, kMax, kFdSampled, kFdDelta, kFdCeiling, kGlobalLen };
  // Descriptors a session is assumed to take until the next sample (fd-budget.ts FDS_PER_SESSION).
  static constexpr double kFdsPerSession = 2;

  // From options {max, listenerLive?, global?}; a TypeError pending when
  // they are not Float64Arrays. `fds`: descriptors one of its sessions
  // holds (the estimate between samples counts kFdsPerSession per session).
  void Init(Napi::Env env, Napi::Object o, const char* what, double fds) {
    fdShare_ = fds / kFdsPerSession;
    Napi::Value m = o.Get("max");
    max_ = m.IsNumber() ? m.As<Napi::Number>().DoubleValue() : 0;
    listenerLive_ = Take(env, o.Get("listenerLive"), 1, &ownLive_, what);
    global_ = Take(env, o.Get("global"), kGlobalLen, ownGlobal_, what);
    if (global_ == ownGlobal_) {
      ownGlobal_[kMax] = 1e300;
      ownGlobal_[kFdCeiling] = -1;
    }
  }

  // The listener's cap (options.max_sessions, which a change may set after the listener started).
  void SetMax(double max) { max_ = max; }

  // As core/admission.ts full(): the listener's cap, the gateway's cap, the descriptor budget.
  bool Full() const {
    if (*listenerLive_ >= max_) return true;
    if (global_[kLive] >= global_[kMax]) return true;
    return global_[kFdCeiling] >= 0 && global_[kFdSampled] + global_[kFdDelta] * kFdsPerSession >= global_[kFdCeiling];
  }
  // A session holds its place from its first socket on (as a session does from admission).
  void Admit() {
    *listenerLive_ += 1;
    global_[kLive] += 1;
    global_[kFdDelta] += fdShare_;
  }
  void Unadmit() {
    if (tearingDown_) return;
    *listenerLive_ -= 1;
    global_[kLive] -= 1;
    global_[kFdDelta] -= fdShare_;
  }
  // Closed: the shared cells are left alone from here on.
  void Release() {
    listenerLive_ = &ownLive_;
    global_ = ownGlobal_;
    refs_.clear();
  }
  // Environment teardown: the shared cells' memory may be gone already.
  void TearDown() { tearingDown_ = true; }

 private:
  double* Take(Napi::Env env, Napi::Value v, size_t n, double* own, const char* what) {
    if (v.IsUndefined()) return own;
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array || v.As<Napi::TypedArray>().ElementLength() < n) {
      Napi::TypeError::New(env, std::string(what) + ": listenerLive and global are Float64Arrays (1 and 5 cells)").ThrowAsJavaScriptException();
      return own;
    }
    // Kept alive by JavaScript (core/admission.ts holds them for the process's life).
    refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
    return v.As<Napi::Float64Array>().Data();
  }

  double max_ = 0;
  double fdShare_ = 1;
  double ownLive_ = 0;
  double ownGlobal_[kGlobalLen] = {0, 0, 0, 0, 0};
  double* listenerLive_ = &ownLive_;
  double* global_ = ownGlobal_;
  std::vector<Napi::ObjectReference> refs_;
  bool tearingDown_ = false;
};

struct Target {
  sockaddr_storage addr;
  socklen_t len;
  double weight;
  double current;  // smooth weighted round robin
};

// Where new sessions go: targets([[host, port, weight?] | [unixPath, -1?,
// weight?], ...]) (weight: a share, 1 when absent, 0 never).
class Targets {
 public:
  // false with a TypeError pending when an entry is not one; `unix`: Unix paths allowed.
  bool Parse(Napi::Env env, Napi::Array a, bool unix) {
    std::vector<Target> ts;
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value e = a.Get(i);
      Target t{};
      t.weight = 1;
      bool ok = false;
      if (e.IsArray()) {
        Napi::Array p = e.As<Napi::Array>();
        Napi::Value host = p.Get(0u), port = p.Get(1u), weight = p.Get(2u);
        if (weight.IsNumber()) t.weight = weight.As<Napi::Number>().DoubleValue();
        bool unixPath = host.IsString() && (p.Length() == 1 || (port.IsNumber() && port.As<Napi::Number>().Int32Value() == -1));
        if (host.IsString() && port.IsNumber() && !unixPath) {
          ok = InetAddr(host.As<Napi::String>().Utf8Value(), port.As<Napi::Number>().Int32Value(), &t.addr, &t.len);
        } else if (unixPath && unix) {
          sockaddr_un su;
          socklen_t l;
          ok = UnixAddr(host.As<Napi::String>().Utf8Value(), &su, &l);
          if (ok) {
            memcpy(&t.addr, &su, l);
            t.len = l;
          }
        }
      }
      if (!ok || !(t.weight >= 0)) {
        Napi::TypeError::New(env, unix ? "targets: each is [numeric host, port, weight?] or [unix path, -1?, weight?]"
                                       : "targets: each is [numeric host, port, weight?]").ThrowAsJavaScriptException();
        return false;
      }
      if (t.weight > 0) ts.push_back(t);
    }
    list_.swap(ts);
    return true;
  }

  bool empty() const { return list_.empty(); }
  const Target& operator[](int i) const { return list_[i]; }

  // Smooth weighted round robin (nginx's): each pick adds every weight to its
  // target's current value and takes the largest, which then gives back the total.
  int Next() {
    if (list_.size() == 1) return 0;
    double total = 0;
    int best = 0;
    for (size_t i = 0; i < list_.size(); i++) {
      Target& t = list_[i];
      t.current += t.weight;
      total += t.weight;
      if (t.current > list_[best].current) best = static_cast<int>(i);
    }
    list_[best].current -= total;
    return best;
  }

 private:
  std::vector<Target> list_;
};

// The records of ended sessions, kRecord doubles each, oldest first: [id,
// generation, started, duration ms, bytes c->u, packets c->u, bytes u->c,
// packets u->c, errno (0: none), end kind (0 completed, 1 error, 2 deleted,
// 3 drain_timeout, 4 shutdown), target, side of the error (0 client, 1
// upstream, -1)]; in detail mode, each one's addresses too.
class EndedLog {
 public:
  // What the owner does after Push: nothing, start the kEndedMs timer, or tell JavaScript now.
  enum After { kNone, kStartTimer, kTellNow };

  After Push(const double (&r)[kRecord], const sockaddr_storage& peer, const sockaddr_storage& local) {
    records_.insert(records_.end(), r, r + kRecord);
    if (detail_) detailed_.push_back(Addresses{peer, local});
    size_t waiting = Waiting();
    if (waiting >= kEndedBatch && !told_) return kTellNow;
    return waiting == 1 ? kStartTimer : kNone;
  }
  size_t Waiting() const { return (records_.size() - head_) / kRecord; }
  bool detail() const { return detail_; }
  // Before calling onEnded: not again until the records have been taken.
  void Told() { told_ = true; }

  // takeEnded(out: Float64Array, detail?: Array) -> records written (at most
  // out.length / kRecord). In detail mode, `detail` gets [address, port,
  // local address, local port] for each record taken (addresses "" for Unix
  // sockets). *drained: every record has been taken.
  Napi::Value Take(const Napi::CallbackInfo& info, bool* drained) {
    Napi::Env env = info.Env();
    *drained = false;
    if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      Napi::TypeError::New(env, "takeEnded(Float64Array, detail?)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Float64Array out = info[0].As<Napi::Float64Array>();
    size_t n = std::min(out.ElementLength() / kRecord, Waiting());
    memcpy(out.Data(), records_.data() + head_, n * kRecord * sizeof(double));
    size_t first = head_ / kRecord;
    head_ += n * kRecord;
    if (info.Length() > 1 && info[1].IsArray()) {
      Napi::Array d = info[1].As<Napi::Array>();
      for (size_t i = 0; i < n; i++) {
        size_t k = first + i - detailBase_;
        if (k >= detailed_.size()) {
          d.Set(static_cast<uint32_t>(i), env.Undefined());
          continue;
        }
        const Addresses& a = detailed_[k];
        char buf[INET6_ADDRSTRLEN] = {0}, lbuf[INET6_ADDRSTRLEN] = {0};
        int port = 0, lport = 0;
        bool ip = IpText(a.peer, buf, &port), lip = IpText(a.local, lbuf, &lport);
        Napi::Array e = Napi::Array::New(env, 4);
        e.Set(0u, Napi::String::New(env, ip ? buf : ""));
        e.Set(1u, Napi::Number::New(env, port));
        e.Set(2u, Napi::String::New(env, lip ? lbuf : ""));
        e.Set(3u, Napi::Number::New(env, lport));
        d.Set(static_cast<uint32_t>(i), e);
      }
    }
    if (head_ == records_.size()) {
      records_.clear();
      detailed_.clear();
      head_ = 0;
      detailBase_ = 0;
      told_ = false;
      *drained = true;
    }
    return Napi::Number::New(env, static_cast<double>(n));
  }

  // setDetail(on): keep each session's addresses for its record (an access
  // log or ended sessions kept listed need them; off by default).
  void SetDetail(bool on) {
    if (on == detail_) return;
    // Records from here on line up with detailed_ from its start.
    detailed_.clear();
    detailBase_ = records_.size() / kRecord;
    detail_ = on;
  }

 private:
  struct Addresses {
    sockaddr_storage peer, local;
  };
  std::vector<double> records_;
  std::vector<Addresses> detailed_;  // in detail mode, one per record from detailBase_ on
  size_t detailBase_ = 0;
  size_t head_ = 0;
  bool detail_ = false;
  bool told_ = false;
};

// A Float64Array of at least n cells, or null with a TypeError pending.
inline double* StatsOut(const Napi::CallbackInfo& info, size_t n, const char* usage) {
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[0].As<Napi::TypedArray>().ElementLength() < n) {
    Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
    return nullptr;
  }
  return info[0].As<Napi::Float64Array>().Data();
}

// Run a JavaScript callback from the addon: an exception becomes an uncaught
// exception, as from any Node event handler.
inline void CallJs(Napi::Env env, Napi::FunctionReference& fn, napi_value recv, size_t argc, const napi_value* args) {
  if (fn.IsEmpty()) return;
  ReactorCallsJs();
  fn.MakeCallback(recv, argc, args);
  if (env.IsExceptionPending()) {
    Napi::Error e = env.GetAndClearPendingException();
    napi_fatal_exception(env, e.Value());
  }
}

}  // namespace compiled
}  // namespace l7mp
