/*
 * TCP echo server for the benchmarks: one thread, epoll, non-blocking sockets;
 * every byte read goes back to the same connection. It reads into a 256 KiB
 * buffer and writes straight back, so one system call moves whatever the
 * kernel has queued (many 64 B messages, or a large bulk chunk) and the echo
 * is never the bottleneck. If the peer does not read, the unsent rest is kept
 * per connection and reading pauses (EPOLLOUT) until it is written: the echo
 * exerts backpressure like any TCP server instead of dropping data.
 *
 * On EOF it finishes writing what it holds and closes, so the client (or the
 * proxy in between) sees an orderly close.
 *
 * Usage: tcp_echo [PORT [LIFETIME_SECONDS]]
 *   Listens on 127.0.0.1:PORT (0 = any free port), prints "PORT <n>" once
 *   listening, and exits after LIFETIME_SECONDS (default 600) so a crashed
 *   runner cannot leave it behind for long.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (256 * 1024)
#define MAX_EVENTS 256

/* Per-connection state: only the bytes not yet written back. */
struct conn {
  int fd;
  char *pending; /* malloc'd only while a write was short */
  size_t plen, poff;
  int eof;
};

static char buf[BUF_SIZE];
static int ep;

static void drop(struct conn *c) {
  close(c->fd); /* also removes it from the epoll set */
  free(c->pending);
  free(c);
}

/* Write back what is pending; 1 = all written, 0 = would block, -1 = error. */
static int flush_pending(struct conn *c) {
  while (c->poff < c->plen) {
    ssize_t w = write(c->fd, c->pending + c->poff, c->plen - c->poff);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN ? 0 : -1;
    }
    c->poff += (size_t)w;
  }
  free(c->pending);
  c->pending = NULL;
  c->plen = c->poff = 0;
  return 1;
}

static void want(struct conn *c, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Read and echo until the socket has nothing more, would block, or ends. */
static void on_readable(struct conn *c) {
  for (;;) {
    ssize_t n = read(c->fd, buf, BUF_SIZE);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      drop(c);
      return;
    }
    if (n == 0) { /* EOF: everything read was written already (or we would not read) */
      drop(c);
      return;
    }
    size_t off = 0;
    while (off < (size_t)n) {
      ssize_t w = write(c->fd, buf + off, (size_t)n - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) { drop(c); return; }
        /* Peer is slow: keep the rest and stop reading until it drains. */
        c->plen = (size_t)n - off;
        c->poff = 0;
        c->pending = malloc(c->plen);
        if (c->pending == NULL) { drop(c); return; }
        memcpy(c->pending, buf + off, c->plen);
        want(c, EPOLLOUT);
        return;
      }
      off += (size_t)w;
    }
    if ((size_t)n < BUF_SIZE) return; /* drained the socket: no need for a read that says EAGAIN */
  }
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int lifetime = argc > 2 ? atoi(argv[2]) : 600;
  alarm(lifetime > 0 ? (unsigned)lifetime : 600);
  /* A peer that resets while we write must cost that connection, not the process. */
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (lfd < 0) { perror("socket"); return 1; }
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 1; }
  if (listen(lfd, 4096) < 0) { perror("listen"); return 1; }
  socklen_t len = sizeof sa;
  getsockname(lfd, (struct sockaddr *)&sa, &len);
  printf("PORT %d\n", ntohs(sa.sin_port));
  fflush(stdout);

  ep = epoll_create1(0);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);

  struct epoll_event events[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(ep, events, MAX_EVENTS, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      struct conn *c = events[i].data.ptr;
      if (c == NULL) { /* the listening socket: accept all that wait */
        for (;;) {
          int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct conn *nc = calloc(1, sizeof *nc);
          if (nc == NULL) { close(fd); continue; }
          nc->fd = fd;
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      if (c->pending != NULL) {
        if (events[i].events & (EPOLLERR | EPOLLHUP)) { drop(c); continue; }
        int r = flush_pending(c);
        if (r < 0) { drop(c); continue; }
        if (r == 0) continue;
        want(c, EPOLLIN);
      }
      on_readable(c);
    }
  }
}
