// Entering a network namespace on the calling thread only: a netlink socket stays bound to the
// namespace it was created in, so each reader thread enters, opens its sockets, and goes back.
#pragma once
#include <string>

#include "errors.h"

namespace ctwatch {

OpenError MakeOpenError(const char* code, int err, const char* syscall, std::string message);

// Enters `path` (a netns file: /run/netns/NAME, /proc/PID/ns/net); `*self_ns` gets a handle to
// come back with (-1 when `path` is empty and nothing was entered). Errors say what to do.
OpenError EnterNetns(const std::string& path, int* self_ns);

// Returns the calling thread to the namespace it left and closes the handle (no-op for -1).
void LeaveNetns(int self_ns);

}  // namespace ctwatch
