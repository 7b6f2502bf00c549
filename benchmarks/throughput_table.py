"""Ratio table of the GPU throughput half: ours (Keras 3 / JAX) against timm (PyTorch).

    python benchmarks/throughput_table.py THROUGHPUT.jsonl [MORE.jsonl ...] [--out throughput.md]
        [--plot throughput.png]

Reads the JSON lines written by ``jax_throughput.py`` (``impl: ours``) and
``timm_throughput.py`` (``impl: timm``, with ``compile`` true under ``torch.compile``), from one
or more files of the same machine, and prints, per (ours, timm reference, dtype, mode): both
rates, the ratio against timm eager with the issue's target (our resnet50 >= 0.8x timm
resnet50, assemble_resnet50 >= timm skresnet50d), and the ratio against timm under
``torch.compile`` where that was measured. Then each implementation variant of ours
(``assemble_resnet50[blur=depthwise]``, ...) against the default build in the same dtype and
mode. Ratios compare figures of one machine only: files from different devices are refused.
``--plot``: grouped bars of images/s per model pair (ours, timm eager, timm under
``torch.compile``), one panel per dtype and mode (needs matplotlib).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

# (ours, timm reference, target for ours / timm eager or None)
PAIRS = [("resnet50", "resnet50", 0.8), ("resnet50d", "resnet50d", None),
         ("skresnet50", "skresnet50d", None), ("assemble_resnet50", "skresnet50d", 1.0)]


def load(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{path}:{i}: not a JSON line ({e})")
    return rows


def measured(path, impl, modes, compiled=None):
    """{(model, dtype)} of ``impl`` measured in every one of ``modes`` in the JSON lines at
    ``path`` (none when it does not exist); ``compiled`` True/False keeps only lines with that
    ``compile`` flag. The ``--skip_done`` filter of jax_throughput.py and timm_throughput.py."""
    seen = {}
    if path and os.path.exists(path):
        for r in load([path]):
            if r.get("impl") == impl and (compiled is None or bool(r.get("compile")) == compiled):
                seen.setdefault((r["model"], r["dtype"]), set()).add(r["mode"])
    return {k for k, v in seen.items() if set(modes) <= v}


def table(rows):
    devices = sorted({r["device"] for r in rows if r["impl"] in ("ours", "timm")})
    gpus = {d for d in devices if "cpu" not in d.lower()}
    if len(gpus) > 1:
        raise SystemExit(f"rows from different devices {sorted(gpus)}: ratios need one machine")
    ips = rates(rows)  # later lines win (a rerun replaces an earlier figure)
    # a variant ("assemble_resnet50[blur=shifts]") has its default build's reference, no target
    reference = {ours: ref for ours, ref, _ in PAIRS}
    pairs = list(PAIRS) + sorted({(r["model"], reference[r["model"].split("[")[0]], None) for r in rows
                                  if r["impl"] == "ours" and "[" in r["model"]
                                  and r["model"].split("[")[0] in reference})
    lines = [f"devices: {', '.join(devices)}", "",
             "| ours (Keras/JAX) | timm (PyTorch) | dtype | mode | ours img/s | timm eager img/s | ratio "
             "| target | timm torch.compile img/s | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for ours, ref, target in pairs:
        for dtype in ("bfloat16", "float32"):
            for mode in ("infer", "train"):
                a = ips.get(("ours", ours, dtype, mode))
                b = ips.get(("timm", ref, dtype, mode))
                c = ips.get(("timm+compile", ref, dtype, mode))
                if a is None or (b is None and c is None):
                    continue
                ok = "" if target is None or b is None else (
                    f">= {target}: " + ("met" if a / b >= target else "NOT met"))
                fb = f"{b:.1f} | {a / b:.3f}" if b else "- | -"
                fc = f"{c:.1f} | {a / c:.3f}" if c else "- | -"
                lines.append(f"| {ours} | {ref} | {dtype} | {mode} | {a:.1f} | {fb} | {ok} | {fc} |")
    variants = [(k, v) for k, v in ips.items() if k[0] == "ours" and "[" in k[1]]
    if variants:
        lines += ["", "| variant | dtype | mode | img/s | default build img/s | ratio |", "|---|---|---|---|---|---|"]
        for (impl, model, dtype, mode), v in variants:
            base = ips.get((impl, model.split("[")[0], dtype, mode))
            if base:
                lines.append(f"| {model} | {dtype} | {mode} | {v:.1f} | {base:.1f} | {v / base:.3f} |")
    return "\n".join(lines)


def rates(rows):
    ips = {}
    for r in rows:
        impl = r["impl"] + ("+compile" if r.get("compile") else "")
        ips[(impl, r["model"], r["dtype"], r["mode"])] = r["images_per_second"]
    return ips


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ips = rates(rows)
    device = sorted({r["device"] for r in rows})[0]
    panels = [(d, m) for d in ("bfloat16", "float32") for m in ("infer", "train")]
    series = [("ours", "ours (Keras 3 / JAX, XLA)", "#1f77b4"), ("timm", "timm eager (PyTorch)", "#ff7f0e"),
              ("timm+compile", "timm torch.compile", "#2ca02c")]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8), sharey=False)
    for ax, (dtype, mode) in zip(axes, panels):
        names = [(o, ref) for o, ref, _ in PAIRS if ("ours", o, dtype, mode) in ips]
        width = 0.27
        for j, (impl, lab, color) in enumerate(series):
            vals = [ips.get((impl, o if impl == "ours" else ref, dtype, mode), 0.0) for o, ref in names]
            bars = ax.bar([i + (j - 1) * width for i in range(len(names))], vals, width, label=lab, color=color)
            for b, v in zip(bars, vals):
                if v:
                    ax.text(b.get_x() + b.get_width() / 2, v, f"{v / 1000:.1f}k", ha="center", va="bottom",
                            fontsize=7)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([o if o == ref else f"{o}\n(timm: {ref})" for o, ref in names], fontsize=6.5)
        ax.set_title(f"{dtype} {'inference' if mode == 'infer' else 'training step'}")
        ax.set_ylabel("images / s")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"batch 256, 224 px, input on the device, {device}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("jsonl", nargs="+")
    p.add_argument("--out", default="")
    p.add_argument("--plot", default="")
    a = p.parse_args(argv)
    rows = load(a.jsonl)
    text = table(rows)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    if a.plot:
        plot(rows, a.plot)


if __name__ == "__main__":
    sys.exit(main())
