"""Effective robustness of the Imagewoof Table 7 runs (issue 13), from their committed raw files.

Usage (no training; reads ``docs/results/``, writes a JSON and a plot)::

    python benchmarks/imagewoof_effective_robustness.py \\
        [--out docs/results/imagewoof_effective_robustness_2026-12-06_cpu.json] \\
        [--plot docs/img/imagewoof_effective_robustness.png]

mCE says whether a row errs less on Imagewoof-C than E0; it does not say whether that is more
than the row's clean accuracy buys. Effective robustness (Taori et al., "Measuring Robustness to
Natural Distribution Shifts in Image Classification", NeurIPS 2020) separates the two: a line in
logit space through the baseline family (here E0's nine runs: 10, 30 and 120 epochs, seeds 0-2)
predicts the corrupted accuracy (``1 - mean corruption error`` over 15 corruptions x 5
severities) from the clean top-1; a run's effective robustness is its corrupted accuracy minus
that prediction, in points (:func:`official.robustness.effective_robustness`). The printed
figure per row is that difference, against E0's own scatter about its line; the same is done
per corruption (one E0 line each) for the heat map.

Deviation from Taori et al.: their baseline family is ~200 ImageNet models of many
architectures; ours is one architecture trained for different lengths, so the line is E0's own
accuracy-robustness trade-off at this scale, and a row beyond E0's clean range (E3 and E6 at 120
epochs) is compared with the line extrapolated (flagged ``extrapolated``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics as st
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from official import robustness as R  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "results")
SOURCES = {10: "imagewoof_ablation_2026-12-04_cpu.json",
           30: "imagewoof_30ep_seeds_2026-12-06b_cpu.json",
           120: "imagewoof_120ep_2026-12-06_cpu.json"}
COLOURS = {"E0": "k", "E3": "tab:blue", "E6": "tab:green", "E9 without KD": "tab:purple",
           "E11 without KD and AutoAugment": "tab:olive", "E11 without KD": "tab:orange",
           "E11": "tab:red"}
LABELS = {"E11 without KD and AutoAugment": "E10 without KD"}


def load_runs(results_dir: str = RESULTS) -> list:
    """One dict per table run: row, epochs, seed, clean and corrupted accuracy (fractions)."""
    runs = []
    for epochs, name in SOURCES.items():
        path = os.path.join(results_dir, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: raw result file missing (it is committed with the repo)")
        with open(path) as f:
            data = json.load(f)
        for r in data["runs"]:
            if not r.get("in_table", True):
                continue          # reruns listed in the raw file but not counted in the table
            mean_error = R.mean_corruption_error(r["errors"]) / 100.0
            per = {c: 1.0 - float(np.mean(r["errors"][c])) for c in R.CORRUPTIONS_15}
            runs.append(dict(row=r.get("key", r["row"]), epochs=epochs, seed=r["seed"],
                             clean=float(r["top1"]), corrupted=1.0 - mean_error,
                             per_corruption=per, source=name))
    return runs


def analyse(runs: list, baseline: str = "E0") -> dict:
    base = [r for r in runs if r["row"] == baseline]
    fit = R.effective_robustness_fit([r["clean"] for r in base], [r["corrupted"] for r in base])
    lo, hi = min(r["clean"] for r in base), max(r["clean"] for r in base)
    base_er = R.effective_robustness([r["clean"] for r in base], [r["corrupted"] for r in base], fit)
    # the same analysis per corruption: one E0 line per corruption
    fits_c = {c: R.effective_robustness_fit([r["clean"] for r in base],
                                            [r["per_corruption"][c] for r in base])
              for c in R.CORRUPTIONS_15}
    groups = {}
    for r in runs:
        groups.setdefault((r["epochs"], r["row"]), []).append(r)
    rows = []
    for (epochs, row), rs in sorted(groups.items()):
        er = R.effective_robustness([r["clean"] for r in rs], [r["corrupted"] for r in rs], fit)
        rows.append(dict(
            row=row, epochs=epochs, seeds=[r["seed"] for r in rs],
            clean_top1=[round(100 * r["clean"], 2) for r in rs],
            corrupted_accuracy=[round(100 * r["corrupted"], 2) for r in rs],
            effective_robustness=[round(float(v), 2) for v in er],
            effective_robustness_mean=round(float(np.mean(er)), 2),
            effective_robustness_sd=round(float(np.std(er, ddof=1)), 2) if len(er) > 1 else None,
            extrapolated=any(r["clean"] < lo or r["clean"] > hi for r in rs),
            per_corruption_mean=({c: round(float(np.mean(R.effective_robustness(
                [r["clean"] for r in rs], [r["per_corruption"][c] for r in rs], fits_c[c]))), 2)
                for c in R.CORRUPTIONS_15})))
    return dict(fit=dict(a=round(fit[0], 4), b=round(fit[1], 4), baseline=baseline,
                         space="logit(corrupted accuracy) = a * logit(clean top-1) + b",
                         baseline_runs=len(base), baseline_clean_range=[round(100 * lo, 2), round(100 * hi, 2)],
                         baseline_residual_sd_points=round(float(np.std(base_er, ddof=1)), 2)),
                rows=rows, _fit=fit)


def plot(runs: list, fit, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    line = lambda x: 100 * R.effective_robustness_line(x, fit)
    base = [r["clean"] for r in runs if r["row"] == "E0"]
    lo, hi = min(base), max(base)
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    inside = np.linspace(lo, hi, 50)
    ax.plot(100 * inside, line(inside), "k-", lw=1)
    for seg in (np.linspace(0.2, lo, 30), np.linspace(hi, 0.82, 30)):
        ax.plot(100 * seg, line(seg), "k:", lw=1)
    markers = {10: "o", 30: "s", 120: "^"}
    for r in runs:
        ax.plot(100 * r["clean"], 100 * r["corrupted"], markers[r["epochs"]],
                color=COLOURS.get(r["row"], "gray"), alpha=0.8, ms=6)
    handles = [Line2D([], [], color="k", lw=1, label="line through E0's 9 runs (logit fit; dotted: extrapolated)")]
    handles += [Line2D([], [], ls="", marker="o", color=c, label=LABELS.get(k, k)) for k, c in COLOURS.items()]
    handles += [Line2D([], [], ls="", marker=m, color="gray", label=f"{e} epochs") for e, m in markers.items()]
    ax.legend(handles=handles, fontsize=8, ncol=2, loc="upper left")
    ax.set_xlabel("clean validation top-1 (%)")
    ax.set_ylabel("accuracy on Imagewoof-C, mean of 15 corruptions x 5 severities (%)")
    ax.set_title("Imagewoof, 64 px, width 16: above the line = more robust than E0 at the same "
                 "clean accuracy", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


HEATMAP_ROWS = [(10, "E0"), (10, "E3"), (10, "E6"), (10, "E11"),
                (30, "E0"), (30, "E6"), (30, "E9 without KD"), (30, "E11 without KD and AutoAugment"),
                (30, "E11 without KD"), (30, "E11"),
                (120, "E0"), (120, "E3"), (120, "E6"), (120, "E9 without KD"), (120, "E11")]


def plot_per_corruption(rows: list, path: str) -> None:
    """Heat map: effective robustness per corruption (columns) for each row and schedule."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    by_key = {(r["epochs"], r["row"]): r for r in rows}
    keys = [k for k in HEATMAP_ROWS if k in by_key]
    table = np.array([[by_key[k]["per_corruption_mean"][c] for c in R.CORRUPTIONS_15] for k in keys])
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(keys) + 2.2))
    lim = max(1.0, float(np.abs(table).max()))
    im = ax.imshow(table, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            ax.text(j, i, f"{table[i, j]:+.1f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(table[i, j]) > 0.65 * lim else "black")
    ax.set_xticks(range(len(R.CORRUPTIONS_15)))
    ax.set_xticklabels([c.replace("_", "\n") for c in R.CORRUPTIONS_15], fontsize=7)
    ax.set_yticks(range(len(keys)))
    seeds = lambda k: len(by_key[k]["seeds"])
    ax.set_yticklabels([f"{LABELS.get(r, r)}, {e} ep ({seeds((e, r))} seed{'s' if seeds((e, r)) > 1 else ''})"
                        for e, r in keys], fontsize=8)
    fig.colorbar(im, ax=ax, label="points above E0's line (blue: more robust)")
    ax.set_title("Effective robustness per corruption on Imagewoof-C (64 px, width 16): accuracy "
                 "minus E0's line at the same clean top-1, seed means", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results_dir", default=RESULTS)
    p.add_argument("--out", default=os.path.join(RESULTS, "imagewoof_effective_robustness_2026-12-06_cpu.json"))
    p.add_argument("--plot", default=None, help="PNG path (e.g. docs/img/imagewoof_effective_robustness.png); "
                   "the per-corruption heat map goes beside it as *_per_corruption.png")
    a = p.parse_args(argv)
    runs = load_runs(a.results_dir)
    result = analyse(runs)
    fit = result.pop("_fit")
    f = result["fit"]
    print(f"line through {f['baseline_runs']} E0 runs: logit(corrupted) = {f['a']:.3f} logit(clean) "
          f"{f['b']:+.3f}; E0's scatter about it: sd {f['baseline_residual_sd_points']:.2f} points")
    print(f"{'row':32s} {'epochs':>6s} {'clean %':>8s} {'Imagewoof-C acc %':>18s} {'effective robustness (points)':>30s}")
    for r in result["rows"]:
        sd = "" if r["effective_robustness_sd"] is None else f" +- {r['effective_robustness_sd']:.2f}"
        print(f"{LABELS.get(r['row'], r['row']):32s} {r['epochs']:6d} {st.mean(r['clean_top1']):8.1f} "
              f"{st.mean(r['corrupted_accuracy']):18.1f} {r['effective_robustness_mean']:+14.2f}{sd:8s} "
              f"{'(line extrapolated)' if r['extrapolated'] else ''}")
    result = dict(date="2026-12-06", machine="2-core CPU VM; an analysis of committed raw files, no training",
                  what=__doc__.split("\n\n")[2].replace("\n", " "),
                  reference="Taori et al., NeurIPS 2020 (effective robustness)",
                  command="python benchmarks/imagewoof_effective_robustness.py --plot docs/img/imagewoof_effective_robustness.png",
                  sources=sorted(set(SOURCES.values())), **result)
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=1)
    if a.plot:
        plot(runs, fit, a.plot)
        root, ext = os.path.splitext(a.plot)
        plot_per_corruption(result["rows"], root + "_per_corruption" + ext)
    return 0


if __name__ == "__main__":
    sys.exit(main())
