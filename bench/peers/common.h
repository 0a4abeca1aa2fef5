/*
 * Shared helpers for the peer benchmarks (gloo_allreduce.cc, mpi_allreduce.c).
 * Plain C so both the C++ and the C program can include it.
 *
 * Everything here is deliberately transport-agnostic: size list, iteration
 * policy, the median, the data pattern used for verification and the JSON
 * line format (the same keys `gccl bench --json` prints).
 */
#ifndef GCCL_PEERS_COMMON_H
#define GCCL_PEERS_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Default sizes in bytes: 8 B .. 16 MiB stepping x8, plus 64 MiB. */
static const size_t peers_default_sizes[] = {
    8,       64,       512,       4096,     32768,
    262144,  2097152,  16777216,  67108864,
};
#define PEERS_NDEFAULT_SIZES \
  (sizeof(peers_default_sizes) / sizeof(peers_default_sizes[0]))
#define PEERS_MAX_SIZES 64

/* Defaults of the iteration policy (overridable on the command line). */
#define PEERS_DEFAULT_TARGET_SEC 0.2
#define PEERS_DEFAULT_MIN_ITERS 5
#define PEERS_DEFAULT_MAX_ITERS 100000
/* Warmup: a fixed count so that every rank executes the same number of
 * collectives (the count must not depend on a rank-local clock). */
#define PEERS_WARMUP_SMALL 20 /* bytes <= 1 MiB */
#define PEERS_WARMUP_LARGE 3  /* bytes  > 1 MiB */

static inline double peers_now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int peers_cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v in place). */
static inline double peers_median(double* v, size_t n) {
  if (n == 0) return 0.0;
  qsort(v, n, sizeof(double), peers_cmp_double);
  if (n % 2) return v[n / 2];
  return 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Mean of v[0..n). */
static inline double peers_mean(const double* v, size_t n) {
  double sum = 0.0;
  if (n == 0) return 0.0;
  for (size_t i = 0; i < n; i++) sum += v[i];
  return sum / (double)n;
}

/* Debug aid (--verbose): distribution of the per-iteration times on stderr.
 * v must already be sorted (peers_median sorts it). */
static inline void peers_print_dist(FILE* f, const char* impl, size_t bytes,
                                    const double* v, size_t n) {
  if (n == 0) return;
  fprintf(f,
          "# %s bytes=%zu iters=%zu min=%.1f p10=%.1f p50=%.1f p90=%.1f "
          "max=%.1f us\n",
          impl, bytes, n, v[0] * 1e6, v[n / 10] * 1e6, v[n / 2] * 1e6,
          v[(n * 9) / 10] * 1e6, v[n - 1] * 1e6);
  fflush(f);
}

static inline int peers_warmup_iters(size_t bytes) {
  return bytes <= (1u << 20) ? PEERS_WARMUP_SMALL : PEERS_WARMUP_LARGE;
}

/* Timed iteration count from a per-iteration estimate (seconds). */
static inline long peers_timed_iters(double est_sec, double target_sec,
                                     long min_iters, long max_iters) {
  long n;
  if (est_sec <= 0) return max_iters;
  n = (long)(target_sec / est_sec + 0.999999);
  if (n < min_iters) n = min_iters;
  if (n > max_iters) n = max_iters;
  return n;
}

/* Verification pattern. Element i of rank r's input is (r+1)*((i%13)+1);
 * the float32 sum over n ranks is exactly ((i%13)+1)*n*(n+1)/2 (small
 * integers, no rounding for any sane n). */
static inline float peers_input_value(int rank, size_t i) {
  return (float)((rank + 1) * (int)((i % 13) + 1));
}
static inline float peers_expected_value(int nranks, size_t i) {
  return (float)((int)((i % 13) + 1) * nranks * (nranks + 1) / 2);
}
static inline void peers_fill_input(float* p, size_t count, int rank) {
  for (size_t i = 0; i < count; i++) p[i] = peers_input_value(rank, i);
}
static inline long peers_count_wrong(const float* p, size_t count,
                                     int nranks) {
  long wrong = 0;
  for (size_t i = 0; i < count; i++)
    if (p[i] != peers_expected_value(nranks, i)) wrong++;
  return wrong;
}

/* Parse "8", "4K", "64M", "1G" (binary multiples). Returns 0 on error. */
static inline size_t peers_parse_size(const char* s) {
  char* end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s) return 0;
  switch (*end) {
    case '\0': break;
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: return 0;
  }
  if (*end == 'i' || *end == 'B' || *end == 'b') end++;
  if (*end == 'B') end++;
  if (*end != '\0') return 0;
  return (size_t)v;
}

/* Parse a comma separated list of sizes into out[]; every size must be a
 * positive multiple of align bytes. Returns the count or -1. */
static inline int peers_parse_size_list_align(const char* s, size_t* out,
                                              int cap, size_t align) {
  int n = 0;
  char buf[1024];
  char* save = NULL;
  char* tok;
  if (strlen(s) >= sizeof(buf)) return -1;
  strcpy(buf, s);
  for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    size_t v = peers_parse_size(tok);
    if (v == 0 || v % align != 0 || n >= cap) return -1;
    out[n++] = v;
  }
  return n;
}

/* The same for float32 (sizes must be multiples of 4 bytes). */
static inline int peers_parse_size_list(const char* s, size_t* out, int cap) {
  return peers_parse_size_list_align(s, out, cap, 4);
}

/* bfloat16 <-> float32. bfloat16 is the upper half of a float32; the
 * conversion down rounds to nearest, ties to even (what PyTorch and gccl
 * do), and keeps NaNs quiet NaNs. */
static inline float peers_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
static inline uint16_t peers_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* nccl-tests' bus bandwidth factor (busbw = algbw * factor). */
static inline double peers_bus_factor(const char* op, int nranks) {
  double n = (double)nranks;
  if (strcmp(op, "allreduce") == 0) return 2.0 * (n - 1) / n;
  if (strcmp(op, "allgather") == 0 || strcmp(op, "reducescatter") == 0)
    return (n - 1) / n;
  return 1.0; /* broadcast; barrier has no bytes */
}

/* One JSON line for any op/dtype. bytes and count follow nccl-tests (and
 * `gccl bench`): count is the total element count, bytes = count * element
 * size (allgather: total output; reducescatter: total input; broadcast: the
 * buffer). */
static inline void peers_print_row(FILE* f, const char* impl, const char* op,
                                   const char* dtype, int nranks,
                                   size_t bytes, size_t count,
                                   double time_sec, double mean_sec,
                                   long wrong) {
  double algbw = time_sec > 0 ? (double)bytes / time_sec / 1e9 : 0.0;
  double busbw = algbw * peers_bus_factor(op, nranks);
  fprintf(f,
          "{\"op\":\"%s\",\"dtype\":\"%s\",\"nranks\":%d,"
          "\"bytes\":%zu,\"count\":%zu,\"time_us\":%.3f,\"mean_us\":%.3f,"
          "\"algbw_gbps\":%.6f,\"busbw_gbps\":%.6f,\"wrong\":%ld,"
          "\"impl\":\"%s\"}\n",
          op, dtype, nranks, bytes, count, time_sec * 1e6, mean_sec * 1e6,
          algbw, busbw, wrong, impl);
  fflush(f);
}

/* One JSON object per line; keys identical to `gccl bench --json`, plus
 * "impl". algbw in GB/s (1e9 B/s), busbw = algbw * 2(n-1)/n (nccl-tests
 * allreduce convention). */
static inline void peers_print_json(FILE* f, const char* impl, int nranks,
                                    size_t bytes, double time_sec,
                                    double mean_sec, long wrong) {
  peers_print_row(f, impl, "allreduce", "float32", nranks, bytes,
                  bytes / sizeof(float), time_sec, mean_sec, wrong);
}

#endif /* GCCL_PEERS_COMMON_H */
