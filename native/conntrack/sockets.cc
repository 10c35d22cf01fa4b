#include "conntrack/sockets.h"

#include "conntrack/decode.h"
#include "kernel_socket.h"
#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#ifndef NETLINK_BROADCAST_SEND_ERROR
#define NETLINK_BROADCAST_SEND_ERROR 4
#endif
#ifndef NETLINK_NO_ENOBUFS
#define NETLINK_NO_ENOBUFS 5
#endif

namespace ctwatch {

namespace {

OpenError Fail(const char* code, int err, const char* syscall, std::string message) {
  return MakeOpenError(code, err, syscall, std::move(message));
}

OpenError SocketError(int err, const char* syscall, const std::string& where) {
  if (err == EPERM || err == EACCES) {
    return Fail("ERR_NO_CAP_NET_ADMIN", err, syscall,
                "reading conntrack events needs CAP_NET_ADMIN" + where +
                    ": run ctwatch as root, or grant it (systemd AmbientCapabilities=CAP_NET_ADMIN)");
  }
  if (err == EPROTONOSUPPORT || err == ENOENT || err == EAFNOSUPPORT) {
    return Fail("ERR_NO_CTNETLINK", err, syscall,
                "the kernel's conntrack netlink interface is not available" + where +
                    ": load it with 'modprobe nf_conntrack_netlink'");
  }
  return Fail("ERR_SOCKET", err, syscall,
              std::string("cannot open the conntrack netlink socket") + where + ": " + strerror(err));
}

// Opens a plain request/response socket for ctnetlink.
OpenError OpenMnl(mnl_socket** out, const std::string& where) {
  mnl_socket* s = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
  if (s == nullptr) return SocketError(errno, "socket", where);
  if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) {
    int err = errno;
    mnl_socket_close(s);
    return SocketError(err, "bind", where);
  }
  if (ConnectToKernel(mnl_socket_get_fd(s)) < 0) {
    int err = errno;
    mnl_socket_close(s);
    return SocketError(err, "connect", where);
  }
  // A stats or dump reply that never comes must not hang the caller forever.
  timeval tv{2, 0};
  setsockopt(mnl_socket_get_fd(s), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  *out = s;
  return {};
}

uint32_t NextSeq() {
  static std::atomic<uint32_t> seq{static_cast<uint32_t>(time(nullptr))};
  return seq++;
}

nlmsghdr* PutRequest(char* buf, uint8_t msg, uint16_t flags, uint32_t seq) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | msg;
  nlh->nlmsg_flags = flags;
  nlh->nlmsg_seq = seq;
  auto* nfh = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfh->nfgen_family = AF_UNSPEC;
  nfh->version = NFNETLINK_V0;
  nfh->res_id = 0;
  return nlh;
}

OpenError AttachFilter(int fd, const KernelFilter& f) {
  nfct_filter* filter = nfct_filter_create();
  if (filter == nullptr) return Fail("ERR_FILTER", ENOMEM, "nfct_filter_create", "out of memory building the kernel filter");
  for (uint32_t p : f.protos) nfct_filter_add_attr_u32(filter, NFCT_FILTER_L4PROTO, p);
  for (const auto& st : f.states) {
    nfct_filter_proto fp{st.first, st.second};
    nfct_filter_add_attr(filter, NFCT_FILTER_L4PROTO_STATE, &fp);
  }
  for (const auto& a : f.src4) {
    nfct_filter_ipv4 v{a.first, a.second};
    nfct_filter_add_attr(filter, NFCT_FILTER_SRC_IPV4, &v);
  }
  for (const auto& a : f.dst4) {
    nfct_filter_ipv4 v{a.first, a.second};
    nfct_filter_add_attr(filter, NFCT_FILTER_DST_IPV4, &v);
  }
  for (const auto& a : f.src6) {
    nfct_filter_ipv6 v{{a[0], a[1], a[2], a[3]}, {a[4], a[5], a[6], a[7]}};
    nfct_filter_add_attr(filter, NFCT_FILTER_SRC_IPV6, &v);
  }
  for (const auto& a : f.dst6) {
    nfct_filter_ipv6 v{{a[0], a[1], a[2], a[3]}, {a[4], a[5], a[6], a[7]}};
    nfct_filter_add_attr(filter, NFCT_FILTER_DST_IPV6, &v);
  }
  for (const auto& m : f.marks) {
    nfct_filter_dump_mark v{m.first, m.second};
    nfct_filter_add_attr(filter, NFCT_FILTER_MARK, &v);
  }
  int rc = nfct_filter_attach(fd, filter);
  int err = errno;
  nfct_filter_destroy(filter);
  if (rc < 0) {
    return Fail("ERR_FILTER", err, "setsockopt",
                std::string("the kernel refused the event filter (") + strerror(err) +
                    "): simplify --filter, or filter fewer values");
  }
  return {};
}

}  // namespace

void Sockets::Close() {
  if (events) nfct_close(events);
  if (dump) mnl_socket_close(dump);
  if (stats) mnl_socket_close(stats);
  events = nullptr;
  dump = nullptr;
  stats = nullptr;
}

int SetReceiveBuffer(int fd, int bytes) {
  if (bytes > 0) {
    // SO_RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN; without it the kernel caps
    // SO_RCVBUF at rmem_max, which is why we read back what we got.
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) < 0) {
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
    }
  }
  int granted = 0;
  socklen_t len = sizeof(granted);
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &len);
  return granted;
}

OpenError OpenSockets(const SocketOptions& o, Sockets* out) {
  std::string where;
  if (!o.netns.empty()) where = " in network namespace " + o.netns;
  int self_ns = -1;
  OpenError entered = EnterNetns(o.netns, &self_ns);
  if (!entered.ok()) return entered;

  OpenError result;
  out->events = nfct_open(CONNTRACK, o.groups);
  if (out->events == nullptr) {
    result = SocketError(errno, "bind", where);
  } else {
    int fd = nfct_fd(out->events);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (ConnectToKernel(fd) < 0) result = SocketError(errno, "connect", where);
    out->rcvbuf = SetReceiveBuffer(fd, o.rcvbuf);
    if (o.reliable) {
      int on = 1;
      setsockopt(fd, SOL_NETLINK, NETLINK_BROADCAST_SEND_ERROR, &on, sizeof(on));
      setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &on, sizeof(on));
    }
    if (result.ok() && o.filter.present) result = AttachFilter(fd, o.filter);
    if (result.ok()) result = OpenMnl(&out->dump, where);
    if (result.ok()) result = OpenMnl(&out->stats, where);
  }
  if (!result.ok()) out->Close();

  LeaveNetns(self_ns);
  return result;
}

namespace {

struct StatsParse {
  const char* const* names;
  int max;
  std::map<std::string, uint32_t>* into;
};

int ParseU32Attr(const nlattr* attr, void* data) {
  auto* p = static_cast<StatsParse*>(data);
  int type = mnl_attr_get_type(attr);
  if (type <= 0 || type > p->max || p->names[type] == nullptr) return MNL_CB_OK;
  if (mnl_attr_validate(attr, MNL_TYPE_U32) < 0) return MNL_CB_OK;
  (*p->into)[p->names[type]] = ntohl(mnl_attr_get_u32(attr));
  return MNL_CB_OK;
}

// Kernel names from include/uapi/linux/netfilter/nfnetlink_conntrack.h (CTA_STATS_*), spelled as
// conntrack -S prints them.
const char* const kCpuStatNames[] = {
    nullptr,  "searched", "found",    "new",   "invalid",       "ignore",       "delete",
    "delete_list", "insert", "insert_failed", "drop", "early_drop", "error", "search_restart",
    "clash_resolve", "chaintoolong"};
const char* const kGlobalStatNames[] = {nullptr, "entries", "max_entries"};

OpenError Exchange(mnl_socket* sock, uint8_t msg, uint16_t flags,
                   const std::function<void(const nlmsghdr*)>& on_message) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  uint32_t seq = NextSeq();
  nlmsghdr* nlh = PutRequest(buf, msg, flags, seq);
  if (mnl_socket_sendto(sock, nlh, nlh->nlmsg_len) < 0) {
    return SocketError(errno, "sendto", "");
  }
  uint32_t portid = mnl_socket_get_portid(sock);
  std::vector<char> rx(1 << 16);
  for (;;) {
    // Connected to the kernel (OpenMnl, kernel_socket.h): no other socket's datagram arrives here.
    ssize_t n = mnl_socket_recvfrom(sock, rx.data(), rx.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      return Fail("ERR_SOCKET", err, "recvfrom",
                  std::string("conntrack request failed: ") + strerror(err));
    }
    int len = static_cast<int>(n);
    for (auto* m = reinterpret_cast<const nlmsghdr*>(rx.data()); NlmsgOk(m, len);
         m = NlmsgNext(m, &len)) {
      if (m->nlmsg_seq != seq || m->nlmsg_pid != portid) continue;
      if (m->nlmsg_type == NLMSG_DONE) return {};
      if (m->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(mnl_nlmsg_get_payload(m));
        if (e->error == 0) return {};
        int err = -e->error;
        return SocketError(err, "recvfrom", "");
      }
      on_message(m);
      // The kernel flags its single GET_STATS reply NLM_F_MULTI without a DONE after it, so only a
      // dump waits for NLMSG_DONE.
      if (!(flags & NLM_F_DUMP)) return {};
    }
  }
}

}  // namespace

OpenError QueryStats(mnl_socket* sock, TableStats* out) {
  std::map<std::string, uint32_t> global;
  OpenError e = Exchange(sock, IPCTNL_MSG_CT_GET_STATS, NLM_F_REQUEST, [&](const nlmsghdr* m) {
    StatsParse p{kGlobalStatNames, 2, &global};
    mnl_attr_parse(m, sizeof(nfgenmsg), ParseU32Attr, &p);
  });
  if (!e.ok()) return e;
  if (global.count("entries")) out->entries = global["entries"];
  if (global.count("max_entries")) out->max = global["max_entries"];
  return Exchange(sock, IPCTNL_MSG_CT_GET_STATS_CPU, NLM_F_REQUEST | NLM_F_DUMP,
                  [&](const nlmsghdr* m) {
                    out->cpus.emplace_back();
                    StatsParse p{kCpuStatNames, 15, &out->cpus.back()};
                    mnl_attr_parse(m, sizeof(nfgenmsg), ParseU32Attr, &p);
                  });
}

OpenError DumpTable(mnl_socket* sock, const std::function<void(const nlmsghdr*)>& on_message) {
  return Exchange(sock, IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, on_message);
}

}  // namespace ctwatch
