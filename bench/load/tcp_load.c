/*
 * TCP load generator for the benchmarks: one thread, epoll, non-blocking
 * sockets. C because a Node client sharing 2 cores with the proxy under test
 * would be measured along with it.
 *
 * Modes (--mode):
 *   pingpong  --connections C, each keeps --window messages of --size bytes
 *             in flight; every complete echoed message sends the next one (all
 *             replies of one read go out in one write). Each message carries
 *             its send time: reports messages/s and round-trip p50/p99.
 *   bulk      --connections C, each writes --chunk bytes as fast as the path
 *             takes them and reads the echo back. Reports echoed MB/s (10^6
 *             bytes); the proxy carries that much each way.
 *   connrate  --concurrency K slots; each: connect, send --size bytes, read
 *             them back, close, start over. Reports completed connections/s.
 *             Source addresses rotate over 127.0.0.2-127.0.0.251 with
 *             IP_BIND_ADDRESS_NO_PORT, so the client's TIME_WAIT sockets
 *             never run it out of ports.
 *
 * Options: --host 127.0.0.1 --port P --size 64 --window 1 --connections 16
 *   --chunk 65536 --concurrency 16 --warmup 1 --duration 3 --deadline 60
 * Output: "MEASURE" when measuring starts, then one JSON line.
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_MSG 65536

static struct sockaddr_in target;
static int ep;
static int measuring;
static uint32_t src_seq;

struct conn {
  int fd;
  int state;        /* connrate: 0 connecting, 1 waiting for the echo */
  size_t have;      /* bytes of the current (partial) message read so far */
  uint64_t since;   /* connrate: when this connection attempt started */
  char part[MAX_MSG];
};

/* Non-blocking socket towards the target; rotate source addresses if asked. */
static int open_socket(int rotate) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (rotate) {
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
    src.sin_addr.s_addr = htonl(0x7f000002u + (src_seq++ % 250u));
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) { close(fd); return -1; }
  }
  if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

static void watch(struct conn *c, int op, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(ep, op, c->fd, &ev);
}

/* Blocking-ish full write of a small buffer on a non-blocking socket. */
static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) { /* rare for small messages; spin briefly */
        struct timespec ts = {0, 10000};
        nanosleep(&ts, NULL);
        continue;
      }
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void result_line(double rate, const char *unit_key, uint64_t errors, double cpu, double secs) {
  printf("{\"rate\":%.2f,\"unit\":\"%s\",\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,\"errors\":%llu,\"load_cpu\":%.3f,\"seconds\":%.3f}\n",
         rate, unit_key, hist_pct(0.5), hist_pct(0.99), hist_n ? hist_sum_us / (double)hist_n : -1,
         (unsigned long long)errors, cpu, secs);
}

int main(int argc, char **argv) {
  bench_init((unsigned)opt_num(argc, argv, "deadline", 60));
  const char *mode = opt_str(argc, argv, "mode", "pingpong");
  const char *host = opt_str(argc, argv, "host", "127.0.0.1");
  memset(&target, 0, sizeof target);
  target.sin_family = AF_INET;
  target.sin_port = htons((unsigned short)opt_num(argc, argv, "port", 0));
  if (inet_pton(AF_INET, host, &target.sin_addr) != 1 || (ntohl(target.sin_addr.s_addr) >> 24) != 127) {
    fprintf(stderr, "tcp_load: --host must be a 127.0.0.0/8 address\n");
    return 2;
  }
  int size = (int)opt_num(argc, argv, "size", 64);
  int window = (int)opt_num(argc, argv, "window", 1);
  int nconn = (int)opt_num(argc, argv, "connections", 16);
  size_t chunk = (size_t)opt_num(argc, argv, "chunk", 65536);
  int conc = (int)opt_num(argc, argv, "concurrency", 16);
  double warmup = opt_num(argc, argv, "warmup", 1), duration = opt_num(argc, argv, "duration", 3);
  int is_pp = strcmp(mode, "pingpong") == 0, is_bulk = strcmp(mode, "bulk") == 0, is_cr = strcmp(mode, "connrate") == 0;
  if (!is_pp && !is_bulk && !is_cr) { fprintf(stderr, "tcp_load: unknown --mode %s\n", mode); return 2; }
  if (size < 8 || size > MAX_MSG || window < 1 || window > 256 || nconn < 1 || nconn > 1024 || conc < 1 || conc > 1024 ||
      chunk < 1 || chunk > (1 << 22)) {
    fprintf(stderr, "tcp_load: option out of range\n");
    return 2;
  }
  ep = epoll_create1(0);
  int n = is_cr ? conc : nconn;
  struct conn *conns = calloc((size_t)n, sizeof *conns);
  char *out = malloc(is_bulk ? chunk : (size_t)size * 256);
  char *in = malloc(1 << 20);
  memset(out, 0x5a, is_bulk ? chunk : (size_t)size * 256);
  uint64_t errors = 0, count = 0; /* messages, bytes or connections measured */

  /* Set up: pingpong and bulk connect all first (not measured). */
  if (!is_cr) {
    for (int i = 0; i < n; i++) {
      struct conn *c = &conns[i];
      c->fd = open_socket(0);
      if (c->fd < 0) { perror("connect"); return 1; }
      watch(c, EPOLL_CTL_ADD, EPOLLOUT);
    }
    int connected = 0;
    uint64_t give_up = now_ns() + 5000000000ull;
    struct epoll_event evs[1024];
    while (connected < n && now_ns() < give_up) {
      int k = epoll_wait(ep, evs, 1024, 100);
      for (int i = 0; i < k; i++) {
        struct conn *c = evs[i].data.ptr;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0 || (evs[i].events & (EPOLLERR | EPOLLHUP))) { fprintf(stderr, "tcp_load: connect: %s\n", strerror(err)); return 1; }
        watch(c, EPOLL_CTL_MOD, is_bulk ? (EPOLLIN | EPOLLOUT) : EPOLLIN);
        connected++;
      }
    }
    if (connected < n) { fprintf(stderr, "tcp_load: only %d of %d connected\n", connected, n); return 1; }
    if (is_pp) {
      uint64_t t = now_ns();
      for (int i = 0; i < n; i++) {
        for (int w = 0; w < window; w++) memcpy(out + (size_t)w * size, &t, sizeof t);
        if (write_all(conns[i].fd, out, (size_t)size * window) < 0) { perror("write"); return 1; }
      }
    }
  } else {
    for (int i = 0; i < n; i++) {
      struct conn *c = &conns[i];
      c->fd = open_socket(1);
      c->since = now_ns();
      if (c->fd < 0) { errors++; continue; }
      watch(c, EPOLL_CTL_ADD, EPOLLOUT);
    }
  }

  uint64_t start = now_ns(), t_measure = start + (uint64_t)(warmup * 1e9), t_end = t_measure + (uint64_t)(duration * 1e9);
  uint64_t m0 = 0, m1 = 0;
  double cpu0 = 0, cpu1 = 0;
  struct epoll_event evs[1024];
  for (;;) {
    uint64_t now = now_ns();
    if (!measuring && now >= t_measure) { measuring = 1; m0 = now; cpu0 = cpu_seconds(); say_measure(); count = 0; errors = 0; }
    if (measuring && now >= t_end) { m1 = now; cpu1 = cpu_seconds(); break; }
    int k = epoll_wait(ep, evs, 1024, 20);
    for (int i = 0; i < k; i++) {
      struct conn *c = evs[i].data.ptr;
      uint32_t e = evs[i].events;
      if (is_pp) {
        ssize_t r = read(c->fd, in, 1 << 20);
        if (r <= 0) {
          if (r < 0 && errno == EAGAIN) continue;
          fprintf(stderr, "tcp_load: connection closed during the run\n");
          return 1;
        }
        uint64_t t = now_ns();
        int replies = 0;
        for (ssize_t off = 0; off < r;) {
          size_t take = (size_t)size - c->have;
          if (take > (size_t)(r - off)) take = (size_t)(r - off);
          memcpy(c->part + c->have, in + off, take);
          c->have += take;
          off += (ssize_t)take;
          if (c->have == (size_t)size) {
            uint64_t sent;
            memcpy(&sent, c->part, sizeof sent);
            if (measuring) { hist_add(t - sent); count++; }
            c->have = 0;
            replies++;
          }
        }
        if (replies > 0) {
          for (int w = 0; w < replies; w++) memcpy(out + (size_t)w * size, &t, sizeof t);
          if (write_all(c->fd, out, (size_t)size * replies) < 0) { perror("write"); return 1; }
        }
      } else if (is_bulk) {
        if (e & EPOLLIN) {
          ssize_t r = read(c->fd, in, 1 << 20);
          if (r == 0 || (r < 0 && errno != EAGAIN)) { fprintf(stderr, "tcp_load: connection closed during the run\n"); return 1; }
          if (r > 0 && measuring) count += (uint64_t)r;
        }
        if (e & EPOLLOUT) {
          ssize_t w = write(c->fd, out, chunk);
          if (w < 0 && errno != EAGAIN) { perror("write"); return 1; }
        }
      } else { /* connrate */
        if (c->state == 0) {
          int err = 0;
          socklen_t el = sizeof err;
          getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
          if (err == 0 && !(e & EPOLLERR) && write_all(c->fd, out, (size_t)size) == 0) {
            c->state = 1;
            c->have = 0;
            watch(c, EPOLL_CTL_MOD, EPOLLIN);
            continue;
          }
          errors++;
        } else {
          ssize_t r = read(c->fd, in, (size_t)size - c->have);
          if (r < 0 && errno == EAGAIN) continue;
          if (r > 0) {
            c->have += (size_t)r;
            if (c->have < (size_t)size) continue;
            if (measuring) { count++; hist_add(now_ns() - c->since); }
          } else {
            errors++;
          }
        }
        /* Done (or failed): close and start the next connection in this slot. */
        close(c->fd);
        c->state = 0;
        c->since = now_ns();
        c->fd = open_socket(1);
        if (c->fd < 0) { errors++; continue; }
        watch(c, EPOLL_CTL_ADD, EPOLLOUT);
      }
    }
    if (is_cr) { /* a slot stuck for 2 s (lost SYN, dead proxy) is restarted */
      uint64_t t = now_ns();
      for (int i = 0; i < n; i++) {
        struct conn *c = &conns[i];
        if (c->fd >= 0 && t - c->since < 2000000000ull) continue;
        if (c->fd >= 0) { close(c->fd); errors++; }
        c->state = 0;
        c->since = t;
        c->fd = open_socket(1);
        if (c->fd >= 0) watch(c, EPOLL_CTL_ADD, EPOLLOUT);
      }
    }
  }
  double secs = (double)(m1 - m0) / 1e9;
  double rate = is_bulk ? (double)count / secs / 1e6 : (double)count / secs;
  result_line(rate, is_bulk ? "MB/s" : is_pp ? "msg/s" : "conn/s", errors, (cpu1 - cpu0) / secs, secs);
  return 0;
}
