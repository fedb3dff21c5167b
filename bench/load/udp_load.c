/*
 * UDP load generator for the benchmarks. Written in C because a Node client
 * on the same 2-core machine would cost as much per datagram as the proxy
 * under test, and be measured along with it.
 *
 * Modes (--mode):
 *   pingpong  One connected socket keeps --window datagrams of --size bytes in
 *             flight (closed loop: every echo sends the next one). Reports
 *             datagrams/s and round-trip p50/p99. Replies of one recvmmsg are
 *             answered with one sendmmsg. A datagram carries its send time and
 *             a generation number; if nothing arrives for --loss-ms the window
 *             is declared lost, counted, and refilled under a new generation,
 *             so late stragglers never inflate the window.
 *             With --flows F > 1: F sockets, each bound to its own source
 *             address (127.0.0.2, .3, ...) and connected, share --window
 *             between them (window / F each, the remainder to the first
 *             ones) and run the same closed loop each, all on one epoll.
 *             SO_REUSEPORT keeps one 4-tuple on one worker of a proxy, so
 *             only several flows can spread over several workers.
 *   sessions  New-session rate: --concurrency slots; each opens a socket on a
 *             fresh source address/port, sends one datagram, waits for the echo
 *             (a proxy creates a session for it), closes the socket and starts
 *             over. Reports completed new sessions/s. Source addresses rotate
 *             over 127.0.0.2-127.0.0.251, so a port the kernel hands out again
 *             rarely lands on a session the proxy still keeps.
 *             Warm-up ends after --warmup seconds or --warmup-max sessions
 *             (default --max), then --max sessions are measured.
 *             With --keep 1 the sockets stay open instead and it stops after
 *             --max sessions: it prints "READY <n>" once all have had their
 *             echo, then holds them idle for --hold seconds (the runner reads
 *             the proxy's memory meanwhile).
 *
 * Options: --host 127.0.0.1 --port P --size 64 --window 16 --warmup 1
 *   --duration 3 --loss-ms 200 --flows 1 --concurrency 16 --max 20000 --warmup-max
 *   (--max) --keep 0
 *   --hold 5 --timeout-ms 1000 --deadline 60 (hard exit, seconds)
 * Output: "MEASURE" when measuring starts, then one JSON line.
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_WINDOW 1024
#define MAX_SIZE 65507

static struct sockaddr_in target;

static void set_target(const char *host, int port) {
  memset(&target, 0, sizeof target);
  target.sin_family = AF_INET;
  target.sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, host, &target.sin_addr) != 1 || (ntohl(target.sin_addr.s_addr) >> 24) != 127) {
    fprintf(stderr, "udp_load: --host must be a 127.0.0.0/8 address\n");
    exit(2);
  }
}

/* ------------------------------------------------------------ pingpong */

/* Payload header: generation, then send time; the rest is filler. */
struct stamp {
  uint32_t gen;
  uint32_t pad;
  uint64_t sent_ns;
};

/* One receive and one send buffer per datagram in flight, shared by every flow
   (a flow's replies are answered before the next flow's are read). */
static char rbufs[MAX_WINDOW][2048], sbufs[MAX_WINDOW][2048];
static struct iovec riov[MAX_WINDOW], siov[MAX_WINDOW];
static struct mmsghdr rmsg[MAX_WINDOW], smsg[MAX_WINDOW];
static uint64_t lost, wrong, measured, refused;

static int setup_buffers(int size) {
  char *big_r = NULL, *big_s = NULL;
  int slot = size <= 2048 ? 2048 : size;
  if (size > 2048) { /* large datagrams: one buffer region per slot */
    big_r = malloc((size_t)slot * MAX_WINDOW);
    big_s = malloc((size_t)slot * MAX_WINDOW);
    if (!big_r || !big_s) return -1;
  }
  for (int i = 0; i < MAX_WINDOW; i++) {
    char *r = big_r ? big_r + (size_t)i * slot : rbufs[i];
    char *s = big_s ? big_s + (size_t)i * slot : sbufs[i];
    memset(s, 0x5a, (size_t)size);
    riov[i] = (struct iovec){.iov_base = r, .iov_len = (size_t)slot};
    siov[i] = (struct iovec){.iov_base = s, .iov_len = (size_t)size};
    rmsg[i].msg_hdr = (struct msghdr){.msg_iov = &riov[i], .msg_iovlen = 1};
    smsg[i].msg_hdr = (struct msghdr){.msg_iov = &siov[i], .msg_iovlen = 1};
  }
  return 0;
}

/* Send k datagrams on fd stamped now under generation gen. */
static void send_stamped(int fd, int k, uint32_t gen) {
  uint64_t t = now_ns();
  for (int j = 0; j < k; j++) {
    struct stamp *st = siov[j].iov_base;
    st->gen = gen;
    st->sent_ns = t;
  }
  int off = 0;
  while (off < k) {
    int r = sendmmsg(fd, smsg + off, (unsigned)(k - off), 0);
    if (r < 0) { if (errno == EINTR) continue; break; }
    off += r;
  }
}

/* The replies among n received datagrams (right size, current generation), recorded at time t. */
static int take_replies(int n, int size, uint32_t gen, int measuring, uint64_t t) {
  int replies = 0;
  for (int i = 0; i < n; i++) {
    struct stamp *st = riov[i].iov_base;
    if (rmsg[i].msg_len != (unsigned)size || st->gen != gen) { wrong += st->gen == gen; continue; }
    if (measuring) { hist_add(t - st->sent_ns); measured++; }
    replies++;
  }
  return replies;
}

/* Warm-up, then the measured interval; "MEASURE" when it starts. */
struct phase {
  uint64_t start, t_measure, t_end, m0, m1;
  double cpu0, cpu1;
  int measuring;
};

static struct phase phase_start(double warmup, double duration) {
  struct phase p = {.start = now_ns()};
  p.t_measure = p.start + (uint64_t)(warmup * 1e9);
  p.t_end = p.t_measure + (uint64_t)(duration * 1e9);
  return p;
}

/* Advance the phase; 1 once the measured interval is over. */
static int phase_done(struct phase *p) {
  uint64_t now = now_ns();
  if (!p->measuring && now >= p->t_measure) {
    p->measuring = 1;
    p->m0 = now;
    p->cpu0 = cpu_seconds();
    say_measure();
  }
  if (p->measuring && now >= p->t_end) { p->m1 = now; p->cpu1 = cpu_seconds(); return 1; }
  return 0;
}

static void result(const struct phase *p, int flows) {
  double secs = (double)(p->m1 - p->m0) / 1e9, cpu = (p->cpu1 - p->cpu0) / secs;
  printf("{\"rate\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,\"flows\":%d,\"lost\":%llu,\"refused\":%llu,\"size_errors\":%llu,\"load_cpu\":%.3f,\"seconds\":%.3f}\n",
         measured / secs, hist_pct(0.5), hist_pct(0.99), hist_n ? hist_sum_us / (double)hist_n : -1, flows,
         (unsigned long long)lost, (unsigned long long)refused, (unsigned long long)wrong, cpu, secs);
}

static int pingpong(int argc, char **argv) {
  int size = (int)opt_num(argc, argv, "size", 64);
  int window = (int)opt_num(argc, argv, "window", 16);
  double warmup = opt_num(argc, argv, "warmup", 1), duration = opt_num(argc, argv, "duration", 3);
  int loss_ms = (int)opt_num(argc, argv, "loss-ms", 200);
  if (size < (int)sizeof(struct stamp) || size > MAX_SIZE || window < 1 || window > MAX_WINDOW) {
    fprintf(stderr, "udp_load: --size must be 16..65507, --window 1..1024\n");
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  int bufsz = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
  if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0) { perror("connect"); return 1; }
  struct timeval tv = {.tv_sec = loss_ms / 1000, .tv_usec = (loss_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (setup_buffers(size) < 0) return 1;

  uint32_t gen = 1;
  struct phase ph = phase_start(warmup, duration);
  send_stamped(fd, window, gen);
  for (;;) {
    if (phase_done(&ph)) break;
    int n = recvmmsg(fd, rmsg, (unsigned)window, MSG_WAITFORONE, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ECONNREFUSED) { refused++; continue; } /* an ICMP error for one datagram: it is lost, the timeout refills */
      if (errno == EAGAIN) {
        /* Nothing for loss_ms: the whole window in flight is lost. Refill. */
        if (ph.measuring) lost += (uint64_t)window;
        send_stamped(fd, window, ++gen);
        continue;
      }
      perror("recvmmsg");
      return 1;
    }
    int replies = take_replies(n, size, gen, ph.measuring, now_ns());
    if (replies > 0) send_stamped(fd, replies, gen);
  }
  result(&ph, 1);
  return 0;
}

/* ------------------------------------------------------- pingpong, F flows */

#define MAX_FLOWS 256

struct flow {
  int fd;
  int window;       /* this flow's share of --window, always in flight */
  uint32_t gen;
  uint64_t last_rx; /* last reply (or refill): no reply for --loss-ms = lost */
};

static int pingpong_flows(int argc, char **argv, int nflows) {
  int size = (int)opt_num(argc, argv, "size", 64);
  int window = (int)opt_num(argc, argv, "window", 16);
  double warmup = opt_num(argc, argv, "warmup", 1), duration = opt_num(argc, argv, "duration", 3);
  uint64_t loss_ns = (uint64_t)opt_num(argc, argv, "loss-ms", 200) * 1000000ull;
  if (size < (int)sizeof(struct stamp) || size > 2048 || nflows < 1 || nflows > MAX_FLOWS || window < nflows || window > MAX_WINDOW) {
    fprintf(stderr, "udp_load: with --flows F: --size 16..2048, --flows 1..%d, --window F..%d\n", MAX_FLOWS, MAX_WINDOW);
    return 2;
  }
  if (setup_buffers(size) < 0) return 1;
  static struct flow flows[MAX_FLOWS];
  int ep = epoll_create1(0);
  for (int i = 0; i < nflows; i++) {
    struct flow *f = &flows[i];
    f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int bufsz = 1 << 20;
    setsockopt(f->fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
    setsockopt(f->fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
    src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(i % 250));
    if (bind(f->fd, (struct sockaddr *)&src, sizeof src) < 0 || connect(f->fd, (struct sockaddr *)&target, sizeof target) < 0) {
      perror("udp_load: flow socket");
      return 1;
    }
    f->window = window / nflows + (i < window % nflows);
    f->gen = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = f};
    epoll_ctl(ep, EPOLL_CTL_ADD, f->fd, &ev);
  }

  struct phase ph = phase_start(warmup, duration);
  for (int i = 0; i < nflows; i++) {
    flows[i].last_rx = ph.start;
    send_stamped(flows[i].fd, flows[i].window, flows[i].gen);
  }
  struct epoll_event evs[MAX_FLOWS];
  for (;;) {
    if (phase_done(&ph)) break;
    int n = epoll_wait(ep, evs, MAX_FLOWS, 10);
    if (n < 0 && errno != EINTR) { perror("epoll_wait"); return 1; }
    uint64_t t = now_ns();
    for (int e = 0; e < n; e++) {
      struct flow *f = evs[e].data.ptr;
      int got = recvmmsg(f->fd, rmsg, (unsigned)f->window, MSG_DONTWAIT, NULL);
      if (got < 0) {
        if (errno == ECONNREFUSED) refused++; /* one datagram's ICMP error: the loss timeout refills */
        continue;
      }
      int replies = take_replies(got, size, f->gen, ph.measuring, t);
      if (replies > 0) { f->last_rx = t; send_stamped(f->fd, replies, f->gen); }
    }
    /* A flow with nothing back for --loss-ms: its window is lost; refill it. */
    for (int i = 0; i < nflows; i++) {
      struct flow *f = &flows[i];
      if (t < f->last_rx + loss_ns) continue;
      if (ph.measuring) lost += (uint64_t)f->window;
      f->last_rx = t;
      send_stamped(f->fd, f->window, ++f->gen);
    }
  }
  result(&ph, nflows);
  return 0;
}

/* ------------------------------------------------------------ sessions */

struct slot {
  int fd;
  uint64_t since;
};

static uint32_t src_seq;

/* A new non-blocking socket from the next source address, connected to the target. */
static int open_flow(int ep, struct slot *s) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
  src.sin_addr.s_addr = htonl(0x7f000002u + (src_seq++ % 250u));
  if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0 || connect(fd, (struct sockaddr *)&target, sizeof target) < 0) {
    close(fd);
    return -1;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  s->fd = fd;
  s->since = now_ns();
  static char msg[64];
  if (send(fd, msg, sizeof msg, 0) < 0) { /* counted as a timeout later */ }
  return 0;
}

static int sessions(int argc, char **argv) {
  int conc = (int)opt_num(argc, argv, "concurrency", 16);
  double warmup = opt_num(argc, argv, "warmup", 1), duration = opt_num(argc, argv, "duration", 3);
  long max = (long)opt_num(argc, argv, "max", 20000);
  long warm_max = (long)opt_num(argc, argv, "warmup-max", (double)max);
  int keep = (int)opt_num(argc, argv, "keep", 0);
  double hold = opt_num(argc, argv, "hold", 5);
  uint64_t timeout_ns = (uint64_t)opt_num(argc, argv, "timeout-ms", 1000) * 1000000ull;
  if (conc < 1 || conc > 1024 || max < 1 || warm_max < 1) { fprintf(stderr, "udp_load: bad --concurrency/--max/--warmup-max\n"); return 2; }
  if (keep) warmup = 0; /* memory mode: count every session */

  int ep = epoll_create1(0);
  struct slot *slots = calloc((size_t)conc, sizeof *slots);
  int *kept = keep ? calloc((size_t)max, sizeof(int)) : NULL;
  long opened = 0, done = 0, failed = 0, nkept = 0, measured = 0;
  for (int i = 0; i < conc && opened < max; i++, opened++)
    if (open_flow(ep, &slots[i]) < 0) { failed++; slots[i].fd = -1; }

  uint64_t start = now_ns(), t_measure = start + (uint64_t)(warmup * 1e9), t_end = t_measure + (uint64_t)(duration * 1e9);
  uint64_t m0 = 0, m1 = 0;
  double cpu0 = 0, cpu1 = 0;
  int measuring = 0, active = (int)opened - (int)failed;
  /* Warm-up ends after --warmup seconds or --warmup-max sessions, whichever
     comes first (every session stays on the proxy for its idle timeout, so a
     run holds at most --warmup-max + --max); from the start of measuring,
     --max more are allowed. */
#define may_open(o) (!measuring || (o) < max)
  struct epoll_event evs[256];
  char rbuf[2048];
  for (;;) {
    uint64_t now = now_ns();
    if (!measuring && (now >= t_measure || (!keep && opened >= warm_max))) {
      measuring = 1; m0 = now; cpu0 = cpu_seconds(); say_measure(); measured = 0;
      if (!keep) max += opened; /* --max bounds the measured sessions; warm-up ones come on top */
    }
    if ((!keep && measuring && now >= t_end) || active == 0) { m1 = now; cpu1 = cpu_seconds(); break; }
    int n = epoll_wait(ep, evs, 256, 20);
    now = now_ns();
    for (int i = 0; i < n; i++) {
      struct slot *s = evs[i].data.ptr;
      ssize_t r = recv(s->fd, rbuf, sizeof rbuf, 0);
      if (r < 0 && errno == EAGAIN) continue;
      if (r == 64) { done++; if (measuring) measured++; }
      else failed++;
      if (keep) {
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        kept[nkept++] = s->fd;
      } else {
        close(s->fd);
      }
      s->fd = -1;
      active--;
      if (may_open(opened) && open_flow(ep, s) == 0) { opened++; active++; }
      else if (may_open(opened)) { opened++; failed++; }
    }
    /* Slots whose echo did not come within the timeout: count and move on.
       (since may be later than now: slots reopened above.) */
    now = now_ns();
    for (int i = 0; i < conc; i++) {
      struct slot *s = &slots[i];
      if (s->fd < 0 || now < s->since + timeout_ns) continue;
      failed++;
      close(s->fd);
      s->fd = -1;
      active--;
      if (may_open(opened) && open_flow(ep, s) == 0) { opened++; active++; }
    }
  }
  if (!measuring) { m0 = m1; cpu0 = cpu1; } /* every flow failed before measuring began */
  double secs = (double)(m1 - m0) / 1e9;
  if (keep) {
    /* All sessions are set up: hold them idle while the runner reads memory. */
    printf("READY %ld\n", nkept);
    fflush(stdout);
    struct pollfd pfd = {.fd = 0, .events = POLLIN};
    poll(&pfd, 1, (int)(hold * 1000)); /* returns early if the runner closes stdin */
  }
  printf("{\"rate\":%.0f,\"sessions\":%ld,\"failed\":%ld,\"kept\":%ld,\"load_cpu\":%.3f,\"seconds\":%.3f}\n",
         secs > 0 ? (double)(keep ? done : measured) / secs : 0, done, failed, nkept, secs > 0 ? (cpu1 - cpu0) / secs : 0, secs);
  return 0;
}

int main(int argc, char **argv) {
  bench_init((unsigned)opt_num(argc, argv, "deadline", 60));
  set_target(opt_str(argc, argv, "host", "127.0.0.1"), (int)opt_num(argc, argv, "port", 0));
  const char *mode = opt_str(argc, argv, "mode", "pingpong");
  int nflows = (int)opt_num(argc, argv, "flows", 1);
  if (strcmp(mode, "pingpong") == 0) return nflows > 1 ? pingpong_flows(argc, argv, nflows) : pingpong(argc, argv);
  if (strcmp(mode, "sessions") == 0) return sessions(argc, argv);
  fprintf(stderr, "udp_load: unknown --mode %s\n", mode);
  return 2;
}
