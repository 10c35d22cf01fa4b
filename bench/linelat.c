// Kernel -> line latency of the hot-path benchmark, measured from outside the collector: follows
// a JSONL file as it grows (inotify), and for every "flow" line takes the moment the line could be
// read minus its "time" (the reader thread's receive stamp of the DESTROY, CLOCK_REALTIME µs). So
// the figure covers the reader's batching, the JavaScript pipeline, the output buffer and the
// write(2) itself. Starts at the current end of the file.
//   linelat FILE      SIGTERM/SIGINT prints "lines N p50 X p99 Y max Z steady_lines N steady_p99 Y"
//                     (µs) and exits; "steady" is the lines from the third second of load on (the
//                     first second with 1000 lines or more is the load's first; it and the next
//                     hold the pipeline's first batches under load, where V8 still compiles); on
//                     stderr, per second of line time, its lines and their worst latency (where a
//                     p99 comes from)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define BUCKET_US 10
#define BUCKETS 200000  // 2 s; later lines count in the last bucket

static uint64_t hist[BUCKETS], steady_hist[BUCKETS];
static uint64_t lines, max_us;
#define LOAD_LINES 1000
#define STEADY_AFTER_S 2
// each line's second and bucket, for the steady figure once the load's first second is known
static uint32_t *line_sec, *line_bucket;
static uint64_t kept, room;
#define SECONDS 600
static int64_t first_s = -1;
static uint64_t second_lines[SECONDS], second_max[SECONDS];
static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static int64_t realtime_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

// "2026-12-01T20:48:43.123456Z" -> µs since the epoch; the date and time of day are converted
// once per distinct second.
static int64_t parse_time(const char *p) {
  static char last[20];
  static int64_t last_s;
  if (memcmp(p, last, 19) != 0) {
    struct tm tm = {0};
    if (sscanf(p, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    last_s = (int64_t)timegm(&tm);
    memcpy(last, p, 19);
  }
  if (p[19] != '.') return last_s * 1000000;
  int64_t frac = 0;
  int digits = 0;
  for (const char *q = p + 20; *q >= '0' && *q <= '9' && digits < 6; q++, digits++) frac = frac * 10 + (*q - '0');
  for (; digits < 6; digits++) frac *= 10;
  return last_s * 1000000 + frac;
}

static void line(const char *s, size_t n, int64_t now) {
  if (n < 40 || memmem(s, n, "\"event\":\"flow\"", 14) == NULL) return;
  const char *t = memmem(s, n, "\"time\":\"", 8);
  if (t == NULL) return;
  int64_t at = parse_time(t + 8);
  if (at < 0) return;
  int64_t us = now - at;
  if (us < 0) us = 0;
  if ((uint64_t)us > max_us) max_us = (uint64_t)us;
  if (first_s < 0) first_s = at / 1000000;
  int64_t sec = at / 1000000 - first_s;
  if (sec >= 0 && sec < SECONDS) {
    second_lines[sec]++;
    if ((uint64_t)us > second_max[sec]) second_max[sec] = (uint64_t)us;
  }
  uint64_t b = (uint64_t)us / BUCKET_US;
  if (b >= BUCKETS) b = BUCKETS - 1;
  hist[b]++;
  lines++;
  if (sec < 0 || sec >= SECONDS) return;
  if (kept == room) {
    room = room ? room * 2 : 1 << 20;
    line_sec = realloc(line_sec, room * sizeof(*line_sec));
    line_bucket = realloc(line_bucket, room * sizeof(*line_bucket));
    if (line_sec == NULL || line_bucket == NULL) { perror("realloc"); exit(1); }
  }
  line_sec[kept] = (uint32_t)sec;
  line_bucket[kept++] = (uint32_t)b;
}

static uint64_t quantile(const uint64_t *h, uint64_t n, double q) {
  uint64_t want = (uint64_t)(q * (double)n), seen = 0;
  for (uint64_t b = 0; b < BUCKETS; b++) {
    seen += h[b];
    if (seen > want) return (b + 1) * BUCKET_US;
  }
  return max_us;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: linelat FILE\n");
    return 64;
  }
  prctl(PR_SET_NAME, "ctwatch-linelat");
  int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (fd < 0) { perror(argv[1]); return 1; }
  lseek(fd, 0, SEEK_END);
  int in = inotify_init1(IN_CLOEXEC);
  if (in < 0 || inotify_add_watch(in, argv[1], IN_MODIFY) < 0) { perror("inotify"); return 1; }
  struct sigaction act = {0};
  act.sa_handler = on_term;
  sigaction(SIGTERM, &act, NULL);
  sigaction(SIGINT, &act, NULL);
  printf("ready\n");
  fflush(stdout);

  static char buf[1 << 20];
  size_t have = 0;
  char events[4096];
  while (!stop) {
    if (read(in, events, sizeof(events)) < 0 && errno != EINTR) { perror("read inotify"); return 1; }
    for (;;) {
      ssize_t got = read(fd, buf + have, sizeof(buf) - have);
      if (got <= 0) break;
      int64_t now = realtime_us();
      have += (size_t)got;
      size_t start = 0;
      for (size_t i = 0; i < have; i++) {
        if (buf[i] != '\n') continue;
        line(buf + start, i - start, now);
        start = i + 1;
      }
      if (start == 0 && have == sizeof(buf)) start = have;  // a line longer than the buffer: skip it
      memmove(buf, buf + start, have - start);
      have -= start;
    }
  }
  for (int i = 0; i < SECONDS; i++)
    if (second_lines[i]) fprintf(stderr, "second %d lines %llu max %llu\n", i, (unsigned long long)second_lines[i], (unsigned long long)second_max[i]);
  int load_s = 0;
  while (load_s < SECONDS && second_lines[load_s] < LOAD_LINES) load_s++;
  uint64_t steady_lines = 0;
  for (uint64_t i = 0; i < kept; i++)
    if ((int)line_sec[i] >= load_s + STEADY_AFTER_S) {
      steady_hist[line_bucket[i]]++;
      steady_lines++;
    }
  printf("lines %llu p50 %llu p99 %llu max %llu steady_lines %llu steady_p99 %llu\n", (unsigned long long)lines,
         (unsigned long long)quantile(hist, lines, 0.5), (unsigned long long)quantile(hist, lines, 0.99), (unsigned long long)max_us,
         (unsigned long long)steady_lines, (unsigned long long)quantile(steady_hist, steady_lines, 0.99));
  return 0;
}
