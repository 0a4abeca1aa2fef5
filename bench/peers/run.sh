#!/usr/bin/env bash
# Run the peer allreduce benchmarks (Gloo, OpenMPI over TCP) on this machine.
#
#   bench/peers/run.sh NRANKS [all|gloo|mpi]
#
# JSON lines (one per impl and size) go to stdout; everything else (apt,
# make, mpirun chatter) goes to stderr. Installs its Debian packages if they
# are missing and builds bin/ if needed.
#
# Environment knobs:
#   GLOO_ALGOS        gloo algorithms, comma separated (default "default,ring";
#                     also: ringchunked, hd, bcube). See README.md.
#   MPI_VARIANTS      space separated subset of "default yield0 yield1".
#                     Default: "default" when NRANKS <= nproc, otherwise
#                     "default yield0 yield1" (oversubscribed: compare
#                     OpenMPI's busy polling against yielding).
#   MPI_BIND          mpirun --bind-to value (default "none", the same as the
#                     unpinned gloo and gccl processes; "core" = mpirun's own
#                     default for NRANKS <= 2).
#   PEERS_TARGET_SEC  timed seconds per size (default 0.2)
#   PEERS_MIN_ITERS   minimum timed iterations per size (default 5)
#   PEERS_SIZES       comma separated byte sizes (default 8,64,...,16M,64M)
#   PEERS_TIMEOUT     wall-clock limit per program run, seconds (default 600)
#   PEERS_VERBOSE=1   per-size time distribution (min/p10/p50/p90/max) on stderr
set -euo pipefail

usage() {
  echo "usage: $0 NRANKS [all|gloo|mpi]" >&2
  exit 2
}
[[ $# -ge 1 && $# -le 2 ]] || usage
NRANKS=$1
WHAT=${2:-all}
[[ $NRANKS =~ ^[0-9]+$ && $NRANKS -ge 1 ]] || usage
case $WHAT in all|gloo|mpi) ;; *) usage ;; esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=$HERE/bin
NCPU=$(nproc)

log() { echo "[peers] $*" >&2; }

# --- dependencies -----------------------------------------------------------
PKGS=(libgloo-dev openmpi-bin libopenmpi-dev g++ make)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || {
      log "missing packages (${missing[*]}) and not root; install them first"
      exit 1
    }
    SUDO=(sudo)
  fi
  log "installing ${missing[*]}"
  "${SUDO[@]}" apt-get update >&2
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y "${missing[@]}" >&2
fi

# --- build ------------------------------------------------------------------
make -C "$HERE" -s all >&2

# --- common options ---------------------------------------------------------
COMMON=(--target-sec "${PEERS_TARGET_SEC:-0.2}" --min-iters "${PEERS_MIN_ITERS:-5}")
[[ -n ${PEERS_SIZES:-} ]] && COMMON+=(--sizes "$PEERS_SIZES")
[[ ${PEERS_VERBOSE:-0} == 1 ]] && COMMON+=(--verbose)
TMO=${PEERS_TIMEOUT:-600}

if ((NRANKS > NCPU)); then
  log "note: $NRANKS ranks on $NCPU cores (oversubscribed)"
fi

# --- gloo -------------------------------------------------------------------
run_gloo() {
  local store
  store=$(mktemp -d /tmp/gccl-gloo-store.XXXXXX)
  log "gloo: $NRANKS ranks, algos ${GLOO_ALGOS:-default,ring}, store $store"
  local rc=0
  timeout --kill-after=10 "$TMO" "$BIN/gloo_allreduce" -n "$NRANKS" \
    --store "$store" --prefix "run$$" --host 127.0.0.1 \
    --algo "${GLOO_ALGOS:-default,ring}" "${COMMON[@]}" || rc=$?
  rm -rf "$store"
  return $rc
}

# --- openmpi ----------------------------------------------------------------
run_mpi() {
  local variants=${MPI_VARIANTS:-}
  if [[ -z $variants ]]; then
    if ((NRANKS > NCPU)); then variants="default yield0 yield1"; else variants="default"; fi
  fi
  # Running as root in a container: OpenMPI refuses unless told otherwise.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  local base=(mpirun --oversubscribe -np "$NRANKS" --bind-to "${MPI_BIND:-none}"
    --mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include lo
    --mca oob_tcp_if_include lo)
  [[ $(id -u) -eq 0 ]] && base+=(--allow-run-as-root)
  local rc=0 v extra impl
  for v in $variants; do
    case $v in
      default) extra=(); impl=openmpi-tcp ;;
      yield0) extra=(--mca mpi_yield_when_idle 0); impl=openmpi-tcp-yield0 ;;
      yield1) extra=(--mca mpi_yield_when_idle 1); impl=openmpi-tcp-yield1 ;;
      *) log "unknown MPI variant $v"; return 2 ;;
    esac
    log "openmpi: $NRANKS ranks, variant $v: ${base[*]} ${extra[*]}"
    timeout --kill-after=10 "$TMO" "${base[@]}" "${extra[@]}" \
      "$BIN/mpi_allreduce" --impl "$impl" "${COMMON[@]}" || rc=$?
  done
  return $rc
}

status=0
if [[ $WHAT == all || $WHAT == gloo ]]; then run_gloo || status=$?; fi
if [[ $WHAT == all || $WHAT == mpi ]]; then run_mpi || status=$?; fi
exit $status
