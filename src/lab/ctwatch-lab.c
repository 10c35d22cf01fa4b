// ctwatch-lab: the demo's "Redis" server and its leaky client, in C because the leak has to open
// ~10 000 connections per second to fill a conntrack table the way the story did, which a Node
// client on this 2-core machine cannot. Loopback addresses only.
//
//   ctwatch-lab serve HOST PORT
//       answers "+PONG\r\n" to each request and closes when the client does
//   ctwatch-lab leak HOST PORT SRC[,SRC...] RATE SECONDS THREADS
//       a pool that opens a new connection per request: connect, PING, PONG, close. The client
//       closes first, so every entry ends in TIME_WAIT (120 s), as in the story. RATE 0 = as fast
//       as possible. Prints one JSON line per second: {"t":s,"made":n,"failed":f}
//   ctwatch-lab churn NAME tcp|udp HOST PORT COUNT RATE [rst|unbound|bound|connected|server]
//       short-lived sockets for attribution tests and benchmarks, under the process name NAME:
//       tcp: a non-blocking connect, then a reset at once (SO_LINGER 0: the socket lives
//       microseconds); udp unbound: a new socket per datagram (sendto); bound: one socket bound to
//       an ephemeral port; connected: connect + send + close per flow. UDP goes to PORT, PORT+1,
//       ... (up to 20 000 ports) so that every datagram is a flow of its own, except in mode
//       `server`: a socket per datagram, each from its own source port (20000 + i), all sending to PORT (a UDP server's clients). HOST may be IPv6. Prints {"pid":p,"made":n,"failed":f} at the end.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int serve(const char *host, int port) {
  prctl(PR_SET_NAME, "redis-server");
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4096) < 0) {
    perror("ctwatch-lab serve");
    return 1;
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  printf("{\"listening\":\"%s:%d\"}\n", host, port);
  fflush(stdout);
  struct epoll_event evs[256];
  char buf[512];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        for (;;) {
          int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
          if (c < 0) break;
          struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
        }
        continue;
      }
      ssize_t r = read(fd, buf, sizeof(buf));
      if (r > 0) {
        // One reply per read is enough for PING-style clients.
        ssize_t w = write(fd, "+PONG\r\n", 7);
        (void)w;
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        close(fd);  // the client closed first: the TIME_WAIT is on its side
      }
    }
  }
}

struct leak {
  struct sockaddr_in dst;
  struct in_addr *srcs;
  int nsrc;
  double interval;  // seconds between connections per thread, 0 = flat out
  double until;
  int index;
};

static atomic_long made, failed;

static void *leak_thread(void *arg) {
  struct leak *l = arg;
  double next = now();
  char buf[64];
  for (long i = 0; now() < l->until; i++) {
    if (l->interval > 0) {
      next += l->interval;
      double wait = next - now();
      if (wait > 0) {
        struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
      }
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) {
      atomic_fetch_add(&failed, 1);
      continue;
    }
    // Bind the source address but let connect() pick the port against the full 4-tuple, so
    // each source address gets the whole port range toward the one server.
    int one = 1;
    setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr = l->srcs[(l->index + i) % l->nsrc]};
    if (bind(s, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        connect(s, (struct sockaddr *)&l->dst, sizeof(l->dst)) < 0 ||
        write(s, "PING\r\n", 6) != 6 || read(s, buf, sizeof(buf)) <= 0) {
      atomic_fetch_add(&failed, 1);
    } else {
      atomic_fetch_add(&made, 1);
    }
    close(s);
  }
  return NULL;
}

static int leak(int argc, char **argv) {
  prctl(PR_SET_NAME, "api-worker");
  struct leak base = {.dst = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))}};
  inet_pton(AF_INET, argv[2], &base.dst.sin_addr);
  char *list = strdup(argv[4]);
  base.srcs = calloc(64, sizeof(struct in_addr));
  for (char *tok = strtok(list, ","); tok && base.nsrc < 64; tok = strtok(NULL, ",")) {
    inet_pton(AF_INET, tok, &base.srcs[base.nsrc++]);
  }
  double rate = atof(argv[5]);
  double seconds = atof(argv[6]);
  int threads = argc > 7 ? atoi(argv[7]) : 2;
  base.interval = rate > 0 ? threads / rate : 0;
  double start = now();
  base.until = start + seconds;
  pthread_t *t = calloc(threads, sizeof(pthread_t));
  struct leak *ls = calloc(threads, sizeof(struct leak));
  for (int i = 0; i < threads; i++) {
    ls[i] = base;
    ls[i].index = i;
    pthread_create(&t[i], NULL, leak_thread, &ls[i]);
  }
  for (int sec = 1; now() < base.until; sec++) {
    double wait = start + sec - now();
    if (wait > 0) {
      struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
      nanosleep(&ts, NULL);
    }
    printf("{\"t\":%d,\"made\":%ld,\"failed\":%ld}\n", sec, atomic_load(&made), atomic_load(&failed));
    fflush(stdout);
  }
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  printf("{\"done\":true,\"made\":%ld,\"failed\":%ld}\n", atomic_load(&made), atomic_load(&failed));
  return 0;
}

static void pace(double start, long i, double rate) {
  if (rate <= 0) return;
  double wait = start + i / rate - now();
  if (wait > 0) {
    struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
    nanosleep(&ts, NULL);
  }
}

static int churn(int argc, char **argv) {
  prctl(PR_SET_NAME, argv[2]);
  const int tcp = strcmp(argv[3], "tcp") == 0;
  const char *mode = argc > 8 ? argv[8] : (tcp ? "rst" : "unbound");
  const int port = atoi(argv[5]);
  const long count = atol(argv[6]);
  const double rate = atof(argv[7]);
  struct sockaddr_storage dst = {0};
  socklen_t len;
  int family;
  if (strchr(argv[4], ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&dst;
    a->sin6_family = family = AF_INET6;
    inet_pton(AF_INET6, argv[4], &a->sin6_addr);
    len = sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&dst;
    a->sin_family = family = AF_INET;
    inet_pton(AF_INET, argv[4], &a->sin_addr);
    len = sizeof(*a);
  }
  in_port_t *dport = family == AF_INET6 ? &((struct sockaddr_in6 *)&dst)->sin6_port : &((struct sockaddr_in *)&dst)->sin_port;
  *dport = htons(port);
  long ok = 0, bad = 0;
  int shared = -1;
  if (!tcp && strcmp(mode, "bound") == 0) {
    shared = socket(family, SOCK_DGRAM, 0);
    struct sockaddr_storage any = {0};
    any.ss_family = family;
    if (bind(shared, (struct sockaddr *)&any, len) < 0) {
      perror("ctwatch-lab churn: bind");
      return 1;
    }
  }
  const double start = now();
  for (long i = 0; i < count; i++) {
    pace(start, i, rate);
    if (!tcp && strcmp(mode, "server") != 0) *dport = htons(port + (int)(i % 20000));
    if (tcp) {
      int s = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
      int r = s < 0 ? -1 : connect(s, (struct sockaddr *)&dst, len);
      if (s >= 0 && (r == 0 || errno == EINPROGRESS)) ok++;
      else bad++;
      struct linger lg = {1, 0};
      if (s >= 0) {
        setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(s);
      }
    } else if (shared >= 0) {
      if (sendto(shared, "x", 1, 0, (struct sockaddr *)&dst, len) == 1) ok++;
      else bad++;
    } else {
      int s = socket(family, SOCK_DGRAM, 0);
      int r;
      if (strcmp(mode, "server") == 0) {
        // One source port per client, chosen here: ports the kernel picks at random for unbound
        // sockets repeat (200 picks from 28 000 collide about half the time), and a repeated
        // tuple is the same conntrack entry, not a new flow.
        struct sockaddr_storage from = {0};
        from.ss_family = family;
        in_port_t sp = htons(20000 + (int)(i % 20000));
        if (family == AF_INET6) ((struct sockaddr_in6 *)&from)->sin6_port = sp;
        else ((struct sockaddr_in *)&from)->sin_port = sp;
        int one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        bind(s, (struct sockaddr *)&from, len);
      }
      if (strcmp(mode, "connected") == 0) {
        r = connect(s, (struct sockaddr *)&dst, len) == 0 && send(s, "x", 1, 0) == 1;
      } else {
        r = sendto(s, "x", 1, 0, (struct sockaddr *)&dst, len) == 1;
      }
      if (r) ok++;
      else bad++;
      close(s);
    }
  }
  printf("{\"pid\":%d,\"made\":%ld,\"failed\":%ld,\"seconds\":%.3f}\n", getpid(), ok, bad, now() - start);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 4 && strcmp(argv[1], "serve") == 0) return serve(argv[2], atoi(argv[3]));
  if (argc >= 7 && strcmp(argv[1], "leak") == 0) return leak(argc, argv);
  if (argc >= 8 && strcmp(argv[1], "churn") == 0) return churn(argc, argv);
  fprintf(stderr,
          "usage: ctwatch-lab serve HOST PORT | leak HOST PORT SRC[,SRC] RATE SECONDS [THREADS] |\n"
          "       churn NAME tcp|udp HOST PORT COUNT RATE [rst|unbound|bound|connected|server]\n");
  return 64;
}
