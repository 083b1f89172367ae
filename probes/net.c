/* net.c: flows and DNS packets on containers' host-side veth interfaces (tc clsact, SCHED_CLS).
 *
 * Two programs: net_egress on the host veth's ingress hook (packets *from* the container) and
 * net_ingress on its egress hook (packets *to* the container); direction is always the
 * container's. Each packet (IPv4 or IPv6; ARP and others are ignored) updates the flow table,
 * an LRU hash keyed by (ifindex, direction, 5-tuple): packets (GSO segments), bytes (skb->len,
 * Ethernet header included, as the interface counters count), TCP flags seen, first and last
 * time. The first packet of a flow that *opens* a conversation emits a ring buffer record at once;
 * a flow whose reverse was seen first (or whose first TCP packet is a SYN-ACK) is marked
 * FLOW_REPLY and emits nothing, so a server answering many clients does not look like it
 * connects out to many ports. A container's answers teach the kernel the ports it serves
 * (served_ports). Unless a rule needs them (net_settings[NET_SERVED] = SERVED_RECORDS), new
 * inbound flows to those ports emit nothing either, and with SERVED_AGGREGATE (the default) a
 * connection a client opens to one of them has no flow of its own: its packets are counted in
 * the client's aggregate for that port (key.served = 1, the client's port 0) and
 * the container's answers in the aggregate of the other direction, so a server's clients cost
 * user space one flow per client address, not one per connection. The container's DNS as a
 * client (queries to port 53 out, answers from port 53 in, UDP and TCP) is copied, up to
 * DNS_CAPTURE bytes, to user space for parsing.
 *
 * Returns TC_ACT_UNSPEC, not TC_ACT_OK: with direct_action, TC_ACT_OK ends the filter chain at
 * our filter, so a CNI's or an admin's filter behind ours would silently stop running.
 * TC_ACT_UNSPEC hands the packet on to the next filter and, with none, it passes exactly as with
 * TC_ACT_OK. The program never drops, redirects or writes a packet.
 *
 * Caveats: IPv6 extension headers are not walked (the flow takes the first next-header value
 * and ports 0); IPv4 fragments after the first have ports 0; ICMP flows have ports 0 (one flow per
 * peer and direction); ICMPv6 neighbour/router discovery is not counted. Headers are read from
 * the packet's linear data, or with bpf_skb_load_bytes where they are not in it (PKT_LOAD; uapi
 * header layouts only, no kernel structs).
 * Cost per packet: 2-3 header reads, one hash lookup and a read of the coarse clock; a new
 * flow adds the precise clock, one more lookup, an insert and a 72-byte record (or, inbound to a
 * served port, two lookups and no record; a container's answer, a served-port update); a packet
 * of an aggregated connection three lookups (its own flow, missing; the connection's membership;
 * the aggregate), and its first one insert of the membership; a DNS packet a DNS_CAPTURE-byte
 * record.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/in.h>

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NET_HTONS(x) ((u16)__builtin_bswap16(x))
#else
#define NET_HTONS(x) ((u16)(x))
#endif

#define DIR_EGRESS 1
#define DIR_INGRESS 2

#define FLOW_REPLY 1
#define FLOW_MIDSTREAM 2

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

#define REC_FLOW 1
#define REC_DNS 2

#define LOST_FLOW 0
#define LOST_DNS 1

#define DNS_PORT 53

struct flow_key {
    u32 ifindex;
    u8 direction;
    u8 family; /* 4 or 6 */
    u8 proto;
    u8 served; /* 1: an aggregate, a client's connections to a served port (its port 0) */
    u8 saddr[16];
    u8 daddr[16];
    u16 sport; /* host byte order */
    u16 dport;
};

struct flow_stats {
    u64 packets;
    u64 bytes;
    u64 first_ns;
    u64 last_ns;
    u32 flags;
    u8 tcp_flags;
    u8 _pad[3];
    u64 connections; /* an aggregate's: TCP connections opened (SYN in, SYN-ACK out), UDP ones */
};

struct flow_record {
    u32 kind;
    u32 flags;
    u64 ts_ns;
    struct flow_key key;
    u32 len;
    u8 tcp_flags;
    u8 _pad[3];
};

/* DNS_CAPTURE must be a power of two (user space rounds the configured size up). */
struct dns_record {
    u32 kind;
    u32 caplen;
    u64 ts_ns;
    struct flow_key key;
    u32 len; /* DNS payload length in this packet (may exceed caplen) */
    u8 tcp_flags;
    u8 _pad[3];
    u8 payload[DNS_CAPTURE];
};

BPF_TABLE("lru_hash", struct flow_key, struct flow_stats, flows, FLOW_TABLE_SIZE);

/* The ports each container serves, learnt from its answers (a SYN-ACK, a UDP reply it sends):
 * unless net_settings[NET_SERVED] is SERVED_RECORDS, a new inbound flow to one of them sends
 * no record (it is counted in the flow table, or in its client's aggregate, and user space meets
 * it when it reads the table). */
struct served_key {
    u32 ifindex;
    u8 proto;
    u8 _pad;
    u16 port; /* host byte order */
};
BPF_TABLE("lru_hash", struct served_key, u8, served_ports, 16384);
/* The connections counted in an aggregate, by the inbound direction's key (CONN_* bits: whose
 * first packet was counted, for UDP, which has no SYN to count). */
#define CONN_IN 1
#define CONN_OUT 2
BPF_TABLE("lru_hash", struct flow_key, u8, served_conns, FLOW_TABLE_SIZE);
#define NET_SERVED 0 /* net_settings[0]: what new inbound flows to served ports cost */
#define SERVED_RECORDS 0 /* a record and a flow each (a rule needs their flow_new) */
#define SERVED_QUIET 1 /* a flow each, no record */
#define SERVED_AGGREGATE 2 /* no record, no flow: counted in the client's aggregate */
BPF_ARRAY(net_settings, u64, 1);
/* New inbound flows and connections to served ports that sent no record, per CPU. */
BPF_PERCPU_ARRAY(net_quiet, u64, 1);
BPF_RINGBUF_OUTPUT(net_events, NET_RINGBUF_PAGES);
/* Failed ring buffer reserves per CPU: [LOST_FLOW] new-flow records, [LOST_DNS] DNS copies. */
BPF_PERCPU_ARRAY(net_lost, u64, 2);

static __always_inline void count_net_lost(int which)
{
    u64 *lost = net_lost.lookup(&which);
    if (lost)
        (*lost)++;
}

/* Copies sizeof(*to) bytes at off: straight from the packet's linear data when they are there
 * (where a veth's packets have their headers: no helper call), else by bpf_skb_load_bytes.
 * 0 on success. `off` must be bounded for the verifier (a constant, or a header length). */
#define PKT_LOAD(skb, off, to) ({                                                          \
    void *data_ = (void *)(long)(skb)->data;                                               \
    void *end_ = (void *)(long)(skb)->data_end;                                            \
    int err_ = 0;                                                                          \
    if (data_ + (off) + sizeof(*(to)) <= end_)                                             \
        __builtin_memcpy((to), data_ + (off), sizeof(*(to)));                              \
    else                                                                                   \
        err_ = bpf_skb_load_bytes((skb), (off), (to), sizeof(*(to)));                      \
    err_;                                                                                  \
})

/* Fills the key's addresses, protocol and ports; returns the L4 payload offset, or 0 when the
 * packet is not IP (or is one we do not count). */
static __always_inline u32 parse_packet(struct __sk_buff *skb, struct flow_key *key, u8 *tcp_flags)
{
    u32 off = ETH_HLEN;
    if (skb->protocol == NET_HTONS(ETH_P_IP)) {
        struct iphdr ip;
        if (PKT_LOAD(skb, ETH_HLEN, &ip) < 0)
            return 0;
        key->family = 4;
        key->proto = ip.protocol;
        __builtin_memcpy(key->saddr, &ip.saddr, 4);
        __builtin_memcpy(key->daddr, &ip.daddr, 4);
        if (ip.frag_off & NET_HTONS(0x1fff))
            return off + ip.ihl * 4; /* a later fragment: no L4 header, ports stay 0 */
        off += ip.ihl * 4;
    } else if (skb->protocol == NET_HTONS(ETH_P_IPV6)) {
        struct ipv6hdr ip6;
        if (PKT_LOAD(skb, ETH_HLEN, &ip6) < 0)
            return 0;
        key->family = 6;
        key->proto = ip6.nexthdr;
        __builtin_memcpy(key->saddr, &ip6.saddr, 16);
        __builtin_memcpy(key->daddr, &ip6.daddr, 16);
        off += sizeof(ip6);
    } else {
        return 0;
    }
    if (key->proto == IPPROTO_TCP) {
        u8 tcp[14];
        if (PKT_LOAD(skb, off, &tcp) < 0)
            return off;
        key->sport = (u16)tcp[0] << 8 | tcp[1];
        key->dport = (u16)tcp[2] << 8 | tcp[3];
        *tcp_flags = tcp[13];
        return off + (tcp[12] >> 4) * 4;
    }
    if (key->proto == IPPROTO_UDP) {
        u8 udp[4];
        if (PKT_LOAD(skb, off, &udp) < 0)
            return off;
        key->sport = (u16)udp[0] << 8 | udp[1];
        key->dport = (u16)udp[2] << 8 | udp[3];
        return off + 8;
    }
    if (key->proto == IPPROTO_ICMPV6) {
        u8 type = 0;
        if (bpf_skb_load_bytes(skb, off, &type, 1) == 0 && type >= 133 && type <= 137)
            return 0; /* neighbour and router discovery: link housekeeping, not traffic */
    }
    return off;
}

/* The key of the other direction of key's conversation. */
static __always_inline void reverse_key(struct flow_key *key, struct flow_key *rev)
{
    rev->ifindex = key->ifindex;
    rev->direction = DIR_EGRESS + DIR_INGRESS - key->direction;
    rev->family = key->family;
    rev->proto = key->proto;
    rev->served = key->served;
    __builtin_memcpy(rev->saddr, key->daddr, 16);
    __builtin_memcpy(rev->daddr, key->saddr, 16);
    rev->sport = key->dport;
    rev->dport = key->sport;
}

static __always_inline u32 first_flags(struct flow_key *key, u8 tcp_flags)
{
    struct flow_key rev = {};
    reverse_key(key, &rev);
    u32 flags = flows.lookup(&rev) ? FLOW_REPLY : 0;
    if (key->proto == IPPROTO_TCP) {
        if (!(tcp_flags & TCP_SYN))
            flags |= FLOW_MIDSTREAM;
        else if (tcp_flags & TCP_ACK)
            flags |= FLOW_REPLY;
    }
    return flags;
}

static __always_inline void emit_flow(struct flow_key *key, u32 flags, u32 len, u8 tcp_flags,
                                      u64 now)
{
    struct flow_record *rec = net_events.ringbuf_reserve(sizeof(*rec));
    if (!rec) {
        count_net_lost(LOST_FLOW);
        return;
    }
    rec->kind = REC_FLOW;
    rec->flags = flags;
    rec->ts_ns = now;
    __builtin_memcpy(&rec->key, key, sizeof(*key));
    rec->len = len;
    rec->tcp_flags = tcp_flags;
    rec->_pad[0] = rec->_pad[1] = rec->_pad[2] = 0;
    net_events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}

/* The container answered a flow from its port sport: a SYN-ACK (TCP) or any reply (UDP). */
static __always_inline void learn_served(struct flow_key *key, u8 tcp_flags)
{
    if (key->proto == IPPROTO_TCP && (tcp_flags & (TCP_SYN | TCP_ACK)) != (TCP_SYN | TCP_ACK))
        return;
    if (key->proto != IPPROTO_TCP && key->proto != IPPROTO_UDP)
        return;
    struct served_key served = {.ifindex = key->ifindex, .proto = key->proto, .port = key->sport};
    u8 one = 1;
    served_ports.update(&served, &one);
}

static __always_inline u64 served_mode(void)
{
    int index = NET_SERVED;
    u64 *mode = net_settings.lookup(&index);
    return mode ? *mode : SERVED_RECORDS;
}

static __always_inline void count_quiet(void)
{
    int zero = 0;
    u64 *n = net_quiet.lookup(&zero);
    if (n)
        (*n)++;
}

static __always_inline int is_served(struct flow_key *key, u16 port)
{
    struct served_key served = {.ifindex = key->ifindex, .proto = key->proto, .port = port};
    return served_ports.lookup(&served) != 0;
}

/* A new inbound flow to a port the container already answered on, when no rule needs it. */
static __always_inline int to_served_port(struct flow_key *key)
{
    if (served_mode() == SERVED_RECORDS || !is_served(key, key->dport))
        return 0;
    count_quiet();
    return 1;
}

/* With SERVED_AGGREGATE: whether this packet, which has no flow of its own, belongs to a
 * connection a client opened to a port the container serves; if so, key becomes its
 * aggregate's and *opened says whether the packet opens a connection (counted). Only a
 * connection seen opening joins (TCP: the client's SYN), and the container's side only as
 * answers to it (never its own SYN): a connection the container opens from a served port is
 * a flow of its own, reported as any other. */
static __always_inline int aggregate_key(struct flow_key *key, u8 tcp_flags, u32 *opened)
{
    if (key->proto != IPPROTO_TCP && key->proto != IPPROTO_UDP)
        return 0;
    if (served_mode() != SERVED_AGGREGATE)
        return 0;
    u8 syn = tcp_flags & (TCP_SYN | TCP_ACK);
    if (key->direction == DIR_INGRESS) {
        u8 *conn = served_conns.lookup(key);
        if (conn) {
            *opened = key->proto == IPPROTO_TCP && syn == TCP_SYN; /* a reused client port */
        } else {
            if (key->proto == IPPROTO_TCP && syn != TCP_SYN)
                return 0;
            if (!is_served(key, key->dport))
                return 0;
            u8 in = CONN_IN;
            served_conns.update(key, &in);
            count_quiet();
            *opened = 1;
        }
        key->sport = 0;
    } else {
        if (key->proto == IPPROTO_TCP && syn == TCP_SYN)
            return 0;
        struct flow_key rev = {};
        reverse_key(key, &rev);
        u8 *conn = served_conns.lookup(&rev);
        if (!conn)
            return 0;
        if (key->proto == IPPROTO_TCP) {
            *opened = syn == (TCP_SYN | TCP_ACK);
        } else if (!(*conn & CONN_OUT)) {
            *conn |= CONN_OUT;
            *opened = 1;
        }
        key->dport = 0;
    }
    key->served = 1;
    return 1;
}

/* A packet of a flow that has its entry. last_ns is the coarse clock (CLOCK_MONOTONIC_COARSE,
 * a tick behind at most): it only ages flows, and bpf_ktime_get_ns was a sixth of the program's
 * time per packet here; a flow's first_ns and its records keep the precise clock. */
static __always_inline void add_packet(struct flow_stats *st, u32 len, u32 segs, u8 tcp_flags,
                                       u32 opened)
{
    __sync_fetch_and_add(&st->packets, segs);
    __sync_fetch_and_add(&st->bytes, len);
    if (opened)
        __sync_fetch_and_add(&st->connections, 1);
    st->last_ns = bpf_ktime_get_coarse_ns();
    st->tcp_flags |= tcp_flags; /* a racing CPU may lose a bit; flags are advisory */
}

/* A new entry for key, counting this packet: 1, or 0 when another CPU created it between our
 * lookup and insert (the packet is counted in theirs). */
static __always_inline int new_flow(struct flow_key *key, u32 flags, u32 len, u32 segs,
                                    u8 tcp_flags, u64 now, u32 opened)
{
    struct flow_stats fresh = {};
    fresh.packets = segs;
    fresh.bytes = len;
    fresh.first_ns = now;
    fresh.last_ns = now;
    fresh.flags = flags;
    fresh.tcp_flags = tcp_flags;
    fresh.connections = opened;
    if (flows.insert(key, &fresh) == 0)
        return 1;
    struct flow_stats *st = flows.lookup(key);
    if (st)
        add_packet(st, len, segs, tcp_flags, opened);
    return 0;
}

static __always_inline void count_flow(struct flow_key *key, u32 len, u32 segs, u8 tcp_flags)
{
    struct flow_stats *st = flows.lookup(key);
    if (st) {
        add_packet(st, len, segs, tcp_flags, 0);
        return;
    }
    struct flow_key aggregate = *key;
    u32 opened = 0;
    if (aggregate_key(&aggregate, tcp_flags, &opened)) {
        st = flows.lookup(&aggregate);
        if (st)
            add_packet(st, len, segs, tcp_flags, opened);
        else
            new_flow(&aggregate, key->direction == DIR_EGRESS ? FLOW_REPLY : 0, len, segs,
                     tcp_flags, bpf_ktime_get_ns(), opened);
        return;
    }
    u64 now = bpf_ktime_get_ns();
    u32 flags = first_flags(key, tcp_flags);
    if (!new_flow(key, flags, len, segs, tcp_flags, now, 0))
        return; /* another CPU's flow: it emits what there is to emit */
    /* replies and lone RSTs (answers to a flow we already reported, or noise) emit nothing */
    if ((flags & FLOW_REPLY) || (tcp_flags & TCP_RST)) {
        if ((flags & FLOW_REPLY) && key->direction == DIR_EGRESS)
            learn_served(key, tcp_flags);
        return;
    }
    if (key->direction == DIR_INGRESS && to_served_port(key))
        return;
    emit_flow(key, flags, len, tcp_flags, now);
}

static __always_inline void copy_dns(struct __sk_buff *skb, struct flow_key *key, u32 off,
                                     u8 tcp_flags)
{
    if (off >= skb->len)
        return; /* no payload (a bare TCP ACK) */
    u32 len = skb->len - off;
    u32 caplen = len;
    if (caplen > DNS_CAPTURE)
        caplen = DNS_CAPTURE;
    struct dns_record *rec = net_events.ringbuf_reserve(sizeof(*rec));
    if (!rec) {
        count_net_lost(LOST_DNS);
        return;
    }
    rec->kind = REC_DNS;
    rec->ts_ns = bpf_ktime_get_ns();
    __builtin_memcpy(&rec->key, key, sizeof(*key));
    rec->len = len;
    rec->tcp_flags = tcp_flags;
    rec->_pad[0] = rec->_pad[1] = rec->_pad[2] = 0;
    /* The verifier needs the length provably in [1, DNS_CAPTURE] at the call, and clang's
     * range checks do not survive its register reuse: a mask does (DNS_CAPTURE is a power of
     * two, and caplen is already in [1, DNS_CAPTURE], so the mask changes nothing). */
    u64 n = ((u64)(caplen - 1) & (DNS_CAPTURE - 1)) + 1;
    if (bpf_skb_load_bytes(skb, off, rec->payload, n) < 0)
        n = 0;
    rec->caplen = n;
    net_events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}

static __always_inline int observe(struct __sk_buff *skb, u8 direction)
{
    struct flow_key key = {};
    u8 tcp_flags = 0;
    key.ifindex = skb->ifindex;
    key.direction = direction;
    u32 off = parse_packet(skb, &key, &tcp_flags);
    if (off == 0)
        return TC_ACT_UNSPEC;
    u32 segs = skb->gso_segs ? skb->gso_segs : 1;
    count_flow(&key, skb->len, segs, tcp_flags);
    /* the container as a DNS client only: its queries out, the answers in (a DNS server in a
     * container is not audited here; its clients are, on their own veths) */
    if ((key.proto == IPPROTO_UDP || key.proto == IPPROTO_TCP) &&
        ((direction == DIR_EGRESS && key.dport == DNS_PORT) ||
         (direction == DIR_INGRESS && key.sport == DNS_PORT)))
        copy_dns(skb, &key, off, tcp_flags);
    return TC_ACT_UNSPEC;
}

/* host veth ingress hook (ffff:fff2): the container sent it */
int net_egress(struct __sk_buff *skb)
{
    return observe(skb, DIR_EGRESS);
}

/* host veth egress hook (ffff:fff3): it goes to the container */
int net_ingress(struct __sk_buff *skb)
{
    return observe(skb, DIR_INGRESS);
}
