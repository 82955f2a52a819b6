#!/usr/bin/env bash
# Data-parallel scaling of the main job's model (the default T-NANODE classifier
# on Fashion-MNIST): training images/s at 1 and 2 ranks (mpiexec), THREADS threads
# per rank (1), and the scaling efficiency, in one run. Two settings:
#   weak:   BATCH images per rank (the global batch grows with the ranks);
#   strong: a global batch of BATCH split over the ranks.
# Each rank count runs BATCHES batches (60) after the script's own warm-up run;
# the figure is the epoch line's images/s (all ranks' images over the ranks' mean
# time). Extra arguments go to train_classifier (e.g. --sync-bn).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/deps.sh"
nanode_ensure_packages "${NANODE_BUILD_PACKAGES[@]}" dataset-fashion-mnist
build="${NANODE_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" -j"$(nproc)" --target train_classifier
THREADS="${THREADS:-1}" BATCH="${BATCH:-128}" BATCHES="${BATCHES:-60}" RANKS="${RANKS:-1 2}"
mpi=(mpiexec --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
run() {  # ranks per-rank-batch -> images/s
  local np=$1 b=$2
  "${mpi[@]}" -n "$np" --bind-to none "$build/examples/train_classifier" --threads "$THREADS" --epochs 1 \
    --max-batches "$BATCHES" --batch-size "$b" --limit-test 500 --quiet "${@:3}" |
    sed -n 's/^epoch 1: .*| \([0-9.]*\) img\/s.*/\1/p'
}
echo "nanode data-parallel benchmark: $(nproc) cores, $THREADS thread(s) per rank, $BATCHES batches per run," \
     "MPI: $(mpiexec --version 2>/dev/null | head -1)"
run 1 "$BATCH" "$@" > /dev/null  # warm-up (page cache, first allocations)
printf "%-7s %5s %12s %12s %10s\n" setting ranks global_batch images/s efficiency
for setting in weak strong; do
  base=""
  for np in $RANKS; do
    if [ "$setting" = weak ]; then b=$BATCH; else b=$((BATCH / np)); fi
    ips=$(run "$np" "$b" "$@")
    [ -n "$ips" ] || { echo "bench-dist: the run with $np rank(s) printed no epoch line" >&2; exit 1; }
    [ -n "$base" ] || base=$ips
    eff=$(awk -v a="$ips" -v b="$base" -v n="$np" 'BEGIN { printf "%.2f", a / (b * n) }')
    printf "%-7s %5d %12d %12.0f %10s\n" "$setting" "$np" $((b * np)) "$ips" "$eff"
  done
done
