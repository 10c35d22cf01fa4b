// Small reads of /proc for the fallback: a process's identity (stat) and the inodes of the sockets
// it holds (fd links).
#pragma once
#include <dirent.h>

#include <string>
#include <vector>

namespace ctwatch {

bool ReadSmall(const char* path, std::string* out);
struct Stat {
  std::string comm;
  double ppid = 0;
  double starttime = 0;  // clock ticks after boot: with the pid, the process's identity
};
bool ParseStat(const std::string& text, Stat* st);
bool ReadStat(int pid, Stat* st);
// The inode of the process's network namespace; -1 when it is gone, -2 when it cannot be read.
double NetnsInode(int pid);
void ReadSocketLinks(DIR* dir, std::vector<double>* out);
// false when /proc/PID/fd could not be opened (errno says why: EACCES for another user's process
// without CAP_DAC_READ_SEARCH / CAP_SYS_PTRACE).
bool SocketInodes(int pid, std::vector<double>* out);
bool ReadStatAt(int proc_dir, Stat* st);
bool SocketInodesAt(int proc_dir, std::vector<double>* out);
std::vector<int> ListPids();

}  // namespace ctwatch
