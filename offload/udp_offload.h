/* Shared between the tc-bpf program (udp_offload.bpf.c) and the native addon
 * (native/bpf/src/addon.cc): the flow table's key and value layout. Both
 * sides compile this one header, so the layouts cannot drift apart.
 *
 * Addresses and ports are in network byte order, exactly as they sit in the
 * packet, so the program compares and copies them without swapping.
 * IPv4 only, as l7mp's offload was.
 */
#ifndef L7MP_UDP_OFFLOAD_H
#define L7MP_UDP_OFFLOAD_H

#include <linux/types.h>

/* Size of the flow table. LRU: when it is full the least recently used flow
 * is evicted; its packets then simply go up to user space again, where the
 * session still exists, so eviction costs speed, never correctness. */
#define L7MP_FLOW_MAX 65536

/* A packet's UDP 5-tuple as it arrives at the gateway. 16 bytes, no holes. */
struct l7mp_flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto; /* IPPROTO_UDP; kept so the key could grow to other protocols */
	__u8 pad[3];
};

/* What to do with a matching packet, and the flow's counters. */
struct l7mp_flow_value {
	/* The rewrite: the packet leaves with this 4-tuple, as if the gateway's
	 * own socket had sent it. */
	__u32 new_saddr;
	__u32 new_daddr;
	__u16 new_sport;
	__u16 new_dport;
	/* Output interface. 0: let the FIB decide (the default). Non-zero: the
	 * FIB must agree, else the packet goes up to user space; this guards
	 * against a route change sending offloaded traffic out of the wrong
	 * interface. */
	__u32 oif;
	/* Which gateway process installed the entry (0: a single-process
	 * gateway, i: worker i). The program ignores it; the main process reads
	 * it to remove a dead worker's flows (docs/workers.md). */
	__u32 owner;
	__u32 pad;
	/* Counted by the program for every packet it forwarded. bytes counts the
	 * UDP payload, the same unit as the gateway's user-space counters, so the
	 * two add up. */
	__u64 packets;
	__u64 bytes;
	/* bpf_ktime_get_ns() of the last forwarded packet (0: none yet). */
	__u64 last_ns;
};

#endif
