// Giving up root after the sockets are open. Credentials are per thread on Linux: glibc's
// setuid() changes them on every thread, but capabilities survive only on threads that asked to
// keep them (PR_SET_KEEPCAPS), and capset() acts on the calling thread alone. So only the reader
// threads, which send every netlink request (table dumps, stats, receive buffer changes), keep
// exactly CAP_NET_ADMIN, which nfnetlink checks on the sending thread; the JavaScript thread and
// every other thread (V8, libuv) end with none. Before the uid changes, the JavaScript thread and
// the reader threads empty their capability bounding sets and set NO_NEW_PRIVS, so nothing they
// (or the programs they start: exec hooks) execute can gain a privilege again. Last, the process
// is made non-dumpable, so other processes of the account cannot trace it or read its memory.
#pragma once
#include <napi.h>

#include <functional>

namespace ctwatch {

// Readers register so the drop can run a step on each of their threads.
void RegisterReaderThread(void* key, std::function<bool(std::function<void()>)> run_on_thread);
void UnregisterReaderThread(void* key);

// Limits the calling thread's capabilities to CAP_NET_ADMIN (effective and permitted).
int KeepOnlyNetAdmin();

void InitPrivileges(Napi::Env env, Napi::Object exports);

}  // namespace ctwatch
