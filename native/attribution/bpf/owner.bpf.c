// Process attribution at the source: stamp who uses a socket at the moment it is used, in the
// user's own context, into bounded LRU maps that the reader thread joins with each conntrack NEW
// (native/attribution/bpf_join.cc). Built with clang -target bpf, embedded by bpftool's skeleton.
//
// Attach points (cgroup hooks on the cgroup v2 root, so every process is seen; raw tracepoints,
// which need no tracefs). Each one runs in the process that uses the socket, and each one sees the
// full tuple, local port included, except where noted:
//   sock_ops TCP_CONNECT_CB         TCP connect(), in tcp_connect() after the source port is chosen
//                                   and before the SYN (so before conntrack's NEW)
//   cgroup/sendmsg4, sendmsg6       UDP datagram with a destination address (sendto/sendmsg), after
//                                   the socket's implicit bind and before the send; a socket bound
//                                   to the wildcard address is stamped with no source address
//   raw_tp/sock_send_length         UDP send on a connected socket, right after the send (the NEW
//                                   was made during it: the reader waits a moment for this stamp)
//   raw_tp/inet_sock_set_state      TCP listen() (-> LISTEN) and the listener's close
//   cgroup/post_bind4, post_bind6   UDP bind(): the socket that receives datagrams on addr:port
//   cgroup/sock_release             the UDP socket's close
// No kprobes, no fentry/fexit/tp_btf, no LSM: none of them is needed, and some kernels lack them.
#include <linux/bpf.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "kernel.h"
#include "stamp.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_ESTABLISHED 1
#define TCP_CLOSE 7
#define TCP_LISTEN 10

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, STAMP_FLOWS_MAX);
  __type(key, struct stamp_flow_key);
  __type(value, struct stamp_flow);
} flows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, STAMP_LISTENERS_MAX);
  __type(key, struct stamp_listener_key);
  __type(value, struct stamp_listener);
} listeners SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, CNT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

// Every stamp written to `flows` also goes to this ring, which the reader maps and reads without a
// syscall (native/attribution/stamp_copy.cc keeps a copy of the map from it). The loader may size
// it (a power of two of pages) before load.
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, STAMP_RING_BYTES);
} stamp_ring SEC(".maps");

// Stamps the ring had no room for. In .bss, which the reader maps: it reads this without a
// syscall after each drain, and a change sends it back to the map for every tuple.
__u64 ring_lost = 0;

static __always_inline void count(__u32 which) {
  __u64 *c = bpf_map_lookup_elem(&counters, &which);
  // atomic: a hook can be preempted by another task's run of a hook on the same CPU (the
  // cgroup hooks disable migration, not preemption), and a lost increment reads as a lost stamp
  if (c) __sync_fetch_and_add(c, 1);
}

static __always_inline void fill_owner(struct stamp_owner *o, __u64 netns, __u8 via) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  o->pid = pid_tgid >> 32;
  o->tid = (__u32)pid_tgid;
  o->uid = (__u32)bpf_get_current_uid_gid();
  o->cgroup = bpf_get_current_cgroup_id();
  bpf_get_current_comm(o->comm, sizeof(o->comm));
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  // The process's start, not the thread's: /proc/TGID/stat shows the group leader's, and with the
  // pid it names the process (each thread of a process would otherwise look like another one).
  o->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
  o->stamp_ns = bpf_ktime_get_ns();
  o->netns = netns;
  o->via = via;
}

// ::ffff:a.b.c.d, as four network-order words.
static __always_inline int v4_mapped(const __u32 *w) {
  return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

static __always_inline void put4(__u8 *at, __u32 addr) { __builtin_memcpy(at, &addr, 4); }

// Context fields must be read one word at a time: clang would merge two neighbouring 4-byte reads
// into one 8-byte read, which the verifier refuses for these structures.
#define CTX32(field) (*(volatile __u32 *)&(field))
#define CTX_IP6(arr) {CTX32(arr[0]), CTX32(arr[1]), CTX32(arr[2]), CTX32(arr[3])}

// Writes the stamp for a tuple. With `refresh`, a process that stamped the same tuple less than
// STAMP_REFRESH_NS ago is not written again (a busy UDP sender would otherwise write per datagram).
static __always_inline void put_flow(struct stamp_flow_key *k, struct stamp_owner *o, int refresh,
                                     __u32 skipped) {
  struct stamp_flow v = {};
  struct stamp_flow *old = bpf_map_lookup_elem(&flows, k);
  if (old) {
    if (old->owner.pid == o->pid && old->owner.netns == o->netns) {
      if (refresh && o->stamp_ns - old->owner.stamp_ns < STAMP_REFRESH_NS) {
        count(skipped);
        return;
      }
      v.changed_ns = old->changed_ns;
      v.prev_pid = old->prev_pid;
      v.prev_stamp_ns = old->prev_stamp_ns;
    } else {
      v.changed_ns = o->stamp_ns;
      v.prev_pid = old->owner.pid;
      v.prev_stamp_ns = old->owner.stamp_ns;
    }
  }
  v.owner = *o;
  // The ring first, then the map: a reader that has not yet seen this stamp (or its loss) in the
  // ring can only be in the moment before the map had it, so its copy is never staler than the map.
  struct stamp_flow_record *rec = bpf_ringbuf_reserve(&stamp_ring, sizeof(*rec), 0);
  if (rec) {
    rec->key = *k;
    rec->flow = v;
    bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);  // the reader drains when it joins: no wake-up
  } else {
    __sync_fetch_and_add(&ring_lost, 1);
  }
  bpf_map_update_elem(&flows, k, &v, BPF_ANY);
}

SEC("sockops")
int ct_connect(struct bpf_sock_ops *ctx) {
  if (ctx->op != BPF_SOCK_OPS_TCP_CONNECT_CB) return 1;
  struct stamp_flow_key k = {};
  k.proto = IPPROTO_TCP;
  k.sport = (__u16)ctx->local_port;
  k.dport = (__u16)bpf_ntohl(ctx->remote_port);
  if (ctx->family == AF_INET) {
    k.family = AF_INET;
    put4(k.src, ctx->local_ip4);
    put4(k.dst, ctx->remote_ip4);
  } else if (ctx->family == AF_INET6) {
    __u32 remote[4] = CTX_IP6(ctx->remote_ip6);
    if (v4_mapped(remote)) {
      // An IPv6 socket connecting to an IPv4 address: tcp_v4_connect() has set the IPv4 fields.
      k.family = AF_INET;
      put4(k.src, ctx->local_ip4);
      put4(k.dst, ctx->remote_ip4);
    } else {
      __u32 local[4] = CTX_IP6(ctx->local_ip6);
      k.family = AF_INET6;
      __builtin_memcpy(k.src, local, 16);
      __builtin_memcpy(k.dst, remote, 16);
    }
  } else {
    return 1;
  }
  struct stamp_owner o = {};
  fill_owner(&o, bpf_get_netns_cookie(ctx), STAMP_CONNECT);
  count(CNT_CONNECT);
  put_flow(&k, &o, 0, 0);
  return 1;
}

SEC("cgroup/sendmsg4")
int ct_sendmsg4(struct bpf_sock_addr *ctx) {
  if (ctx->protocol != IPPROTO_UDP) return 1;
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 1;
  struct stamp_flow_key k = {};
  k.family = AF_INET;
  k.proto = IPPROTO_UDP;
  k.sport = (__u16)sk->src_port;
  k.dport = bpf_ntohs((__u16)ctx->user_port);
  __u32 src = ctx->msg_src_ip4;
  if (src == 0) src = sk->src_ip4;
  put4(k.src, src);
  put4(k.dst, ctx->user_ip4);
  struct stamp_owner o = {};
  fill_owner(&o, bpf_get_netns_cookie(ctx), STAMP_SENDTO);
  count(CNT_SENDTO);
  put_flow(&k, &o, 1, CNT_SENDTO_SKIPPED);
  return 1;
}

SEC("cgroup/sendmsg6")
int ct_sendmsg6(struct bpf_sock_addr *ctx) {
  if (ctx->protocol != IPPROTO_UDP) return 1;
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 1;
  __u32 dst[4] = CTX_IP6(ctx->user_ip6);
  if (v4_mapped(dst)) return 1;  // sent as IPv4: sendmsg4 stamps it
  struct stamp_flow_key k = {};
  k.family = AF_INET6;
  k.proto = IPPROTO_UDP;
  k.sport = (__u16)sk->src_port;
  k.dport = bpf_ntohs((__u16)ctx->user_port);
  __u32 src[4] = CTX_IP6(ctx->msg_src_ip6);
  if ((src[0] | src[1] | src[2] | src[3]) == 0) {
    src[0] = CTX32(sk->src_ip6[0]);
    src[1] = CTX32(sk->src_ip6[1]);
    src[2] = CTX32(sk->src_ip6[2]);
    src[3] = CTX32(sk->src_ip6[3]);
  }
  __builtin_memcpy(k.src, src, 16);
  __builtin_memcpy(k.dst, dst, 16);
  struct stamp_owner o = {};
  fill_owner(&o, bpf_get_netns_cookie(ctx), STAMP_SENDTO);
  count(CNT_SENDTO);
  put_flow(&k, &o, 1, CNT_SENDTO_SKIPPED);
  return 1;
}

// Fills k's addresses from a socket's own fields; 0 when it has none we can key on.
static __always_inline int sock_tuple(struct sock *sk, struct stamp_flow_key *k) {
  unsigned short family = BPF_CORE_READ(sk, __sk_common.skc_family);
  k->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
  k->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
  if (family == AF_INET6) {
    __u32 daddr[4], saddr[4];
    bpf_core_read(daddr, sizeof(daddr), &sk->__sk_common.skc_v6_daddr);
    if (!v4_mapped(daddr)) {
      bpf_core_read(saddr, sizeof(saddr), &sk->__sk_common.skc_v6_rcv_saddr);
      k->family = AF_INET6;
      __builtin_memcpy(k->src, saddr, 16);
      __builtin_memcpy(k->dst, daddr, 16);
      return 1;
    }
  } else if (family != AF_INET) {
    return 0;
  }
  k->family = AF_INET;
  put4(k->src, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
  put4(k->dst, BPF_CORE_READ(sk, __sk_common.skc_daddr));
  return 1;
}

static __always_inline __u64 sock_netns(struct sock *sk) {
  return BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie);
}

// sock_send_length(struct sock *sk, int ret, int flags): after every send; only a connected UDP
// socket's is kept (sendmsg4/6 stamp the others before the send).
SEC("raw_tp/sock_send_length")
int ct_send(struct bpf_raw_tracepoint_args *ctx) {
  struct sock *sk = (struct sock *)ctx->args[0];
  int ret = (int)ctx->args[1];
  if (ret <= 0 || !sk) return 0;
  if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_UDP) return 0;
  if (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_ESTABLISHED) return 0;
  struct stamp_flow_key k = {};
  k.proto = IPPROTO_UDP;
  if (!sock_tuple(sk, &k)) return 0;
  struct stamp_owner o = {};
  fill_owner(&o, sock_netns(sk), STAMP_SEND);
  count(CNT_SEND);
  put_flow(&k, &o, 1, CNT_SEND_SKIPPED);
  return 0;
}

static __always_inline void listener_key(struct sock *sk, struct stamp_listener_key *k, __u8 *v6only) {
  k->netns = sock_netns(sk);
  k->proto = IPPROTO_TCP;
  k->port = BPF_CORE_READ(sk, __sk_common.skc_num);
  *v6only = 0;
  if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET6) {
    __u32 a[4];
    bpf_core_read(a, sizeof(a), &sk->__sk_common.skc_v6_rcv_saddr);
    if (v4_mapped(a)) {
      k->family = AF_INET;
      put4(k->addr, a[3]);
    } else {
      k->family = AF_INET6;
      __builtin_memcpy(k->addr, a, 16);
      *v6only = BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_ipv6only);
    }
  } else {
    k->family = AF_INET;
    put4(k->addr, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
  }
}

// inet_sock_set_state(const struct sock *sk, int oldstate, int newstate): listen() and its close
// run in the server's context (the other transitions are softirq's, and not used here).
SEC("raw_tp/inet_sock_set_state")
int ct_state(struct bpf_raw_tracepoint_args *ctx) {
  struct sock *sk = (struct sock *)ctx->args[0];
  int oldstate = (int)ctx->args[1];
  int newstate = (int)ctx->args[2];
  if (newstate != TCP_LISTEN && oldstate != TCP_LISTEN) return 0;
  if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP) return 0;
  struct stamp_listener_key k = {};
  __u8 v6only = 0;
  listener_key(sk, &k, &v6only);
  if (newstate == TCP_LISTEN) {
    struct stamp_listener v = {};
    fill_owner(&v.owner, k.netns, STAMP_LISTEN);
    v.ident = (__u64)sk;
    v.v6only = v6only;
    count(CNT_LISTEN);
    bpf_map_update_elem(&listeners, &k, &v, BPF_ANY);
  } else if (newstate == TCP_CLOSE) {
    struct stamp_listener *v = bpf_map_lookup_elem(&listeners, &k);
    // A listener seeded at start (STAMP_SEEDED) has no socket address: any close of its port ends it.
    if (v && (v->ident == (__u64)sk || v->owner.via == STAMP_SEEDED)) {
      count(CNT_UNLISTEN);
      bpf_map_delete_elem(&listeners, &k);
    }
  }
  return 0;
}

// The socket bound at post_bind4/6, so that its close (where the address fields cannot be read)
// finds its listener entry by cookie.
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, STAMP_LISTENERS_MAX);
  __type(key, __u64);
  __type(value, struct stamp_listener_key);
} bound SEC(".maps");

// Each post_bind hook may read only its own family's address fields.
static __always_inline int udp_bound(struct bpf_sock *ctx, int ipv6) {
  if (ctx->protocol != IPPROTO_UDP) return 1;
  struct stamp_listener_key k = {};
  k.netns = bpf_get_netns_cookie(ctx);
  k.proto = IPPROTO_UDP;
  k.port = (__u16)ctx->src_port;
  if (k.port == 0) return 1;
  __u8 v6only = 0;
  if (!ipv6) {
    k.family = AF_INET;
    put4(k.addr, ctx->src_ip4);
  } else {
    __u32 a[4] = CTX_IP6(ctx->src_ip6);
    if (v4_mapped(a)) {
      k.family = AF_INET;
      put4(k.addr, a[3]);
    } else {
      k.family = AF_INET6;
      __builtin_memcpy(k.addr, a, 16);
      v6only = 2;
    }
  }
  struct stamp_listener v = {};
  fill_owner(&v.owner, k.netns, STAMP_BIND);
  v.ident = bpf_get_socket_cookie(ctx);
  v.v6only = v6only;
  count(CNT_BIND);
  bpf_map_update_elem(&listeners, &k, &v, BPF_ANY);
  bpf_map_update_elem(&bound, &v.ident, &k, BPF_ANY);
  return 1;
}

SEC("cgroup/post_bind4")
int ct_bind4(struct bpf_sock *ctx) { return udp_bound(ctx, 0); }

SEC("cgroup/post_bind6")
int ct_bind6(struct bpf_sock *ctx) { return udp_bound(ctx, 1); }

SEC("cgroup/sock_release")
int ct_release(struct bpf_sock *ctx) {
  if (ctx->protocol != IPPROTO_UDP) return 1;
  __u64 cookie = bpf_get_socket_cookie(ctx);
  struct stamp_listener_key *k = bpf_map_lookup_elem(&bound, &cookie);
  if (!k) return 1;
  struct stamp_listener_key key = *k;
  bpf_map_delete_elem(&bound, &cookie);
  struct stamp_listener *v = bpf_map_lookup_elem(&listeners, &key);
  if (v && v->ident == cookie) {
    count(CNT_UNLISTEN);
    bpf_map_delete_elem(&listeners, &key);
  }
  return 1;
}
