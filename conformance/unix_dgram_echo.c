/*
 * Unix datagram echo peer for the conformance suite: each datagram goes back
 * to its sender, whole and in arrival order.
 *
 * Why not socat: UNIX-RECVFROM,fork answers every datagram from a child of
 * its own, and children race, so a burst can come back reordered (seen:
 * PIPE->UNIX/dgram byte-order failing under load). One loop keeps order.
 *
 * usage: unix_dgram_echo PATH   (PATH is unlinked first, and made 0666 so
 * that a gateway running as another user can send to it)
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2 || strlen(argv[1]) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fprintf(stderr, "usage: unix_dgram_echo PATH (shorter than 108 bytes)\n");
    return 2;
  }
  int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (fd < 0) { perror("socket"); return 1; }
  struct sockaddr_un me = { .sun_family = AF_UNIX };
  strcpy(me.sun_path, argv[1]);
  unlink(argv[1]);
  if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0) { perror("bind"); return 1; }
  chmod(argv[1], 0666);
  static char buf[65536 + 1];
  for (;;) {
    struct sockaddr_un from;
    socklen_t flen = sizeof from;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("recvfrom");
      return 1;
    }
    /* An unbound sender has no address to answer: nothing to do. */
    if (flen <= sizeof(sa_family_t)) continue;
    /* A sender that went away is its own problem, not the peer's end. */
    while (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen) < 0 && errno == EINTR) {}
  }
}
