// Where every field of an event is decoded: netlink message -> Record. libnetfilter_conntrack does
// the attribute parsing (nfct_nlmsg_parse validates each nesting level); we copy out only what is
// present and record presence bits, because "no counter" is not 0.
#include "conntrack/decode.h"

#include <arpa/inet.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>
#include <cstring>

namespace ctwatch {

namespace {

// nfct_nlmsg_parse only ever sets attributes, and the library has no way to clear an object
// without knowing its internals (labels and helper info are heap-allocated), so each message gets
// a fresh object. The allocation is small and measured in bench/ (it is not where the time goes).
struct ScopedConntrack {
  nf_conntrack* ct = nfct_new();
  ~ScopedConntrack() { if (ct) nfct_destroy(ct); }
};

}  // namespace

bool DecodeMessage(const nlmsghdr* nlh, uint8_t kind, uint64_t time_us, Record* r) {
  if (kind == 0) {
    const uint8_t type = NFNL_MSG_TYPE(nlh->nlmsg_type);
    if (type == IPCTNL_MSG_CT_NEW) {
      // The kernel marks a first-time insertion with CREATE|EXCL; later NEW messages are updates.
      kind = (nlh->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL)) ? kNew : kUpdate;
    } else if (type == IPCTNL_MSG_CT_DELETE) {
      kind = kDestroy;
    } else {
      return false;
    }
  }
  memset(r, 0, sizeof(*r));
  ScopedConntrack scoped;
  nf_conntrack* ct = scoped.ct;
  if (ct == nullptr || nfct_nlmsg_parse(nlh, ct) < 0) return false;

  r->kind = kind;
  r->time_us = time_us;
  r->family = nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
  r->proto = nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO);
  uint32_t present = 0;

  if (r->family == AF_INET) {
    uint32_t a;
    a = nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_SRC); memcpy(r->src, &a, 4);
    a = nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_DST); memcpy(r->dst, &a, 4);
    if (nfct_attr_is_set(ct, ATTR_REPL_IPV4_SRC) > 0) {
      present |= kHasReplyTuple;
      a = nfct_get_attr_u32(ct, ATTR_REPL_IPV4_SRC); memcpy(r->reply_src, &a, 4);
      a = nfct_get_attr_u32(ct, ATTR_REPL_IPV4_DST); memcpy(r->reply_dst, &a, 4);
    }
  } else if (r->family == AF_INET6) {
    const void* p;
    if ((p = nfct_get_attr(ct, ATTR_ORIG_IPV6_SRC))) memcpy(r->src, p, 16);
    if ((p = nfct_get_attr(ct, ATTR_ORIG_IPV6_DST))) memcpy(r->dst, p, 16);
    if ((p = nfct_get_attr(ct, ATTR_REPL_IPV6_SRC))) {
      present |= kHasReplyTuple;
      memcpy(r->reply_src, p, 16);
      if ((p = nfct_get_attr(ct, ATTR_REPL_IPV6_DST))) memcpy(r->reply_dst, p, 16);
    }
  } else {
    return false;
  }

  if (nfct_attr_is_set(ct, ATTR_ORIG_PORT_SRC) > 0) {
    present |= kHasPorts;
    r->sport = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_SRC));
    r->dport = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST));
    r->reply_sport = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC));
    r->reply_dport = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_DST));
  }
  if (nfct_attr_is_set(ct, ATTR_ICMP_TYPE) > 0) {
    present |= kHasIcmp;
    r->icmp_type = nfct_get_attr_u8(ct, ATTR_ICMP_TYPE);
    r->icmp_code = nfct_get_attr_u8(ct, ATTR_ICMP_CODE);
    r->icmp_id = ntohs(nfct_get_attr_u16(ct, ATTR_ICMP_ID));
  }
  if (nfct_attr_is_set(ct, ATTR_TCP_STATE) > 0) {
    present |= kHasTcpState;
    r->tcp_state = nfct_get_attr_u8(ct, ATTR_TCP_STATE);
  }
  if (nfct_attr_is_set(ct, ATTR_ID) > 0) r->id = nfct_get_attr_u32(ct, ATTR_ID);
  if (nfct_attr_is_set(ct, ATTR_STATUS) > 0) {
    present |= kHasStatus;
    r->status = nfct_get_attr_u32(ct, ATTR_STATUS);
  }
  if (nfct_attr_is_set(ct, ATTR_MARK) > 0) {
    present |= kHasMark;
    r->mark = nfct_get_attr_u32(ct, ATTR_MARK);
  }
  if (nfct_attr_is_set(ct, ATTR_ZONE) > 0) {
    present |= kHasZone;
    r->zone = nfct_get_attr_u16(ct, ATTR_ZONE);
  }
  if (nfct_attr_is_set(ct, ATTR_TIMEOUT) > 0) {
    present |= kHasTimeout;
    r->timeout = nfct_get_attr_u32(ct, ATTR_TIMEOUT);
  }
  if (nfct_attr_is_set(ct, ATTR_ORIG_COUNTER_PACKETS) > 0) {
    present |= kHasCounters;
    r->orig_packets = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_PACKETS);
    r->orig_bytes = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_BYTES);
    r->reply_packets = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_PACKETS);
    r->reply_bytes = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_BYTES);
  }
  if (nfct_attr_is_set(ct, ATTR_TIMESTAMP_START) > 0) {
    present |= kHasTimestampStart;
    r->ts_start = nfct_get_attr_u64(ct, ATTR_TIMESTAMP_START);
  }
  if (nfct_attr_is_set(ct, ATTR_TIMESTAMP_STOP) > 0) {
    present |= kHasTimestampStop;
    r->ts_stop = nfct_get_attr_u64(ct, ATTR_TIMESTAMP_STOP);
  }
  if (nfct_attr_is_set(ct, ATTR_SECMARK) > 0) {
    present |= kHasSecmark;
    r->secmark = nfct_get_attr_u32(ct, ATTR_SECMARK);
  }
  r->present = present;
  return true;
}

}  // namespace ctwatch
