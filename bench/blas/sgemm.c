/* Times OpenBLAS's float32 GEMM from C on the shapes of tensor's BenchmarkSgemm: y[M N] = x[M K]·wᵀ
 * with w [N K] (row-major, w transposed: the Linear layout), one thread, so that gccl's purego
 * call path can be compared with a direct call. Like go test -bench: one warm-up call, then
 * calls until at least SECONDS have passed; prints mean ns per call and GFLOPS (2·M·K·N).
 * For M=1 it times cblas_sgemv (what gccl calls for single rows) and cblas_sgemm.
 * Build and run with bench/blas/run.sh. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

extern void openblas_set_num_threads(int);

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void call(int gemv, int m, int k, int n, const float *x, const float *w, float *y) {
  if (gemv)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, w, k, x, 1, 0.0f, y, 1);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k, 0.0f, y, n);
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 0.5;
  static const int shapes[][3] = {{1, 2048, 2048}, {1, 2048, 5632}, {64, 2048, 2048}, {128, 2048, 2048}};
  openblas_set_num_threads(1);
  srand(1);
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
    float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k), *y = malloc(sizeof(float) * m * n);
    for (long i = 0; i < (long)m * k; i++) x[i] = 2.0f * rand() / RAND_MAX - 1;
    for (long i = 0; i < (long)n * k; i++) w[i] = 2.0f * rand() / RAND_MAX - 1;
    for (int gemv = (m == 1); gemv >= 0; gemv--) {
      call(gemv, m, k, n, x, w, y); /* warm-up */
      long iters = 0;
      double t0 = now(), t;
      do {
        call(gemv, m, k, n, x, w, y);
        iters++;
      } while ((t = now() - t0) < seconds);
      double ns = t / iters * 1e9;
      printf("C/%s/M=%d,K=%d,N=%d\t%ld\t%.0f ns/op\t%.2f GFLOPS\n", gemv ? "sgemv" : "sgemm", m, k, n, iters, ns,
             2.0 * m * k * n / ns);
    }
    free(x), free(w), free(y);
  }
  return 0;
}
