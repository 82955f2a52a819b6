#!/usr/bin/env bash
# The CPU benchmarks beside their peer: installs what they need with apt (the build
# tools, Debian's LibTorch and OpenBLAS, so that LibTorch's dense products run on
# an optimised BLAS rather than the reference one), builds bench_workloads and
# runs W1, W2 and W6 (2 threads each side) with the busy-machine check. Arguments go to bench_workloads
# (see --help), e.g. --reps 25 --only w6.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/deps.sh"
nanode_ensure_packages "${NANODE_BUILD_PACKAGES[@]}" libtorch-dev libopenblas0-pthread
build="${NANODE_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" -j"$(nproc)" --target bench_workloads
if [ "$#" -eq 0 ]; then set -- --reps 15 --busy; fi
exec "$build/benchmarks/bench_workloads" "$@"
