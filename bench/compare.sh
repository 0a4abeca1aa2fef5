#!/usr/bin/env bash
# Measure gccl's float32 all-reduce beside Gloo C++ and OpenMPI over TCP, on this machine, in one
# run: PASSES interleaved passes of each (so that a noisy moment hits all of them), JSON lines
# to stdout. Turn them into a table with: go run ./bench/table
#
#   bench/compare.sh NRANKS [PASSES] > results.jsonl
set -euo pipefail
NRANKS=${1:?usage: bench/compare.sh NRANKS [PASSES]}
PASSES=${2:-3}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
(cd "$ROOT" && go build -o bin/gccl ./cmd/gccl) >&2
for p in $(seq "$PASSES"); do
  echo "[compare] pass $p of $PASSES: gccl" >&2
  "$ROOT/bin/gccl" bench --backend gloo --nproc "$NRANKS" --op allreduce --dtype float32 \
    --min-bytes 8 --max-bytes 64M --step-factor 8 --check --json
  echo "[compare] pass $p of $PASSES: gloo, openmpi" >&2
  GLOO_ALGOS=default MPI_VARIANTS=default bash "$HERE/peers/run.sh" "$NRANKS" all
done
