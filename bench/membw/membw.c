/* Streaming read bandwidth of this machine with THREADS threads, each summing its own 1 GiB of
 * float32 three times with AVX2 loads (no writes): what a memory-bound decode step needs, since
 * it reads every weight once per token. bench/tpinfer.sh runs it with 1 and 2 threads beside
 * each TP=1 / TP=2 pair: the ratio bounds the speed-up two ranks can get on weights that do not
 * fit in cache, whatever the communication costs.
 *
 *   cc -O2 -mavx2 -pthread -o bin/membw membw.c && bin/membw THREADS
 *
 * Prints one line: "<threads> <GB/s total>". */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { floats = 256 << 20, passes = 3 };

struct part {
  float *a;
  float sum;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *reader(void *arg) {
  struct part *p = arg;
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (int r = 0; r < passes; r++)
    for (size_t i = 0; i < floats; i += 32) {
      s0 = _mm256_add_ps(s0, _mm256_load_ps(p->a + i));
      s1 = _mm256_add_ps(s1, _mm256_load_ps(p->a + i + 8));
      s2 = _mm256_add_ps(s2, _mm256_load_ps(p->a + i + 16));
      s3 = _mm256_add_ps(s3, _mm256_load_ps(p->a + i + 24));
    }
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  p->sum = out[0];
  return NULL;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  if (threads < 1 || threads > 64) {
    fprintf(stderr, "membw: THREADS must be 1 to 64, got %s\n", argv[1]);
    return 2;
  }
  struct part *parts = calloc(threads, sizeof *parts);
  pthread_t *ids = calloc(threads, sizeof *ids);
  for (int t = 0; t < threads; t++) {
    parts[t].a = aligned_alloc(64, (size_t)floats * sizeof(float));
    if (!parts[t].a) {
      fprintf(stderr, "membw: out of memory\n");
      return 1;
    }
    for (size_t i = 0; i < floats; i++)
      parts[t].a[i] = 1;
  }
  double t0 = now();
  for (int t = 0; t < threads; t++)
    pthread_create(&ids[t], NULL, reader, &parts[t]);
  for (int t = 0; t < threads; t++)
    pthread_join(ids[t], NULL);
  double dt = now() - t0;
  for (int t = 0; t < threads; t++)
    if (!(parts[t].sum > 0)) { /* the loads happened: ones summed */
      fprintf(stderr, "membw: wrong sum %g\n", parts[t].sum);
      return 1;
    }
  printf("%d %.1f\n", threads, (double)threads * passes * floats * sizeof(float) / dt / 1e9);
  return 0;
}
