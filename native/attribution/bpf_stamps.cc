#include "attribution/bpf_stamps.h"
#include "attribution/seed.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>

#include "attribution/bpf/stamp.h"
#include "conntrack/clock.h"
#include "netns.h"
#include "owner.skel.h"

namespace ctwatch {

namespace {

std::mutex g_mu;
std::weak_ptr<BpfStamps> g_stamps;  // guarded by g_mu

// libbpf's warnings while we load, kept to explain a refusal (the verifier's last lines).
thread_local std::string* t_log = nullptr;

int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (t_log == nullptr || level == LIBBPF_DEBUG) return 0;
  char line[512];
  int n = vsnprintf(line, sizeof(line), format, args);
  if (n > 0 && t_log->size() < 64 * 1024) t_log->append(line);
  return 0;
}


// The last few lines libbpf printed, on one line, for an error message.
std::string Tail(const std::string& log) {
  std::vector<std::string> lines;
  std::istringstream in(log);
  std::string l;
  while (std::getline(in, l)) {
    if (!l.empty() && l.find("-- END PROG LOAD LOG --") == std::string::npos) lines.push_back(l);
  }
  std::string out;
  for (size_t i = lines.size() > 3 ? lines.size() - 3 : 0; i < lines.size(); i++) {
    if (!out.empty()) out += " | ";
    out += lines[i];
  }
  return out.size() > 600 ? out.substr(out.size() - 600) : out;
}

bool LockedDown() {
  std::ifstream in("/sys/kernel/security/lockdown");
  std::string s;
  std::getline(in, s);
  return s.find("[confidentiality]") != std::string::npos;
}

OpenError Refused(const char* code, int err, std::string message) {
  return MakeOpenError(code, err, "bpf", std::move(message));
}

}  // namespace

CapabilityCheck CheckBpfCapabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  CapabilityCheck out;
  if (syscall(SYS_capget, &header, data) != 0) return out;
  auto has = [&](int cap) { return (data[cap / 32].effective >> (cap % 32)) & 1u; };
  const int kSysAdmin = 21, kNetAdmin = 12, kPerfmon = 38, kBpf = 39;
  if (!has(kSysAdmin)) {
    if (!has(kBpf)) out.missing.push_back("CAP_BPF");
    if (!has(kPerfmon)) out.missing.push_back("CAP_PERFMON");
  }
  if (!has(kNetAdmin)) out.missing.push_back("CAP_NET_ADMIN");
  return out;
}

std::shared_ptr<BpfStamps> BpfStamps::Acquire(OpenError* error, uint32_t ring_bytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (auto live = g_stamps.lock()) return live;
  std::shared_ptr<BpfStamps> stamps(new BpfStamps());
  OpenError e = stamps->Load(ring_bytes);
  if (!e.ok()) {
    *error = std::move(e);
    return nullptr;  // the destructor releases whatever was loaded
  }
  g_stamps = stamps;
  return stamps;
}

OpenError BpfStamps::RingSizeRefused(const std::string& given) {
  return Refused("ERR_BPF_REFUSED", EINVAL, "stampRingBytes (the stamp ring's size) must be a power of two from a page to 64 MiB, not " + given);
}

OpenError BpfStamps::Load(uint32_t ring_bytes) {
  if (ring_bytes == 0) ring_bytes = STAMP_RING_BYTES;
  const long page = sysconf(_SC_PAGESIZE);
  if ((ring_bytes & (ring_bytes - 1)) != 0 || page <= 0 || ring_bytes < static_cast<uint32_t>(page) || ring_bytes > kMaxRingBytes) {
    return RingSizeRefused(std::to_string(ring_bytes));
  }
  CapabilityCheck caps = CheckBpfCapabilities();
  if (!caps.missing.empty()) {
    std::string names;
    for (const auto& n : caps.missing) names += (names.empty() ? "" : ", ") + n;
    return Refused("ERR_BPF_PERMISSION", EPERM,
                   "eBPF attribution needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) and CAP_NET_ADMIN; missing: " +
                       names);
  }
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
    return Refused("ERR_BPF_NO_BTF", errno,
                   "the kernel has no BTF (/sys/kernel/btf/vmlinux: CONFIG_DEBUG_INFO_BTF), which eBPF attribution needs");
  }
  cgroup_root_ = CgroupV2Root();
  if (cgroup_root_.empty()) {
    return Refused("ERR_BPF_NO_CGROUP2", ENOENT,
                   "no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified), which eBPF attribution attaches to");
  }
  cgroup_fd_ = open(cgroup_root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgroup_fd_ < 0) {
    return Refused("ERR_BPF_NO_CGROUP2", errno, "cannot open the cgroup v2 root " + cgroup_root_ + ": " + strerror(errno));
  }

  std::string log;
  static std::once_flag print_once;
  std::call_once(print_once, [] { libbpf_set_print(LibbpfPrint); });
  t_log = &log;
  struct Unset {
    ~Unset() { t_log = nullptr; }
  } unset;

  skel_ = owner_bpf::open();
  if (skel_ == nullptr) return Refused("ERR_BPF_REFUSED", errno, "cannot open the embedded BPF object: " + Tail(log));
  bpf_map__set_max_entries(skel_->maps.stamp_ring, ring_bytes);
  ring_bytes_ = ring_bytes;
  int err = owner_bpf::load(skel_);
  if (err != 0) {
    if (LockedDown()) {
      return Refused("ERR_BPF_LOCKDOWN", -err,
                     "the kernel is locked down (confidentiality), which forbids the reads eBPF attribution makes");
    }
    if (err == -EPERM || err == -EACCES) {
      return Refused("ERR_BPF_PERMISSION", -err,
                     "the kernel refused to load the BPF programs (" + std::string(strerror(-err)) +
                         "): eBPF attribution needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); " + Tail(log));
    }
    return Refused("ERR_BPF_REFUSED", -err, "the kernel refused the BPF programs (" + std::string(strerror(-err)) + "): " + Tail(log));
  }

  struct CgroupHook {
    bpf_program* prog;
    bpf_link** link;
  };
  const CgroupHook cgroup_hooks[] = {
      {skel_->progs.ct_connect, &skel_->links.ct_connect},   {skel_->progs.ct_sendmsg4, &skel_->links.ct_sendmsg4},
      {skel_->progs.ct_sendmsg6, &skel_->links.ct_sendmsg6}, {skel_->progs.ct_bind4, &skel_->links.ct_bind4},
      {skel_->progs.ct_bind6, &skel_->links.ct_bind6},       {skel_->progs.ct_release, &skel_->links.ct_release},
  };
  for (const auto& h : cgroup_hooks) {
    *h.link = bpf_program__attach_cgroup(h.prog, cgroup_fd_);
    if (*h.link == nullptr) {
      int e = errno;
      return Refused(e == EPERM ? "ERR_BPF_PERMISSION" : "ERR_BPF_REFUSED", e,
                     std::string("cannot attach ") + bpf_program__name(h.prog) + " to the cgroup v2 root " + cgroup_root_ +
                         ": " + strerror(e) + (e == EPERM ? " (attaching needs CAP_NET_ADMIN)" : ""));
    }
  }
  skel_->links.ct_state = bpf_program__attach_raw_tracepoint(skel_->progs.ct_state, "inet_sock_set_state");
  if (skel_->links.ct_state == nullptr) {
    int e = errno;
    return Refused("ERR_BPF_REFUSED", e, std::string("cannot attach to the tracepoint sock:inet_sock_set_state: ") + strerror(e));
  }
  // Optional: without it, connected UDP sockets are the one kind left unattributed (kNoHook).
  skel_->links.ct_send = bpf_program__attach_raw_tracepoint(skel_->progs.ct_send, "sock_send_length");
  sends_covered_ = skel_->links.ct_send != nullptr;

  flows_fd_ = bpf_map__fd(skel_->maps.flows);
  listeners_fd_ = bpf_map__fd(skel_->maps.listeners);
  bound_fd_ = bpf_map__fd(skel_->maps.bound);
  counters_fd_ = bpf_map__fd(skel_->maps.counters);
  attached_ns_ = MonotonicNs();
  // The programs write the ring from now on; what they wrote since they were attached waits in it.
  return copy_.Open(bpf_map__fd(skel_->maps.stamp_ring), ring_bytes_, reinterpret_cast<const volatile uint64_t*>(&skel_->bss->ring_lost));
}

BpfStamps::~BpfStamps() {
  copy_.Close();  // the ring's mapping, before the skeleton closes its map
  // Destroying the skeleton destroys every link (the kernel detaches each program) and closes the
  // programs and maps.
  if (skel_ != nullptr) owner_bpf::destroy(skel_);
  if (cgroup_fd_ >= 0) close(cgroup_fd_);
}

std::vector<std::pair<const char*, uint64_t>> BpfStamps::Counters() const {
  static const char* const kNames[CNT_MAX] = {"connect", "sendto", "sendtoSkipped", "send",
                                              "sendSkipped", "listen", "bind", "unlisten"};
  std::vector<std::pair<const char*, uint64_t>> out;
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0 || counters_fd_ < 0) return out;
  std::vector<uint64_t> per_cpu(static_cast<size_t>(cpus));
  for (uint32_t i = 0; i < CNT_MAX; i++) {
    // one that cannot be read is left out (unknown), not given as 0: a total never goes back
    if (bpf_map_lookup_elem(counters_fd_, &i, per_cpu.data()) != 0) continue;
    uint64_t sum = 0;
    for (uint64_t v : per_cpu) sum += v;
    out.emplace_back(kNames[i], sum);
  }
  const StampCopy::Counters c = copy_.counters();
  out.emplace_back("ringCopied", c.copied);
  out.emplace_back("ringLost", c.lost);
  out.emplace_back("ringPassedOver", c.passed_over);
  out.emplace_back("copyResets", c.resets);
  out.emplace_back("copyOverruns", c.overruns);
  return out;
}

std::vector<uint32_t> BpfStamps::ProgramIds() const {
  std::vector<uint32_t> ids;
  if (skel_ == nullptr) return ids;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) == 0) ids.push_back(info.id);
  }
  return ids;
}

}  // namespace ctwatch
