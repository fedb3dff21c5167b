/* udp_blast: load generator and sink for bench/offload-udp.ts.
 *
 *   udp_blast sink ADDR PORT
 *       Counts every datagram (recvmmsg, 64 at a time) and answers the ones
 *       whose first byte is 'P' (pings, which establish both directions of a
 *       session before the blast). Prints "<CLOCK_MONOTONIC ms> <count>"
 *       every 50 ms, so the bench can take the rate over any window.
 *   udp_blast send LADDR LPORT DADDR DPORT SIZE SECONDS MAXPKTS
 *       From a fixed source port: pings until answered (5 s at most), prints
 *       "ready", waits for a line on stdin, then sends SIZE-byte datagrams
 *       with sendmmsg, 32 at a time, for SECONDS or MAXPKTS, whichever comes
 *       first, and prints "start <ms>", "stop <ms>", "sent <n>".
 * Bounded by design: the sender stops on its own; the sink ends when stdin
 * closes or it is killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct sockaddr_in addr_of(const char *a, const char *p) {
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(p))};
	if (inet_pton(AF_INET, a, &sa.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", a);
		exit(2);
	}
	return sa;
}

#define BATCH 64

static int sink(const char *a, const char *p) {
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = addr_of(a, p);
	int big = 8 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) { perror("bind"); return 1; }
	static char bufs[BATCH][2048];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_in from[BATCH];
	unsigned long long count = 0;
	double next = now_ms() + 50;
	printf("ready\n");
	fflush(stdout);
	struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
	for (;;) {
		if (poll(pf, 2, 50) < 0 && errno != EINTR) return 1;
		if (pf[1].revents) {
			char line[64];
			if (read(0, line, sizeof(line)) <= 0) return 0; /* stdin closed: done */
		}
		if (pf[0].revents & POLLIN) {
			for (int i = 0; i < BATCH; i++) {
				iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
				msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof(from[i]), .msg_iov = &iov[i], .msg_iovlen = 1};
			}
			int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
			for (int i = 0; i < n; i++) {
				if (msgs[i].msg_len > 0 && bufs[i][0] == 'P')
					sendto(fd, bufs[i], msgs[i].msg_len, 0, (struct sockaddr *)&from[i], msgs[i].msg_hdr.msg_namelen);
			}
			if (n > 0) count += (unsigned long long)n;
		}
		double t = now_ms();
		if (t >= next) {
			printf("%.1f %llu\n", t, count);
			fflush(stdout);
			next = t + 50;
		}
	}
}

static int sender(char **v) {
	struct sockaddr_in local = addr_of(v[0], v[1]), dst = addr_of(v[2], v[3]);
	int size = atoi(v[4]);
	double seconds = atof(v[5]);
	unsigned long long max = strtoull(v[6], NULL, 10);
	if (size < 1 || size > 1400) size = 64;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&local, sizeof(local)) || connect(fd, (struct sockaddr *)&dst, sizeof(dst))) {
		perror("bind/connect");
		return 1;
	}
	char buf[1400];
	memset(buf, 'D', sizeof(buf));
	char ping[64];
	memset(ping, 'P', sizeof(ping));
	double deadline = now_ms() + 5000;
	int answered = 0;
	while (!answered && now_ms() < deadline) {
		send(fd, ping, sizeof(ping), 0);
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 200) > 0 && recv(fd, buf, sizeof(buf), 0) > 0) answered = 1;
	}
	if (!answered) { fprintf(stderr, "no answer to the ping\n"); return 1; }
	memset(buf, 'D', sizeof(buf));
	printf("ready\n");
	fflush(stdout);
	char line[64];
	if (!fgets(line, sizeof(line), stdin)) return 0;
	struct mmsghdr msgs[32];
	struct iovec iov = {buf, (size_t)size};
	for (int i = 0; i < 32; i++) msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov, .msg_iovlen = 1};
	unsigned long long sent = 0;
	double start = now_ms(), stop = start + seconds * 1000;
	printf("start %.1f\n", start);
	while (sent < max) {
		int n = sendmmsg(fd, msgs, 32, 0);
		if (n > 0) sent += (unsigned long long)n;
		else if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) { perror("sendmmsg"); break; }
		if (now_ms() >= stop) break;
	}
	printf("stop %.1f\nsent %llu\n", now_ms(), sent);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv) {
	if (argc == 4 && strcmp(argv[1], "sink") == 0) return sink(argv[2], argv[3]);
	if (argc == 9 && strcmp(argv[1], "send") == 0) return sender(argv + 2);
	fprintf(stderr, "usage: udp_blast sink ADDR PORT | send LADDR LPORT DADDR DPORT SIZE SECONDS MAXPKTS\n");
	return 2;
}
