/* Where the host has put this VM's first two vCPUs, seen from the guest: the round trip of one
 * cache line between a thread pinned to CPU 0 and one pinned to CPU 1, and the time to hand
 * over a 32 KiB and a 256 KiB buffer from one to the other (the producer writes it, the consumer
 * copies it out), written with ordinary stores and with non-temporal ones.
 *
 *   cc -O2 -mavx2 -pthread -o bin/placement placement.c && bin/placement [ROUNDS]
 *
 * Prints one line per round, 300 ms apart. On the 2-vCPU EPYC VMs gccl is measured on, the
 * round trip falls in three bands that come and go within minutes, and every shm number moves
 * with them (BENCHMARKS.md, "The host's placement of the two vCPUs"):
 *   ~50 ns        the vCPUs are hyperthreads of one core (shared L1/L2): hand-overs are fastest;
 *   ~120 ns       two cores of one CCX (shared L3): the usual case;
 *   550-1000 ns   cores of different CCDs: a hand-over through the caches is 3-4x slower, one
 *                 written with non-temporal stores (through memory) is not. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile long turn __attribute__((aligned(128)));
static volatile long done __attribute__((aligned(128)));
static char *shared, *src, *dst;
static size_t size;
static long rounds;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    perror("placement: sched_setaffinity (needs CPUs 0 and 1)");
    exit(1);
  }
}

static void stream_copy(char *d, const char *s, size_t n) {
  for (size_t i = 0; i < n; i += 64) {
    __m256i a = _mm256_load_si256((const void *)(s + i));
    __m256i b = _mm256_load_si256((const void *)(s + i + 32));
    _mm256_stream_si256((void *)(d + i), a);
    _mm256_stream_si256((void *)(d + i + 32), b);
  }
  _mm_sfence();
}

/* The consumer, on CPU 1: waits for each round's turn, copies the buffer out (when size > 0),
 * says it is done. */
static void *consumer(void *arg) {
  (void)arg;
  pin(1);
  for (long r = 1; r <= rounds; r++) {
    while (turn < r)
      ;
    if (size)
      memcpy(dst, shared, size);
    __atomic_store_n(&done, r, __ATOMIC_RELEASE);
  }
  return NULL;
}

/* Microseconds per round of handing over n bytes (0: the line round trip alone). */
static double hand_over(size_t n, long count, int nontemporal) {
  size = n;
  rounds = count;
  turn = 0;
  done = 0;
  pthread_t t;
  pthread_create(&t, NULL, consumer, NULL);
  double t0 = now();
  for (long r = 1; r <= count; r++) {
    if (n && nontemporal)
      stream_copy(shared, src, n);
    else if (n)
      memcpy(shared, src, n);
    __atomic_store_n(&turn, r, __ATOMIC_RELEASE);
    while (done < r)
      ;
  }
  double dt = now() - t0;
  pthread_join(t, NULL);
  return dt / count * 1e6;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 10;
  if (n < 1) {
    fprintf(stderr, "placement: ROUNDS must be a positive count, got %s\n", argv[1]);
    return 2;
  }
  pin(0);
  size_t most = 256 << 10;
  shared = aligned_alloc(4096, most);
  src = aligned_alloc(4096, most);
  dst = aligned_alloc(4096, most);
  memset(shared, 1, most);
  memset(src, 2, most);
  memset(dst, 3, most);
  printf("# round trip ns | hand-over us: 32K, 256K | non-temporal: 32K, 256K\n");
  for (int i = 0; i < n; i++) {
    double rtt = hand_over(0, 20000, 0) * 1e3;
    double a = hand_over(32 << 10, 5000, 0), b = hand_over(256 << 10, 1000, 0);
    double c = hand_over(32 << 10, 5000, 1), d = hand_over(256 << 10, 1000, 1);
    printf("%.0f | %.2f %.1f | %.2f %.1f\n", rtt, a, b, c, d);
    fflush(stdout);
    usleep(300000);
  }
  return 0;
}
