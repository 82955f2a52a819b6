#!/usr/bin/python3
"""Plots for docs/figures.md from the trainers' metrics.csv files (Debian's python3-matplotlib).

  plot_results.py curves OUT.png TITLE LABEL=DIR [LABEL=DIR ...]
      train and test accuracy against epoch, one colour per run (DIR/metrics.csv)
  plot_results.py sweep OUT.png TITLE XLABEL RESULTS.csv
      final train and test accuracy against x, one colour per series; RESULTS.csv has
      the columns series,x,train_acc,test_acc (several rows per point: mean and std)
  plot_results.py table OUT.png TITLE TABLE.csv
      Table 1: test accuracy (mean and std over seeds) and peak activation memory per
      model; TABLE.csv has the columns dataset,model,seed,test_acc,peak_activation_mib
"""
import csv
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path):
    rows = list(csv.DictReader(open(path)))
    if not rows:
        sys.exit(f"plot_results: {path} has no epochs")
    return rows


def curves(out, title, runs):
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for i, run in enumerate(runs):
        label, folder = run.split("=", 1)
        rows = read_metrics(folder + "/metrics.csv")
        ep = [int(r["epoch"]) for r in rows]
        colour = f"C{i}"
        ax[0].plot(ep, [100 * float(r["train_acc"]) for r in rows], "-o", color=colour, label=label + " train")
        ax[0].plot(ep, [100 * float(r["test_acc"]) for r in rows], "--s", color=colour, label=label + " test")
        ax[1].plot(ep, [float(r["train_loss"]) for r in rows], "-o", color=colour, label=label + " train")
        ax[1].plot(ep, [float(r["test_loss"]) for r in rows], "--s", color=colour, label=label + " test")
    ax[0].set_ylabel("accuracy (%)")
    ax[1].set_ylabel("cross-entropy")
    for a in ax:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def stats(values):
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def sweep(out, title, xlabel, results):
    series = {}
    for r in csv.DictReader(open(results)):
        series.setdefault(r["series"], {}).setdefault(float(r["x"]), []).append(
            (100 * float(r["train_acc"]), 100 * float(r["test_acc"])))
    if not series:
        sys.exit(f"plot_results: {results} has no rows")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, points) in enumerate(sorted(series.items())):
        xs = sorted(points)
        for k, (kind, style) in enumerate((("train", "-o"), ("test", "--s"))):
            ms = [stats([p[k] for p in points[x]]) for x in xs]
            ax.errorbar(xs, [m for m, _ in ms], yerr=[s for _, s in ms], fmt=style, color=f"C{i}",
                        capsize=3, label=f"{name} {kind}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def table(out, title, results):
    rows = list(csv.DictReader(open(results)))
    if not rows:
        sys.exit(f"plot_results: {results} has no rows")
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    most = max(len({r["model"] for r in rows if r["dataset"] == ds}) for ds in datasets)
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, len(datasets) * (0.3 * most + 1.2)), squeeze=False)
    for d, ds in enumerate(datasets):
        models = list(dict.fromkeys(r["model"] for r in rows if r["dataset"] == ds))
        acc = [stats([float(r["test_acc"]) for r in rows if r["dataset"] == ds and r["model"] == m]) for m in models]
        mem = [float([r for r in rows if r["dataset"] == ds and r["model"] == m][-1]["peak_activation_mib"])
               for m in models]
        ys = list(range(len(models)))[::-1]
        ax = axes[d][0]
        ax.errorbar([m for m, _ in acc], ys, xerr=[s for _, s in acc], fmt="o", capsize=3, color="C0")
        ax.set_yticks(ys)
        ax.set_yticklabels(models)
        ax.set_xlabel(f"{ds}: test accuracy (%), mean and std over seeds")
        ax.grid(alpha=0.3)
        ax = axes[d][1]
        ax.barh(ys, mem, color="C1")
        ax.set_yticks(ys)
        ax.set_yticklabels(models)
        ax.set_xlabel("peak activation memory of a training step (MiB)")
        ax.grid(alpha=0.3, axis="x")
        for a in axes[d]:
            a.set_ylim(-0.7, len(models) - 0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv):
    if len(argv) >= 4 and argv[1] == "curves":
        curves(argv[2], argv[3], argv[4:])
    elif len(argv) == 6 and argv[1] == "sweep":
        sweep(argv[2], argv[3], argv[4], argv[5])
    elif len(argv) == 5 and argv[1] == "table":
        table(argv[2], argv[3], argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
