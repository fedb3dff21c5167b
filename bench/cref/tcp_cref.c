/*
 * The C reference ("cref") bench peer: the system calls of the gateway's raw
 * TCP path (gateway/src/fastpath/raw.ts, bench/README.md "TCP connection
 * rate, system calls") with no Node, no JavaScript and no session at all. It
 * answers what the `bare` peer cannot: where the floor of this machine is
 * for a proxy that makes our system calls. `bare` is the floor under a
 * session decided in JavaScript; this is the floor under any design that
 * keeps these calls (accept4, a non-blocking connect, both sockets once in
 * one edge-triggered epoll set, read/write through one buffer, EOF passed on
 * as shutdown(SHUT_WR), close when both directions ended).
 *
 * Per connection: accept4, socket, two setsockopt(TCP_NODELAY), connect,
 * two epoll_ctl(ADD); then the reads and writes; one shutdown per EOF
 * passed on; two close. The raw path also reads SO_ERROR once (or polls) to
 * learn the connect is over; here the first write to a socket still
 * connecting simply waits for its edge, which loopback never needs.
 *
 * Not a proxy to run: IPv4 loopback, no limits, and it never buffers. A
 * write the kernel takes only in part ends the pair (both sockets closed),
 * and it counts that, so it is for workloads with small messages
 * (tcp-connrate, tcp-pingpong), not bulk. It prints "short writes: N" at
 * exit when N > 0.
 *
 * Usage: tcp_cref PORT UPSTREAM_PORT [LIFETIME_SECONDS=600]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct pair;
/* What an epoll event points at: one side of a pair. */
struct side {
  struct pair *p;
  int i; /* 0: the client, 1: the upstream */
};
struct pair {
  int fd[2];
  int eof[2]; /* EOF read from side i (and passed on) */
  int dead;
  struct side s[2];
  struct pair *next; /* freed after the event batch that ended it */
};

static char buf[64 * 1024];
static struct pair *ended;
static unsigned long shortWrites;

static void finish(struct pair *p) {
  if (p->dead) return;
  p->dead = 1;
  close(p->fd[0]);
  close(p->fd[1]);
  p->next = ended;
  ended = p;
}

/* Move what side i has to the other side, until EAGAIN or EOF. */
static void pump(struct pair *p, int i) {
  int o = 1 - i;
  while (!p->dead && !p->eof[i]) {
    ssize_t n = read(p->fd[i], buf, sizeof buf);
    if (n > 0) {
      ssize_t w = write(p->fd[o], buf, (size_t)n);
      if (w != n) {
        if (w >= 0 || errno == EAGAIN) shortWrites++;
        finish(p);
        return;
      }
      if ((size_t)n < sizeof buf) return; /* a short read: the socket is empty (edge-triggered) */
    } else if (n == 0) {
      p->eof[i] = 1;
      if (p->eof[o]) finish(p);
      else shutdown(p->fd[o], SHUT_WR);
    } else {
      if (errno != EAGAIN) finish(p);
      return;
    }
  }
}

static void report(int sig) {
  (void)sig;
  if (shortWrites > 0) {
    char line[64];
    int n = snprintf(line, sizeof line, "short writes: %lu\n", shortWrites);
    if (write(2, line, (size_t)n) < 0) _exit(1);
  }
  _exit(0);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: tcp_cref PORT UPSTREAM_PORT [LIFETIME_SECONDS]\n");
    return 2;
  }
  int port = atoi(argv[1]), upstream = atoi(argv[2]);
  signal(SIGTERM, report);
  signal(SIGINT, report);
  signal(SIGALRM, report);
  alarm(argc > 3 ? (unsigned)atoi(argv[3]) : 600);

  int one = 1;
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&la, sizeof la) < 0 || listen(lfd, 4096) < 0) {
    perror("tcp_cref: listen");
    return 1;
  }
  struct sockaddr_in ua = {.sin_family = AF_INET, .sin_port = htons((uint16_t)upstream)};
  ua.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
    perror("tcp_cref: epoll");
    return 1;
  }
  struct epoll_event evs[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
    for (int k = 0; k < n; k++) {
      struct side *s = evs[k].data.ptr;
      if (s != NULL) {
        if (evs[k].events & EPOLLERR) finish(s->p);
        else pump(s->p, s->i);
        continue;
      }
      for (;;) { /* the listener: accept until EAGAIN (edge-triggered) */
        int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) break;
        int u = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (u < 0) {
          close(c);
          continue;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct pair *p = calloc(1, sizeof *p);
        if (p == NULL || (connect(u, (struct sockaddr *)&ua, sizeof ua) < 0 && errno != EINPROGRESS)) {
          free(p);
          close(u);
          close(c);
          continue;
        }
        p->fd[0] = c;
        p->fd[1] = u;
        for (int i = 0; i < 2; i++) {
          p->s[i].p = p;
          p->s[i].i = i;
          struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = &p->s[i]};
          epoll_ctl(ep, EPOLL_CTL_ADD, p->fd[i], &ev);
        }
      }
    }
    while (ended != NULL) { /* after the batch: a later event of it may point at a pair that ended */
      struct pair *p = ended;
      ended = p->next;
      free(p);
    }
  }
}
