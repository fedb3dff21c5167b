/*
 * AF_PACKET peer for the conformance suite: raw Ethernet frames of one
 * ethertype on one interface, usually the far end of a veth pair inside a
 * network namespace (conformance/l2.ts makes the pair).
 *
 * usage: packet_peer [--netns PATH] echo IFACE [ETHERTYPE]
 *        packet_peer [--netns PATH] client IFACE [ETHERTYPE]
 *
 *   --netns PATH  enter that network namespace first (a file under
 *                 /run/netns, as `ip netns add` makes it): the peer needs no
 *                 `ip` binary, so the peers image can run it as it is
 *   echo          every frame of the ethertype that arrives goes back out of
 *                 the interface with its source and destination MAC
 *                 swapped, whole, in arrival order (one loop); prints "ready"
 *                 once bound
 *   client        stdin and stdout carry records (4-byte big-endian length,
 *                 then that many bytes): each record read from stdin is sent
 *                 as one frame, verbatim (the record holds the Ethernet
 *                 header); each frame of the ethertype that arrives is
 *                 written to stdout as one record. A zero-length record on
 *                 stdout means "bound, ready". Ends on stdin's EOF.
 *
 * ETHERTYPE defaults to 0x88B5 (IEEE local experimental), the AF_PACKET
 * protocol's default. Frames this socket sends itself are never read back
 * (PACKET_IGNORE_OUTGOING, and the packet type as a fallback). Needs
 * CAP_NET_RAW (and CAP_SYS_ADMIN for --netns).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

/* The largest frame a veth carries: MTU 65535 plus the 14-byte header. */
#define MAX_FRAME (65535 + 14)

static unsigned char frame[MAX_FRAME];

static int open_packet(const char *ifname, int type) {
  int fd = socket(AF_PACKET, SOCK_RAW, htons(type));
  if (fd < 0) { perror("packet_peer: socket(AF_PACKET)"); exit(1); }
  unsigned idx = if_nametoindex(ifname);
  if (idx == 0) { fprintf(stderr, "packet_peer: no interface %s: %s\n", ifname, strerror(errno)); exit(1); }
  struct sockaddr_ll a;
  memset(&a, 0, sizeof a);
  a.sll_family = AF_PACKET;
  a.sll_protocol = htons(type);
  a.sll_ifindex = (int)idx;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("packet_peer: bind"); exit(1); }
  int one = 1;
  (void)setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
  int size = 8 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0) (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0) (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  return fd;
}

/* One frame of the type from another host (not one of ours going out); -1 on error, 0 to skip. */
static ssize_t recv_frame(int fd) {
  struct sockaddr_ll from;
  socklen_t len = sizeof from;
  ssize_t n = recvfrom(fd, frame, sizeof frame, 0, (struct sockaddr *)&from, &len);
  if (n < 0) return errno == EINTR ? 0 : -1;
  if (from.sll_pkttype == PACKET_OUTGOING) return 0;
  return n;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int echo(int fd) {
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    ssize_t n = recv_frame(fd);
    if (n < 0) { perror("packet_peer: recv"); return 1; }
    if (n < ETH_HLEN) continue;
    unsigned char mac[ETH_ALEN];
    memcpy(mac, frame, ETH_ALEN);
    memcpy(frame, frame + ETH_ALEN, ETH_ALEN);
    memcpy(frame + ETH_ALEN, mac, ETH_ALEN);
    if (send(fd, frame, (size_t)n, 0) < 0) fprintf(stderr, "packet_peer: send %zd B: %s\n", n, strerror(errno));
  }
}

static int client(int fd) {
  static unsigned char in[4 + MAX_FRAME];
  size_t have = 0;
  unsigned char zero[4] = { 0, 0, 0, 0 };
  if (write_all(1, zero, 4) < 0) return 1;
  struct pollfd p[2] = { { .fd = 0, .events = POLLIN }, { .fd = fd, .events = POLLIN } };
  for (;;) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      perror("packet_peer: poll");
      return 1;
    }
    if (p[1].revents & POLLIN) {
      ssize_t n = recv_frame(fd);
      if (n < 0) { perror("packet_peer: recv"); return 1; }
      if (n > 0) {
        unsigned char len[4] = { (unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n };
        if (write_all(1, len, 4) < 0 || write_all(1, frame, (size_t)n) < 0) return 1;
      }
    }
    if (p[0].revents & (POLLIN | POLLHUP)) {
      ssize_t r = read(0, in + have, sizeof in - have);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return 0;
      have += (size_t)r;
      for (;;) {
        if (have < 4) break;
        size_t len = ((size_t)in[0] << 24) | ((size_t)in[1] << 16) | ((size_t)in[2] << 8) | in[3];
        if (len > MAX_FRAME) { fprintf(stderr, "packet_peer: a %zu-byte record is larger than any frame\n", len); return 1; }
        if (have < 4 + len) break;
        if (send(fd, in + 4, len, 0) < 0) fprintf(stderr, "packet_peer: send %zu B: %s\n", len, strerror(errno));
        memmove(in, in + 4 + len, have - 4 - len);
        have -= 4 + len;
      }
    }
  }
}

int main(int argc, char **argv) {
  int i = 1;
  if (i + 1 < argc && strcmp(argv[i], "--netns") == 0) {
    int ns = open(argv[i + 1], O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) { fprintf(stderr, "packet_peer: enter %s: %s\n", argv[i + 1], strerror(errno)); return 1; }
    close(ns);
    i += 2;
  }
  if (argc - i < 2 || argc - i > 3 || (strcmp(argv[i], "echo") != 0 && strcmp(argv[i], "client") != 0)) {
    fprintf(stderr, "usage: packet_peer [--netns PATH] echo|client IFACE [ETHERTYPE]\n");
    return 2;
  }
  int type = argc - i == 3 ? (int)strtol(argv[i + 2], NULL, 0) : 0x88b5;
  int fd = open_packet(argv[i + 1], type);
  return strcmp(argv[i], "echo") == 0 ? echo(fd) : client(fd);
}
