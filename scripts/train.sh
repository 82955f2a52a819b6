#!/usr/bin/env bash
# The main job: builds nanode's examples and trains. Installs what it needs with apt.
# Extra arguments go to the trainer.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/deps.sh"
nanode_ensure_packages "${NANODE_BUILD_PACKAGES[@]}"
build="${NANODE_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" -j"$(nproc)" --target demo_spirals
exec "$build/examples/demo_spirals" "$@"
