/*
 * SCTP-over-UDP (RFC 6951) echo peer, built on usrsctp: an SCTP stack that is
 * independent of the gateway's (the `sctp` npm package), so that the
 * conformance suite and the tests check that two implementations interoperate
 * rather than that one agrees with itself.
 *
 * One one-to-many (SOCK_SEQPACKET) SCTP socket serves every association. Each
 * complete message (read up to MSG_EOR: usrsctp delivers a large message in
 * parts) goes back whole on the stream it came in on, to the association it
 * came from, in arrival order (one thread reads and answers).
 *
 * usage: sctp_udp_echo [-a ADDRESS] [-t TAG] UDP_PORT SCTP_PORT
 *   UDP_PORT   the local UDP encapsulation port (usrsctp binds it on the
 *              wildcard address; SCTP itself is bound to ADDRESS)
 *   SCTP_PORT  the SCTP port the gateway's cluster connects to
 *   -a ADDRESS the SCTP local address (default 127.0.0.1)
 *   -t TAG     send TAG as the first message of every new association
 *              (the conformance suite's load-balancing cases tell peers apart)
 * It prints "ready" on stdout once it listens.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <usrsctp.h>

/* The largest message echoed; longer ones are cut here (and reported). */
#define MAX_MESSAGE (256 * 1024)

static void usage(void) {
  fprintf(stderr, "usage: sctp_udp_echo [-a ADDRESS] [-t TAG] UDP_PORT SCTP_PORT\n");
  exit(2);
}

static int parse_port(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 1 || v > 65535) usage();
  return (int)v;
}

static void send_on(struct socket *sock, const void *data, size_t len, sctp_assoc_t assoc, uint16_t sid, uint32_t ppid) {
  struct sctp_sndinfo snd;
  memset(&snd, 0, sizeof snd);
  snd.snd_sid = sid;
  snd.snd_ppid = ppid;
  snd.snd_assoc_id = assoc;
  if (usrsctp_sendv(sock, data, len, NULL, 0, &snd, (socklen_t)sizeof snd, SCTP_SENDV_SNDINFO, 0) < 0) {
    /* The association went away (ABORT, shutdown): its problem, not ours. */
    fprintf(stderr, "sctp_udp_echo: send to association %u: %s\n", (unsigned)assoc, strerror(errno));
  }
}

static void notification(struct socket *sock, const union sctp_notification *n, size_t len, const char *tag) {
  if (len < sizeof n->sn_header) return;
  if (n->sn_header.sn_type != SCTP_ASSOC_CHANGE || len < sizeof n->sn_assoc_change) return;
  const struct sctp_assoc_change *c = &n->sn_assoc_change;
  switch (c->sac_state) {
  case SCTP_COMM_UP:
    fprintf(stderr, "sctp_udp_echo: association %u up\n", (unsigned)c->sac_assoc_id);
    if (tag != NULL) send_on(sock, tag, strlen(tag), c->sac_assoc_id, 0, 0);
    break;
  case SCTP_COMM_LOST:
  case SCTP_SHUTDOWN_COMP:
    fprintf(stderr, "sctp_udp_echo: association %u %s\n", (unsigned)c->sac_assoc_id,
            c->sac_state == SCTP_COMM_LOST ? "lost" : "shut down");
    break;
  default:
    break;
  }
}

int main(int argc, char **argv) {
  const char *address = "127.0.0.1";
  const char *tag = NULL;
  int opt;
  while ((opt = getopt(argc, argv, "a:t:")) != -1) {
    if (opt == 'a') address = optarg;
    else if (opt == 't') tag = optarg;
    else usage();
  }
  if (argc - optind != 2) usage();
  int udp_port = parse_port(argv[optind]);
  int sctp_port = parse_port(argv[optind + 1]);
  setvbuf(stdout, NULL, _IOLBF, 0);

  usrsctp_init((uint16_t)udp_port, NULL, NULL);
  /*
   * usrsctp leaves the CRC32c out towards loopback addresses by default
   * (a kernel offload shortcut); the gateway, as RFC 4960 says, drops
   * packets whose checksum does not match. Always compute it.
   */
  usrsctp_sysctl_set_sctp_no_csum_on_loopback(0);
  /* Keep the wire simple for the peer: no ECN, no PR-SCTP, no ASCONF. */
  usrsctp_sysctl_set_sctp_ecn_enable(0);

  struct socket *sock = usrsctp_socket(AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP, NULL, NULL, 0, NULL);
  if (sock == NULL) { perror("usrsctp_socket"); return 1; }

  const int on = 1;
  if (usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_RECVRCVINFO, &on, sizeof on) < 0) { perror("SCTP_RECVRCVINFO"); return 1; }
  /* One message at a time across associations: its parts are never interleaved with another's. */
  const int level = 0;
  if (usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_FRAGMENT_INTERLEAVE, &level, sizeof level) < 0) { perror("SCTP_FRAGMENT_INTERLEAVE"); return 1; }
  struct sctp_event ev;
  memset(&ev, 0, sizeof ev);
  ev.se_assoc_id = SCTP_FUTURE_ASSOC;
  ev.se_type = SCTP_ASSOC_CHANGE;
  ev.se_on = 1;
  if (usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_EVENT, &ev, sizeof ev) < 0) { perror("SCTP_EVENT"); return 1; }

  struct sockaddr_in me;
  memset(&me, 0, sizeof me);
  me.sin_family = AF_INET;
  me.sin_port = htons((uint16_t)sctp_port);
  if (inet_pton(AF_INET, address, &me.sin_addr) != 1) usage();
  if (usrsctp_bind(sock, (struct sockaddr *)&me, sizeof me) < 0) { perror("usrsctp_bind"); return 1; }
  if (usrsctp_listen(sock, 128) < 0) { perror("usrsctp_listen"); return 1; }
  printf("ready\n");

  static char buf[MAX_MESSAGE];
  size_t have = 0;
  for (;;) {
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    struct sctp_rcvinfo rcv;
    socklen_t ilen = sizeof rcv;
    unsigned int itype = 0;
    int flags = 0;
    size_t room = sizeof buf - have;
    if (room == 0) {
      /* Oversized: drop what is held, keep reading up to the message's end. */
      fprintf(stderr, "sctp_udp_echo: message over %d bytes cut\n", MAX_MESSAGE);
      have = 0;
      room = sizeof buf;
    }
    ssize_t n = usrsctp_recvv(sock, buf + have, room, (struct sockaddr *)&from, &flen, &rcv, &ilen, &itype, &flags);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      perror("usrsctp_recvv");
      return 1;
    }
    if (flags & MSG_NOTIFICATION) {
      notification(sock, (const union sctp_notification *)(buf + have), (size_t)n, tag);
      continue;
    }
    have += (size_t)n;
    if (!(flags & MSG_EOR)) continue; /* a part of a larger message */
    if (itype != SCTP_RECVV_RCVINFO) {
      fprintf(stderr, "sctp_udp_echo: message without receive info dropped\n");
      have = 0;
      continue;
    }
    send_on(sock, buf, have, rcv.rcv_assoc_id, rcv.rcv_sid, rcv.rcv_ppid); /* the PPID is opaque: passed on as received */
    have = 0;
  }
}
