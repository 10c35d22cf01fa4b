// Where every field of an event is decoded: ctnetlink message -> Record, with libmnl, on the
// reader thread. As libnetfilter_conntrack's parse_mnl.c does, each nesting level has a validator
// that checks every attribute the kernel defines for that level against its payload size and
// fills a table; then the fields are read from the tables, with presence bits, because "no
// counter" is not 0. Attributes newer than these headers are skipped; a malformed one makes the
// whole message a decode error. Going through nfct_nlmsg_parse instead cost a heap object per
// message and a second copy of every field (bench/README.md, "hot path"). libmnl's attribute
// helpers are out of line in libmnl.so, a call each, several per attribute: the ones used here
// are below, inline, with libmnl's checks (attr.c) unchanged.
#include "conntrack/decode.h"

#include <arpa/inet.h>
#include <endian.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>

#include <cstring>

namespace ctwatch {

namespace {

// mnl_attr_ok: a whole attribute header, a length that covers it, and within what is left.
inline bool AttrOk(const nlattr* a, int len) {
  return len >= static_cast<int>(sizeof(nlattr)) && a->nla_len >= sizeof(nlattr) && static_cast<int>(a->nla_len) <= len;
}
inline const nlattr* AttrNext(const nlattr* a) {
  return reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(a) + MNL_ALIGN(a->nla_len));
}
inline int AttrType(const nlattr* a) { return a->nla_type & NLA_TYPE_MASK; }
inline const void* Payload(const nlattr* a) { return reinterpret_cast<const char*>(a) + MNL_ATTR_HDRLEN; }
inline uint16_t PayloadLen(const nlattr* a) { return static_cast<uint16_t>(a->nla_len - MNL_ATTR_HDRLEN); }

// mnl_attr_validate for the types the tables below use: an integer's payload is exactly its
// size; a nest is empty or holds at least one attribute header.
inline bool Valid(const nlattr* a, mnl_attr_data_type type) {
  const uint16_t len = PayloadLen(a);
  switch (type) {
    case MNL_TYPE_U8: return len == 1;
    case MNL_TYPE_U16: return len == 2;
    case MNL_TYPE_U32: return len == 4;
    case MNL_TYPE_U64: return len == 8;
    case MNL_TYPE_NESTED: return len == 0 || len >= MNL_ATTR_HDRLEN;
    default: return mnl_attr_validate(a, type) >= 0;  // not used by the tables; libmnl's own
  }
}

// mnl_attr_get_u8 .. u64 (the payload is 4-aligned only: read through memcpy).
template <typename T>
inline T Get(const nlattr* a) {
  T v;
  memcpy(&v, Payload(a), sizeof(v));
  return v;
}

// One level of attributes, by type; null where absent.
template <int Max>
struct Level {
  const nlattr* at[Max + 1] = {};
  const nlattr* operator[](int type) const { return at[type]; }
};

// The payload type each known attribute must have, per level (MNL_TYPE_UNSPEC: not used here,
// taken as it comes).
mnl_attr_data_type TopType(int type) {
  switch (type) {
    case CTA_TUPLE_ORIG: case CTA_TUPLE_REPLY: case CTA_PROTOINFO: case CTA_COUNTERS_ORIG:
    case CTA_COUNTERS_REPLY: case CTA_TIMESTAMP:
      return MNL_TYPE_NESTED;
    case CTA_STATUS: case CTA_TIMEOUT: case CTA_MARK: case CTA_ID: case CTA_SECMARK:
      return MNL_TYPE_U32;
    case CTA_ZONE:
      return MNL_TYPE_U16;
    default:
      return MNL_TYPE_UNSPEC;
  }
}

mnl_attr_data_type TupleType(int type) {
  return type == CTA_TUPLE_IP || type == CTA_TUPLE_PROTO ? MNL_TYPE_NESTED
         : type == CTA_TUPLE_ZONE                          ? MNL_TYPE_U16
                                                           : MNL_TYPE_UNSPEC;
}

mnl_attr_data_type IpType(int type) {
  return type == CTA_IP_V4_SRC || type == CTA_IP_V4_DST ? MNL_TYPE_U32 : MNL_TYPE_UNSPEC;
}

mnl_attr_data_type ProtoType(int type) {
  switch (type) {
    case CTA_PROTO_NUM: case CTA_PROTO_ICMP_TYPE: case CTA_PROTO_ICMP_CODE: case CTA_PROTO_ICMPV6_TYPE:
    case CTA_PROTO_ICMPV6_CODE:
      return MNL_TYPE_U8;
    case CTA_PROTO_SRC_PORT: case CTA_PROTO_DST_PORT: case CTA_PROTO_ICMP_ID: case CTA_PROTO_ICMPV6_ID:
      return MNL_TYPE_U16;
    default:
      return MNL_TYPE_UNSPEC;
  }
}

mnl_attr_data_type ProtoinfoType(int type) { return type == CTA_PROTOINFO_TCP ? MNL_TYPE_NESTED : MNL_TYPE_UNSPEC; }

mnl_attr_data_type TcpType(int type) { return type == CTA_PROTOINFO_TCP_STATE ? MNL_TYPE_U8 : MNL_TYPE_UNSPEC; }

mnl_attr_data_type CountersType(int type) {
  return type == CTA_COUNTERS_PACKETS || type == CTA_COUNTERS_BYTES     ? MNL_TYPE_U64
         : type == CTA_COUNTERS32_PACKETS || type == CTA_COUNTERS32_BYTES ? MNL_TYPE_U32
                                                                        : MNL_TYPE_UNSPEC;
}

mnl_attr_data_type TimestampType(int type) {
  return type == CTA_TIMESTAMP_START || type == CTA_TIMESTAMP_STOP ? MNL_TYPE_U64 : MNL_TYPE_UNSPEC;
}

// Fills `level` from the attributes in [payload, payload + len): false on a malformed attribute.
template <mnl_attr_data_type (*type_of)(int), int Max>
bool Fill(const void* payload, size_t len, Level<Max>* level) {
  const char* const end = static_cast<const char*>(payload) + len;
  for (auto* attr = static_cast<const nlattr*>(payload); AttrOk(attr, static_cast<int>(end - reinterpret_cast<const char*>(attr)));
       attr = AttrNext(attr)) {
    const int type = AttrType(attr);
    if (type > Max) continue;  // newer than these headers
    const mnl_attr_data_type want = type_of(type);
    if (want != MNL_TYPE_UNSPEC && !Valid(attr, want)) return false;
    level->at[type] = attr;
  }
  // Bytes after the last whole attribute are ignored, as libmnl's own parser does.
  return true;
}

template <mnl_attr_data_type (*type_of)(int), int Max>
bool FillNested(const nlattr* nest, Level<Max>* level) {
  return Fill<type_of>(Payload(nest), PayloadLen(nest), level);
}

// One direction of the flow: addresses (raw, network order), and the protocol level.
struct Tuple {
  Level<CTA_IP_MAX> ip;
  Level<CTA_PROTO_MAX> proto;
};

bool ParseTuple(const nlattr* nest, Tuple* t) {
  Level<CTA_TUPLE_MAX> tuple;
  if (!FillNested<TupleType>(nest, &tuple)) return false;
  if (tuple[CTA_TUPLE_IP] && !FillNested<IpType>(tuple[CTA_TUPLE_IP], &t->ip)) return false;
  if (tuple[CTA_TUPLE_PROTO] && !FillNested<ProtoType>(tuple[CTA_TUPLE_PROTO], &t->proto)) return false;
  return true;
}

// Copies the address attribute into `out` when it has the family's size; false when it has not.
bool Address(const nlattr* a, size_t size, uint8_t* out) {
  if (a == nullptr) return true;
  if (PayloadLen(a) != size) return false;
  memcpy(out, Payload(a), size);
  return true;
}

uint16_t Be16(const nlattr* a) { return ntohs(Get<uint16_t>(a)); }
uint32_t Be32(const nlattr* a) { return ntohl(Get<uint32_t>(a)); }
uint64_t Be64(const nlattr* a) { return be64toh(Get<uint64_t>(a)); }

// CTA_COUNTERS_*: 64-bit counters, or the 32-bit ones older kernels send.
bool ParseCounters(const nlattr* nest, bool* present, uint64_t* packets, uint64_t* bytes) {
  Level<CTA_COUNTERS_MAX> c;
  if (!FillNested<CountersType>(nest, &c)) return false;
  if (c[CTA_COUNTERS_PACKETS]) *packets = Be64(c[CTA_COUNTERS_PACKETS]), *present = true;
  else if (c[CTA_COUNTERS32_PACKETS]) *packets = Be32(c[CTA_COUNTERS32_PACKETS]), *present = true;
  if (c[CTA_COUNTERS_BYTES]) *bytes = Be64(c[CTA_COUNTERS_BYTES]);
  else if (c[CTA_COUNTERS32_BYTES]) *bytes = Be32(c[CTA_COUNTERS32_BYTES]);
  return true;
}

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
  // mnl_nlmsg_size, mnl_nlmsg_get_payload(_offset), inline.
  constexpr size_t kHead = MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(nfgenmsg));
  if (nlh->nlmsg_len < kHead) return false;
  const auto* nfg = reinterpret_cast<const nfgenmsg*>(reinterpret_cast<const char*>(nlh) + MNL_NLMSG_HDRLEN);
  Level<CTA_MAX> top;
  if (!Fill<TopType>(reinterpret_cast<const char*>(nlh) + kHead, nlh->nlmsg_len - kHead, &top)) {
    return false;
  }
  memset(r, 0, sizeof(*r));
  r->kind = kind;
  r->time_us = time_us;
  // The family of the entry is the message's; the protocol is the original tuple's.
  r->family = nfg->nfgen_family;
  const size_t size = r->family == AF_INET ? 4 : r->family == AF_INET6 ? 16 : 0;
  if (size == 0) return false;
  const int src = size == 4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC;
  const int dst = size == 4 ? CTA_IP_V4_DST : CTA_IP_V6_DST;
  uint32_t present = 0;

  Tuple orig, reply;
  if (top[CTA_TUPLE_ORIG] && !ParseTuple(top[CTA_TUPLE_ORIG], &orig)) return false;
  if (top[CTA_TUPLE_REPLY] && !ParseTuple(top[CTA_TUPLE_REPLY], &reply)) return false;
  if (!Address(orig.ip[src], size, r->src) || !Address(orig.ip[dst], size, r->dst)) return false;
  if (reply.ip[src]) {
    present |= kHasReplyTuple;
    if (!Address(reply.ip[src], size, r->reply_src) || !Address(reply.ip[dst], size, r->reply_dst)) return false;
  }
  const auto& p = orig.proto;
  if (p[CTA_PROTO_NUM]) r->proto = Get<uint8_t>(p[CTA_PROTO_NUM]);
  if (p[CTA_PROTO_SRC_PORT]) {
    present |= kHasPorts;
    r->sport = Be16(p[CTA_PROTO_SRC_PORT]);
    if (p[CTA_PROTO_DST_PORT]) r->dport = Be16(p[CTA_PROTO_DST_PORT]);
    if (reply.proto[CTA_PROTO_SRC_PORT]) r->reply_sport = Be16(reply.proto[CTA_PROTO_SRC_PORT]);
    if (reply.proto[CTA_PROTO_DST_PORT]) r->reply_dport = Be16(reply.proto[CTA_PROTO_DST_PORT]);
  }
  // ICMP and ICMPv6 fill the same fields: the echo id of the original direction, type and code.
  const bool v6 = p[CTA_PROTO_ICMPV6_TYPE] != nullptr;
  const nlattr* icmp_type = v6 ? p[CTA_PROTO_ICMPV6_TYPE] : p[CTA_PROTO_ICMP_TYPE];
  if (icmp_type) {
    present |= kHasIcmp;
    r->icmp_type = Get<uint8_t>(icmp_type);
    const nlattr* code = v6 ? p[CTA_PROTO_ICMPV6_CODE] : p[CTA_PROTO_ICMP_CODE];
    const nlattr* id = v6 ? p[CTA_PROTO_ICMPV6_ID] : p[CTA_PROTO_ICMP_ID];
    if (code) r->icmp_code = Get<uint8_t>(code);
    if (id) r->icmp_id = Be16(id);
  }
  if (top[CTA_PROTOINFO]) {
    Level<CTA_PROTOINFO_MAX> info;
    if (!FillNested<ProtoinfoType>(top[CTA_PROTOINFO], &info)) return false;
    if (info[CTA_PROTOINFO_TCP]) {
      Level<CTA_PROTOINFO_TCP_MAX> tcp;
      if (!FillNested<TcpType>(info[CTA_PROTOINFO_TCP], &tcp)) return false;
      if (tcp[CTA_PROTOINFO_TCP_STATE]) {
        present |= kHasTcpState;
        r->tcp_state = Get<uint8_t>(tcp[CTA_PROTOINFO_TCP_STATE]);
      }
    }
  }
  if (top[CTA_ID]) r->id = Be32(top[CTA_ID]);
  if (top[CTA_STATUS]) present |= kHasStatus, r->status = Be32(top[CTA_STATUS]);
  if (top[CTA_MARK]) present |= kHasMark, r->mark = Be32(top[CTA_MARK]);
  if (top[CTA_ZONE]) present |= kHasZone, r->zone = Be16(top[CTA_ZONE]);
  if (top[CTA_TIMEOUT]) present |= kHasTimeout, r->timeout = Be32(top[CTA_TIMEOUT]);
  if (top[CTA_SECMARK]) present |= kHasSecmark, r->secmark = Be32(top[CTA_SECMARK]);
  bool counted = false, ignored = false;
  if (top[CTA_COUNTERS_ORIG] && !ParseCounters(top[CTA_COUNTERS_ORIG], &counted, &r->orig_packets, &r->orig_bytes)) return false;
  if (top[CTA_COUNTERS_REPLY] && !ParseCounters(top[CTA_COUNTERS_REPLY], &ignored, &r->reply_packets, &r->reply_bytes)) return false;
  if (counted) present |= kHasCounters;
  if (top[CTA_TIMESTAMP]) {
    Level<CTA_TIMESTAMP_MAX> ts;
    if (!FillNested<TimestampType>(top[CTA_TIMESTAMP], &ts)) return false;
    if (ts[CTA_TIMESTAMP_START]) present |= kHasTimestampStart, r->ts_start = Be64(ts[CTA_TIMESTAMP_START]);
    if (ts[CTA_TIMESTAMP_STOP]) present |= kHasTimestampStop, r->ts_stop = Be64(ts[CTA_TIMESTAMP_STOP]);
  }
  r->present = present;
  return true;
}

}  // namespace ctwatch
