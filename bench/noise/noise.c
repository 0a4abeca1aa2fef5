// noise: a busy loop that takes part of one core, to see what a rank that loses its core for a
// while (another process, the host taking the vCPU) does to a job. It spins for BUSY_US
// microseconds, sleeps for SLEEP_US, and again, until killed:
//
//   cc -O2 -o bench/noise/bin/noise bench/noise/noise.c
//   taskset -c 1 bench/noise/bin/noise 2000 8000 &   # a fifth of vCPU 1, in 2 ms slices
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: noise BUSY_US SLEEP_US\n");
    return 2;
  }
  double busy = atof(argv[1]), sleep_us = atof(argv[2]);
  volatile unsigned long spins = 0;
  for (;;) {
    double start = now_us();
    while (now_us() - start < busy) spins++;
    if (sleep_us > 0) usleep((useconds_t)sleep_us);
  }
}
