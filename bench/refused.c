// Load for the hot-path benchmark: refused TCP connections (SYN, then the kernel's RST: no
// listener), as fast as the kernel allows or at a given rate. Each attempt is one conntrack entry:
// NEW at the SYN, CLOSE at the RST, DESTROY when the (short) CLOSE timeout of the namespace ends
// or the table is flushed. Destination ports rotate over PORTS ports so that no tuple repeats
// while its entry is still in the table; they stay below the ephemeral range, so that no attempt
// ever meets its own source port (a self-connect succeeds).
//   refused HOST THREADS COUNT [RATE [SECONDS]]
//     COUNT    stop after this many attempts in all (0: no limit, then SECONDS is needed)
//     RATE     attempts per second over all threads (0: as fast as possible)
//     SECONDS  stop after this long at the latest
// Prints "connections N seconds S".
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FIRST_PORT 2000
#define PORTS 20000

static struct in_addr host;
static atomic_long made;      // tickets taken (COUNT)
static atomic_long attempts;  // connections attempted
static long limit;
static double per_thread_rate;
static double deadline;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *client(void *arg) {
  long index = (long)arg;
  prctl(PR_SET_NAME, "refused-load");
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr = host};
  unsigned port = (unsigned)(index * 7919) % PORTS;
  const double start = now_s();
  long mine = 0;
  for (;;) {
    if (limit > 0 && atomic_fetch_add_explicit(&made, 1, memory_order_relaxed) >= limit) break;
    if (limit == 0) atomic_fetch_add_explicit(&made, 1, memory_order_relaxed);
    if (per_thread_rate > 0) {
      // Paced: attempt k is due at start + k / rate; sleep only when ahead by more than 1 ms.
      double due = start + mine / per_thread_rate, ahead = due - now_s();
      if (ahead > 0.001) {
        struct timespec ts = {0, (long)(ahead * 1e9)};
        nanosleep(&ts, NULL);
      }
    }
    if ((mine & 255) == 0 && now_s() > deadline) break;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) continue;
    to.sin_port = htons(FIRST_PORT + port);
    port = (port + 1) % PORTS;
    (void)connect(s, (struct sockaddr *)&to, sizeof(to));  // ECONNREFUSED is the point
    close(s);
    mine++;
  }
  atomic_fetch_add(&attempts, mine);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: refused HOST THREADS COUNT [RATE [SECONDS]]\n");
    return 64;
  }
  if (inet_pton(AF_INET, argv[1], &host) != 1) {
    fprintf(stderr, "refused: %s is not an IPv4 address\n", argv[1]);
    return 64;
  }
  int threads = atoi(argv[2]);
  limit = atol(argv[3]);
  double rate = argc > 4 ? atof(argv[4]) : 0;
  double seconds = argc > 5 ? atof(argv[5]) : 600;
  if (threads < 1 || (limit == 0 && argc <= 5)) {
    fprintf(stderr, "refused: give THREADS >= 1, and SECONDS when COUNT is 0\n");
    return 64;
  }
  per_thread_rate = rate / threads;
  const double t0 = now_s();
  deadline = t0 + seconds;
  pthread_t *t = calloc(threads, sizeof(pthread_t));
  for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, client, (void *)i);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  long n = atomic_load(&attempts);
  printf("connections %ld seconds %.3f\n", n, now_s() - t0);
  return 0;
}
