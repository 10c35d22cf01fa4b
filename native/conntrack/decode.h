#pragma once
#include <linux/netlink.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include "conntrack/record.h"

namespace ctwatch {

// Decodes one ctnetlink message into `out`. `kind` is decided by the caller for dumps; for events
// pass 0 and it is taken from the message type and flags. Returns false when the message is not
// a conntrack entry, or is malformed: the caller counts a decode error.
bool DecodeMessage(const nlmsghdr* nlh, uint8_t kind, uint64_t time_us, Record* out);

}  // namespace ctwatch
