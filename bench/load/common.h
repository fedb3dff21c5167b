/*
 * Shared helpers for the C load generators (udp_load.c, tcp_load.c): option
 * parsing, the monotonic clock, a round-trip histogram, CPU time and the JSON
 * result line. Header-only so each generator is a single `cc -O2` call.
 *
 * Protocol with the runner (bench/run.ts): a generator prints "MEASURE" when
 * its measured interval starts (so the runner samples the proxy's CPU time
 * over exactly that interval), then one JSON line with its result, and exits.
 * Every generator sets alarm() to a hard deadline, so it cannot outlive a
 * crashed runner.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>

/* "--name value" options; every option has a default, unknown ones are fatal. */
static const char *opt_str(int argc, char **argv, const char *name, const char *def) {
  for (int i = 1; i + 1 < argc; i += 2)
    if (strcmp(argv[i] + 2, name) == 0 && argv[i][0] == '-' && argv[i][1] == '-') return argv[i + 1];
  return def;
}
static double opt_num(int argc, char **argv, const char *name, double def) {
  const char *s = opt_str(argc, argv, name, NULL);
  return s ? atof(s) : def;
}

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Round trips in 1 µs buckets up to 200 ms; the last bucket takes the rest. */
#define HIST_BUCKETS 200001
static uint32_t hist[HIST_BUCKETS];
static uint64_t hist_n;
static double hist_sum_us;

static inline void hist_add(uint64_t rtt_ns) {
  uint64_t us = rtt_ns / 1000;
  hist[us < HIST_BUCKETS - 1 ? us : HIST_BUCKETS - 1]++;
  hist_n++;
  hist_sum_us += (double)rtt_ns / 1000.0;
}

static double hist_pct(double q) {
  if (hist_n == 0) return -1;
  uint64_t want = (uint64_t)((double)hist_n * q + 0.999999), acc = 0;
  for (int i = 0; i < HIST_BUCKETS; i++) {
    acc += hist[i];
    if (acc >= want) return i + 0.5;
  }
  return -1;
}

/* This process's CPU seconds (user + system). */
static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Hard deadline, and no death by SIGPIPE when a proxy resets a connection
   we write to: that is an error to count, not a reason to exit silently. */
static void bench_init(unsigned deadline_s) {
  alarm(deadline_s);
  signal(SIGPIPE, SIG_IGN);
}

static void say_measure(void) {
  printf("MEASURE\n");
  fflush(stdout);
}

#endif
