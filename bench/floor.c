// The floor of the hot-path benchmark: what receiving conntrack events costs when nothing is done
// with them. One raw NETLINK_NETFILTER socket subscribed to NEW and DESTROY, the same receive
// buffer ctwatch asks for (32 MiB, forced), recvmmsg of up to 64 datagrams per call after a 1 ms
// linger (as ctwatch's reader does), and no parsing
// beyond the netlink header's type (to count NEW and DESTROY apart). Run it inside the namespace
// (ip netns exec NS floor). It prints "ready" once subscribed; SIGUSR1 or SIGTERM prints
//   new N destroy N other N overflows N
// (SIGTERM then exits).
#define _GNU_SOURCE
#include <errno.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BURST 64
#define DATAGRAM 8192

static volatile sig_atomic_t report, stop;
static void on_usr1(int sig) { (void)sig; report = 1; }
static void on_term(int sig) { (void)sig; report = 1; stop = 1; }

int main(int argc, char **argv) {
  int groups = argc > 1 ? atoi(argv[1]) : (NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_DESTROY);
  prctl(PR_SET_NAME, "ctwatch-floor");
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) { perror("socket"); return 1; }
  int rcvbuf = 32 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = (unsigned)groups};
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) { perror("bind"); return 1; }

  struct sigaction act = {0};
  act.sa_handler = on_usr1;  // no SA_RESTART: a signal ends the blocking recvmmsg
  sigaction(SIGUSR1, &act, NULL);
  act.sa_handler = on_term;
  sigaction(SIGTERM, &act, NULL);
  sigaction(SIGINT, &act, NULL);

  static char storage[BURST][DATAGRAM];
  static struct iovec iov[BURST];
  static struct mmsghdr msgs[BURST];
  for (int i = 0; i < BURST; i++) {
    iov[i].iov_base = storage[i];
    iov[i].iov_len = DATAGRAM;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  unsigned long long created = 0, destroyed = 0, other = 0, overflows = 0;
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    if (report) {
      printf("new %llu destroy %llu other %llu overflows %llu\n", created, destroyed, other, overflows);
      fflush(stdout);
      report = 0;
      if (stop) return 0;
    }
    // Blocks for the first datagram, then takes what is queued, up to BURST.
    int got = recvmmsg(fd, msgs, BURST, MSG_WAITFORONE, NULL);
    if (got < 0) {
      if (errno == ENOBUFS) overflows++;
      else if (errno != EINTR) { perror("recvmmsg"); return 1; }
      continue;
    }
    for (int i = 0; i < got; i++) {
      // One event per datagram: the kernel multicasts each conntrack event on its own.
      const struct nlmsghdr *h = (const struct nlmsghdr *)storage[i];
      unsigned type = NFNL_MSG_TYPE(h->nlmsg_type);
      if (type == IPCTNL_MSG_CT_NEW && (h->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL))) created++;
      else if (type == IPCTNL_MSG_CT_DELETE) destroyed++;
      else other++;
    }
    // Like ctwatch's reader, let events pile up for a moment after a partial burst, so that each
    // system call takes many (the 32 MiB buffer holds ~100 000 events: nothing is lost to this).
    if (got < BURST) {
      struct timespec linger = {0, 1000000};
      nanosleep(&linger, NULL);
    }
  }
}
