#!/usr/bin/env bash
# Times OpenBLAS's sgemm from C on the shapes of tensor's BenchmarkSgemm (one thread), to compare
# with gccl's purego path:
#
#   bench/blas/run.sh [SECONDS]       # per shape, default 0.5
#   go test -run '^$' -bench Sgemm -benchtime 0.5s -count 3 ./tensor/
#
# Installs Debian's libopenblas-dev if cblas.h is missing; builds bin/sgemm with cc -O2.
set -euo pipefail
cd "$(dirname "$0")"
if ! echo '#include <cblas.h>' | cc -E - >/dev/null 2>&1; then
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev >&2
fi
mkdir -p bin
cc -O2 -o bin/sgemm sgemm.c -lopenblas
exec bin/sgemm "${1:-0.5}"
