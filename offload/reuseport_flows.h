/* Shared between the SO_REUSEPORT selector (reuseport_flows.bpf.c) and its
 * loader (native/bpf/src/reuseport.cc): map sizes and the probe bound. Both
 * sides compile this one header, so they cannot disagree.
 */
#ifndef L7MP_REUSEPORT_FLOWS_H
#define L7MP_REUSEPORT_FLOWS_H

/* Flows placed away from their home worker (its socket was missing when the
 * flow's first datagram came). LRU: a flow evicted while its placement
 * still matters goes back to its home worker, a new session there. One
 * table serves every shared UDP listener (keys are 4-tuple hashes, which
 * differ across listeners): 5 MB of kernel memory (memlock) in all. */
#define L7MP_RP_FLOWS 65536

/* How many other workers a flow whose home worker is gone tries, in a
 * per-flow pseudo-random order, before the kernel's own pick applies.
 * With half of the workers gone, 16 misses in a row happen to one flow in
 * 65536. */
#define L7MP_RP_PROBES 16

/* The largest admin.workers (config/admin.ts): the socket array's size bound. */
#define L7MP_RP_MAX_WORKERS 1024

#endif
