/*
** fsync_rate.c -- the disk's raw durable-append rate: a loop of 4 KiB
** write(2) + fdatasync(2) on one file, the ceiling a WAL without group
** commit can reach.  Standalone:
**
**   cc -O2 -o fsync_rate bench/fsync_rate.c && ./fsync_rate DIR/probe 3
**
** prints count, rate and p50/p99 latency; the probe file is removed.
*/
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXN 2000000

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "fsync_rate.probe";
  double secs = argc > 2 ? atof(argv[2]) : 3.0, t0, t;
  static double lat[MAXN];
  char buf[4096];
  long n = 0;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) { perror(path); return 1; }
  memset(buf, 'x', sizeof(buf));
  t0 = t = now();
  while (t - t0 < secs && n < MAXN) {
    double a = t;
    if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) ||
        fdatasync(fd) < 0) {
      perror("write/fdatasync");
      return 1;
    }
    t = now();
    lat[n++] = t - a;
  }
  close(fd);
  unlink(path);
  qsort(lat, (size_t)n, sizeof(*lat), cmp);
  printf("%ld x (4 KiB append + fdatasync) in %.2f s = %.0f/s, "
         "p50 %.3f ms, p99 %.3f ms\n", n, t - t0, (double)n / (t - t0),
         lat[n / 2] * 1e3, lat[n * 99 / 100] * 1e3);
  return 0;
}
