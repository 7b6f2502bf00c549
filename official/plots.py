"""Plots for robustness and evaluation reports (matplotlib, Agg backend, imported lazily).

* :func:`plot_corruption_errors` - top-1 error against severity, one panel per corruption,
  one line per model (the per-corruption view of Hendrycks & Dietterich 2019, Fig. 3, for the
  models compared in Assemble-ResNet's Table 5).
* :func:`plot_confusion_matrix` - a (row-normalized) confusion matrix.

matplotlib is only needed when a plot is drawn (``pip install 'assemble-cnn[plots]'``); importing this
module does not import it.
"""
from __future__ import annotations

import math
import pathlib
from typing import Mapping, Sequence

import numpy as np

from official.robustness import CORRUPTIONS_19

__all__ = ["plot_corruption_errors", "plot_confusion_matrix"]


def _pyplot():
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
    except ImportError as e:  # pragma: no cover
        raise ImportError("plotting needs matplotlib: pip install 'assemble-cnn[plots]'") from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


def _pretty(name: str) -> str:
    text = name.replace("_", " ")
    text = text[:1].upper() + text[1:]
    return text.replace("Jpeg", "JPEG")


def plot_corruption_errors(results_by_model: Mapping[str, Mapping[str, Sequence[float]]], path,
                           corruptions: Sequence[str] | None = None,
                           clean_errors: Mapping[str, float] | None = None,
                           title: str | None = None, ncols: int = 5, dpi: int = 110) -> str:
    """Writes a PNG of top-1 error (%) against severity for each corruption and model.

    Args:
      results_by_model: ``{model: {corruption: [E_1, ..., E_S]}}``, errors as fractions in
        [0, 1] (as in :mod:`official.robustness`). Models may miss some corruptions.
      path: output ``.png`` path (parent folders are created).
      corruptions: panel order (default: the union of all models' corruptions, in the
        ImageNet-C order for known names).
      clean_errors: optional ``{model: clean error fraction}``, drawn as a dashed line.
      title: figure title.
    Returns the path written.
    """
    if not results_by_model:
        raise ValueError("results_by_model is empty")
    if corruptions is None:
        seen = []
        for table in results_by_model.values():
            for c in table:
                if c not in seen:
                    seen.append(c)
        known = [c for c in CORRUPTIONS_19 if c in seen]
        corruptions = known + [c for c in seen if c not in known]
    corruptions = list(corruptions)
    if not corruptions:
        raise ValueError("no corruptions to plot")
    for model, table in results_by_model.items():
        for c, errs in table.items():
            arr = np.asarray(errs, dtype=np.float64)
            if arr.ndim != 1 or arr.size == 0:
                raise ValueError(f"errors of model {model!r} for {c!r} must be a 1-D sequence "
                                 f"over severities, got shape {arr.shape}")
            if np.any(arr < 0) or np.any(arr > 1):
                raise ValueError(f"errors of model {model!r} for {c!r} must be fractions in [0, 1]")

    plt = _pyplot()
    ncols = max(1, min(ncols, len(corruptions)))
    nrows = math.ceil(len(corruptions) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.5 * nrows + 0.9),
                             sharex=True, sharey=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^vP*Xh"
    handles, labels = [], []
    for i, c in enumerate(corruptions):
        ax = axes[i // ncols][i % ncols]
        for m, (model, table) in enumerate(results_by_model.items()):
            color = colors[m % len(colors)]
            if c in table:
                errs = 100.0 * np.asarray(table[c], dtype=np.float64)
                (line,) = ax.plot(np.arange(1, errs.size + 1), errs, marker=markers[m % len(markers)],
                                  markersize=4, linewidth=1.6, color=color, label=model)
                if model not in labels:
                    handles.append(line)
                    labels.append(model)
            if clean_errors and model in clean_errors:
                ax.axhline(100.0 * clean_errors[model], color=color, linestyle="--", linewidth=0.9,
                           alpha=0.7)
        ax.set_title(_pretty(c), fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(0, 100)
        ax.set_xticks(range(1, 6))
        if i % ncols == 0:
            ax.set_ylabel("top-1 error (%)")
        if i // ncols == nrows - 1 or i + ncols >= len(corruptions):
            ax.set_xlabel("severity")
            ax.tick_params(labelbottom=True)
    for j in range(len(corruptions), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    legend_title = "dashed: clean error" if clean_errors else None
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), frameon=False,
               bbox_to_anchor=(0.5, 1.0), title=legend_title, fontsize=9,
               title_fontsize=8)
    height = fig.get_figheight()
    if title:
        fig.suptitle(title, y=1.0 - 0.05 / height, va="top", fontsize=12)
        fig.legends[0].set_bbox_to_anchor((0.5, 1.0 - 0.3 / height))
        top = 1.0 - (0.8 if clean_errors else 0.65) / height
    else:
        top = 1.0 - (0.55 if clean_errors else 0.4) / height
    fig.tight_layout(rect=(0, 0, 1, top))
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)


def plot_confusion_matrix(cm, class_names: Sequence[str] | None, path, normalize: bool = True,
                          title: str | None = None, max_labels: int = 40,
                          annotate_max: int = 15, dpi: int = 110) -> str:
    """Writes a PNG of a confusion matrix (rows: true class, columns: predicted class).

    Args:
      cm: ``[K, K]`` counts.
      class_names: ``K`` names (or None). Tick labels are drawn for ``K <= max_labels``.
      path: output ``.png`` path.
      normalize: show each row as fractions of its true class (empty rows stay 0).
      annotate_max: write the value into each cell when ``K <= annotate_max``.
    Returns the path written.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"cm must be a square [K, K] matrix, got shape {cm.shape}")
    k = cm.shape[0]
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"got {len(class_names)} class names for a {k}x{k} confusion matrix")
    if np.any(cm < 0):
        raise ValueError("confusion matrix counts must be non-negative")
    values = cm.astype(np.float64)
    if normalize:
        rows = values.sum(axis=1, keepdims=True)
        values = np.divide(values, rows, out=np.zeros_like(values), where=rows > 0)
    plt = _pyplot()
    side = min(max(4.5, 0.32 * k + 2.5), 16.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1.0 if normalize else None,
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="fraction of true class" if normalize else "count")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if class_names is not None and k <= max_labels:
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels(class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticklabels(class_names, fontsize=8)
    if k <= annotate_max:
        threshold = values.max() / 2.0 if values.max() > 0 else 0.5
        for r in range(k):
            for c in range(k):
                text = f"{values[r, c]:.2f}" if normalize else f"{int(cm[r, c])}"
                ax.text(c, r, text, ha="center", va="center", fontsize=7,
                        color="white" if values[r, c] > threshold else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)
