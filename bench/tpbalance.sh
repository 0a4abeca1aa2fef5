#!/usr/bin/env bash
# Measure what tpinfer --balance (MLP and LM head rows split by the ranks' measured speed, over
# shared weights) does against the static split, on issue 5's model, with and without a rank that
# loses part of its core: bench/noise on vCPU 1 (TP=2's rank 1; TP=1 runs on vCPU 0).
#
#   bench/tpbalance.sh [PASSES] [NEW_TOKENS] [NOISE...]
#
# NOISE is one or more "BUSY_US SLEEP_US" pairs for bench/noise ("" for none); each gets PASSES
# interleaved triples (TP=1, TP=2, TP=2 --balance). Prints one line per run and a median per
# noise and scheme. Example: bench/tpbalance.sh 3 32 "" "200 800" "2000 8000" "1000000 0"
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=${1:-3}
TOKENS=${2:-32}
shift 2 || true
[ $# -gt 0 ] || set -- ""
make -s build >/dev/null
mkdir -p bench/noise/bin
cc -O2 -o bench/noise/bin/noise bench/noise/noise.c
model=(--hidden 2048 --layers 8 --heads 16 --kv-heads 8 --intermediate 5632 --vocab 32000 --new-tokens "$TOKENS" --json)
results=$(mktemp)
noise_pid=
trap 'rm -f "$results"; [ -z "$noise_pid" ] || kill "$noise_pid" 2>/dev/null || true' EXIT
for noise in "$@"; do
  if [ -n "$noise" ]; then
    # shellcheck disable=SC2086
    taskset -c 1 bench/noise/bin/noise $noise &
    noise_pid=$!
    sleep 1
  fi
  for pass in $(seq "$PASSES"); do
    for scheme in tp1 static balance; do
      case $scheme in
        tp1) args=(--nproc-per-node 1) extra=() ;;
        static) args=(--nproc-per-node 2) extra=() ;;
        balance) args=(--nproc-per-node 2) extra=(--balance) ;;
      esac
      line=$(bin/gccl run "${args[@]}" --backend shm -- bin/tpinfer "${model[@]}" "${extra[@]}" 2>&1 | tail -1)
      echo "${noise:-none}|$scheme|${line#\[rank 0\] }" >>"$results"
      echo "noise ${noise:-none} pass $pass $scheme: $(uptime | sed 's/.*load average/load/')" >&2
    done
  done
  if [ -n "$noise_pid" ]; then
    kill "$noise_pid"
    wait "$noise_pid" 2>/dev/null || true
    noise_pid=
  fi
done
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, $(uname -r)"
python3 - "$results" <<'EOF'
import json, statistics, sys
rows = {}
print("| noise on vCPU 1 (busy, sleep µs) | scheme | ms/step | all-reduce share, rank 0 / 1 | rank 0's share of the rows |")
print("|---|---|---:|---:|---:|")
for line in open(sys.argv[1]):
    noise, scheme, js = line.rstrip("\n").split("|", 2)
    r = json.loads(js)
    rows.setdefault((noise, scheme), []).append(r["step_ms"])
    shares = " / ".join(f"{100*s:.1f}%" for s in r["allreduce_shares"]) if r["tp"] > 1 else ""
    split = f"{r['balance_shares'][0]:.3f}" if r.get("balance_shares") else ""
    print(f"| {noise} | {scheme} | {r['step_ms']:.1f} | {shares} | {split} |")
print()
print("| noise | TP=1 median ms/step | TP=2 static | TP=2 balance | speed-up static | speed-up balance |")
print("|---|---:|---:|---:|---:|---:|")
for noise in dict.fromkeys(n for n, _ in rows):
    m = {s: statistics.median(rows[(noise, s)]) for s in ("tp1", "static", "balance")}
    print(f"| {noise} | {m['tp1']:.1f} | {m['static']:.1f} | {m['balance']:.1f} | {m['tp1']/m['static']:.2f}x | {m['tp1']/m['balance']:.2f}x |")
EOF
