#!/usr/bin/env bash
# Builds nanode (CUDA too when nvcc is present) and runs the whole test suite.
# Installs its build dependencies with apt when missing. The last line printed is
# "N passed, N failed".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deps.sh
. "$root/scripts/deps.sh"
nanode_ensure_packages "${NANODE_BUILD_PACKAGES[@]}" "${NANODE_TEST_PACKAGES[@]}"

build="${NANODE_BUILD_DIR:-$root/build}"
jobs="$(nproc)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNANODE_BUILD_TESTS=ON ${NANODE_CMAKE_ARGS:-}
cmake --build "$build" -j"$jobs"

log="$build/ctest.log"
set +e
ctest --test-dir "$build" -j"$jobs" --output-on-failure 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
total=$(sed -nE 's/.*tests? failed out of ([0-9]+).*/\1/p' "$log" | tail -1)
failed=$(sed -nE 's/.*, ([0-9]+) tests? failed out of.*/\1/p' "$log" | tail -1)
skipped=$(grep -c '(Skipped)$' "$log" || true)
total=${total:-0}
failed=${failed:-0}
if [ "$skipped" -gt 0 ]; then
  echo "$skipped skipped (the CUDA tests skip when no GPU is present)"
fi
if [ "$total" -eq 0 ] && [ "$rc" -ne 0 ]; then failed=1; fi
echo "$((total - failed - skipped)) passed, $failed failed"
exit "$rc"
