// Netlink sockets that talk to the kernel only. Connected to the kernel (port id 0), a socket
// takes no other socket's unicast: the kernel refuses it before it is queued (ECONNREFUSED to the
// sender). Without this, any process with CAP_NET_ADMIN over the namespace (a container's root in
// its own user namespace) could unicast forged events or answers to our port id, or fill our
// buffer with its own (SECURITY.md T2). Multicast still arrives: readers of event groups also
// check each datagram's sender (conntrack/reader.cc Drain).
#pragma once
#include <linux/netlink.h>
#include <sys/socket.h>

namespace ctwatch {

inline int ConnectToKernel(int fd) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  return connect(fd, reinterpret_cast<const sockaddr*>(&kernel), sizeof(kernel));
}

}  // namespace ctwatch
