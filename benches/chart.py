"""Draw compare.py's results as one PNG: overhead heat map and bias accuracy bars.

    python chart.py results.json overhead.png     (run by compare.py in the bench venv)
"""
from __future__ import annotations

import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, NullLocator  # noqa: E402

NICE = [0.5, 1, 1.5, 2, 3, 5, 10, 20, 30, 50, 100]  # tick values on the log scales


def main() -> int:
    with open(sys.argv[1]) as f:
        res = json.load(f)
    meta, cells = res["meta"], res["cells"]
    workloads = res["workloads"]
    configs = [c for c in res["configs"] if c != "plain"]
    acc_configs = [c for c in res["configs"] if c in res["accuracy"]] if "bias" in cells else []

    fig = plt.figure(figsize=(13 if acc_configs else 8, 5.2 + 0.42 * len(configs)))
    grid = fig.add_gridspec(1, 2 if acc_configs else 1, width_ratios=[1.65, 1] if acc_configs else [1],
                            wspace=0.75)

    # -- left: overhead, time / unprofiled time, one row per profiler
    ax = fig.add_subplot(grid[0])
    data, labels = [], []
    for c in configs:
        row = []
        for w in workloads:
            x = cells[w][c].get("x_plain")
            row.append(x if x else math.nan)
        data.append(row)
    finite = [x for row in data for x in row if not math.isnan(x)] or [1.0]
    norm = LogNorm(vmin=max(0.8, min(finite)), vmax=max(2.0, max(finite)))
    im = ax.imshow(data, aspect="auto", cmap="YlOrRd", norm=norm)
    for i, c in enumerate(configs):
        for j, w in enumerate(workloads):
            cell = cells[w][c]
            x = cell.get("x_plain")
            if x:
                text = f"{x:.2f}" if x < 10 else f"{x:.1f}"
                dark = norm(x) > 0.6
                ax.text(j, i, text, ha="center", va="center", fontsize=9,
                        color="white" if dark else "black")
            else:
                ax.text(j, i, cell.get("status", "—"), ha="center", va="center", fontsize=7,
                        color="0.35")
    plain_ms = [cells[w]["plain"].get("best_s") for w in workloads]
    ax.set_xticks(range(len(workloads)),
                  [f"{w}\n{ms * 1e3:.0f} ms" if ms else w for w, ms in zip(workloads, plain_ms)],
                  fontsize=9)
    ax.set_yticks(range(len(configs)), configs, fontsize=9)
    ax.set_title("Overhead: time / unprofiled time (unprofiled time under each workload)", fontsize=10)
    bar = fig.colorbar(im, ax=ax, fraction=0.035, pad=0.02)
    bar.set_ticks([t for t in NICE if norm.vmin <= t <= norm.vmax], labels=None)
    bar.ax.minorticks_off()
    bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))

    # -- right: bias accuracy, reported ratio / true ratio (1 = exact)
    if acc_configs:
        draw_accuracy(fig.add_subplot(grid[1]), res, acc_configs)

    smoke = " — SMOKE RUN (tiny workloads), not a measurement" if meta["smoke"] else ""
    fig.suptitle(f"cprof {meta['cprof_commit']} vs peers — Python {meta['python_version']} "
                 f"({meta['hook']}), best of {meta['reps']}, {meta['date']}{smoke}\n{meta['machine']}",
                 fontsize=10)
    fig.savefig(sys.argv[2], dpi=110, bbox_inches="tight")
    return 0


def draw_accuracy(ax2, res: dict, acc_configs: list) -> None:
    cells = res["cells"]
    names, values, colors = [], [], []
    for c in acc_configs:
        a = res["accuracy"][c].get("accuracy")
        names.append(c)
        values.append(a if a else math.nan)
        colors.append("tab:green" if a and abs(a - 1) <= 0.10 else
                      "tab:blue" if c.startswith("cprof") else "tab:gray")
    y = range(len(names))
    ax2.barh(y, [v if not math.isnan(v) else 0 for v in values], color=colors)
    ax2.axvline(1.0, color="black", lw=1)
    ax2.axvspan(0.9, 1.1, color="tab:green", alpha=0.15, lw=0)
    ax2.set_xscale("log")
    ax2.set_yticks(list(y), names, fontsize=9)
    ax2.invert_yaxis()
    for i, v in enumerate(values):
        ax2.text(v if not math.isnan(v) else 1.0, i,
                 f" {v:.2f}" if not math.isnan(v) else
                 f" {cells['bias'][names[i]].get('status') if 'bias' in cells else ''}".replace(" ok", " no result"),
                 va="center", fontsize=9)
    top = max([v for v in values if not math.isnan(v)] + [2.0])
    ax2.set_xlim(0.5, top * 2.2)
    ticks = NICE if top * 2.2 < 8 else [0.5, 1, 2, 5, 10, 20, 50, 100]  # sparser on a wide range
    ax2.set_xticks([t for t in ticks if 0.5 <= t <= top * 2.2])
    ax2.xaxis.set_minor_locator(NullLocator())
    ax2.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax2.set_title(f"Bias: reported / true ratio of the two halves\n(true unprofiled ratio "
                  f"{res['true_ratio']:.3f}; green band = within 10%)", fontsize=10)


if __name__ == "__main__":
    sys.exit(main())
