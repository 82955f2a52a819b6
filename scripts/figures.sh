#!/usr/bin/env bash
# The paper's classification figures at a scale a 2-core machine runs, on
# Fashion-MNIST by default (DATASET=cifar10 or cifar100 with DATA_DIR for CIFAR):
#   period  T-NANODE with the paper's literal trig basis (frequencies 1..d on [0, 1])
#           against periods T = 1 and 2 (frequencies 2 pi n / T)          (issue 14, sec. 1)
#   fig3    learning curves: Chebyshev-4 NANODE with batch norm against the orthogonal
#           (Householder, Chebyshev-4 reflection vectors, no norm) one      (Fig. 3)
#   fig5    T-NANODE against B-NANODE for d = 4..10 at L = 10 steps         (Fig. 5)
#   fig4    T-NANODE train and test accuracy against d = 1..30 at dt = 0.01 (Fig. 4)
# FIGS picks them (default: all, in that order). Each writes docs/figures/<fig>.csv,
# <fig>.png and <fig>.md (the table, the command and the budget). Budget knobs per
# figure are the variables below (LIMIT_TRAIN, LIMIT_TEST and EPOCHS apply to all
# unless a figure's own is set; fig3's learning curves have their own FIG3_EPOCHS, 6);
# SEEDS (default 0) repeats every run per seed and the sweeps show mean and std
# (fig3's curves use the first seed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/deps.sh"
nanode_ensure_packages "${NANODE_BUILD_PACKAGES[@]}" dataset-fashion-mnist python3-matplotlib
build="${NANODE_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" -j"$(nproc)" --target train_classifier > /dev/null
exe="$build/examples/train_classifier"
dataset="${DATASET:-fashion-mnist}"
data=(--dataset "$dataset")
[ -n "${DATA_DIR:-}" ] && data+=(--data-dir "$DATA_DIR")
case "$dataset" in cifar*) data+=(--crop-padding 4 --hflip) ;; esac
seeds="${SEEDS:-0}"
figs="${FIGS:-period fig3 fig5 fig4}"
docs="$root/docs/figures"
mkdir -p "$docs"
plot=/usr/bin/python3  # Debian's, with python3-matplotlib

# run NAME ARGS...: one training run into $build/out/figures/NAME; prints
# "train_acc,test_acc,seconds,images_per_s" of its last epoch.
run() {
  local name="$1"
  shift
  local out="$build/out/figures/$name"
  mkdir -p "$out"
  echo "[figures] $name: $*" >&2
  if ! "$exe" "${data[@]}" "$@" --threads "$(nproc)" --out-dir "$out" --overwrite --quiet > "$out/log.txt" 2>&1; then
    echo "[figures] $name failed: $(tail -1 "$out/log.txt")" >&2
    return 1
  fi
  awk -F, 'NR > 1 { tr = $3; te = $5; s += $8; ips = $7 } END { printf "%s,%s,%.0f,%.0f\n", tr, te, s, ips }' "$out/metrics.csv"
}

# table CSV: a markdown table of mean +- std per (series, x) from CSV rows series,x,seed,train,test,seconds,ips.
table() {
  awk -F, 'NR > 1 { k = $1 SUBSEP $2; if (!(k in n)) order[++m] = k; n[k]++; tr[k] += $4; te[k] += $5;
                    tr2[k] += $4 * $4; te2[k] += $5 * $5; s[k] += $6; ips[k] += $7 }
    function sd(a, a2, c) { return c > 1 ? sqrt(((a2 - a * a / c) < 0 ? 0 : (a2 - a * a / c)) / (c - 1)) : 0 }
    END { print "| series | x | runs | train acc. % | test acc. % | seconds / run | images/s |"; print "|---|---|---|---|---|---|---|";
          for (i = 1; i <= m; i++) { k = order[i]; split(k, p, SUBSEP); c = n[k];
            printf "| %s | %s | %d | %.2f ± %.2f | %.2f ± %.2f | %.0f | %.0f |\n", p[1], p[2], c,
                   100 * tr[k] / c, 100 * sd(tr[k], tr2[k], c), 100 * te[k] / c, 100 * sd(te[k], te2[k], c), s[k] / c, ips[k] / c } }' "$1"
}

header() {  # header FIG TITLE BUDGET
  {
    echo "# $2"
    echo
    echo "Made by \`FIGS=$1 SEEDS=\"$seeds\" DATASET=$dataset ./scripts/figures.sh\` on $(date -u +%Y-%m-%d) ($(nproc) CPU"
    echo "threads). Budget: $3. Accuracy is of the last epoch; train accuracy is the running accuracy over"
    echo "that epoch's batches (augmentation and batch statistics as in training)."
    echo
  } > "$docs/$1.md"
}

fig_period() {
  local lt="${PERIOD_LIMIT_TRAIN:-${LIMIT_TRAIN:-12000}}" lte="${PERIOD_LIMIT_TEST:-${LIMIT_TEST:-5000}}"
  local ep="${PERIOD_EPOCHS:-${EPOCHS:-1}}" steps="${PERIOD_STEPS:-10}"
  local csv="$docs/period.csv"
  echo "series,x,seed,train_acc,test_acc,seconds,images_per_s" > "$csv"
  for d in 4 10; do
    for T in 0 2 1; do
      for s in $seeds; do
        r=$(run "period/t$d-T$T-s$s" --model "t-nanode-$d" --trig-period "$T" --steps "$steps" --solver alf \
              --gradient reversible --epochs "$ep" --limit-train "$lt" --limit-test "$lte" --seed "$s") || continue
        echo "t-nanode-$d,$T,$s,$r" >> "$csv"
      done
    done
  done
  header period "Trig period: the paper's basis against periodic ones" \
    "$ep epoch(s) on the first $lt training images, $lte test images, widths 32,64, $steps ALF steps per block (exact reversible gradients), Adam 2e-3 cosine"
  {
    echo "x is the period T (0: the paper's literal basis, frequencies 1..d on [0, 1]; T > 0: frequencies 2 pi n / T)."
    echo
    table "$csv"
    echo
    echo "![period](period.png)"
  } >> "$docs/period.md"
  $plot "$root/scripts/plot_results.py" sweep "$docs/period.png" "T-NANODE: trig period (0 = the paper's basis)" \
    "period T" <(awk -F, 'NR == 1 { print "series,x,train_acc,test_acc"; next } { print $1 "," $2 "," $4 "," $5 }' "$csv")
}

fig_fig3() {
  local lt="${FIG3_LIMIT_TRAIN:-${LIMIT_TRAIN:-6000}}" lte="${FIG3_LIMIT_TEST:-${LIMIT_TEST:-3000}}"
  local ep="${FIG3_EPOCHS:-6}" steps="${FIG3_STEPS:-4}"
  local csv="$docs/fig3.csv" s
  s="$(echo "$seeds" | awk '{ print $1 }')"
  echo "series,x,seed,train_acc,test_acc,seconds,images_per_s" > "$csv"
  local common=(--steps "$steps" --solver alf --gradient reversible --epochs "$ep" --limit-train "$lt"
                --limit-test "$lte" --seed "$s")
  r=$(run fig3/chebyshev-bn --model chebyshev-4 --block-norm batch "${common[@]}") && echo "chebyshev-4 + batch norm,$ep,$s,$r" >> "$csv"
  r=$(run fig3/householder --model householder-4 --householder-basis chebyshev --block-norm none "${common[@]}") &&
    echo "householder (chebyshev-4 vectors) no norm,$ep,$s,$r" >> "$csv"
  r=$(run fig3/chebyshev-none --model chebyshev-4 --block-norm none "${common[@]}") && echo "chebyshev-4 no norm,$ep,$s,$r" >> "$csv"
  header fig3 "Fig. 3: Chebyshev-4 NANODE with batch norm against the orthogonal (Householder) one" \
    "$ep epochs on the first $lt training images, $lte test images, widths 32,64, $steps ALF steps per block (exact reversible gradients), Adam 2e-3 cosine, seed $s"
  {
    echo "The orthogonal model's kernels are [C, 9C] Householder weights (9C reflections, Chebyshev-4 reflection"
    echo "vectors, compact WY) with no norm in the block; the third row is the Chebyshev model without a norm,"
    echo "for what the norm itself does. The batch norm inside the dynamics normalises with each evaluation's batch"
    echo "statistics in training and in evaluation (\`--block-norm batch\`). x is the number of epochs."
    echo
    table "$csv"
    echo
    echo "![fig3](fig3.png)"
  } >> "$docs/fig3.md"
  local curves=()  # the runs that finished
  for run_dir in "chebyshev-4 + BN=chebyshev-bn" "householder=householder" "chebyshev-4 no norm=chebyshev-none"; do
    local dir="$build/out/figures/fig3/${run_dir#*=}"
    grep -q '^test accuracy' "$dir/log.txt" 2> /dev/null && curves+=("${run_dir%%=*}=$dir")
  done
  if [ ${#curves[@]} -gt 0 ]; then
    $plot "$root/scripts/plot_results.py" curves "$docs/fig3.png" "Fig. 3: Chebyshev-4 + BN against Householder (orthogonal)" \
      "${curves[@]}"
  fi
}

fig_fig5() {
  local lt="${FIG5_LIMIT_TRAIN:-${LIMIT_TRAIN:-6000}}" lte="${FIG5_LIMIT_TEST:-${LIMIT_TEST:-3000}}"
  local ep="${FIG5_EPOCHS:-${EPOCHS:-1}}" steps="${FIG5_STEPS:-10}" widths="${FIG5_WIDTHS:-16,32}"
  local csv="$docs/fig5.csv"
  echo "series,x,seed,train_acc,test_acc,seconds,images_per_s" > "$csv"
  for d in 4 5 6 7 8 9 10; do
    for s in $seeds; do
      local common=(--steps "$steps" --solver alf --gradient reversible --epochs "$ep" --limit-train "$lt"
                    --limit-test "$lte" --seed "$s" --widths "$widths")
      r=$(run "fig5/t$d-s$s" --model "t-nanode-$d" "${common[@]}") && echo "t-nanode,$d,$s,$r" >> "$csv"
      local cross=()
      [ $((steps % d)) -ne 0 ] && cross=(--cross-jumps)
      r=$(run "fig5/b$d-s$s" --model "b-nanode-$d" "${cross[@]}" "${common[@]}") && echo "b-nanode,$d,$s,$r" >> "$csv"
    done
  done
  header fig5 "Fig. 5: T-NANODE against B-NANODE for d = 4..10 at L = $steps steps" \
    "$ep epoch(s) on the first $lt training images, $lte test images, widths $widths, $steps ALF steps per block (exact reversible gradients), Adam 2e-3 cosine"
  {
    echo "x is d (T-NANODE: 2d + 1 basis terms; B-NANODE: d buckets). B-NANODE with d not dividing L = $steps"
    echo "runs with \`--cross-jumps\`: the $steps steps cross the bucket edges, as the paper's fixed-grid runs do (the"
    echo "weights switch at the stage times that land in a new bucket)."
    echo
    table "$csv"
    echo
    echo "![fig5](fig5.png)"
  } >> "$docs/fig5.md"
  $plot "$root/scripts/plot_results.py" sweep "$docs/fig5.png" "Fig. 5: T-NANODE against B-NANODE, L = $steps" "order d" \
    <(awk -F, 'NR == 1 { print "series,x,train_acc,test_acc"; next } { print $1 "," $2 "," $4 "," $5 }' "$csv")
}

fig_fig4() {
  local lt="${FIG4_LIMIT_TRAIN:-${LIMIT_TRAIN:-3000}}" lte="${FIG4_LIMIT_TEST:-${LIMIT_TEST:-2000}}"
  local ep="${FIG4_EPOCHS:-${EPOCHS:-1}}" steps="${FIG4_STEPS:-100}" widths="${FIG4_WIDTHS:-8,16}"
  local orders="${FIG4_ORDERS:-1 2 4 6 8 10 15 20 25 30}"
  local csv="$docs/fig4.csv"
  echo "series,x,seed,train_acc,test_acc,seconds,images_per_s" > "$csv"
  for d in $orders; do
    for s in $seeds; do
      r=$(run "fig4/t$d-s$s" --model "t-nanode-$d" --steps "$steps" --solver alf --gradient reversible --epochs "$ep" \
            --limit-train "$lt" --limit-test "$lte" --seed "$s" --widths "$widths") && echo "t-nanode,$d,$s,$r" >> "$csv"
    done
  done
  header fig4 "Fig. 4: T-NANODE accuracy against the order d at dt = 1/$steps" \
    "$ep epoch(s) on the first $lt training images, $lte test images, a smaller model (widths $widths), $steps ALF steps per block (dt = 1/$steps, exact reversible gradients), Adam 2e-3 cosine"
  {
    echo "x is d (2d + 1 basis terms per weight)."
    echo
    table "$csv"
    echo
    echo "![fig4](fig4.png)"
  } >> "$docs/fig4.md"
  $plot "$root/scripts/plot_results.py" sweep "$docs/fig4.png" "Fig. 4: T-NANODE against d, dt = 1/$steps" "order d" \
    <(awk -F, 'NR == 1 { print "series,x,train_acc,test_acc"; next } { print $1 "," $2 "," $4 "," $5 }' "$csv")
}

for f in $figs; do
  case "$f" in
    period | fig3 | fig4 | fig5) "fig_$f" ;;
    *) echo "figures.sh: unknown figure '$f' (period, fig3, fig4, fig5)" >&2; exit 2 ;;
  esac
  echo "[figures] wrote $docs/$f.md, $f.csv, $f.png" >&2
done
