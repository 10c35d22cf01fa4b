#include "attribution/procfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ctwatch {

// Reads a small /proc file whole (they are generated on read; one read() usually gets it all).
bool ReadSmall(const char* path, std::string* out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  out->clear();
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > (1 << 20)) break;
  }
  close(fd);
  return !out->empty();
}


// /proc/PID/stat: "pid (comm) state ppid ... starttime(22nd field) ...". comm may hold spaces and parentheses,
// so fields are counted from the last ')'.
bool ParseStat(const std::string& text, Stat* st) {
  size_t open_paren = text.find('(');
  size_t close_paren = text.rfind(')');
  if (open_paren == std::string::npos || close_paren == std::string::npos || close_paren < open_paren) return false;
  st->comm = text.substr(open_paren + 1, close_paren - open_paren - 1);
  const char* p = text.c_str() + close_paren + 1;
  // Fields after ')' start at field 3 (state); ppid is field 4, starttime field 22.
  int field = 2;
  while (*p && field < 22) {
    while (*p == ' ') p++;
    field++;
    if (field == 4) st->ppid = strtod(p, nullptr);
    if (field == 22) {
      st->starttime = strtod(p, nullptr);
      return true;
    }
    while (*p && *p != ' ') p++;
  }
  return false;
}

bool ReadStat(int pid, Stat* st) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  std::string text;
  return ReadSmall(path, &text) && ParseStat(text, st);
}

double NetnsInode(int pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
  struct stat sb;
  // -2: not ours to see (another user's process without CAP_SYS_PTRACE), -1: gone
  if (stat(path, &sb) < 0) return errno == EACCES || errno == EPERM ? -2 : -1;
  return static_cast<double>(sb.st_ino);
}

// Appends the inode of every socket in an open /proc/PID/fd directory ("socket:[INODE]"), then
// closes it.
void ReadSocketLinks(DIR* dir, std::vector<double>* out) {
  const int dfd = dirfd(dir);
  char link[64];
  while (dirent* ent = readdir(dir)) {
    if (ent->d_name[0] == '.') continue;
    ssize_t n = readlinkat(dfd, ent->d_name, link, sizeof(link) - 1);
    if (n < 9 || memcmp(link, "socket:[", 8) != 0) continue;
    link[n] = 0;
    out->push_back(strtod(link + 8, nullptr));
  }
  closedir(dir);
}

// Appends the inode of every socket among the process's open files.
bool SocketInodes(int pid, std::vector<double>* out) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/fd", pid);
  DIR* dir = opendir(path);
  if (dir == nullptr) return false;
  ReadSocketLinks(dir, out);
  return true;
}

// The same two reads through an open /proc/PID directory.
bool ReadStatAt(int proc_dir, Stat* st) {
  int fd = openat(proc_dir, "stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n;
  do {
    n = read(fd, buf, sizeof(buf) - 1);
  } while (n < 0 && errno == EINTR);
  close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  return ParseStat(std::string(buf, static_cast<size_t>(n)), st);
}

bool SocketInodesAt(int proc_dir, std::vector<double>* out) {
  int fd = openat(proc_dir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    close(fd);
    return false;
  }
  ReadSocketLinks(dir, out);
  return true;
}

std::vector<int> ListPids() {
  std::vector<int> pids;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return pids;
  while (dirent* ent = readdir(dir)) {
    const char* s = ent->d_name;
    if (*s < '1' || *s > '9') continue;
    char* end;
    long v = strtol(s, &end, 10);
    if (*end == 0 && v > 0) pids.push_back(static_cast<int>(v));
  }
  closedir(dir);
  return pids;
}

}  // namespace ctwatch
