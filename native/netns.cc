#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include <string>

namespace ctwatch {

OpenError MakeOpenError(const char* code, int err, const char* syscall, std::string message) {
  OpenError e;
  e.code = code;
  e.err = err;
  e.syscall = syscall;
  e.message = std::move(message);
  return e;
}

OpenError EnterNetns(const std::string& path, int* self_ns) {
  *self_ns = -1;
  if (path.empty()) return {};
  // O_PATH first: it never blocks (a FIFO without a writer hung a plain open) and has no side
  // effects (opening some devices does something). Only an nsfs file is opened for setns.
  int target = open(path.c_str(), O_PATH | O_CLOEXEC);
  if (target >= 0) {
    struct statfs sf;
    struct stat st;
    if (fstatfs(target, &sf) != 0 || sf.f_type != NSFS_MAGIC) {
      const bool got = fstat(target, &st) == 0;
      close(target);
      const char* kind = !got ? "" : S_ISFIFO(st.st_mode) ? " (it is a FIFO)" : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? " (it is a device)"
                         : S_ISDIR(st.st_mode) ? " (it is a directory)" : S_ISSOCK(st.st_mode) ? " (it is a socket)" : "";
      return MakeOpenError("ERR_NETNS", EINVAL, "open",
                           path + " is not a network namespace file" + kind + ": name one under /run/netns, or a path such as /proc/PID/ns/net");
    }
    // The same file again, now readable for setns(2): through our descriptor, not the path.
    const std::string self = "/proc/self/fd/" + std::to_string(target);
    int fd = open(self.c_str(), O_RDONLY | O_CLOEXEC);
    int err = errno;
    close(target);
    target = fd;
    errno = err;
  }
  if (target < 0) {
    int err = errno;
    if (err == EACCES || err == EPERM) {
      return MakeOpenError("ERR_NETNS_PERMISSION", err, "open",
                           "cannot open network namespace " + path + ": permission denied: run ctwatch as root");
    }
    if (err == ENOENT) {
      return MakeOpenError("ERR_NETNS_NOT_FOUND", err, "open",
                           "network namespace " + path +
                               " does not exist: list them with 'ip netns list', or pass a path such as /proc/PID/ns/net");
    }
    return MakeOpenError("ERR_NETNS", err, "open", "cannot open network namespace " + path + ": " + strerror(err));
  }
  *self_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (setns(target, CLONE_NEWNET) < 0) {
    int err = errno;
    close(target);
    if (*self_ns >= 0) close(*self_ns);
    *self_ns = -1;
    if (err == EINVAL) return MakeOpenError("ERR_NETNS", err, "setns", path + " is not a network namespace file");
    if (err == EPERM) {
      return MakeOpenError("ERR_NETNS_PERMISSION", err, "setns",
                           "entering network namespace " + path + " needs CAP_SYS_ADMIN: run ctwatch as root");
    }
    return MakeOpenError("ERR_NETNS", err, "setns", "cannot enter network namespace " + path + ": " + strerror(err));
  }
  close(target);
  return {};
}

void LeaveNetns(int self_ns) {
  if (self_ns < 0) return;
  // Only this thread ever left; going back keeps what it does later (and libc's per-thread
  // caches) in the namespace the process started in.
  setns(self_ns, CLONE_NEWNET);
  close(self_ns);
}

}  // namespace ctwatch
