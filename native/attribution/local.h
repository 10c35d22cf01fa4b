// The addresses a network namespace answers for (its RTN_LOCAL routes: every interface address and
// whole local prefixes such as 127.0.0.0/8), so the join can tell a flow of this host from a
// forwarded one when no owner is known.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "errors.h"

namespace ctwatch {

class LocalAddresses {
 public:
  ~LocalAddresses();
  // Opens the route socket on the calling thread, which must be inside the namespace, and reads.
  OpenError Open(uint64_t now_ns);
  // Whether `addr` (4 or 16 bytes by family) is local; re-reads the table when it is older than
  // 10 s (addresses come and go: DHCP, containers), on the calling thread.
  bool Contains(uint8_t family, const uint8_t* addr, uint64_t now_ns);

 private:
  struct Prefix {
    uint8_t family;
    uint8_t len;
    uint8_t addr[16];
  };
  bool Read();
  int fd_ = -1;
  uint32_t seq_ = 1;
  uint64_t read_ns_ = 0;
  std::vector<Prefix> prefixes_;
};

}  // namespace ctwatch
