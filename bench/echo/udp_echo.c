/*
 * UDP echo server for the benchmarks: every datagram goes back to its sender
 * unchanged. recvmmsg/sendmmsg move up to BATCH datagrams per system call, so
 * the echo costs a fraction of what the gateway under test spends per message
 * and is never the bottleneck.
 *
 * Usage: udp_echo [PORT [LIFETIME_SECONDS]]
 *   Binds 127.0.0.1:PORT (0 = any free port), prints "PORT <n>" on stdout once
 *   bound, and exits after LIFETIME_SECONDS (default 600) even if nobody stops
 *   it, so a crashed benchmark runner cannot leave it behind for long.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define MAX_DGRAM 65536

static char bufs[BATCH][MAX_DGRAM];
static struct sockaddr_in addrs[BATCH];
static struct iovec iovs[BATCH];
static struct mmsghdr msgs[BATCH];

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int lifetime = argc > 2 ? atoi(argv[2]) : 600;
  alarm(lifetime > 0 ? (unsigned)lifetime : 600);
  /* A peer that resets while we write must cost that connection, not the process. */
  signal(SIGPIPE, SIG_IGN);

  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) { perror("socket"); return 1; }
  int size = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 1; }
  socklen_t len = sizeof sa;
  getsockname(fd, (struct sockaddr *)&sa, &len);
  printf("PORT %d\n", ntohs(sa.sin_port));
  fflush(stdout);

  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      iovs[i].iov_base = bufs[i];
      iovs[i].iov_len = MAX_DGRAM;
      msgs[i].msg_hdr.msg_name = &addrs[i];
      msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_control = NULL;
      msgs[i].msg_hdr.msg_controllen = 0;
      msgs[i].msg_hdr.msg_flags = 0;
    }
    /* Block for the first datagram, then take whatever else is queued. */
    int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("recvmmsg");
      return 1;
    }
    for (int i = 0; i < n; i++) iovs[i].iov_len = msgs[i].msg_len;
    int sent = 0;
    while (sent < n) {
      int r = sendmmsg(fd, msgs + sent, (unsigned)(n - sent), 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        /* A full socket buffer or an unreachable peer: drop the rest, as UDP would. */
        break;
      }
      sent += r;
    }
  }
}
