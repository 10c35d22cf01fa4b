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

int main(int argc, char **argv) {
  if (argc >= 4 && strcmp(argv[1], "serve") == 0) return serve(argv[2], atoi(argv[3]));
  if (argc >= 7 && strcmp(argv[1], "leak") == 0) return leak(argc, argv);
  fprintf(stderr, "usage: ctwatch-lab serve HOST PORT | leak HOST PORT SRC[,SRC] RATE SECONDS [THREADS]\n");
  return 64;
}
