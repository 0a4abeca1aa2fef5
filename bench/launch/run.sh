#!/usr/bin/env bash
# gccl run's speed (BENCHMARKS.md, "gccl run: startup and fail-fast"):
#   1. from `gccl run --nproc-per-node 8` to the first completed collective, as the whole run of
#      a job that inits and does one 8-byte all-reduce, then exits (hyperfine);
#   2. a whole 3-node x 2-rank job on network namespaces (rendezvous, one all-reduce, exit;
#      go test -bench MultiNodeStartup, root only);
#   3. from a dead rank (SIGKILL) or a dead node's agent to every worker of the job gone, on one
#      node and on 3 network-namespace nodes (go test -bench; the netns cases need root).
# Usage: bench/launch/run.sh [RUNS]   (needs hyperfine: apt-get install hyperfine)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-30}
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/gccl" ./cmd/gccl
go build -o "$bin/nodejob" ./tests/nodejob
nproc
uptime
hyperfine --warmup 3 --runs "$runs" -N \
  "$bin/gccl run --nproc-per-node 8 --backend gloo $bin/nodejob once" \
  "$bin/gccl run --nproc-per-node 8 --backend shm $bin/nodejob once"
go test -count=1 -run '^$' -bench 'StopAfterDeadRank|MultiNodeStartup' -benchtime 10x ./tests/
