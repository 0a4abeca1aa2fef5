#!/usr/bin/env bash
# Measure gccl's float32 all-reduce beside Gloo C++ and OpenMPI over TCP, on this machine, in one
# run: PASSES interleaved passes of each (so that a noisy moment hits all of them), JSON lines
# to stdout. Turn them into a table with: go run ./bench/table
#
#   bench/compare.sh NRANKS [PASSES] [--backend gloo|shm] [--op OP] [--dtype DT]
#                    [--min-bytes B] [--max-bytes B] [--fresh-input] > results.jsonl
#
# --backend gloo (default): gccl's gloo (TCP) backend against Gloo (TCP) and OpenMPI over TCP.
# --backend shm: gccl's shared-memory backend against OpenMPI's shared-memory transport
#   (impl openmpi-shm: --mca pml ob1 --mca btl self,vader); there is no Gloo column, since Gloo
#   has no shared-memory transport.
# --op: allreduce (default), allgather, reducescatter, broadcast or barrier (the sync floor, one
#   row at 0 bytes); Gloo only runs for allreduce.
# --dtype: float32 (default) or bfloat16; Gloo only runs for float32.
# --min-bytes/--max-bytes: the size range (default 8 to 64M, times 8 per step, plus the maximum),
#   the same list for gccl bench and the peers.
# --fresh-input: gccl and OpenMPI rewrite their input before each timed op (untimed), as a
#   program's new data would be. Without it the ops reread an unchanged input, which a reader that
#   copies straight from its peer's buffer (OpenMPI's CMA) finds in its own cache.
set -euo pipefail
usage() {
  echo "usage: bench/compare.sh NRANKS [PASSES] [--backend gloo|shm] [--op OP] [--dtype DT] [--min-bytes B] [--max-bytes B] [--fresh-input]" >&2
  exit 2
}
[[ $# -ge 1 && $1 != -* ]] || usage
NRANKS=$1
shift
PASSES=3
if [[ $# -ge 1 && $1 != -* ]]; then
  PASSES=$1
  shift
fi
BACKEND=gloo OP=allreduce DTYPE=float32 MINB=8 MAXB=64M FRESH=()
while [[ $# -gt 0 ]]; do
  if [[ $1 == --fresh-input ]]; then
    FRESH=(--fresh-input)
    shift
    continue
  fi
  [[ $# -ge 2 ]] || usage
  case $1 in
    --backend) BACKEND=$2 ;;
    --op) OP=$2 ;;
    --dtype) DTYPE=$2 ;;
    --min-bytes) MINB=$2 ;;
    --max-bytes) MAXB=$2 ;;
    *) usage ;;
  esac
  shift 2
done
case $BACKEND in
  gloo) TRANSPORT=tcp WHAT=all ;;
  shm) TRANSPORT=shm WHAT=mpi ;;
  *) echo "bench/compare.sh: --backend must be gloo or shm" >&2; exit 2 ;;
esac
case $OP in allreduce|allgather|reducescatter|broadcast|barrier) ;; *) usage ;; esac
if [[ ${#FRESH[@]} -gt 0 && $BACKEND != shm ]]; then
  echo "bench/compare.sh: --fresh-input needs --backend shm (the Gloo peer has no such option)" >&2
  exit 2
fi

# The size list gccl bench walks for --min-bytes/--max-bytes/--step-factor 8 (min, min*8, ...,
# and max when the series steps over it), for the peers.
bytes_of() {
  local v=${1^^}
  v=${v%B}
  case $v in
    *K) echo $((${v%K} << 10)) ;;
    *M) echo $((${v%M} << 20)) ;;
    *G) echo $((${v%G} << 30)) ;;
    *) echo $((v)) ;;
  esac
}
lo=$(bytes_of "$MINB") hi=$(bytes_of "$MAXB")
((lo > 0 && hi >= lo)) || { echo "bench/compare.sh: need 0 < --min-bytes <= --max-bytes" >&2; exit 2; }
SIZES=() last=0
for ((s = lo; s <= hi; s *= 8)); do SIZES+=("$s") last=$s; done
((last == hi)) || SIZES+=("$hi")
PEER_SIZES=$(IFS=,; echo "${SIZES[*]}")

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
(cd "$ROOT" && go build -o bin/gccl ./cmd/gccl) >&2
echo "[compare] machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, $(uname -r)" >&2
for p in $(seq "$PASSES"); do
  echo "[compare] pass $p of $PASSES: gccl" >&2
  "$ROOT/bin/gccl" bench --backend "$BACKEND" --nproc "$NRANKS" --op "$OP" --dtype "$DTYPE" \
    --min-bytes "$MINB" --max-bytes "$MAXB" --step-factor 8 --check --json "${FRESH[@]}"
  if [[ $BACKEND == gloo ]]; then
    echo "[compare] pass $p of $PASSES: gloo, openmpi" >&2
  else
    echo "[compare] pass $p of $PASSES: openmpi-shm" >&2
  fi
  GLOO_ALGOS=default MPI_VARIANTS=default MPI_TRANSPORT=$TRANSPORT PEERS_OPS=$OP \
    PEERS_DTYPE=$DTYPE PEERS_SIZES=$PEER_SIZES PEERS_FRESH_INPUT=$((${#FRESH[@]})) bash "$HERE/peers/run.sh" "$NRANKS" "$WHAT"
done
