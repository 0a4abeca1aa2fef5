/*
 * MPI float32 allreduce benchmark (peer baseline for gccl's TCP backend).
 *
 * Same measurement as gloo_allreduce.cc, with MPI_Allreduce(MPI_FLOAT,
 * MPI_SUM), out-of-place (separate send/recv buffers, like nccl-tests'
 * out-of-place column). Per size:
 *   1. one verified allreduce (untimed),
 *   2. a fixed number of warmup iterations,
 *   3. rank 0 sizes the timed loop from the warmup median (~--target-sec,
 *      at least --min-iters) and MPI_Bcasts the count,
 *   4. back-to-back MPI_Allreduce calls (no barrier in between), each
 *      timed individually; rank 0 prints the median as one JSON line.
 *
 * Run through mpirun; the intended transport is TCP over loopback:
 *   mpirun --allow-run-as-root --oversubscribe -np 4 --mca pml ob1 \
 *     --mca btl self,tcp --mca btl_tcp_if_include lo ./mpi_allreduce
 *
 * Options:
 *   --impl NAME        value of the "impl" JSON key (default openmpi-tcp)
 *   --sizes LIST       bytes, e.g. 8,64,4K,64M (default 8..16M x8, 64M)
 *   --target-sec S     timed seconds per size (default 0.2)
 *   --min-iters N      (default 5)
 *   --max-iters N      (default 100000)
 *   --no-check         skip verification (wrong = -1)
 *   --verbose          per-size time distribution on stderr (rank 0)
 */
#include <mpi.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static void usage(const char* argv0) {
  fprintf(stderr,
          "usage: mpirun ... %s [--impl NAME] [--sizes LIST] "
          "[--target-sec S] [--min-iters N] [--max-iters N] [--no-check] "
          "[--verbose]\n",
          argv0);
}

int main(int argc, char** argv) {
  const char* impl = "openmpi-tcp";
  size_t sizes[PEERS_MAX_SIZES];
  int nsizes = 0;
  double target_sec = PEERS_DEFAULT_TARGET_SEC;
  long min_iters = PEERS_DEFAULT_MIN_ITERS;
  long max_iters = PEERS_DEFAULT_MAX_ITERS;
  int check = 1;
  int verbose = 0;
  int rank, nranks, status = 0;
  size_t max_bytes = 0;
  float *sendbuf, *recvbuf;
  double* times;
  long max_timed;

  static struct option longopts[] = {
      {"impl", required_argument, NULL, 'i'},
      {"sizes", required_argument, NULL, 'S'},
      {"target-sec", required_argument, NULL, 't'},
      {"min-iters", required_argument, NULL, 'm'},
      {"max-iters", required_argument, NULL, 'M'},
      {"no-check", no_argument, NULL, 'C'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };

  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);

  for (;;) {
    int c = getopt_long(argc, argv, "i:S:t:m:M:vh", longopts, NULL);
    if (c == -1) break;
    switch (c) {
      case 'i': impl = optarg; break;
      case 'S':
        nsizes = peers_parse_size_list(optarg, sizes, PEERS_MAX_SIZES);
        if (nsizes <= 0) {
          if (rank == 0)
            fprintf(stderr, "bad --sizes (need multiples of 4 bytes)\n");
          MPI_Abort(MPI_COMM_WORLD, 1);
        }
        break;
      case 't': target_sec = atof(optarg); break;
      case 'm': min_iters = atol(optarg); break;
      case 'M': max_iters = atol(optarg); break;
      case 'C': check = 0; break;
      case 'v': verbose = 1; break;
      default:
        if (rank == 0) usage(argv[0]);
        MPI_Finalize();
        return c == 'h' ? 0 : 1;
    }
  }
  if (min_iters < 1 || max_iters < min_iters) {
    if (rank == 0) usage(argv[0]);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (nsizes == 0) {
    nsizes = (int)PEERS_NDEFAULT_SIZES;
    memcpy(sizes, peers_default_sizes, sizeof(peers_default_sizes));
  }
  for (int s = 0; s < nsizes; s++)
    if (sizes[s] > max_bytes) max_bytes = sizes[s];

  sendbuf = (float*)malloc(max_bytes);
  recvbuf = (float*)malloc(max_bytes);
  max_timed = max_iters > PEERS_WARMUP_SMALL ? max_iters : PEERS_WARMUP_SMALL;
  times = (double*)malloc(sizeof(double) * (size_t)max_timed);
  if (!sendbuf || !recvbuf || !times) {
    fprintf(stderr, "rank %d: out of memory\n", rank);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

  for (int s = 0; s < nsizes; s++) {
    const size_t bytes = sizes[s];
    const int count = (int)(bytes / sizeof(float));
    long wrong = -1, iters = 0;
    int nwarm;

    /* Input pattern stays constant (out-of-place), so one fill serves the
     * verification run and the timed runs. */
    peers_fill_input(sendbuf, (size_t)count, rank);

    /* 1. Verification (untimed). */
    if (check) {
      long local;
      for (int i = 0; i < count; i++) recvbuf[i] = -1.0f;
      MPI_Allreduce(sendbuf, recvbuf, count, MPI_FLOAT, MPI_SUM,
                    MPI_COMM_WORLD);
      local = peers_count_wrong(recvbuf, (size_t)count, nranks);
      MPI_Allreduce(&local, &wrong, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
      if (wrong != 0 && rank == 0) {
        fprintf(stderr,
                "mpi_allreduce: bytes=%zu: %ld wrong elements (summed over "
                "ranks)\n",
                bytes, wrong);
        status = 2;
      }
    }

    /* 2. Warmup (fixed count on every rank; rank 0 times it). */
    nwarm = peers_warmup_iters(bytes);
    for (int i = 0; i < nwarm; i++) {
      double t0 = peers_now_sec();
      MPI_Allreduce(sendbuf, recvbuf, count, MPI_FLOAT, MPI_SUM,
                    MPI_COMM_WORLD);
      times[i] = peers_now_sec() - t0;
    }
    if (rank == 0)
      iters = peers_timed_iters(peers_median(times, (size_t)nwarm),
                                target_sec, min_iters, max_iters);
    MPI_Bcast(&iters, 1, MPI_LONG, 0, MPI_COMM_WORLD);

    /* 3. Timed: back-to-back, each iteration timed on its own. */
    for (long i = 0; i < iters; i++) {
      double t0 = peers_now_sec();
      MPI_Allreduce(sendbuf, recvbuf, count, MPI_FLOAT, MPI_SUM,
                    MPI_COMM_WORLD);
      times[i] = peers_now_sec() - t0;
    }
    if (rank == 0) {
      peers_print_json(stdout, impl, nranks, bytes,
                       peers_median(times, (size_t)iters), wrong);
      if (verbose) peers_print_dist(stderr, impl, bytes, times, (size_t)iters);
    }
  }

  free(times);
  free(recvbuf);
  free(sendbuf);
  MPI_Finalize();
  return status;
}
