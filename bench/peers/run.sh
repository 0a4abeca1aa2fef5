#!/usr/bin/env bash
# Run the peer benchmarks (Gloo over TCP; OpenMPI over TCP and/or shared
# memory) on this machine.
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
#   MPI_TRANSPORT     OpenMPI transport(s): "tcp" (default; impl openmpi-tcp),
#                     "shm" (impl openmpi-shm: --mca btl self,vader, or
#                     self,sm on OpenMPI 5), or "both" (tcp, then shm).
#   PEERS_OPS         ops for OpenMPI, comma separated (default "allreduce"):
#                     allreduce, allgather, reducescatter, broadcast, barrier,
#                     sendrecv.
#                     Gloo only measures allreduce: it is skipped when the
#                     list has no allreduce.
#   PEERS_DTYPE       float32 (default) or bfloat16 (OpenMPI only; gloo is
#                     skipped for bfloat16).
#   MPI_VARIANTS      space separated subset of "default yield0 yield1", plus
#                     for shm "stock" (OpenMPI's own settings: no MPI_SHM_TUNE,
#                     --bind-to none; impl openmpi-shm-stock) and "collsm"
#                     (adds --mca coll_sm_priority 100; impl openmpi-shm-collsm).
#                     Default: "default" when NRANKS <= nproc, otherwise
#                     "default yield0 yield1" (oversubscribed: compare
#                     OpenMPI's busy polling against yielding).
#   MPI_BIND          mpirun --bind-to value for TCP (default "none", like
#                     the unpinned gloo processes; "core" = mpirun's own
#                     default for NRANKS <= 2, and what gccl bench does when
#                     ranks <= cores).
#   MPI_SHM_BIND      mpirun --bind-to value for shm (default "core" when
#                     NRANKS <= nproc, else "none"; see README.md).
#   MPI_SHM_TUNE      extra mpirun arguments for shm, word split. Default
#                     "--mca btl_vader_eager_limit 32768 --mca
#                     btl_vader_max_send_size 65536" (btl_sm_... on OpenMPI
#                     5), which gave OpenMPI's best times from 8 to 256 KiB
#                     on the 2-core VM (README.md). MPI_SHM_TUNE= (empty)
#                     keeps OpenMPI's defaults.
#   MPI_EXTRA         extra mpirun arguments for every OpenMPI run (word
#                     split), e.g. "--mca btl_vader_single_copy_mechanism none".
#   PEERS_TARGET_SEC  timed seconds per size (default 0.2)
#   PEERS_MIN_ITERS   minimum timed iterations per size (default 5)
#   PEERS_SIZES       comma separated byte sizes (default 8,64,...,16M,64M)
#   PEERS_TIMEOUT     wall-clock limit per program run, seconds (default 600)
#   PEERS_VERBOSE=1   per-size time distribution (min/p10/p50/p90/max) on stderr
#   PEERS_FRESH_INPUT=1  OpenMPI rewrites its input before each timed op
#                     (--fresh-input; gccl bench has the same flag)
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
case ${MPI_TRANSPORT:-tcp} in
  tcp) TRANSPORTS=(tcp) ;;
  shm) TRANSPORTS=(shm) ;;
  both) TRANSPORTS=(tcp shm) ;;
  *) echo "MPI_TRANSPORT must be tcp, shm or both" >&2; exit 2 ;;
esac
OPS=${PEERS_OPS:-allreduce}
DTYPE=${PEERS_DTYPE:-float32}
case $DTYPE in float32|bfloat16) ;; *) echo "PEERS_DTYPE must be float32 or bfloat16" >&2; exit 2 ;; esac

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
  if [[ ,$OPS, != *,allreduce,* || $DTYPE != float32 ]]; then
    log "gloo: skipped (it only measures float32 allreduce; PEERS_OPS=$OPS PEERS_DTYPE=$DTYPE)"
    return 0
  fi
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
# OpenMPI's shared-memory BTL is "vader" in 4.x and "sm" in 5.x.
shm_btl() {
  local ver major
  ver=$(mpirun --version 2>/dev/null | sed -n 's/.*(Open MPI) \([0-9][0-9.]*\).*/\1/p' | head -n1)
  major=${ver%%.*}
  if [[ ${major:-0} -ge 5 ]]; then echo sm; else echo vader; fi
}

run_mpi() {
  local variants=${MPI_VARIANTS:-}
  if [[ -z $variants ]]; then
    if ((NRANKS > NCPU)); then variants="default yield0 yield1"; else variants="default"; fi
  fi
  # Running as root in a container: OpenMPI refuses unless told otherwise.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  local extra_user=() tune=()
  [[ -n ${MPI_EXTRA:-} ]] && read -r -a extra_user <<<"$MPI_EXTRA"
  local mpiargs=(--op "$OPS" --dtype "$DTYPE")
  [[ ${PEERS_FRESH_INPUT:-0} == 1 ]] && mpiargs+=(--fresh-input)
  local rc=0 t v extra impl base btl bind
  for t in "${TRANSPORTS[@]}"; do
    # pml ob1 in both cases: Debian's OpenMPI also ships the UCX pml, which
    # would pick its own transports and ignore the btl list.
    if [[ $t == tcp ]]; then
      base=(mpirun --oversubscribe -np "$NRANKS" --bind-to "${MPI_BIND:-none}"
        --mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include lo
        --mca oob_tcp_if_include lo)
    else
      btl=$(shm_btl)
      bind=${MPI_SHM_BIND:-}
      if [[ -z $bind ]]; then
        if ((NRANKS <= NCPU)); then bind=core; else bind=none; fi
      fi
      base=(mpirun --oversubscribe -np "$NRANKS"
        --mca pml ob1 --mca btl "self,$btl" --mca oob_tcp_if_include lo)
      tune=()
      if [[ -n ${MPI_SHM_TUNE+set} ]]; then
        [[ -n $MPI_SHM_TUNE ]] && read -r -a tune <<<"$MPI_SHM_TUNE"
      else
        tune=(--mca "btl_${btl}_eager_limit" 32768 --mca "btl_${btl}_max_send_size" 65536)
      fi
    fi
    [[ $(id -u) -eq 0 ]] && base+=(--allow-run-as-root)
    for v in $variants; do
      extra=()
      if [[ $t == shm && $v == stock ]]; then
        extra=(--bind-to none)
      elif [[ $t == shm ]]; then
        extra=(--bind-to "$bind" "${tune[@]}")
      fi
      case $v in
        default) impl=openmpi-$t ;;
        yield0) extra+=(--mca mpi_yield_when_idle 0); impl=openmpi-$t-yield0 ;;
        yield1) extra+=(--mca mpi_yield_when_idle 1); impl=openmpi-$t-yield1 ;;
        stock|collsm)
          if [[ $t != shm ]]; then log "MPI variant $v is for MPI_TRANSPORT=shm; skipped for $t"; continue; fi
          if [[ $v == stock ]]; then
            impl=openmpi-shm-stock
          else
            extra+=(--mca coll_sm_priority 100); impl=openmpi-shm-collsm
          fi ;;
        *) log "unknown MPI variant $v"; return 2 ;;
      esac
      extra+=("${extra_user[@]}")
      log "openmpi: $NRANKS ranks, $t, variant $v, ops $OPS, $DTYPE: ${base[*]} ${extra[*]}"
      timeout --kill-after=10 "$TMO" "${base[@]}" "${extra[@]}" \
        "$BIN/mpi_allreduce" --impl "$impl" "${mpiargs[@]}" "${COMMON[@]}" || rc=$?
    done
  done
  return $rc
}

status=0
if [[ $WHAT == all || $WHAT == gloo ]]; then run_gloo || status=$?; fi
if [[ $WHAT == all || $WHAT == mpi ]]; then run_mpi || status=$?; fi
exit $status
