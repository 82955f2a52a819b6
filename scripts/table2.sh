#!/usr/bin/env bash
# Table 2 of the paper at small scale: SVG-LP with plain VGG blocks ("svg"), with
# autonomous ODE blocks ("auto") and with T-NANODE blocks ("nanode", trig order 3,
# 3 Euler steps: dt = 0.33) trained at an equal budget (the same batches of the
# same sequences, the same number of Adam steps) on Moving Fashion-MNIST generated
# from Debian's Fashion-MNIST; writes docs/table2.md (-ELBO per frame and its
# terms, PSNR/SSIM of the best of k prior samples, activation and parameter memory,
# frames/s) and one strip of predicted sequences per model under docs/table2/.
# Each run is sized to stay under 20 minutes on 2 cores; runs go to
# $NANODE_OUT (default build/out/table2)/<model>. Extra arguments go to every run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/deps.sh"
nanode_ensure_packages "${NANODE_BUILD_PACKAGES[@]}" dataset-fashion-mnist
build="${NANODE_BUILD_DIR:-$root/build}"
out="${NANODE_OUT:-$build/out/table2}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" -j"$(nproc)" --target train_video
mkdir -p "$out" "$root/docs/table2"

# The budget: epochs x train-sequences / batch-size Adam steps for every model.
epochs=6 sequences=480 batch=16
common=(--dataset moving-fashion-mnist --n-past 5 --n-future 10 --width 8 --g-dim 64 --z-dim 8 --rnn-size 64
        --batch-size "$batch" --train-sequences "$sequences" --epochs "$epochs" --test-sequences 64 --samples 5
        --beta 1e-4 --lr 2e-3 --threads "$(nproc)" --seed 0)
# TABLE2_SUMMARY_ONLY=1 rewrites docs/table2.md from the runs already in $out.
for model in svg auto nanode; do
  [ "${TABLE2_SUMMARY_ONLY:-0}" = 1 ] && break
  echo "== $model"
  rm -rf "${out:?}/$model"
  timeout 20m "$build/examples/train_video" "${common[@]}" --model "$model" --order 3 --steps 3 \
    --out-dir "$out/$model" "$@" | tee "$out/$model.log"
done

{
  echo "# Table 2 at small scale: video prediction on Moving Fashion-MNIST"
  echo
  echo "Made by \`./scripts/table2.sh\` on $(date -u +%Y-%m-%d) at commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') ($(nproc) threads; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))."
  echo "Every model: ${common[*]}"
  echo "(the same batches and Adam steps; models differ only in their VGG blocks)."
  echo
  echo "| model | test -ELBO / frame | MSE / pixel | KL (nats / frame) | best-of-5 PSNR (dB) | best-of-5 SSIM | peak activation memory (MiB) | parameter memory (MiB) | frames/s |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for model in svg auto nanode; do
    last="$(tail -n 1 "$out/$model/metrics.csv")"
    IFS=, read -r ep trel trmse trkl teel temse tekl bmse bpsnr bssim fps secs peak <<< "$last"
    param="$(grep -o 'parameter memory [0-9.]* MiB' "$out/$model.log" | grep -o '[0-9.]*')"
    peak_mib="$(awk -v b="$(cut -d, -f13 "$out/$model/metrics.csv" | tail -n +2 | sort -n | tail -1)" 'BEGIN{printf "%.1f", b/1048576}')"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$model" "$teel" "$temse" "$tekl" "$bpsnr" "$bssim" "$peak_mib" "$param" "$fps"
    cp "$out/$model/samples_epoch$ep.png" "$root/docs/table2/$model.png"
  done
  echo
  echo "Strips (rows: ground truth; the posterior reconstruction; three samples from the learned prior after the"
  echo "5 conditioning frames): [svg](table2/svg.png), [auto](table2/auto.png), [nanode](table2/nanode.png)."
  echo
  echo "Units: -ELBO per predicted frame = MSE per pixel (frames in [0, 1]) + beta x KL (nats per frame, summed over"
  echo "the latent, averaged over the batch); best of 5: for each of the 64 held-out sequences the prior sample"
  echo "closest to the truth, its PSNR / SSIM averaged over the 10 future frames. Activation memory: the peak that"
  echo "nanode's allocator saw in a training step above its start; all models use direct backprop."
  echo
  elbo() { tail -n 1 "$out/$1/metrics.csv" | cut -d, -f5; }
  peak() { cut -d, -f13 "$out/$1/metrics.csv" | tail -n +2 | sort -n | tail -1; }
  awk -v steps="$((epochs * sequences / batch))" -v n="$(elbo nanode)" -v s="$(elbo svg)" -v a="$(elbo auto)" -v pn="$(peak nanode)" -v pa="$(peak auto)" 'BEGIN {
    lower = n < s ? "lower" : "not lower"; same = pn == pa ? "the same as" : "not the same as";
    printf "The paper'"'"'s claim (Table 2: NANODE reaches a lower -ELBO than SVG at Auto'"'"'s activation memory), at this\n";
    printf "scale: NANODE'"'"'s test -ELBO per frame (%.6f) is %s than SVG'"'"'s (%.6f), by %.1f%%, at an activation memory\n", n, lower, s, 100 * (s - n) / s;
    printf "%s Auto'"'"'s; Auto'"'"'s -ELBO is %.6f (%s than NANODE'"'"'s, whereas the paper has Auto worst).\n", same, a, a < n ? "lower" : "higher";
    printf "One seed and %d Adam steps per model (SVG trains for about 300 epochs of 600 steps): differences of a few\n", steps;
    printf "percent are within what another seed moves, so the claim is **not reproduced** here in any meaningful sense:\n";
    printf "neither confirmed nor refuted. A longer budget (e.g. --epochs 60 --width 16, hours on 2 cores) is the next step.\n";
  }'
} > "$root/docs/table2.md"
echo "wrote $root/docs/table2.md"
