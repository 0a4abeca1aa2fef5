/*
 * MPI collective benchmark (peer baseline for gccl's TCP and shared-memory
 * backends). Despite the file name it measures several ops:
 *
 *   allreduce      MPI_Allreduce(sum), out-of-place
 *   allgather      MPI_Allgather, out-of-place
 *   reducescatter  MPI_Reduce_scatter_block(sum), out-of-place
 *   broadcast      MPI_Bcast from root 0, in place
 *   barrier        MPI_Barrier (the synchronisation floor; bytes 0)
 *   sendrecv       MPI_Isend to the next rank, MPI_Recv from the previous,
 *                  MPI_Wait (what `gccl bench --op sendrecv` runs)
 *
 * for float32 (MPI_FLOAT, MPI_SUM) or bfloat16. MPI has no bfloat16 type:
 * bfloat16 data travels as MPI_UINT16_T, and the sum is a user-defined,
 * commutative MPI_Op that widens both operands to float32, adds, and rounds
 * back to nearest-even (what PyTorch and gccl do for bfloat16).
 *
 * Same measurement as gloo_allreduce.cc. Per op and size:
 *   1. one verified collective (untimed),
 *   2. a fixed number of warmup iterations,
 *   3. rank 0 sizes the timed loop from the warmup median (~--target-sec,
 *      at least --min-iters) and MPI_Bcasts the count,
 *   4. back-to-back calls (no barrier in between), each timed on its own;
 *      every rank takes the median of its own times, and the reported
 *      time is the largest of these medians (the slowest rank sets the
 *      time, as in `gccl bench`); mean_us likewise is the largest of the
 *      ranks' means (nccl-tests' and OSU's time: it counts every op). Rank 0 prints one JSON line.
 *      --rank0-time reports rank 0's median instead (the rule before the
 *      non-allreduce ops were added; for broadcast it only measures how
 *      fast the root can post its sends).
 *
 * bytes/count follow nccl-tests and `gccl bench`: count is the total element
 * count and bytes = count * element size, i.e. allgather = total output,
 * reducescatter = total input, broadcast = the buffer. For allgather and
 * reducescatter the count is rounded down to a multiple of the rank count
 * (as gccl bench does); a size that rounds down to 0 elements, or to the
 * same byte count as the previous size, is skipped.
 *
 * Run through mpirun, e.g. TCP over loopback:
 *   mpirun --allow-run-as-root --oversubscribe -np 4 --mca pml ob1 \
 *     --mca btl self,tcp --mca btl_tcp_if_include lo ./mpi_allreduce
 * or shared memory (OpenMPI 4.x: vader; 5.x: sm):
 *   mpirun ... --mca pml ob1 --mca btl self,vader ./mpi_allreduce \
 *     --impl openmpi-shm --op allreduce,allgather,barrier
 *
 * Options:
 *   --impl NAME        value of the "impl" JSON key (default openmpi-tcp)
 *   --op LIST          comma separated ops (default allreduce); see above
 *   --dtype T          float32 (default) or bfloat16
 *   --sizes LIST       bytes, e.g. 8,64,4K,64M (default 8..16M x8, 64M)
 *   --target-sec S     timed seconds per size (default 0.2)
 *   --min-iters N      (default 5)
 *   --max-iters N      (default 100000)
 *   --no-check         skip verification (wrong = -1)
 *   --rank0-time       report rank 0's median, not the slowest rank's
 *   --fresh-input      rewrite every cache line of the input before each timed
 *                      op (untimed), as new data would be: without it the ops
 *                      reread an unchanged input, which CMA's single copy
 *                      finds in the reader's cache from the op before
 *   --verbose          per-size time distribution on stderr (rank 0)
 */
#include <mpi.h>

#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

enum op_kind { OP_ALLREDUCE, OP_ALLGATHER, OP_REDUCESCATTER, OP_BROADCAST,
               OP_BARRIER, OP_SENDRECV };
static const char* const op_names[] = {"allreduce", "allgather",
                                       "reducescatter", "broadcast",
                                       "barrier", "sendrecv"};
#define NOPS ((int)(sizeof(op_names) / sizeof(op_names[0])))
#define MAX_OPS 16

static void usage(const char* argv0) {
  fprintf(stderr,
          "usage: mpirun ... %s [--impl NAME] "
          "[--op allreduce,allgather,reducescatter,broadcast,barrier,sendrecv] "
          "[--dtype float32|bfloat16] [--sizes LIST] [--target-sec S] "
          "[--min-iters N] [--max-iters N] [--no-check] [--rank0-time] "
          "[--fresh-input] [--verbose]\n",
          argv0);
}

/* ---- element access for both dtypes -------------------------------------- */

static int g_bf16; /* 0: float32, 1: bfloat16 */

static inline float load(const void* buf, size_t i) {
  if (g_bf16) return peers_bf16_to_f32(((const uint16_t*)buf)[i]);
  return ((const float*)buf)[i];
}
static inline void store(void* buf, size_t i, float v) {
  if (g_bf16)
    ((uint16_t*)buf)[i] = peers_f32_to_bf16(v);
  else
    ((float*)buf)[i] = v;
}
static void fill_const(void* buf, size_t count, float v) {
  for (size_t i = 0; i < count; i++) store(buf, i, v);
}
/* The value the dtype can hold nearest to v (what a bit copy delivers). */
static inline float representable(float v) {
  return g_bf16 ? peers_bf16_to_f32(peers_f32_to_bf16(v)) : v;
}
/* A reduced element: exact for float32 (small integers). A bfloat16 sum
 * rounds after every addition, in an order the library chooses, so allow
 * (n-1) roundings of 2^-8 relative each; for the sums of small integers used
 * here that is exact anyway while they stay below 256. */
static inline int reduced_ok(float got, float want, int nranks) {
  if (!g_bf16) return got == want;
  return fabsf(got - want) <= want * (float)(nranks - 1) / 256.0f;
}

/* bfloat16 sum: widen, add in float32, round to nearest even (NaNs stay
 * quiet NaNs; for NaN + NaN, which payload survives depends on the operand
 * order the compiler picks, as for any float add). The same arithmetic as peers_f32_to_bf16, written without a
 * branch and in blocks of a fixed 32 elements so that gcc -O2 (whose
 * "very cheap" cost model only vectorizes loops of a known trip count) turns
 * it into SIMD code: 4096 elements (8 KiB) take 0.8-2.9 us (below) instead
 * of 6-9 us for the scalar loop, which matters at the 8 KiB decode size.
 * Check with -fopt-info-vec: "loop vectorized" for bf16_sum_n. */
static inline uint16_t bf16_add(uint16_t x, uint16_t y) {
  uint32_t ux = (uint32_t)x << 16, uy = (uint32_t)y << 16, u, rne, qnan;
  float fx, fy, f;
  memcpy(&fx, &ux, sizeof fx);
  memcpy(&fy, &uy, sizeof fy);
  f = fx + fy;
  memcpy(&u, &f, sizeof u);
  rne = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  qnan = (u >> 16) | 0x40u;
  return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? qnan : rne);
}
/* restrict parameters (not restrict locals): gcc then vectorizes the inner
 * loop without a run-time overlap check, which -O2 would not add. On x86-64
 * with gcc >= 12, target_clones also builds AVX2 and AVX-512 versions, and
 * the loader picks the best one for the CPU, much as OpenMPI's own op/avx
 * component does for MPI_SUM on floats. On the EPYC VM, 4096 elements take
 * 0.8 us with AVX-512, 1.3 us with AVX2 and 2-2.9 us with SSE2. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    __GNUC__ >= 12
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#endif
static void bf16_sum_n(const uint16_t* restrict a, uint16_t* restrict b,
                       int n) {
  int i = 0;
  for (; i + 32 <= n; i += 32)
    for (int j = 0; j < 32; j++) b[i + j] = bf16_add(a[i + j], b[i + j]);
  for (; i < n; i++) b[i] = bf16_add(a[i], b[i]);
}
static void bf16_sum(void* in, void* inout, int* len, MPI_Datatype* dt) {
  (void)dt;
  bf16_sum_n((const uint16_t*)in, (uint16_t*)inout, *len);
}

/* ---- one collective --------------------------------------------------------- */

struct ctx {
  int rank, nranks;
  MPI_Datatype dt;
  MPI_Op sum;
  void *sendbuf, *recvbuf;
};

/* count = total elements (nccl-tests' count). */
/* --fresh-input: store every cache line's first byte of buf[0..n) back, so
 * that the line is modified in this core's cache with the data unchanged. */
static void rewrite(void* buf, size_t n) {
  volatile unsigned char* p = buf;
  for (size_t o = 0; o < n; o += 64) p[o] = p[o];
}

static void run_once(const struct ctx* c, enum op_kind op, int count) {
  const int blk = count / c->nranks;
  switch (op) {
    case OP_ALLREDUCE:
      MPI_Allreduce(c->sendbuf, c->recvbuf, count, c->dt, c->sum,
                    MPI_COMM_WORLD);
      break;
    case OP_ALLGATHER:
      MPI_Allgather(c->sendbuf, blk, c->dt, c->recvbuf, blk, c->dt,
                    MPI_COMM_WORLD);
      break;
    case OP_REDUCESCATTER:
      MPI_Reduce_scatter_block(c->sendbuf, c->recvbuf, blk, c->dt, c->sum,
                               MPI_COMM_WORLD);
      break;
    case OP_BROADCAST:
      MPI_Bcast(c->sendbuf, count, c->dt, 0, MPI_COMM_WORLD);
      break;
    case OP_BARRIER:
      MPI_Barrier(MPI_COMM_WORLD);
      break;
    case OP_SENDRECV: {
      MPI_Request req;
      MPI_Isend(c->sendbuf, count, c->dt, (c->rank + 1) % c->nranks, 0,
                MPI_COMM_WORLD, &req);
      MPI_Recv(c->recvbuf, count, c->dt, (c->rank - 1 + c->nranks) % c->nranks,
               0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Wait(&req, MPI_STATUS_IGNORE);
      break;
    }
  }
}

/* Inputs for the verification run (and, unchanged, for the timed runs; every
 * op is out-of-place or, for broadcast, idempotent). Pattern: element g of
 * the global input of rank r is peers_input_value(r, g). */
static void fill_inputs(const struct ctx* c, enum op_kind op, size_t count) {
  const size_t blk = count / (size_t)c->nranks;
  switch (op) {
    case OP_ALLREDUCE:
    case OP_REDUCESCATTER:
    case OP_SENDRECV:
      for (size_t i = 0; i < count; i++)
        store(c->sendbuf, i, peers_input_value(c->rank, i));
      fill_const(c->recvbuf, op == OP_REDUCESCATTER ? blk : count, -1.0f);
      break;
    case OP_ALLGATHER:
      for (size_t i = 0; i < blk; i++)
        store(c->sendbuf, i,
              peers_input_value(c->rank, (size_t)c->rank * blk + i));
      fill_const(c->recvbuf, count, -1.0f);
      break;
    case OP_BROADCAST:
      if (c->rank == 0)
        for (size_t i = 0; i < count; i++)
          store(c->sendbuf, i, peers_input_value(0, i));
      else
        fill_const(c->sendbuf, count, -1.0f);
      break;
    case OP_BARRIER:
      break;
  }
}

/* Wrong elements on this rank after one verification run. */
static long count_wrong(const struct ctx* c, enum op_kind op, size_t count) {
  const size_t blk = count / (size_t)c->nranks;
  const int n = c->nranks;
  long wrong = 0;
  switch (op) {
    case OP_ALLREDUCE:
      for (size_t i = 0; i < count; i++)
        if (!reduced_ok(load(c->recvbuf, i), peers_expected_value(n, i), n))
          wrong++;
      break;
    case OP_REDUCESCATTER:
      for (size_t i = 0; i < blk; i++)
        if (!reduced_ok(load(c->recvbuf, i),
                        peers_expected_value(n, (size_t)c->rank * blk + i), n))
          wrong++;
      break;
    case OP_ALLGATHER:
      for (size_t g = 0; g < count; g++)
        if (load(c->recvbuf, g) !=
            representable(peers_input_value((int)(g / blk), g)))
          wrong++;
      break;
    case OP_BROADCAST:
      for (size_t i = 0; i < count; i++)
        if (load(c->sendbuf, i) != representable(peers_input_value(0, i)))
          wrong++;
      break;
    case OP_SENDRECV:
      for (size_t i = 0; i < count; i++)
        if (load(c->recvbuf, i) !=
            representable(peers_input_value((c->rank - 1 + n) % n, i)))
          wrong++;
      break;
    case OP_BARRIER:
      break;
  }
  return wrong;
}

static int parse_ops(const char* s, enum op_kind* out, int cap) {
  char buf[256];
  char *save = NULL, *tok;
  int n = 0;
  if (strlen(s) >= sizeof(buf)) return -1;
  strcpy(buf, s);
  for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int k;
    for (k = 0; k < NOPS; k++)
      if (strcmp(tok, op_names[k]) == 0) break;
    if (k == NOPS || n >= cap) return -1;
    out[n++] = (enum op_kind)k;
  }
  return n;
}

int main(int argc, char** argv) {
  const char* impl = "openmpi-tcp";
  const char* dtype = "float32";
  const char* sizes_arg = NULL;
  size_t sizes[PEERS_MAX_SIZES];
  int nsizes = 0;
  enum op_kind ops[MAX_OPS] = {OP_ALLREDUCE};
  int nops = 1;
  double target_sec = PEERS_DEFAULT_TARGET_SEC;
  long min_iters = PEERS_DEFAULT_MIN_ITERS;
  long max_iters = PEERS_DEFAULT_MAX_ITERS;
  int check = 1;
  int verbose = 0;
  int rank0_time = 0;
  int fresh_input = 0;
  int status = 0;
  size_t es, max_bytes = 0;
  struct ctx c;
  double* times;
  long max_timed;

  static struct option longopts[] = {
      {"impl", required_argument, NULL, 'i'},
      {"op", required_argument, NULL, 'o'},
      {"dtype", required_argument, NULL, 'd'},
      {"sizes", required_argument, NULL, 'S'},
      {"target-sec", required_argument, NULL, 't'},
      {"min-iters", required_argument, NULL, 'm'},
      {"max-iters", required_argument, NULL, 'M'},
      {"no-check", no_argument, NULL, 'C'},
      {"rank0-time", no_argument, NULL, 'R'},
      {"fresh-input", no_argument, NULL, 'F'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };

  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &c.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &c.nranks);

  for (;;) {
    int ch = getopt_long(argc, argv, "i:o:d:S:t:m:M:vh", longopts, NULL);
    if (ch == -1) break;
    switch (ch) {
      case 'i': impl = optarg; break;
      case 'o':
        nops = parse_ops(optarg, ops, MAX_OPS);
        if (nops <= 0) {
          if (c.rank == 0)
            fprintf(stderr,
                    "bad --op %s (allreduce, allgather, reducescatter, "
                    "broadcast, barrier, sendrecv; comma separated)\n",
                    optarg);
          MPI_Abort(MPI_COMM_WORLD, 1);
        }
        break;
      case 'd': dtype = optarg; break;
      case 'S': sizes_arg = optarg; break;
      case 't': target_sec = atof(optarg); break;
      case 'm': min_iters = atol(optarg); break;
      case 'M': max_iters = atol(optarg); break;
      case 'C': check = 0; break;
      case 'R': rank0_time = 1; break;
      case 'F': fresh_input = 1; break;
      case 'v': verbose = 1; break;
      default:
        if (c.rank == 0) usage(argv[0]);
        MPI_Finalize();
        return ch == 'h' ? 0 : 1;
    }
  }
  if (min_iters < 1 || max_iters < min_iters) {
    if (c.rank == 0) usage(argv[0]);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (strcmp(dtype, "float32") == 0) {
    g_bf16 = 0;
    es = 4;
    c.dt = MPI_FLOAT;
    c.sum = MPI_SUM;
  } else if (strcmp(dtype, "bfloat16") == 0) {
    g_bf16 = 1;
    es = 2;
    c.dt = MPI_UINT16_T;
    MPI_Op_create(bf16_sum, 1 /* commutative */, &c.sum);
  } else {
    if (c.rank == 0) fprintf(stderr, "bad --dtype %s (float32, bfloat16)\n", dtype);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
  if (sizes_arg) {
    nsizes = peers_parse_size_list_align(sizes_arg, sizes, PEERS_MAX_SIZES, es);
    if (nsizes <= 0) {
      if (c.rank == 0)
        fprintf(stderr, "bad --sizes (need multiples of %zu bytes)\n", es);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
  } else {
    nsizes = (int)PEERS_NDEFAULT_SIZES;
    memcpy(sizes, peers_default_sizes, sizeof(peers_default_sizes));
  }
  for (int s = 0; s < nsizes; s++)
    if (sizes[s] > max_bytes) max_bytes = sizes[s];

  /* Page-aligned, touched up front so that no page fault lands in a timed
   * iteration. */
  {
    size_t alloc = (max_bytes + 4095) / 4096 * 4096;
    if (alloc == 0) alloc = 4096;
    c.sendbuf = aligned_alloc(4096, alloc);
    c.recvbuf = aligned_alloc(4096, alloc);
    max_timed = max_iters > PEERS_WARMUP_SMALL ? max_iters : PEERS_WARMUP_SMALL;
    times = (double*)malloc(sizeof(double) * (size_t)max_timed);
    if (!c.sendbuf || !c.recvbuf || !times) {
      fprintf(stderr, "rank %d: out of memory\n", c.rank);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    memset(c.sendbuf, 0, alloc);
    memset(c.recvbuf, 0, alloc);
  }

  for (int o = 0; o < nops; o++) {
    const enum op_kind op = ops[o];
    const char* opname = op_names[op];
    const int ns = op == OP_BARRIER ? 1 : nsizes;
    size_t prev_bytes = (size_t)-1;
    for (int s = 0; s < ns; s++) {
      size_t count = op == OP_BARRIER ? 0 : sizes[s] / es;
      size_t bytes;
      long wrong = -1, iters = 0;
      int nwarm;
      if (op == OP_ALLGATHER || op == OP_REDUCESCATTER)
        count = count / (size_t)c.nranks * (size_t)c.nranks;
      bytes = count * es;
      if (op != OP_BARRIER && count == 0) {
        if (c.rank == 0)
          fprintf(stderr,
                  "mpi_allreduce: %s %zu bytes: fewer elements than ranks, "
                  "skipped\n",
                  opname, sizes[s]);
        continue;
      }
      if (bytes == prev_bytes) continue; /* e.g. 12 B allgather at 2 ranks */
      prev_bytes = bytes;
      if (count > (size_t)0x7fffffff) {
        if (c.rank == 0)
          fprintf(stderr, "mpi_allreduce: %zu bytes: too many elements\n",
                  bytes);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }

      fill_inputs(&c, op, count);

      /* 1. Verification (untimed). */
      if (check && op != OP_BARRIER) {
        long local;
        run_once(&c, op, (int)count);
        local = count_wrong(&c, op, count);
        MPI_Allreduce(&local, &wrong, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
        if (wrong != 0 && c.rank == 0) {
          fprintf(stderr,
                  "mpi_allreduce: %s %s bytes=%zu: %ld wrong elements (summed "
                  "over ranks)\n",
                  opname, dtype, bytes, wrong);
          status = 2;
        }
      }

      /* 2. Warmup (fixed count on every rank; rank 0 times it). */
      nwarm = peers_warmup_iters(bytes);
      for (int i = 0; i < nwarm; i++) {
        double t0 = peers_now_sec();
        run_once(&c, op, (int)count);
        times[i] = peers_now_sec() - t0;
      }
      if (c.rank == 0)
        iters = peers_timed_iters(peers_median(times, (size_t)nwarm),
                                  target_sec, min_iters, max_iters);
      MPI_Bcast(&iters, 1, MPI_LONG, 0, MPI_COMM_WORLD);

      /* 3. Timed: back-to-back, each iteration timed on its own. */
      for (long i = 0; i < iters; i++) {
        double t0;
        if (fresh_input) /* an all-gather's input is one rank's block */
          rewrite(c.sendbuf, op == OP_ALLGATHER ? bytes / c.nranks : bytes);
        t0 = peers_now_sec();
        run_once(&c, op, (int)count);
        times[i] = peers_now_sec() - t0;
      }
      {
        double mean = peers_mean(times, (size_t)iters);
        double med = peers_median(times, (size_t)iters);
        double mine[2] = {med, mean}, t[2] = {med, mean};
        if (!rank0_time)
          MPI_Allreduce(mine, t, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (c.rank == 0) {
          char label[160];
          peers_print_row(stdout, impl, opname, dtype, c.nranks, bytes, count,
                          t[0], t[1], wrong);
          if (verbose) {
            snprintf(label, sizeof label, "%s %s %s", impl, opname, dtype);
            peers_print_dist(stderr, label, bytes, times, (size_t)iters);
          }
        }
      }
    }
  }

  if (g_bf16) MPI_Op_free(&c.sum);
  free(times);
  free(c.recvbuf);
  free(c.sendbuf);
  MPI_Finalize();
  return status;
}
