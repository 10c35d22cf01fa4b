// The few kernel structures the programs read, declared with only the fields they use.
// `preserve_access_index` makes every access a CO-RE relocation: libbpf finds each field by name
// in the running kernel's BTF (/sys/kernel/btf/vmlinux) at load time, through anonymous unions and
// structs, so neither the offsets below nor a vmlinux.h of the build machine matter. A field the
// running kernel lacks fails the load with a message naming it.
#pragma once
#include <linux/types.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct in6_addr {
  union {
    __u8 u6_addr8[16];
    __be32 u6_addr32[4];
  } in6_u;
};

struct net {
  __u64 net_cookie;  // SO_NETNS_COOKIE (Linux 5.14+: a plain field, written once)
};

typedef struct {
  struct net *net;
} possible_net_t;

struct sock_common {
  __be32 skc_daddr;
  __be32 skc_rcv_saddr;
  __be16 skc_dport;
  __u16 skc_num;  // local port, host order
  unsigned short skc_family;
  volatile unsigned char skc_state;
  unsigned char skc_reuse : 4;
  unsigned char skc_reuseport : 1;
  unsigned char skc_ipv6only : 1;
  possible_net_t skc_net;
  struct in6_addr skc_v6_daddr;
  struct in6_addr skc_v6_rcv_saddr;
};

struct sock {
  struct sock_common __sk_common;
  __u16 sk_protocol;
};

struct task_struct {
  __u64 start_boottime;  // what /proc/PID/stat's starttime counts, in ns
  struct task_struct *group_leader;  // the process's first thread: its start is the process's
};

#pragma clang attribute pop
