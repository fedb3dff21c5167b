// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* SO_REUSEPORT selector for the UDP listeners the data-plane workers share
 * (docs/workers.md). Attached to a listener's reuseport group with
 * SO_ATTACH_REUSEPORT_EBPF; the kernel runs it for every datagram that has
 * no connected socket, and it picks the worker socket that gets it.
 *
 * The kernel's own pick is socks[hash scaled to n]: when a worker dies n
 * shrinks and nearly every flow of the *other* workers is re-hashed to
 * another worker, where it becomes a new session. Here the socket array has
 * one fixed slot per worker (index = worker - 1), empty while the worker is
 * gone, so a flow's home slot (hash % workers) never changes:
 *
 *   - a flow recorded in l7mp_rp_flows goes to the recorded worker while its
 *     socket is in the array;
 *   - otherwise to its home worker when that one is there (and a stale record
 *     is dropped);
 *   - otherwise to the first live worker of a per-flow probe sequence, and
 *     that placement is recorded, so the flow stays there when its home
 *     worker comes back.
 *
 * Only placements away from home are recorded: a flow at home needs no entry
 * to stay there, which keeps the table small (it fills only while a worker
 * is missing).
 *
 * The key is reuse_md->hash, the kernel's hash of the 4-tuple (saddr, sport,
 * daddr, dport) it computed for this very lookup: no packet reads, the same
 * code for IPv4 and IPv6, and stable for a flow's lifetime. Two flows whose
 * hashes collide share a record, so they share a worker: still sticky.
 *
 * If no slot can take the datagram (every probe missed, or the array is not
 * filled yet) the program selects nothing and the kernel falls back to its
 * own pick among the group's sockets: the datagram is delivered, that flow
 * is just not sticky.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "reuseport_flows.h"

/* One slot per worker; the loader sets max_entries to the worker count. */
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, L7MP_RP_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u64);
} l7mp_rp_socks SEC(".maps");

/* 4-tuple hash -> worker slot, for flows placed away from their home; one
 * table for every listener's selector (the loader shares it). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, L7MP_RP_FLOWS);
	__type(key, __u32);
	__type(value, __u32);
} l7mp_rp_flows SEC(".maps");

/* [0]: the number of workers (slots), written by the loader after load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} l7mp_rp_conf SEC(".maps");

/* The k-th slot a flow tries when its home is gone: a mix of the flow's
 * hash and k, so that a missing worker's flows spread over all the others
 * instead of doubling the load of its neighbour. */
static __always_inline __u32 probe(__u32 hash, __u32 k)
{
	__u32 h = hash ^ (k * 0x9e3779b1u);
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	return h;
}

static __always_inline int pick(struct sk_reuseport_md *md, __u32 slot)
{
	return bpf_sk_select_reuseport(md, &l7mp_rp_socks, &slot, 0) == 0;
}

SEC("sk_reuseport")
int l7mp_reuseport_select(struct sk_reuseport_md *md)
{
	__u32 zero = 0;
	__u32 hash = md->hash;
	__u32 *conf = bpf_map_lookup_elem(&l7mp_rp_conf, &zero);
	if (!conf || *conf == 0)
		return SK_PASS;
	__u32 n = *conf;

	__u32 *rec = bpf_map_lookup_elem(&l7mp_rp_flows, &hash);
	if (rec && pick(md, *rec))
		return SK_PASS;

	if (pick(md, hash % n)) {
		if (rec)
			bpf_map_delete_elem(&l7mp_rp_flows, &hash);
		return SK_PASS;
	}

	for (__u32 k = 1; k <= L7MP_RP_PROBES; k++) {
		__u32 slot = probe(hash, k) % n;
		if (pick(md, slot)) {
			bpf_map_update_elem(&l7mp_rp_flows, &hash, &slot, BPF_ANY);
			return SK_PASS;
		}
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
