// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* tc-bpf fast path for offloaded UDP sessions (attached at clsact ingress).
 *
 * For every IPv4/UDP packet the program looks up the 5-tuple in the flow
 * table. On a hit it rewrites the addresses and ports to the ones the
 * gateway's own socket would have used, fixes the IPv4 and UDP checksums
 * incrementally, and redirects the packet to the egress of the output
 * interface with the MAC addresses the FIB gives. Anything it cannot handle
 * (no entry, IP options it does not parse, fragments, no route, TTL about to
 * expire, a neighbour not yet resolved) goes up the stack unchanged, to the
 * gateway in user space, which handles every packet correctly, just slower.
 * The rule is: rewrite only once it is certain the packet will be redirected.
 *
 * The gateway keeps the table: one entry per direction of an offloaded
 * session (client -> gateway rewritten to gateway -> server, and
 * server -> gateway rewritten to gateway -> client).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "udp_offload.h"

/* AF_INET for bpf_fib_lookup (linux/socket.h is not usable from BPF). */
#define L7MP_AF_INET 2
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, L7MP_FLOW_MAX);
	__type(key, struct l7mp_flow_key);
	__type(value, struct l7mp_flow_value);
} l7mp_flows SEC(".maps");

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
#define IP_TTL_OFF (ETH_HLEN + offsetof(struct iphdr, ttl))

/* Replace a 4-byte IP address: the IP header checksum and, since addresses
 * are part of the UDP pseudo-header, the UDP checksum too.
 * BPF_F_MARK_MANGLED_0: a UDP checksum of 0 means "none" and stays 0, and a
 * result of 0 is written as 0xffff; we never zero a checksum. */
static __always_inline int set_addr(struct __sk_buff *skb, __u32 addr_off, __u32 udp_csum_off,
				    __u32 old, __u32 new)
{
	if (old == new)
		return 0;
	if (bpf_l4_csum_replace(skb, udp_csum_off, old, new,
				BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | sizeof(new)))
		return -1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old, new, sizeof(new)))
		return -1;
	return bpf_skb_store_bytes(skb, addr_off, &new, sizeof(new), 0);
}

static __always_inline int set_port(struct __sk_buff *skb, __u32 port_off, __u32 udp_csum_off,
				    __u16 old, __u16 new)
{
	if (old == new)
		return 0;
	if (bpf_l4_csum_replace(skb, udp_csum_off, old, new, BPF_F_MARK_MANGLED_0 | sizeof(new)))
		return -1;
	return bpf_skb_store_bytes(skb, port_off, &new, sizeof(new), 0);
}

SEC("tc")
int l7mp_udp_offload(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	/* IP options would move the UDP header; fragments carry no (or a
	 * partial) UDP header. Both are rare on a proxied UDP flow: leave them
	 * to user space rather than parse them here. */
	if (ip->ihl != 5 || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return TC_ACT_OK;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return TC_ACT_OK;

	struct l7mp_flow_key key = {
		.saddr = ip->saddr,
		.daddr = ip->daddr,
		.sport = udp->source,
		.dport = udp->dest,
		.proto = IPPROTO_UDP,
	};
	struct l7mp_flow_value *flow = bpf_map_lookup_elem(&l7mp_flows, &key);
	if (!flow)
		return TC_ACT_OK;

	/* A proxy re-sends the datagram, so the TTL is ours to set; we still
	 * decrement it, so that a misconfigured loop of offloaded flows dies out
	 * instead of spinning in the kernel. */
	if (ip->ttl <= 1)
		return TC_ACT_OK;

	/* Route the rewritten packet before touching it: on any failure the
	 * packet goes up unchanged. */
	struct bpf_fib_lookup fib = {
		.family = L7MP_AF_INET,
		.l4_protocol = IPPROTO_UDP,
		.tos = ip->tos,
		.tot_len = bpf_ntohs(ip->tot_len),
		.ifindex = skb->ingress_ifindex,
		.ipv4_src = flow->new_saddr,
		.ipv4_dst = flow->new_daddr,
		.sport = flow->new_sport,
		.dport = flow->new_dport,
	};
	long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return TC_ACT_OK; /* not forwardable from here: let the stack decide */
	if (flow->oif != 0 && fib.ifindex != flow->oif)
		return TC_ACT_OK;

	__u32 old_saddr = ip->saddr, old_daddr = ip->daddr;
	__u16 old_sport = udp->source, old_dport = udp->dest;
	__u16 payload = bpf_ntohs(udp->len);
	__u8 old_ttl = ip->ttl;
	/* The UDP header lies right after a 20-byte IP header (checked above). */
	const __u32 udp_off = ETH_HLEN + sizeof(struct iphdr);
	const __u32 ucsum = udp_off + offsetof(struct udphdr, check);

	/* Checksum helpers may move skb->data: no packet pointer is used below. */
	if (set_addr(skb, IP_SRC_OFF, ucsum, old_saddr, flow->new_saddr) ||
	    set_addr(skb, IP_DST_OFF, ucsum, old_daddr, flow->new_daddr) ||
	    set_port(skb, udp_off + offsetof(struct udphdr, source), ucsum, old_sport, flow->new_sport) ||
	    set_port(skb, udp_off + offsetof(struct udphdr, dest), ucsum, old_dport, flow->new_dport))
		return TC_ACT_SHOT; /* half rewritten: must not reach anyone */

	/* TTL sits in the same 16-bit word as the protocol field. */
	__u16 old_word = bpf_htons(((__u16)old_ttl << 8) | IPPROTO_UDP);
	__u16 new_word = bpf_htons(((__u16)(old_ttl - 1) << 8) | IPPROTO_UDP);
	__u8 new_ttl = old_ttl - 1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_word, new_word, sizeof(__u16)) ||
	    bpf_skb_store_bytes(skb, IP_TTL_OFF, &new_ttl, sizeof(new_ttl), 0))
		return TC_ACT_SHOT;

	__sync_fetch_and_add(&flow->packets, 1);
	__sync_fetch_and_add(&flow->bytes, payload > sizeof(struct udphdr) ? payload - sizeof(struct udphdr) : 0);
	flow->last_ns = bpf_ktime_get_ns();

	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		/* The next hop's MAC is unknown: the neighbour subsystem resolves
		 * it (and queues the packet meanwhile). */
		return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
	}
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), fib.dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), fib.smac, ETH_ALEN, 0))
		return TC_ACT_SHOT;
	return bpf_redirect(fib.ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
