"""Classification metrics for evaluation (plain NumPy, streaming).

``python -m official.evaluate`` feeds every batch of logits to :class:`ClassificationMetrics`
and reads top-1 / top-5 accuracy, the expected calibration error and the confusion matrix
at the end, without keeping all logits in memory.

Definitions:

* top-k accuracy: fraction of examples whose label is among the ``k`` largest logits.
  Ties are broken like ``np.argsort`` (stable, lower index first among equal values after
  negation), which matters only for exactly equal logits.
* ECE (Guo et al., 2017, "On Calibration of Modern Neural Networks"), the measure the paper
  reports in its Table 5: confidences ``max softmax(logits)`` are put into ``num_bins``
  equal-width bins over ``[0, 1]`` (bin ``i`` holds ``(i/M, (i+1)/M]``, a confidence of 0
  goes into the first bin), and ``ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``.
  The paper's code (clovaai/assembled-cnn ``metric/ece_metric.py``) computes the same
  10-bin quantity from TF streaming counters; here it is computed in float64 NumPy, so
  results agree up to float32 rounding of the paper's counters.
* confusion matrix: ``cm[true, predicted]`` counts (rows are the true classes).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

__all__ = [
    "softmax",
    "topk_correct",
    "topk_accuracy",
    "expected_calibration_error",
    "calibration_bins",
    "confusion_matrix",
    "ClassificationMetrics",
]


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(x)
    return e / np.sum(e, axis=axis, keepdims=True)


def _check(scores: np.ndarray, labels: np.ndarray):
    scores = np.asarray(scores)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if scores.ndim != 2:
        raise ValueError(f"expected scores of shape [N, K], got {scores.shape}")
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"{scores.shape[0]} score rows but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must lie in [0, {scores.shape[1]}), got "
                         f"[{labels.min()}, {labels.max()}]")
    return scores, labels


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``[N]``: is the label among the ``k`` highest scores (logits or probabilities)."""
    scores, labels = _check(scores, labels)
    k = min(int(k), scores.shape[1])
    if k < 1:
        raise ValueError("k must be >= 1")
    # A label is in the top k iff fewer than k classes score strictly higher, with equal
    # scores at lower indices counted as higher (the stable argsort order).
    true = scores[np.arange(scores.shape[0]), labels][:, None]
    idx = np.arange(scores.shape[1])[None, :]
    higher = (scores > true) | ((scores == true) & (idx < labels[:, None]))
    return higher.sum(axis=1) < k


def topk_counts(logits, labels, ks: Sequence[int] = (1, 5)):
    """``keras.ops`` form of :func:`topk_correct` for use inside a compiled step (the trainer's
    evaluation on both backends): ``[count of labels in the top k for k in ks] + [batch size]``
    as float32 scalars, with the same tie rule (equal scores at lower indices count as higher).
    No label range check (it runs on device)."""
    from keras import ops  # keras is a core dependency; kept out of the NumPy-only functions' import
    logits = ops.cast(logits, "float32")
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    num_classes = int(logits.shape[-1])
    true = ops.take_along_axis(logits, labels[:, None], axis=1)
    idx = ops.arange(num_classes, dtype="int32")[None, :]
    higher = ops.logical_or(ops.greater(logits, true),
                            ops.logical_and(ops.equal(logits, true), ops.less(idx, labels[:, None])))
    rank = ops.sum(ops.cast(higher, "int32"), axis=1)
    counts = [ops.sum(ops.cast(ops.less(rank, min(int(k), num_classes)), "float32")) for k in ks]
    return counts + [ops.cast(ops.shape(labels)[0], "float32")]


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    correct = topk_correct(scores, labels, k)
    return float(correct.mean()) if correct.size else float("nan")


def calibration_bins(probabilities: np.ndarray, labels: np.ndarray, num_bins: int = 10):
    """Per-bin ``(count, sum of confidences, number correct)`` arrays of length ``num_bins``."""
    probabilities, labels = _check(probabilities, labels)
    confidence = probabilities.max(axis=1).astype(np.float64)
    predicted = probabilities.argmax(axis=1)
    correct = (predicted == labels).astype(np.float64)
    # Bin i holds (i/M, (i+1)/M]; ceil(c*M)-1, with c == 0 put in bin 0.
    bins = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    count = np.bincount(bins, minlength=num_bins).astype(np.float64)
    conf_sum = np.bincount(bins, weights=confidence, minlength=num_bins)
    correct_sum = np.bincount(bins, weights=correct, minlength=num_bins)
    return count, conf_sum, correct_sum


def _ece_from_bins(count, conf_sum, correct_sum) -> float:
    n = count.sum()
    if n == 0:
        return float("nan")
    nonzero = count > 0
    gap = np.abs(correct_sum[nonzero] - conf_sum[nonzero])  # = |B| * |acc - conf|
    return float(gap.sum() / n)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               num_bins: int = 10) -> float:
    """ECE with ``num_bins`` equal-width confidence bins (probabilities, not logits)."""
    return _ece_from_bins(*calibration_bins(probabilities, labels, num_bins))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[true, predicted]`` as int64 ``[num_classes, num_classes]``."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    predictions = np.asarray(predictions).reshape(-1).astype(np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.shape[0]} labels but {predictions.shape[0]} predictions")
    for name, a in (("labels", labels), ("predictions", predictions)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes})")
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


class ClassificationMetrics:
    """Streaming top-k accuracy, ECE and confusion matrix over batches of logits.

    >>> m = ClassificationMetrics(num_classes=10)
    >>> m.update(logits, labels)          # any number of times
    >>> m.result()                        # {"top1": ..., "top5": ..., "ece": ..., ...}
    """

    def __init__(self, num_classes: int, top_k: Sequence[int] = (1, 5), num_bins: int = 10):
        self.num_classes = int(num_classes)
        self.top_k = tuple(int(k) for k in top_k)
        self.num_bins = int(num_bins)
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.correct = {k: 0 for k in self.top_k}
        self.nll_sum = 0.0
        self.bin_count = np.zeros(self.num_bins)
        self.bin_conf = np.zeros(self.num_bins)
        self.bin_correct = np.zeros(self.num_bins)
        self.cm = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, logits: np.ndarray, labels: np.ndarray) -> None:
        logits = np.asarray(logits, dtype=np.float64)
        logits, labels = _check(logits, labels)
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"logits have {logits.shape[1]} classes, expected {self.num_classes}")
        if labels.size == 0:
            return
        for k in self.top_k:
            self.correct[k] += int(topk_correct(logits, labels, k).sum())
        probs = softmax(logits)
        c, s, r = calibration_bins(probs, labels, self.num_bins)
        self.bin_count += c
        self.bin_conf += s
        self.bin_correct += r
        p_true = probs[np.arange(labels.size), labels]
        self.nll_sum += float(-np.log(np.maximum(p_true, 1e-300)).sum())
        self.cm += confusion_matrix(labels, probs.argmax(axis=1), self.num_classes)
        self.count += int(labels.size)

    def result(self) -> Dict[str, object]:
        n = self.count
        out: Dict[str, object] = {}
        for k in self.top_k:
            out[f"top{k}"] = self.correct[k] / n if n else float("nan")
        out["ece"] = _ece_from_bins(self.bin_count, self.bin_conf, self.bin_correct)
        out["nll"] = self.nll_sum / n if n else float("nan")
        out["num_examples"] = n
        out["calibration"] = {
            "num_bins": self.num_bins,
            "count": self.bin_count.astype(int).tolist(),
            "accuracy": _safe_div(self.bin_correct, self.bin_count),
            "confidence": _safe_div(self.bin_conf, self.bin_count),
        }
        return out

    def error_rate(self) -> float:
        """Top-1 error in [0, 1] (what the corruption benchmark reports)."""
        return 1.0 - self.correct[1] / self.count if self.count and 1 in self.correct else float("nan")


def _safe_div(a: np.ndarray, b: np.ndarray) -> list:
    out: list = []
    for x, y in zip(a, b):
        out.append(float(x / y) if y else None)
    return out


def per_class_accuracy(cm: np.ndarray) -> Optional[list]:
    """Recall of every class from a confusion matrix (``None`` for a class with no example)."""
    cm = np.asarray(cm)
    totals = cm.sum(axis=1)
    return [float(cm[i, i] / t) if t else None for i, t in enumerate(totals)]
