stamp "every kernel against its CPU twin on the device (the emulated build's cases)"
timeout 120 "$build/tests/test_kernels_device" 2>&1 | tee "$out/test_kernels_device.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
stamp "every op on the device against the CPU in float64 (the op x backend cases)"
timeout 120 "$build/tests/test_backend_ops_device" 2>&1 | tee "$out/test_backend_ops_device.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
#!/usr/bin/env bash
# The GPU check, in one go, on a machine with a GPU (the lent H100/H200): build with
# CUDA, run the CUDA tests, every kernel against its CPU twin (also under
# compute-sanitizer memcheck and racecheck), then the GPU benchmarks listed in
# benchmarks/gpu-benchmarks.txt (kernel microbenchmarks and the peer comparison).
# Budget: 8 minutes in all (each step has its own timeout). That machine has nvcc, CMake and PyTorch but no Debian
# packages: run scripts/vendor-deps.sh here first and carry .deps.
# Results go to $OUT (or build-gpu/out) as well as stdout.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${NANODE_GPU_BUILD_DIR:-$root/build-gpu}"
out="${OUT:-$build/out}"
mkdir -p "$out"
start=$(date +%s)
stamp() { echo "[gpu-check +$(( $(date +%s) - start ))s] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || stamp "nvidia-smi failed"
args=(-DCMAKE_BUILD_TYPE=Release -DNANODE_CUDA=ON -DNANODE_BUILD_TESTS=ON -DNANODE_BUILD_EXAMPLES=OFF
      -DNANODE_BUILD_BENCHMARKS=ON "-DNANODE_CUDA_ARCHITECTURES=${NANODE_CUDA_ARCHITECTURES:-90}")
[ -d "$root/.deps/usr" ] && args+=("-DCMAKE_PREFIX_PATH=$root/.deps/usr")
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
[ -n "$torch_prefix" ] && args+=("-DNANODE_TORCH_PREFIX=$torch_prefix")

stamp "configure"
if ! cmake -S "$root" -B "$build" "${args[@]}" > "$out/configure.log" 2>&1; then
  # A LibTorch whose CMake package cannot be configured here must not cost the run.
  stamp "configure failed; retrying without the LibTorch peer"
  tail -20 "$out/configure.log"
  cmake -S "$root" -B "$build" "${args[@]}" -DNANODE_BENCH_TORCH=OFF > "$out/configure.log" 2>&1 ||
    { tail -40 "$out/configure.log"; exit 1; }
fi
targets=(test_cuda test_kernels_device test_backend_ops_device)
list="$root/benchmarks/gpu-benchmarks.txt"
if [ -f "$list" ]; then
  while read -r target rest; do
    [ -z "$target" ] || [ "${target:0:1}" = "#" ] || targets+=("$target")
  done < "$list"
fi
stamp "build ${targets[*]}"
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" > "$out/build.log" 2>&1 || { tail -60 "$out/build.log"; exit 1; }

status=0
stamp "CUDA tests"
"$build/tests/test_cuda" 2>&1 | tee "$out/test_cuda.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
stamp "every kernel against its CPU twin on the device (the emulated build's cases)"
"$build/tests/test_kernels_device" 2>&1 | tee "$out/test_kernels_device.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
# compute-sanitizer: out-of-bounds accesses (memcheck) and shared-memory races
# (racecheck) in the same cases, when the toolkit has it.
if command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck; do
    stamp "compute-sanitizer --tool $tool"
    timeout 100 compute-sanitizer --tool "$tool" --error-exitcode 9 "$build/tests/test_kernels_device" \
      > "$out/sanitizer-$tool.log" 2>&1
    rc=$?
    tail -5 "$out/sanitizer-$tool.log"
    [ "$rc" -eq 0 ] || { stamp "compute-sanitizer $tool: exit $rc"; status=1; }
  done
fi
if [ -f "$list" ]; then
  while read -r target rest; do
    [ -z "$target" ] || [ "${target:0:1}" = "#" ] && continue
    exe=$(find "$build" -type f -name "$target" -perm -u+x | head -1)
    stamp "benchmark: $target $rest"
    # shellcheck disable=SC2086
    timeout 90 "$exe" $rest 2>&1 | tee "$out/$target.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  done < "$list"
fi
# One table of every figure the benchmarks reported ("summary:" lines) and the
# tests' verdicts.
{
  echo
  echo "== gpu-check summary =="
  printf '%-8s | %-62s | %-28s | %-8s | %s\n' device figure value target verdict
  for f in "$out"/*.log; do
    grep -h '^summary: ' "$f" | sed 's/^summary: //' |
      awk -F' [|] ' '{ printf "%-8s | %-62s | %-28s | %-8s | %s\n", $1, $2, $3, $4, $5 }'
  done
  for t in test_cuda test_kernels_device test_backend_ops_device; do
    [ -f "$out/$t.log" ] && printf '%-8s | %-62s | %s\n' test "$t" "$(grep -E 'All tests passed|test cases:' "$out/$t.log" | tail -1)"
  done
} | tee "$out/summary.txt"
stamp "done (status $status)"
exit $status
