"""Batch mixing (mixup, CutMix) with label smoothing and teacher-logit mixing, ``keras.ops`` only.

Runs inside the training step on the accelerator under the TensorFlow, JAX and PyTorch
backends (no ``tf.*`` here).

References
----------
* H. Zhang, M. Cisse, Y. N. Dauphin, D. Lopez-Paz. "mixup: Beyond Empirical Risk
  Minimization", ICLR 2018, arXiv:1710.09412.
* S. Yun, D. Han, S. J. Oh, S. Chun, J. Choe, Y. Yoo. "CutMix: Regularization Strategy to
  Train Strong Classifiers with Localizable Features", ICCV 2019, arXiv:1905.04899 (box
  sampling and the area-corrected lambda follow its official ``train.py``/``rand_bbox``).
* C. Szegedy et al. "Rethinking the Inception Architecture", CVPR 2016 (label smoothing).
* J. Lee, T. Won, T. K. Lee, H. Lee, G. Gu, K. Hong. "Compounding the Performance
  Improvements of Assembled Techniques in a Convolutional Neural Network", 2020,
  arXiv:2001.06268, and its code clovaai/assembled-cnn: ``regularization/mixup.py``
  (mix a batch with its reverse) and ``utils/data_util.py::mixup`` (used by
  ``nets/run_loop_classification.py``: ``mixup_type=1`` mixes the first half of a double
  batch with the second half; ``mixup_type=2`` also appends the first half mixed with the
  *reversed* second half).

The two forms (``form=``)
-------------------------
* ``"reverse"``: sample ``i`` of a batch of ``B`` is mixed with sample ``B - 1 - i``
  (``images[::-1]``); output size ``B``.
* ``"double_batch"``: the input holds ``2B`` samples; sample ``i`` of the first half is mixed
  with sample ``B + i`` of the second half; output size ``B`` (``mixup_type=1``). Every
  output image then comes from two distinct input images, at the cost of decoding twice as
  many images per step.

Coefficients
------------
``lam`` (shape ``[B]``) is the weight of the *first* image: ``x = lam x_a + (1 - lam) x_b``,
``y = lam y_a + (1 - lam) y_b``, and the teacher logits are mixed with the very same
``lam``. mixup: ``lam ~ Beta(alpha, alpha)`` per sample (``per_sample=True``, as the paper's
code) or one value per batch (as the mixup paper's code). CutMix: ``lam ~ Beta(alpha,
alpha)`` (``alpha=1``: uniform, as in the CutMix paper), a box of side ratio
``sqrt(1 - lam)`` centred uniformly in the image and clipped to it is pasted from ``x_b``,
and ``lam`` is then corrected to ``1 - box_area / image_area`` (the CutMix code). Pass
``lam=`` to fix the coefficients (tests, or a caller that samples them itself).

Label smoothing (``label_smoothing=eps``): the one-hot targets are smoothed first,
``(1 - eps) onehot + eps / K``, then mixed. Because mixing is affine with weights summing to
one, this equals mixing the one-hots first and smoothing afterwards (tested).

Deviations from the paper's code, and a bug not copied
------------------------------------------------------
* ``utils/data_util.py::mixup`` with ``keep_batch_size=True`` (``mixup_type=2``) builds the
  teacher targets of its second half as ``lam2 * y1 + (1 - lam2) * y3_t`` -- it mixes the
  *ground-truth one-hot* ``y1`` with the reversed teacher targets instead of the teacher
  targets ``y1_t``. Here teacher logits are always mixed exactly like the labels.
* ``regularization/mixup.py`` replaces ``lam`` by ``max(lam, 1 - lam)``; that changes which
  image dominates but not the distribution of mixtures (Beta(a, a) is symmetric). Not done
  here: ``lam`` is the raw Beta sample, as in ``utils/data_util.py`` and the mixup paper.
* The paper's code mixes teacher *probabilities* ``softmax(t / T)``. Mixing logits linearly
  is not the same, so pass ``teacher_temperature=T``: then the returned "logits" are
  ``T * log(lam softmax(t_a / T) + (1 - lam) softmax(t_b / T))``, whose ``softmax(. / T)``
  is exactly the mixed teacher distribution of the paper. With ``teacher_temperature=None``
  the logits are mixed linearly (an approximation; documented in docs/AUGMENTATION.md).
* The ``mixup_type=2`` variant (2B in, 2B out, the second half mixed with the reversed
  second half) is not offered; ``"reverse"`` is the paper's other form.
"""
from __future__ import annotations

import numbers

import keras
from keras import ops

METHODS = ("mixup", "cutmix", "none")
FORMS = ("reverse", "double_batch")


class _Seeds:
    """Hands out independent seeds from an int, a ``keras.random.SeedGenerator`` or None."""

    def __init__(self, seed):
        if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
            seed = int(seed)
        elif seed is not None and not isinstance(seed, keras.random.SeedGenerator):
            raise TypeError("seed must be None, an int or a keras.random.SeedGenerator, "
                            f"got {type(seed).__name__}")
        self._seed = seed
        self._count = 0

    def next(self):
        if isinstance(self._seed, int):
            # keras.random's TF backend derives [s + 12, 12] inside beta(); a stride of 1000
            # keeps our streams from colliding with those.
            self._count += 1
            return self._seed * 1000 + self._count
        return self._seed  # SeedGenerator (advances on every draw) or None (global)


def smooth_labels(labels, num_classes, label_smoothing=0.0, dtype="float32"):
    """Integer ``[N]`` or one-hot / soft ``[N, K]`` labels -> smoothed float targets ``[N, K]``."""
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) == 1:
        targets = ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype=dtype)
    elif len(labels.shape) == 2:
        targets = ops.cast(labels, dtype)
    else:
        raise ValueError(f"labels must be [N] integers or [N, K] targets, got shape {labels.shape}")
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
    return targets


def _mix(a, b, lam):
    """``lam * a + (1 - lam) * b`` with ``lam`` ([B]) broadcast over the trailing axes."""
    lam = ops.reshape(ops.cast(lam, a.dtype), (-1,) + (1,) * (len(a.shape) - 1))
    return b + lam * (a - b)


def _partners(x, form):
    """Returns ``(first, second)`` halves to be mixed for the chosen form."""
    if form == "reverse":
        return x, ops.flip(x, axis=0)
    n = x.shape[0]
    if n is not None and n % 2:
        raise ValueError(f"form='double_batch' needs an even batch size, got {n}")
    half = ops.shape(x)[0] // 2
    return x[:half], x[half:]


def _cutmix_masks(height, width, lam, seeds):
    """Boxes as in the CutMix code (``rand_bbox``); returns (mask [B, H, W, 1], area-lam [B])."""
    batch = ops.shape(lam)[0]
    ratio = ops.sqrt(1.0 - lam)
    cut_h = ops.floor(height * ratio)
    cut_w = ops.floor(width * ratio)
    centre = keras.random.uniform((2, batch), 0.0, 1.0, seed=seeds.next())
    cy = ops.floor(centre[0] * height)
    cx = ops.floor(centre[1] * width)
    y1 = ops.clip(cy - ops.floor(cut_h / 2.0), 0.0, height)
    y2 = ops.clip(cy + ops.floor(cut_h / 2.0), 0.0, height)
    x1 = ops.clip(cx - ops.floor(cut_w / 2.0), 0.0, width)
    x2 = ops.clip(cx + ops.floor(cut_w / 2.0), 0.0, width)
    return _box_masks(height, width, y1, y2, x1, x2)


def _box_masks(height, width, y1, y2, x1, x2):
    rows = ops.arange(height, dtype="float32")[None, :]
    cols = ops.arange(width, dtype="float32")[None, :]
    in_rows = ops.cast(ops.logical_and(rows >= y1[:, None], rows < y2[:, None]), "float32")
    in_cols = ops.cast(ops.logical_and(cols >= x1[:, None], cols < x2[:, None]), "float32")
    mask = in_rows[:, :, None, None] * in_cols[:, None, :, None]  # [B, H, W, 1]
    area = (y2 - y1) * (x2 - x1)
    lam = 1.0 - area / float(height * width)
    return mask, lam


def mix_batch(images, labels, *, num_classes, method="mixup", alpha=0.2, per_sample=True,
              form="reverse", label_smoothing=0.0, teacher_logits=None, seed=None,
              lam=None, cutmix_box=None, teacher_temperature=None):
    """Mixes a batch; returns ``(images, soft_targets, mixed_teacher_logits_or_None)``.

    Args:
      images: float ``[N, H, W, C]`` (NHWC).
      labels: int ``[N]`` or one-hot / soft ``[N, K]``.
      num_classes: K.
      method: ``"mixup"``, ``"cutmix"`` or ``"none"`` (no mixing; ``form`` is ignored and
        the batch size is kept; targets are still smoothed).
      alpha: Beta(alpha, alpha) parameter (paper: 0.2 for mixup; CutMix paper: 1.0).
      per_sample: one coefficient (and one CutMix box) per output sample, else one per batch.
      form: ``"reverse"`` (B -> B) or ``"double_batch"`` (2B -> B), see the module docstring.
      label_smoothing: epsilon; targets ``(1 - eps) onehot + eps / K`` are mixed.
      teacher_logits: optional float ``[N, K]``, mixed with the same coefficients.
      seed: int, ``keras.random.SeedGenerator`` or None (global generator).
      lam: optional fixed coefficients, scalar or ``[B]`` (for mixup: used as given; for
        CutMix: used to size the box, then area-corrected as usual).
      cutmix_box: optional fixed box ``(y1, y2, x1, x2)`` in pixels (scalars or ``[B]``) for
        CutMix; overrides the random box (tests).
      teacher_temperature: if set, teacher distributions ``softmax(t / T)`` are mixed and
        returned as logits ``T * log(mixed)`` (see module docstring); else logits are mixed
        linearly.

    Returns:
      ``(mixed_images, soft_targets [B, K] float32, mixed_teacher_logits [B, K] or None)``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if not 0.0 <= float(label_smoothing) < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    images = ops.convert_to_tensor(images)
    targets = smooth_labels(labels, num_classes, label_smoothing)
    teacher = None if teacher_logits is None else ops.cast(
        ops.convert_to_tensor(teacher_logits), "float32")
    if method == "none":
        return images, targets, teacher
    if alpha is None or float(alpha) <= 0.0:
        raise ValueError(f"alpha must be > 0 for method={method!r}, got {alpha}")

    seeds = _Seeds(seed)
    img_a, img_b = _partners(images, form)
    tgt_a, tgt_b = _partners(targets, form)
    batch = ops.shape(img_a)[0]

    if lam is None:
        n = batch if per_sample else 1
        lam_v = keras.random.beta((n,), float(alpha), float(alpha), dtype="float32",
                                  seed=seeds.next())
        if not per_sample:
            lam_v = ops.broadcast_to(lam_v, (batch,))
    else:
        lam_v = ops.broadcast_to(ops.cast(ops.convert_to_tensor(lam), "float32"), (batch,))

    if method == "mixup":
        mixed = _mix(img_a, img_b, lam_v)
    else:
        height, width = int(images.shape[1]), int(images.shape[2])
        if cutmix_box is not None:
            y1, y2, x1, x2 = (ops.broadcast_to(ops.cast(ops.convert_to_tensor(v), "float32"),
                                               (batch,)) for v in cutmix_box)
            mask, lam_v = _box_masks(height, width, y1, y2, x1, x2)
        else:
            if not per_sample:
                mask, lam_1 = _cutmix_masks(height, width, lam_v[:1], seeds)
                mask = ops.broadcast_to(mask, (batch, height, width, 1))
                lam_v = ops.broadcast_to(lam_1, (batch,))
            else:
                mask, lam_v = _cutmix_masks(height, width, lam_v, seeds)
        mask = ops.cast(mask, img_a.dtype)
        mixed = img_a + mask * (img_b - img_a)

    soft = _mix(tgt_a, tgt_b, lam_v)
    mixed_teacher = None
    if teacher is not None:
        t_a, t_b = _partners(teacher, form)
        if teacher_temperature is None:
            mixed_teacher = _mix(t_a, t_b, lam_v)
        else:
            temp = float(teacher_temperature)
            p = _mix(ops.softmax(t_a / temp, axis=-1), ops.softmax(t_b / temp, axis=-1), lam_v)
            mixed_teacher = temp * ops.log(ops.maximum(p, 1e-30))
    return mixed, soft, mixed_teacher
