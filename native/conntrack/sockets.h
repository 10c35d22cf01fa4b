// Everything that talks to the kernel: entering a network namespace, opening the event, dump and
// stats sockets, sizing buffers, and the two request/response exchanges (dump, stats).
#pragma once
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "errors.h"

namespace ctwatch {

// A filter the kernel applies to the event socket (a BPF program built by libnetfilter_conntrack),
// so unwanted events never reach user space. Values of one kind are ORed, kinds are ANDed.
// Addresses and marks are in host byte order, as libnetfilter_conntrack expects.
struct KernelFilter {
  bool present = false;
  std::vector<uint32_t> protos;
  std::vector<std::pair<uint16_t, uint16_t>> states;     // (protocol, state)
  std::vector<std::pair<uint32_t, uint32_t>> src4, dst4;  // (addr, mask)
  std::vector<std::array<uint32_t, 8>> src6, dst6;        // addr[4], mask[4]
  std::vector<std::pair<uint32_t, uint32_t>> marks;       // (value, mask)
};

struct SocketOptions {
  std::string netns;      // path to a netns file, empty for the caller's own
  unsigned groups = 0;    // NF_NETLINK_CONNTRACK_* bitmask (bind() bitmask, not group numbers)
  int rcvbuf = 0;         // requested receive buffer in bytes, 0 for the kernel default
  bool reliable = false;  // NETLINK_BROADCAST_SEND_ERROR + NETLINK_NO_ENOBUFS
  KernelFilter filter;
};

struct Sockets {
  nfct_handle* events = nullptr;  // multicast event subscription
  mnl_socket* dump = nullptr;     // table dumps (used from the reader thread only)
  mnl_socket* stats = nullptr;    // stats requests (used from the reader thread only: its own
                                  // readings, and stats() run there through RunOnThread)
  int rcvbuf = 0;                 // what the kernel granted, read back
  void Close();
};

// Must run on the reader thread: it enters the namespace on that thread only, creates the sockets
// there (a netlink socket stays bound to the namespace it was created in), then returns.
OpenError OpenSockets(const SocketOptions& options, Sockets* out);

// Sets SO_RCVBUFFORCE (falls back to SO_RCVBUF) and returns the size the kernel granted.
int SetReceiveBuffer(int fd, int bytes);

struct TableStats {
  int64_t entries = -1;
  int64_t max = -1;
  std::vector<std::map<std::string, uint32_t>> cpus;  // per-CPU counters by kernel name
};

OpenError QueryStats(mnl_socket* sock, TableStats* out);

// Sends a dump request and calls `on_message` for each entry; returns an error on failure.
OpenError DumpTable(mnl_socket* sock, const std::function<void(const nlmsghdr*)>& on_message);

}  // namespace ctwatch
