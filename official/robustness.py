"""Corruption and perturbation robustness metrics: mCE, relative mCE, mFR, mT5D.

Definitions follow Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations" (ICLR 2019), as used by Assemble-ResNet (Lee et al., 2020,
Table 5 / ``mce/eval_robustness.py`` of clovaai/assembled-cnn):

* corruption error  ``CE_c = sum_s E_{s,c}(f) / sum_s E_{s,c}(baseline)``
* mean corruption error ``mCE = mean_c CE_c``
* relative ``rCE_c = sum_s (E_{s,c}(f) - E_clean(f)) / sum_s (E_{s,c}(base) - E_clean(base))``
* unnormalized mean error ``mean_c mean_s E_{s,c}(f)``
* effective robustness (Taori et al., "Measuring Robustness to Natural Distribution Shifts in
  Image Classification", NeurIPS 2020): a model's accuracy under shift minus what a linear fit
  in logit space through a family of baseline models predicts at its clean accuracy
  (:func:`effective_robustness_fit`, :func:`effective_robustness_line`,
  :func:`effective_robustness`); here the shift is the
  corrupted set, accuracy ``1 - mean error``;
* flip probability (ImageNet-P) ``FP_p = 1/(m(n-1)) sum_i sum_{j=2..n} 1[f(x_j^i) != f(x_{j-1}^i)]``,
  with ``x_{j-1}`` replaced by the clean first frame ``x_1`` for noise perturbations;
  ``FR_p = FP_p(f) / FP_p(AlexNet)``, ``mFR = mean_p FR_p``; the top-5 distance ``T5D``
  likewise (``mT5D``).

Conventions: error rates are *fractions* in [0, 1] (a value above 1 raises, because it is
almost certainly a percentage); the normalized figures (CE, mCE, rCE, relative mCE, FR, mFR)
and the unnormalized mean error are returned in *percent* (AlexNet = 100), as in the papers.
Per-corruption errors are given as ``{corruption: [E_1, ..., E_5]}`` (severities 1..5).

Baselines. ``baseline="alexnet"`` uses AlexNet's published ImageNet-C errors:

* per-severity errors of the 15 benchmark corruptions: ``ALEXNET_ERRORS`` (AlexNet as
  evaluated by Hendrycks & Dietterich; the per-corruption means are exactly the averages that
  hendrycks/robustness publishes and that e.g. google-research/augmix ``imagenet.py`` and
  timm's ImageNet-C validation copy as ``ALEXNET_ERR`` / ``imagenetc_alexnet_error_rates_list``);
* the means of the 4 extra corruptions (speckle_noise, gaussian_blur, spatter, saturate) are
  only published as averages, to 4 digits, in ``ALEXNET_CE`` of assembled-cnn
  ``mce/eval_robustness.py``; a mean suffices because ``sum_s`` over 5 severities is 5x it;
* AlexNet's clean top-1 error ``ALEXNET_CLEAN_ERROR`` = 0.43478 (torchvision
  ``alexnet-owt-4df8aa71``, top-1 accuracy 56.522%, the weights Hendrycks evaluated; the
  ICLR paper's Table 1 rounds it to 43.5).

Any other baseline (for other data sets) is a dict ``{corruption: [5 errors] or mean error}``
plus, for the relative mCE, its clean error.

Deviation: the Assemble-ResNet script averages errors over *all* images of all severities of a
corruption (``correct / num_images``), which equals the mean over severities only when every
severity has the same number of images (true for ImageNet-C). Here the mean over severities is
used, as in Hendrycks' definition.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

# The corruption names are data.corruptions' (numpy only), re-exported here.
from data.corruptions import CORRUPTIONS_15, CORRUPTIONS_19

__all__ = [
    "CORRUPTIONS_15", "CORRUPTIONS_19", "ALEXNET_ERRORS", "ALEXNET_CE", "ALEXNET_CLEAN_ERROR",
    "PERTURBATIONS_10", "PERTURBATIONS_EXTRA", "NOISE_PERTURBATIONS", "ALEXNET_FP",
    "corruption_errors", "mce", "relative_corruption_errors", "relative_mce",
    "mean_corruption_error", "summarize_corruptions", "flip_probability", "top5_distance",
    "flip_rate", "mean_top5_distance", "format_summary", "effective_robustness_fit",
    "effective_robustness_line", "effective_robustness",
]


# AlexNet top-1 errors on ImageNet-C, severities 1..5 (Hendrycks & Dietterich 2019). Source:
# the per-severity AlexNet table distributed with hendrycks/robustness results and copied in
# timm's ImageNet-C validation utilities (imagenetc_alexnet_error_rates_list); each row's mean
# equals the published average (hendrycks/robustness ImageNet-C, e.g. gaussian_noise 0.886428).
ALEXNET_ERRORS = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
}

# AlexNet mean error per corruption over severities 1..5. The 15 benchmark values are the
# 6-digit averages of hendrycks/robustness (ImageNet-C/test.py prints them; copied as
# ALEXNET_ERR in google-research/augmix imagenet.py); the 4 extra ones are from ALEXNET_CE in
# clovaai/assembled-cnn mce/eval_robustness.py (4 digits, the only published source).
ALEXNET_CE = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948,
    "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572, "fog": 0.819324,
    "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500,
    "speckle_noise": 0.8454, "gaussian_blur": 0.7871, "spatter": 0.7175, "saturate": 0.6583,
}

# torchvision AlexNet (alexnet-owt-4df8aa71), top-1 accuracy 56.522% on ImageNet val.
ALEXNET_CLEAN_ERROR = 0.43478

# ImageNet-P (Hendrycks & Dietterich 2019): the 10 test perturbations and the 4 extra
# ("validation") ones.
PERTURBATIONS_10 = ("gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow",
                    "brightness", "translate", "rotate", "tilt", "scale")
PERTURBATIONS_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "shear")
NOISE_PERTURBATIONS = ("gaussian_noise", "shot_noise", "speckle_noise")

# AlexNet flip probabilities on ImageNet-P (difficulty 1), from ALEXNET_FP in
# clovaai/assembled-cnn mce/eval_robustness.py.
ALEXNET_FP = {
    "gaussian_noise": 0.23653, "shot_noise": 0.30062, "motion_blur": 0.09297,
    "zoom_blur": 0.05942, "spatter": 0.05053, "brightness": 0.04889,
    "translate": 0.11007, "rotate": 0.13104, "tilt": 0.07050, "scale": 0.23531,
    "speckle_noise": 0.18649, "gaussian_blur": 0.02775, "snow": 0.11928, "shear": 0.10658,
}

_NUM_SEVERITIES = 5


# --------------------------------------------------------------------------- helpers
def _severity_errors(name: str, values, *, what: str, num_severities: int | None) -> np.ndarray:
    """Validates one corruption's errors: a length-``num_severities`` vector in [0, 1]."""
    if isinstance(values, Mapping):
        keys = sorted(values)
        values = [values[k] for k in keys]
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        raise ValueError(f"{what} errors for {name!r} must be a sequence of per-severity errors, "
                         f"got the scalar {values!r}")
    if array.ndim != 1 or (num_severities is not None and array.shape[0] != num_severities):
        raise ValueError(f"{what} errors for {name!r} must have shape ({num_severities},) "
                         f"(severities 1..{num_severities}), got shape {array.shape}")
    _check_fraction(array, name, what)
    return array


def _check_fraction(array: np.ndarray, name: str, what: str) -> None:
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} errors for {name!r} contain NaN or inf: {array.tolist()}")
    if np.any(array < 0) or np.any(array > 1):
        raise ValueError(f"{what} errors for {name!r} must be fractions in [0, 1] (not percent), "
                         f"got {array.tolist()}")


def _baseline_sums(baseline, corruptions: Sequence[str], num_severities: int) -> dict:
    """``{corruption: sum over severities of the baseline error}``."""
    if isinstance(baseline, str):
        if baseline.lower() != "alexnet":
            raise ValueError(f"unknown baseline {baseline!r}: use 'alexnet' or a dict "
                             "{corruption: per-severity errors}")
        if num_severities != _NUM_SEVERITIES:
            raise ValueError("the AlexNet baseline is defined for 5 severities, got errors for "
                             f"{num_severities}")
        missing = [c for c in corruptions if c not in ALEXNET_CE]
        if missing:
            raise ValueError(f"no published AlexNet error for {missing}; pass a baseline dict")
        return {c: float(np.sum(ALEXNET_ERRORS[c])) if c in ALEXNET_ERRORS
                else _NUM_SEVERITIES * ALEXNET_CE[c] for c in corruptions}
    if not isinstance(baseline, Mapping):
        raise ValueError(f"baseline must be 'alexnet' or a dict, got {type(baseline).__name__}")
    sums = {}
    for c in corruptions:
        if c not in baseline:
            raise ValueError(f"baseline has no errors for corruption {c!r}")
        value = baseline[c]
        if np.ndim(value) == 0 and not isinstance(value, Mapping):
            mean = np.asarray([float(value)])
            _check_fraction(mean, c, "baseline")
            sums[c] = float(mean[0]) * num_severities
        else:
            sums[c] = float(np.sum(_severity_errors(c, value, what="baseline",
                                                    num_severities=num_severities)))
        if sums[c] <= 0:
            raise ValueError(f"baseline errors for {c!r} sum to 0; cannot normalize by them")
    return sums


def _prepare(errors: Mapping, corruptions: Iterable[str] | None):
    if not isinstance(errors, Mapping) or not errors:
        raise ValueError("errors must be a non-empty dict {corruption: per-severity errors}")
    if corruptions is None:
        corruptions = list(errors)
    else:
        corruptions = list(corruptions)
        missing = [c for c in corruptions if c not in errors]
        if missing:
            raise ValueError(f"errors are missing corruptions {missing}")
    if not corruptions:
        raise ValueError("no corruptions to average over")
    lengths = {c: np.shape(np.asarray(list(errors[c].values()) if isinstance(errors[c], Mapping)
                                      else errors[c], dtype=np.float64)) for c in corruptions}
    first = next(iter(lengths.values()))
    num_severities = first[0] if len(first) == 1 else None
    table = {c: _severity_errors(c, errors[c], what="model", num_severities=num_severities)
             for c in corruptions}
    return corruptions, table, len(next(iter(table.values())))


# --------------------------------------------------------------------------- mCE
def corruption_errors(errors: Mapping, baseline="alexnet",
                      corruptions: Iterable[str] | None = None) -> dict:
    """Per-corruption CE in percent: ``100 * sum_s E_{s,c} / sum_s E_{s,c}(baseline)``."""
    corruptions, table, n = _prepare(errors, corruptions)
    sums = _baseline_sums(baseline, corruptions, n)
    return {c: 100.0 * float(np.sum(table[c])) / sums[c] for c in corruptions}


def mce(errors: Mapping, baseline="alexnet", corruptions: Iterable[str] | None = None) -> float:
    """Mean corruption error in percent (AlexNet = 100).

    Args:
      errors: ``{corruption: [E_1, ..., E_5]}``, top-1 error fractions per severity.
      baseline: ``"alexnet"`` (published ImageNet-C errors; 15 + 4 extra corruptions) or a
        dict ``{corruption: per-severity errors or mean error}`` of any baseline model.
      corruptions: the corruptions to average over (default: all keys of ``errors``); use
        :data:`CORRUPTIONS_15` for the standard ImageNet-C mCE, :data:`CORRUPTIONS_19` for
        the figure over all 19.
    """
    ce = corruption_errors(errors, baseline, corruptions)
    return float(np.mean(list(ce.values())))


def relative_corruption_errors(errors: Mapping, clean_error: float, baseline="alexnet",
                               baseline_clean_error: float | None = None,
                               corruptions: Iterable[str] | None = None) -> dict:
    """Per-corruption relative CE in percent (Hendrycks & Dietterich, Sec. 3).

    ``100 * sum_s (E_{s,c} - E_clean) / sum_s (E_{s,c}(base) - E_clean(base))``; for
    ``baseline="alexnet"`` the baseline clean error defaults to :data:`ALEXNET_CLEAN_ERROR`.
    """
    corruptions, table, n = _prepare(errors, corruptions)
    _check_fraction(np.asarray([clean_error], dtype=np.float64), "clean", "model")
    if baseline_clean_error is None:
        if isinstance(baseline, str):
            baseline_clean_error = ALEXNET_CLEAN_ERROR
        else:
            raise ValueError("relative mCE with a custom baseline needs baseline_clean_error")
    _check_fraction(np.asarray([baseline_clean_error], dtype=np.float64), "clean", "baseline")
    sums = _baseline_sums(baseline, corruptions, n)
    out = {}
    for c in corruptions:
        denominator = sums[c] - n * baseline_clean_error
        if denominator <= 0:
            raise ValueError(f"baseline errors for {c!r} are not above its clean error; the "
                             "relative CE is undefined")
        out[c] = 100.0 * (float(np.sum(table[c])) - n * clean_error) / denominator
    return out


def relative_mce(errors: Mapping, clean_error: float, baseline="alexnet",
                 baseline_clean_error: float | None = None,
                 corruptions: Iterable[str] | None = None) -> float:
    """Relative mCE in percent: mean over corruptions of :func:`relative_corruption_errors`."""
    rce = relative_corruption_errors(errors, clean_error, baseline, baseline_clean_error,
                                     corruptions)
    return float(np.mean(list(rce.values())))


def mean_corruption_error(errors: Mapping, corruptions: Iterable[str] | None = None) -> float:
    """Unnormalized mean error in percent over corruptions and severities."""
    corruptions, table, _ = _prepare(errors, corruptions)
    return 100.0 * float(np.mean([np.mean(table[c]) for c in corruptions]))


def summarize_corruptions(errors: Mapping, clean_error: float | None = None,
                          baseline="alexnet", baseline_clean_error: float | None = None) -> dict:
    """All corruption figures, labelled, for the 15 standard and the 19 corruptions.

    Returns a dict with ``"per_corruption"`` (``{c: {"errors", "mean_error", "ce",
    "relative_ce"}}``, percent) and, for each of ``"15"`` and ``"19"`` whose corruptions are
    all present in ``errors``, ``{"mCE", "relative_mCE" (if clean_error given),
    "mean_error"}``. With a custom baseline, corruptions it lacks get no CE and the sets
    that need them are skipped. Keys ``"mCE-15"``, ``"mCE-19"``, ... repeat the headline
    numbers flat, and ``"all"`` covers every corruption given (e.g. for other data sets).
    """
    corruptions, table, n = _prepare(errors, None)
    if isinstance(baseline, str):
        normalizable = [c for c in corruptions if c in ALEXNET_CE]
    else:
        normalizable = [c for c in corruptions if c in baseline]
    ce = corruption_errors(errors, baseline, normalizable) if normalizable else {}
    rce = {}
    if clean_error is not None and normalizable:
        rce = relative_corruption_errors(errors, clean_error, baseline, baseline_clean_error,
                                         normalizable)
    result = {"per_corruption": {}, "clean_error": None if clean_error is None
              else 100.0 * float(clean_error)}
    for c in corruptions:
        result["per_corruption"][c] = {
            "errors": [100.0 * float(e) for e in table[c]],
            "mean_error": 100.0 * float(np.mean(table[c])),
            "ce": ce.get(c), "relative_ce": rce.get(c)}
    sets = {"15": CORRUPTIONS_15, "19": CORRUPTIONS_19}
    if not all(c in CORRUPTIONS_19 for c in corruptions):
        sets["all"] = tuple(corruptions)
    for label, names in sets.items():
        if not all(c in table for c in names):
            continue
        entry = {"corruptions": list(names),
                 "mean_error": 100.0 * float(np.mean([np.mean(table[c]) for c in names]))}
        if all(c in ce for c in names):
            entry["mCE"] = float(np.mean([ce[c] for c in names]))
            if rce:
                entry["relative_mCE"] = float(np.mean([rce[c] for c in names]))
        result[label] = entry
        for key in ("mCE", "relative_mCE", "mean_error"):
            if key in entry:
                result[f"{key}-{label}"] = entry[key]
    return result


def _open_fractions(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0 or not np.all(np.isfinite(array)) or np.any(array <= 0) or np.any(array >= 1):
        raise ValueError(f"{what}: accuracies must be fractions strictly between 0 and 1, got "
                         f"{array.tolist()}")
    return array


def _logit_fractions(values, what: str) -> np.ndarray:
    array = _open_fractions(values, what)
    return np.log(array / (1.0 - array))


def effective_robustness_fit(clean_accuracy, shifted_accuracy) -> tuple:
    """Least-squares line ``logit(shifted) = a * logit(clean) + b`` through baseline models.

    ``clean_accuracy`` and ``shifted_accuracy`` are the baseline family's accuracies
    (fractions), one pair per model: in Taori et al. (2020) many ImageNet models; in this
    project's Imagewoof ablation the baseline row's runs at several schedules and seeds, so
    that the line says how E0's robustness grows with its clean accuracy. Returns ``(a, b)``.
    """
    x = _logit_fractions(clean_accuracy, "baseline clean accuracy")
    y = _logit_fractions(shifted_accuracy, "baseline shifted accuracy")
    if x.shape != y.shape:
        raise ValueError(f"effective robustness fit: {x.size} clean accuracies against "
                         f"{y.size} shifted ones; give one pair per baseline model")
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("effective robustness fit: needs at least 2 baseline models with "
                         f"different clean accuracies, got {np.exp(x) / (1 + np.exp(x))}")
    a, b = np.polyfit(x, y, 1)
    return float(a), float(b)


def effective_robustness_line(clean_accuracy, fit) -> np.ndarray:
    """The baseline line's shifted accuracy (fraction) at each clean accuracy: ``sigmoid(a *
    logit(clean) + b)`` with ``fit = (a, b)`` from :func:`effective_robustness_fit`."""
    a, b = fit
    x = _logit_fractions(clean_accuracy, "clean accuracy")
    return 1.0 / (1.0 + np.exp(-(a * x + b)))


def effective_robustness(clean_accuracy, shifted_accuracy, fit) -> np.ndarray | float:
    """Shifted accuracy minus the baseline line's prediction at the same clean accuracy, in
    percentage points (positive: more robust than the baseline family at equal clean accuracy).

    ``fit`` is ``(a, b)`` from :func:`effective_robustness_fit`. Scalars give a float, arrays an
    array. A clean accuracy outside the baseline's range extrapolates the line; say so when
    reporting it.
    """
    predicted = effective_robustness_line(clean_accuracy, fit)
    shifted = _open_fractions(shifted_accuracy, "shifted accuracy")
    if shifted.shape != predicted.shape:
        raise ValueError(f"effective robustness: {predicted.size} clean accuracies against "
                         f"{shifted.size} shifted ones")
    result = 100.0 * (shifted - predicted)
    return float(result[0]) if np.ndim(clean_accuracy) == 0 else result


def format_summary(summary: Mapping) -> str:
    """A plain-text table of :func:`summarize_corruptions` output (for logs and reports)."""
    lines = [f"{'corruption':<18} {'s1':>6} {'s2':>6} {'s3':>6} {'s4':>6} {'s5':>6} "
             f"{'mean':>6} {'CE':>6} {'rCE':>6}"]
    for c, row in summary["per_corruption"].items():
        errs = " ".join(f"{e:6.2f}" for e in row["errors"])
        ce = "" if row["ce"] is None else f"{row['ce']:6.2f}"
        rce = "" if row["relative_ce"] is None else f"{row['relative_ce']:6.2f}"
        lines.append(f"{c:<18} {errs} {row['mean_error']:6.2f} {ce:>6} {rce:>6}")
    for label in ("15", "19", "all"):
        if label in summary:
            entry = summary[label]
            parts = [f"{len(entry['corruptions'])} corruptions:"]
            if "mCE" in entry:
                parts.append(f"mCE {entry['mCE']:.2f}")
            if "relative_mCE" in entry:
                parts.append(f"relative mCE {entry['relative_mCE']:.2f}")
            parts.append(f"mean error {entry['mean_error']:.2f}")
            lines.append(" | ".join(parts))
    return "\n".join(lines)


# --------------------------------------------------------------------------- ImageNet-P
def _sequences(predictions) -> list:
    if isinstance(predictions, np.ndarray):
        if predictions.ndim != 2:
            raise ValueError("predictions must have shape [num_sequences, num_frames], got "
                             f"{predictions.shape}")
        return list(predictions)
    seqs = [np.asarray(p) for p in predictions]
    if not seqs:
        raise ValueError("predictions are empty")
    for i, s in enumerate(seqs):
        if s.ndim != 1:
            raise ValueError(f"sequence {i} must be 1-D (one prediction per frame), got {s.shape}")
    return seqs


def _pairs(num_frames: int, noise: bool, difficulty: int):
    """Frame index pairs compared by Hendrycks' ``flip_prob`` / ``ranking_dist``."""
    step = 1 if noise else difficulty
    pairs = []
    for start in range(step):
        frames = list(range(start, num_frames, step))
        if noise:
            pairs += [(frames[0], j) for j in frames[1:]]
        else:
            pairs += list(zip(frames[:-1], frames[1:]))
    return pairs


def _check_difficulty(difficulty) -> int:
    if isinstance(difficulty, bool) or int(difficulty) != difficulty or int(difficulty) < 1:
        raise ValueError(f"difficulty must be a positive integer, got {difficulty!r}")
    return int(difficulty)


def flip_probability(predictions, noise: bool, difficulty: int = 1) -> float:
    """ImageNet-P flip probability of one perturbation, as a fraction.

    Args:
      predictions: top-1 class per frame, ``[num_sequences, num_frames]`` (or a list of 1-D
        arrays of possibly different lengths).
      noise: True for noise perturbations (frames independent): every frame is compared with
        the *first* (clean) frame. False for the temporally related ones: consecutive frames
        are compared, with stride ``difficulty`` (ImageNet-P difficulty 1..3 uses every
        ``difficulty``-th frame, starting from each of the first ``difficulty`` frames).

    Each sequence's flip frequency is averaged first, then the mean is taken over sequences
    (exactly ``flip_prob`` in hendrycks/robustness ``ImageNet-P/test.py``).
    """
    difficulty = _check_difficulty(difficulty)
    per_sequence = []
    for seq in _sequences(predictions):
        pairs = _pairs(len(seq), noise, difficulty)
        if not pairs:
            raise ValueError(f"a sequence of {len(seq)} frames has no frame pairs at "
                             f"difficulty {difficulty}")
        per_sequence.append(np.mean([seq[a] != seq[b] for a, b in pairs]))
    return float(np.mean(per_sequence))


def _top5_pair_distance(order_a: np.ndarray, rank_b: np.ndarray) -> float:
    # sigma_j = rank under frame b (1-based) of the j-th ranked class of frame a; the ImageNet-P
    # top-5 distance counts how far each of a's top-5 moved, capped at "out of the top 5".
    k = min(5, order_a.shape[0])
    sigma = rank_b[order_a[:k]]
    return float(np.sum(np.abs(np.arange(k) - np.minimum(sigma - 1, 5))))


def top5_distance(logits, noise: bool, difficulty: int = 1) -> float:
    """ImageNet-P top-5 distance (T5D) of one perturbation.

    Args:
      logits: scores ``[num_sequences, num_frames, num_classes]`` (or a list of
        ``[num_frames, num_classes]`` arrays). Classes are ranked by descending score, ties
        broken by class index (``scipy.stats.rankdata(-x, method="ordinal")``).
      noise, difficulty: as in :func:`flip_probability`.

    Same as ``ranking_dist(mode="top5")`` in hendrycks/robustness ``ImageNet-P/test.py``.
    """
    difficulty = _check_difficulty(difficulty)
    if isinstance(logits, np.ndarray):
        if logits.ndim != 3:
            raise ValueError("logits must have shape [num_sequences, num_frames, num_classes], "
                             f"got {logits.shape}")
        logits = list(logits)
    per_sequence = []
    for i, seq in enumerate(logits):
        seq = np.asarray(seq, dtype=np.float64)
        if seq.ndim != 2:
            raise ValueError(f"sequence {i} must be [num_frames, num_classes], got {seq.shape}")
        orders = np.argsort(-seq, axis=1, kind="stable")
        ranks = np.empty_like(orders)
        rows = np.arange(seq.shape[0])[:, None]
        ranks[rows, orders] = np.arange(1, seq.shape[1] + 1)[None, :]
        pairs = _pairs(seq.shape[0], noise, difficulty)
        if not pairs:
            raise ValueError(f"a sequence of {seq.shape[0]} frames has no frame pairs")
        per_sequence.append(np.mean([_top5_pair_distance(orders[a], ranks[b]) for a, b in pairs]))
    return float(np.mean(per_sequence))


def flip_rate(predictions: Mapping, baseline="alexnet", perturbations: Iterable[str] | None = None,
              difficulty: int = 1, noise_perturbations: Iterable[str] = NOISE_PERTURBATIONS) -> dict:
    """Flip probabilities, flip rates and mFR over several perturbations.

    Args:
      predictions: ``{perturbation: top-1 predictions [num_sequences, num_frames]}``.
      baseline: ``"alexnet"`` (:data:`ALEXNET_FP`, difficulty 1 only) or a dict
        ``{perturbation: baseline flip probability}``.
      perturbations: which to average (default: all keys of ``predictions``); use
        :data:`PERTURBATIONS_10` for the standard ImageNet-P mFR.
      difficulty: the ImageNet-P difficulty (frame stride for non-noise perturbations).
      noise_perturbations: names compared against the clean first frame.

    Returns ``{"flip_probability": {p: FP (fraction)}, "flip_rate": {p: FR (percent)},
    "mFR": percent}``.
    """
    if not isinstance(predictions, Mapping) or not predictions:
        raise ValueError("predictions must be a non-empty dict {perturbation: predictions}")
    perturbations = list(predictions) if perturbations is None else list(perturbations)
    missing = [p for p in perturbations if p not in predictions]
    if missing:
        raise ValueError(f"predictions are missing perturbations {missing}")
    if isinstance(baseline, str):
        if baseline.lower() != "alexnet":
            raise ValueError(f"unknown baseline {baseline!r}: use 'alexnet' or a dict")
        if difficulty != 1:
            raise ValueError("the published AlexNet flip probabilities are for difficulty 1; "
                             "pass a baseline dict for other difficulties")
        baseline = ALEXNET_FP
    noise_set = set(noise_perturbations)
    fp, fr = {}, {}
    for p in perturbations:
        if p not in baseline:
            raise ValueError(f"baseline has no flip probability for perturbation {p!r}")
        base = float(baseline[p])
        if not (base > 0 and math.isfinite(base)):
            raise ValueError(f"baseline flip probability for {p!r} must be > 0, got {base}")
        fp[p] = flip_probability(predictions[p], noise=p in noise_set, difficulty=difficulty)
        fr[p] = 100.0 * fp[p] / base
    return {"flip_probability": fp, "flip_rate": fr, "mFR": float(np.mean(list(fr.values())))}


def mean_top5_distance(logits: Mapping, baseline: Mapping, perturbations: Iterable[str] | None = None,
                       difficulty: int = 1,
                       noise_perturbations: Iterable[str] = NOISE_PERTURBATIONS) -> dict:
    """T5D per perturbation, normalized by a baseline model's T5D (percent), and mT5D.

    No published AlexNet T5D table was found, so the baseline must be given as a dict
    ``{perturbation: baseline T5D}`` (e.g. from :func:`top5_distance` on a reference model).
    """
    perturbations = list(logits) if perturbations is None else list(perturbations)
    noise_set = set(noise_perturbations)
    t5d, rel = {}, {}
    for p in perturbations:
        if p not in logits:
            raise ValueError(f"logits are missing perturbation {p!r}")
        if p not in baseline or not float(baseline[p]) > 0:
            raise ValueError(f"baseline needs a positive T5D for perturbation {p!r}")
        t5d[p] = top5_distance(logits[p], noise=p in noise_set, difficulty=difficulty)
        rel[p] = 100.0 * t5d[p] / float(baseline[p])
    return {"top5_distance": t5d, "normalized_top5_distance": rel,
            "mT5D": float(np.mean(list(rel.values())))}
