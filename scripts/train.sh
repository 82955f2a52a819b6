#!/usr/bin/env bash
# The main job: builds nanode's examples and trains NANODEs: the two toys of time
# dependence (Auto vs T-NANODE on "out and back" and "flip"), printing their final
# errors and writing SVG pictures of the trajectories to $NANODE_OUT (default:
# build/out). Installs what it needs with apt. Extra arguments go to the trainer
# (see --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/deps.sh"
nanode_ensure_packages "${NANODE_BUILD_PACKAGES[@]}"
build="${NANODE_BUILD_DIR:-$root/build}"
out="${NANODE_OUT:-$build/out}"
mkdir -p "$out"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" -j"$(nproc)" --target toys
exec "$build/examples/toys" --out-dir "$out" "$@"
