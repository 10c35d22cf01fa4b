// The maps the BPF programs (owner.bpf.c) write and the reader's join (bpf_join.cc) reads: the one
// definition of their keys and values, compiled into both. Fixed-size, no padding left unnamed.
#pragma once
#include <linux/types.h>

// How a stamp was made, i.e. which hook saw the socket used (Record::owner_via).
enum stamp_via {
  STAMP_CONNECT = 1,      // TCP connect (sock_ops TCP_CONNECT_CB, before the SYN)
  STAMP_SENDTO = 2,       // UDP datagram with an address (cgroup sendmsg4/6, before the send)
  STAMP_SEND = 3,         // UDP datagram on a connected socket (sock:sock_send_length, after it)
  STAMP_LISTEN = 4,       // TCP listen() (sock:inet_sock_set_state -> LISTEN)
  STAMP_BIND = 5,         // UDP bind() (cgroup post_bind4/6)
  STAMP_SEEDED = 6,       // a listener that existed before ctwatch started (sock_diag + /proc)
};

// Who used the socket. pid is the thread group id (the process), tid the thread.
struct stamp_owner {
  __u64 netns;      // network namespace cookie of the socket (SO_NETNS_COOKIE)
  __u64 cgroup;     // cgroup v2 id of the task (the inode of its cgroup directory)
  __u64 start_ns;   // task start, ns since boot (CLOCK_BOOTTIME): with pid, the process identity
  __u64 stamp_ns;   // when, CLOCK_MONOTONIC (bpf_ktime_get_ns)
  __u32 pid;
  __u32 tid;
  __u32 uid;
  __u8 via;         // enum stamp_via
  __u8 pad[3];
  char comm[16];
};

// A flow's local socket, as conntrack's original direction shows it for a flow started here.
// IPv4 addresses use the first 4 bytes; src is all zero for a UDP socket bound to the wildcard
// address that sent without choosing a source (the route picks it after the hook).
struct stamp_flow_key {
  __u8 family;  // AF_INET / AF_INET6
  __u8 proto;   // IPPROTO_TCP / IPPROTO_UDP
  __u16 sport;  // host order
  __u16 dport;  // host order
  __u16 pad;
  __u8 src[16];
  __u8 dst[16];
};

// The latest stamp for a tuple, and the owner before it when the process changed: the join uses
// them to refuse a tuple that changed hands while the NEW waited to be read (see bpf_join.cc).
struct stamp_flow {
  struct stamp_owner owner;
  __u64 changed_ns;  // when owner.pid took the tuple over from prev_pid (0: never changed)
  __u64 prev_stamp_ns;
  __u32 prev_pid;
  __u32 pad;
};

// What the ring carries for each stamp written to the flows map: the key and the entry, as written.
struct stamp_flow_record {
  struct stamp_flow_key key;
  struct stamp_flow flow;
};

// A listening TCP socket or a bound UDP socket: who accepts what arrives at addr:port.
struct stamp_listener_key {
  __u64 netns;
  __u8 family;
  __u8 proto;
  __u16 port;  // host order
  __u32 pad;
  __u8 addr[16];  // all zero: the wildcard address
};

struct stamp_listener {
  struct stamp_owner owner;
  __u64 ident;  // the socket (its address for TCP, its cookie for UDP): only its close removes it
  __u8 v6only;  // an IPv6 socket that takes no IPv4 (IPV6_V6ONLY); 2: not known (UDP)
  __u8 pad[7];
};

// Per-CPU counters (index = enum stamp_counter), summed by the loader.
enum stamp_counter {
  CNT_CONNECT = 0,
  CNT_SENDTO,
  CNT_SENDTO_SKIPPED,  // same process stamped the same tuple less than a second ago
  CNT_SEND,
  CNT_SEND_SKIPPED,
  CNT_LISTEN,
  CNT_BIND,
  CNT_UNLISTEN,
  CNT_MAX,
};

#define STAMP_FLOWS_MAX 65536
#define STAMP_LISTENERS_MAX 16384
// The stamp ring: 136 bytes a stamp with its header, so ~30 000 stamps. The reader drains it on
// each NEW it joins and at least every STAMP_RING_DRAIN_MS, so it overflows only above ~300 000
// stamps a second host-wide, and then the kernel's map answers (a syscall a NEW, as before the
// copy). Its pages count twice in the reader's RSS (the data is mapped twice, for wrap-around).
#define STAMP_RING_BYTES (4u << 20)
#define STAMP_RING_DRAIN_MS 100
// A process that keeps sending to one destination re-stamps it at most this often.
#define STAMP_REFRESH_NS 1000000000ull
