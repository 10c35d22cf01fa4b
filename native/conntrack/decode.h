#pragma once
#include <linux/netlink.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include "conntrack/record.h"

namespace ctwatch {

// Decodes one ctnetlink message into `out`. `kind` is decided by the caller for dumps; for events
// pass 0 and it is taken from the message type and flags. Returns false when the message is not
// a conntrack entry, or is malformed: the caller counts a decode error.
bool DecodeMessage(const nlmsghdr* nlh, uint8_t kind, uint64_t time_us, Record* out);

// libmnl's mnl_nlmsg_ok and mnl_nlmsg_next (nlmsg.c), inline: in libmnl.so each is a call per
// message read. One difference: the length is compared unsigned. libmnl's (int) cast takes a
// length of 2 GiB or more for negative, so "within what is left", and the next message 2 GiB on;
// the kernel never sends one, but a sender with CAP_NET_ADMIN in the namespace can.
inline bool NlmsgOk(const nlmsghdr* nlh, int len) {
  return len >= static_cast<int>(sizeof(nlmsghdr)) && nlh->nlmsg_len >= sizeof(nlmsghdr) &&
         nlh->nlmsg_len <= static_cast<unsigned>(len);
}
inline const nlmsghdr* NlmsgNext(const nlmsghdr* nlh, int* len) {
  *len -= NLMSG_ALIGN(nlh->nlmsg_len);
  return reinterpret_cast<const nlmsghdr*>(reinterpret_cast<const char*>(nlh) + NLMSG_ALIGN(nlh->nlmsg_len));
}

}  // namespace ctwatch
