// Load for the source benchmark: as many short TCP connections per second as the machine allows.
// Each client thread connects to the listener and closes with RST (SO_LINGER 0), so the kernel's
// conntrack entry goes to CLOSE (and, with a short close timeout in the namespace, is destroyed
// soon after): NEW and DESTROY events at the highest rate loopback gives.
//   connburst HOST PORT SECONDS THREADS   prints "connections N"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in target;
static atomic_long made;
static atomic_int stop;

static void *server(void *arg) {
  int ls = *(int *)arg;
  for (;;) {
    int s = accept(ls, NULL, NULL);
    if (s >= 0) close(s);
  }
  return NULL;
}

static void *client(void *arg) {
  (void)arg;
  struct linger lg = {1, 0};
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) continue;
    setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    if (connect(s, (struct sockaddr *)&target, sizeof(target)) == 0) atomic_fetch_add(&made, 1);
    close(s);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: connburst HOST PORT SECONDS THREADS\n");
    return 64;
  }
  target.sin_family = AF_INET;
  target.sin_port = htons(atoi(argv[2]));
  inet_pton(AF_INET, argv[1], &target.sin_addr);
  double seconds = atof(argv[3]);
  int threads = atoi(argv[4]);

  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(ls, (struct sockaddr *)&target, sizeof(target)) < 0 || listen(ls, 4096) < 0) {
    perror("listen");
    return 1;
  }
  pthread_t t;
  pthread_create(&t, NULL, server, &ls);
  pthread_t *ct = calloc(threads, sizeof(pthread_t));
  for (int i = 0; i < threads; i++) pthread_create(&ct[i], NULL, client, NULL);
  struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
  nanosleep(&ts, NULL);
  atomic_store(&stop, 1);
  for (int i = 0; i < threads; i++) pthread_join(ct[i], NULL);
  printf("connections %ld\n", atomic_load(&made));
  return 0;
}
