#!/usr/bin/env bash
# The main job: installs what it needs with apt (the build tools and Debian's
# dataset-fashion-mnist), builds the trainer, and trains the default T-NANODE
# classifier (trig order 4, two stages of 32 and 64 channels, 4 Euler steps per
# block, Adam with cosine decay, 5 epochs) on Fashion-MNIST on the CPU, printing
# a progress bar, each epoch's test accuracy and, last, the final test accuracy.
# Metrics and checkpoints go to $NANODE_OUT (default build/out/main).
# Extra arguments go to the trainer (see --help) and override these defaults, e.g.
# --model b-nanode-10 --steps 10, --dataset cifar10 --data-dir DIR, --resume (with the same
# arguments and the same $NANODE_OUT as the run it continues). Without --resume the
# script passes --overwrite: a new run of the main job replaces the previous one's
# results in $NANODE_OUT (the trainer itself refuses to, unless told).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/deps.sh"
nanode_ensure_packages "${NANODE_BUILD_PACKAGES[@]}" dataset-fashion-mnist
build="${NANODE_BUILD_DIR:-$root/build}"
out="${NANODE_OUT:-$build/out/main}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" -j"$(nproc)" --target train_classifier
fresh=(--overwrite)
for a in "$@"; do [ "$a" = --resume ] && fresh=(); done
exec "$build/examples/train_classifier" --dataset fashion-mnist --out-dir "$out" --threads "$(nproc)" "${fresh[@]}" "$@"
