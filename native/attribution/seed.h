// Listeners that existed before attribution began: a TCP server started before ctwatch was never
// seen calling listen(), so its accepted connections would stay unattributed. At start each reader
// lists its namespace's listening TCP and bound UDP sockets (sock_diag) and finds their processes
// in /proc once, then adds them to the listener map without overwriting a fresher stamp.
#pragma once
#include <cstdint>
#include <string>

namespace ctwatch {

struct SeedResult {
  uint64_t sockets = 0;  // listening / bound sockets found
  uint64_t seeded = 0;   // of them, with their process found
  uint64_t denied = 0;   // processes whose /proc/PID/fd could not be read (capabilities)
};

// On the calling thread, which must be inside the namespace (the sock_diag dump is per namespace).
SeedResult SeedListeners(int listeners_fd, int bound_fd, uint64_t netns_cookie, const std::string& cgroup_root);

// The mount point of the cgroup v2 hierarchy (from /proc/self/mountinfo), "" when none.
std::string CgroupV2Root();

// The cgroup v2 id (inode of its directory) of a process, from /proc/PID/cgroup; 0 when unknown.
uint64_t CgroupIdOf(int pid, const std::string& cgroup_root);

}  // namespace ctwatch
