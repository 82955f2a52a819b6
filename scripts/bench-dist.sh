#!/usr/bin/env bash
# Data-parallel scaling of the main job's model (the default T-NANODE classifier
# on Fashion-MNIST): training images/s at 1 and 2 ranks (mpiexec), THREADS threads
# per rank (1), and the scaling efficiency, in one run. Two settings:
#   weak:   BATCH images per rank (the global batch grows with the ranks);
#   strong: a global batch of BATCH split over the ranks.
# Each rank count runs BATCHES batches (60) after the script's own warm-up run;
# the figure is the epoch line's images/s (all ranks' images over the ranks' mean
# time). A third setting, independent, runs the same number of one-process
# trainings at once with no communication: the machine's own ceiling (cores
# sharing caches, memory bandwidth and clock). rank0_waited_s: the seconds rank 0
# spent waiting in collectives. Extra arguments go to train_classifier (e.g.
# --sync-bn).
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
train=("$build/examples/train_classifier" --threads "$THREADS" --epochs 1 --max-batches "$BATCHES" --limit-test 500
       --quiet)
run() {  # ranks per-rank-batch [args] -> "images/s seconds-rank-0-waited"
  local np=$1 b=$2 out
  out=$("${mpi[@]}" -n "$np" --bind-to none "${train[@]}" --batch-size "$b" "${@:3}")
  echo "$(sed -n 's/^epoch 1: .*| \([0-9.]*\) img\/s.*/\1/p' <<< "$out")" \
       "$(sed -n 's/^data-parallel: rank 0 waited \([0-9.]*\) s.*/\1/p' <<< "$out")"
}
independent() {  # n copies of the one-process run at once, no communication -> summed images/s
  local n=$1 b=$2 i sum=0 dir
  dir=$(mktemp -d)
  for i in $(seq "$n"); do "${train[@]}" --batch-size "$b" "${@:3}" > "$dir/$i.txt" & done
  wait
  for i in $(seq "$n"); do
    sum=$(awk -v s="$sum" -v f="$(sed -n 's/^epoch 1: .*| \([0-9.]*\) img\/s.*/\1/p' "$dir/$i.txt")" \
          'BEGIN { print s + f }')
  done
  rm -rf "$dir"
  echo "$sum"
}
echo "nanode data-parallel benchmark: $(nproc) cores, $THREADS thread(s) per rank, $BATCHES batches per run," \
     "MPI: $(mpiexec --version 2>/dev/null | head -1)"
run 1 "$BATCH" "$@" > /dev/null  # warm-up (page cache, first allocations)
printf "%-12s %5s %12s %10s %10s %14s\n" setting ranks global_batch images/s efficiency rank0_waited_s
for setting in weak strong independent; do
  base=""
  for np in $RANKS; do
    if [ "$setting" = strong ]; then b=$((BATCH / np)); else b=$BATCH; fi
    if [ "$setting" = independent ]; then  # the machine's own ceiling for np processes
      ips=$(independent "$np" "$b" "$@") waited="-"
    else
      read -r ips waited <<< "$(run "$np" "$b" "$@")"
    fi
    [ -n "$ips" ] || { echo "bench-dist: the $setting run with $np rank(s) printed no epoch line" >&2; exit 1; }
    [ -n "$base" ] || base=$ips
    eff=$(awk -v a="$ips" -v b="$base" -v n="$np" 'BEGIN { printf "%.2f", a / (b * n) }')
    printf "%-12s %5d %12d %10.0f %10s %14s\n" "$setting" "$np" $((b * np)) "$ips" "$eff" "${waited:--}"
  done
done
