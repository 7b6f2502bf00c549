"""The paper's training augmentation as batched ``keras.ops``: it runs on the accelerator,
inside the compiled training step, under every Keras backend (TensorFlow, JAX, PyTorch).

What is here
------------
* the random-resized crop and the horizontal flip (:func:`crop_flip`);
* AutoAugment with every policy of the host implementation (``imagenet``, ``v0``,
  ``reduced_cifar10`` / ``cifar10``, ``svhn``, ``test``; :func:`autoaugment`);
* RandAugment (N, M) (:func:`randaugment`);
* :class:`DeviceAugment`, the trainer's ``--augment_on=device`` (crop/flip for npz input,
  AutoAugment or RandAugment, normalization). mixup / CutMix stay in ``data.mixing``
  (``keras.ops`` too), which the trainer applies after this inside the same step.

References
----------
* J. Lee et al. "Compounding the Performance Improvements of Assembled Techniques in a
  Convolutional Neural Network", 2020, arXiv:2001.06268, and its code clovaai/assembled-cnn
  (``preprocessing/imagenet_preprocessing.py``: Inception crop, area 0.05-1.0, aspect ratio
  0.75-1.33, and flip; ``preprocessing/autoaugment.py``: AutoAugment).
* E. D. Cubuk, B. Zoph, D. Mane, V. Vasudevan, Q. V. Le. "AutoAugment: Learning Augmentation
  Policies from Data", CVPR 2019, arXiv:1805.09501 (policies in its appendix).
* E. D. Cubuk, B. Zoph, J. Shlens, Q. V. Le. "RandAugment: Practical automated data
  augmentation with a reduced search space", NeurIPS 2020, arXiv:1909.13719.
* tensorflow/tpu ``models/official/efficientnet/autoaugment.py`` (the code both of the above
  trace back to: ``level_to_arg``, the ops' TF implementations).

The host implementation, ``data.autoaugment`` (TensorFlow ops, one image at a time inside
``tf.data``), is the reference: every op here computes the same function of the same
parameters (tested op by op on real images, tests/test_device_augment.py), and both read
the same policy tables (``data.policies``). Its docstring lists how both deviate from the
TF code (Contrast's mean, PIL grayscale, rounded Sharpness, posterize mapping, ...).

How a batch is augmented (no Python branch on tensor values)
------------------------------------------------------------
Every sample draws its own parameters: for AutoAugment its sub-policy (uniform over the
table, duplicates included), then per position "applied?" (``u < p``), the op and level of
its row, and a sign (signed magnitudes are negated with probability 1/2); for RandAugment
one of the paper's 14 ops per layer (uniform) at magnitude M. A *layer* (one position of the
sub-policies, or one RandAugment layer) is then one pass over the batch in which each sample
has one op index (``Identity`` when not applied). Every op is written with parameters for
which it is exactly the identity, so a layer applies the ops in a fixed order, each with
the per-sample parameter that is the identity for the samples that did not draw it:

* geometric ops (Rotate, ShearX/Y, TranslateX/Y): one per-sample affine map (the identity
  map for other samples) and one nearest-neighbour gather for the whole batch;
* blends (Color, Contrast, Brightness, Sharpness: ``floor(clip(d + f (x - d)))``): one
  blend with per-sample degenerate image ``d`` (one-hot weighted) and factor ``f`` (1 for
  other samples, which returns ``x`` exactly: all values are integers);
* Solarize / Invert: one per-sample threshold (256: nothing inverted; Invert = threshold 0);
  SolarizeAdd: per-sample addition (0); Posterize: per-sample step (1); Cutout: per-sample
  box half-size (0: empty);
* AutoContrast and Equalize: per-image min/max and per-image histograms computed for the
  batch (``segment_sum`` over image-channel-value bins, one gather for the lookup tables),
  selected with ``keras.ops.where``.

Only the op groups that some row of the position uses are built (static, per policy and
position). The cost is that every image pays for every group present, where the host pays
only for its chosen op (about 1.2 ops per image for ``imagenet``): cheap elementwise passes
on an accelerator, but on a CPU the host path is cheaper (docs/BENCHMARKS.md).

Deviations from the host implementation, and why
------------------------------------------------
* Geometric ops are one gather of pixels at ``round_half_away(a x + b y + c)`` (the
  semantics of ``ImageProjectiveTransformV3`` NEAREST/CONSTANT that the host reproduces
  bit for bit), written with elementwise ``keras.ops``; ``keras.ops.image.affine_transform``
  is not used for them: its JAX form rounds half to even and computes the coordinates with
  an ``einsum``, which may run in TF32 on recent GPUs (a 10-bit mantissa: errors up to
  about 0.1 px at 224 px; not measured here). The results
  can differ from the host's only where a backend's ``sin``/``cos``, division or fused
  multiply-add differs in the last bit and moves a value across a rounding boundary.
  Measured on 2026-12-04 (tests/test_device_augment.py, 16 ops on real photos): TensorFlow
  and PyTorch bit-identical to the host for every op; JAX under ``jax.jit`` bit-identical
  except AutoContrast (6 pixels in 100,000 off by one: XLA rounds ``(x - lo) * 255 / span``
  differently); the tests bound every op by a mean absolute difference of 1/255 of the range.
* Images arriving normalized (the JAX path's ``npz:FILE`` arrays) are un-normalized first;
  an integer pixel ``k`` can come back as ``k - 1e-5``, so ``1e-3`` is added before the
  ``floor`` that the host applies to its resized image (a pixel whose true value lies in
  ``[k - 1e-3, k)`` is then read as ``k``: about 0.1 % of bilinear-resized pixels).
* The crop for npz input (:func:`crop_flip`, below) is taken from the stored, already
  resized image, not from the JPEG; with ``tf.data`` input (``--augment_on=device`` on
  either backend) the host still decodes and crops (the crop is fused with JPEG decoding)
  and only AutoAugment/RandAugment, normalization and mixing run in the step.
* Per-step randomness comes from a stateless seed (data seed, step[, replica]), so a resumed
  run draws the same parameters; streams are ``(a, 1024 step + k)`` (they repeat after
  ``2**22`` steps under JAX, whose seeds are 32-bit).

Crop and flip (``crop_flip``; ``--device_augment=crop_flip`` on the JAX path's npz input)
----------------------------------------------------------------------------------------
Paper, section 3 "preprocessing": Inception-style random-resized crop (area 0.05-1.0 of the
image, aspect ratio 0.75-1.33 in the official code) and a random horizontal flip, which this
project normally does per image in ``tf.data`` (``data.preprocessing``, decoding only the
crop window). The crop box is sampled per image, then the crop is resized back to the input
size with one per-sample affine map (``keras.ops.image.affine_transform``, bilinear,
half-pixel centres as ``tf.image.resize``, edge pixels repeated outside the image).

Deviations from the ``tf.data`` form, and why:

* the box is sampled as ``tf.image.sample_distorted_bounding_box`` does (area and log-uniform
  aspect, then a uniform position) but in continuous coordinates and with ``attempts`` tries
  (default 10, not 100) before falling back to the whole image: the tries are vectorized over
  the batch, and at 10 tries the fallback is already rare (< 1 % of images for the default
  ranges);
* the input is the already-resized image, not the original JPEG, so a crop is upsampled from
  fewer pixels than the ``tf.data`` path would decode (the same as any pre-decoded dataset).

This module imports no TensorFlow (the JAX machine has none): the constants it shares with
``data.preprocessing`` are repeated here and tests/test_device_augment.py checks they agree.
"""
from __future__ import annotations

import math

import numpy as np
from keras import ops
import keras

from data import policies
from data.constants import (
    AREA_RANGE, ASPECT_RATIO_RANGE, CHANNEL_MEANS, IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS)


def sample_boxes(batch, height, width, seed, area_range=AREA_RANGE, aspect_range=ASPECT_RATIO_RANGE,
                 attempts=10):
    """Per-image crop boxes ``[B, 4]`` as ``(y0, x0, h, w)`` in pixels (float32)."""
    if not 0.0 < area_range[0] <= area_range[1] <= 1.0:
        raise ValueError(f"area_range must satisfy 0 < lo <= hi <= 1, got area_range={area_range!r}")
    if not 0.0 < aspect_range[0] <= aspect_range[1]:
        raise ValueError(f"aspect_range must satisfy 0 < lo <= hi, got aspect_range={aspect_range!r}")
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got attempts={attempts!r}")
    seeds = _split(seed, 4)
    area = keras.random.uniform((batch, attempts), area_range[0], area_range[1], seed=seeds[0])
    log_r = keras.random.uniform((batch, attempts), math.log(aspect_range[0]), math.log(aspect_range[1]),
                                 seed=seeds[1])
    ratio = ops.exp(log_r)
    total = float(height * width)
    w = ops.sqrt(area * total * ratio)
    h = ops.sqrt(area * total / ratio)
    ok = ops.logical_and(w <= width, h <= height)
    # index of the first valid try (attempts if none): argmax over [ok..., True]
    ok_any = ops.concatenate([ok, ops.ones((batch, 1), "bool")], axis=1)
    first = ops.argmax(ops.cast(ok_any, "int32"), axis=1)
    full_h = ops.full((batch, 1), float(height))
    full_w = ops.full((batch, 1), float(width))
    h = ops.take_along_axis(ops.concatenate([h, full_h], 1), first[:, None], 1)[:, 0]
    w = ops.take_along_axis(ops.concatenate([w, full_w], 1), first[:, None], 1)[:, 0]
    y0 = keras.random.uniform((batch,), seed=seeds[2]) * (height - h)
    x0 = keras.random.uniform((batch,), seed=seeds[3]) * (width - w)
    return ops.stack([y0, x0, h, w], axis=1)


def crop_resize_transforms(boxes, height, width, flip):
    """Affine maps (``[B, 8]``, the ``affine_transform`` convention output -> input) that crop
    ``boxes`` (``y0, x0, h, w``) and resize them to ``height x width`` with half-pixel centres,
    mirrored horizontally where ``flip`` (bool ``[B]``) is true."""
    y0, x0, h, w = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    sy, sx = h / float(height), w / float(width)
    # output pixel centre c maps to input position  origin + (c + 0.5) * scale - 0.5
    a0 = ops.where(flip, -sx, sx)
    a2 = ops.where(flip, x0 + (width - 0.5) * sx - 0.5, x0 + 0.5 * sx - 0.5)
    b2 = y0 + 0.5 * sy - 0.5
    zeros = ops.zeros_like(sx)
    return ops.stack([a0, zeros, a2, zeros, sy, b2, zeros, zeros], axis=1)


def crop_flip(images, seed, area_range=AREA_RANGE, aspect_range=ASPECT_RATIO_RANGE, flip=True, attempts=10):
    """Random-resized crop + random horizontal flip of a batch ``[B, H, W, C]`` (float).

    ``seed``: a ``keras.random.SeedGenerator`` (any backend), or under the JAX backend an
    integer array of shape ``[2]`` (stateless; the trainer's JAX path passes the data seed and
    the step, so a resumed run draws the same crops).
    """
    shape = ops.shape(images)
    batch, height, width = shape[0], int(images.shape[1]), int(images.shape[2])
    seeds = _split(seed, 2)
    boxes = sample_boxes(batch, height, width, seeds[0], area_range, aspect_range, attempts)
    if flip:
        do_flip = keras.random.uniform((batch,), seed=seeds[1]) < 0.5
    else:
        do_flip = ops.zeros((batch,), "bool")
    transforms = crop_resize_transforms(boxes, height, width, do_flip)
    out = ops.image.affine_transform(ops.cast(images, "float32"), transforms, interpolation="bilinear",
                                     fill_mode="nearest", data_format="channels_last")
    return ops.cast(out, images.dtype)


AUGMENTATIONS = {"none": None, "crop_flip": crop_flip}


def _split(seed, n):
    """``n`` independent seeds from one: distinct streams of a SeedGenerator, or for a ``[2]``
    seed tensor (JAX backend: a raw ``uint32[2]`` key), ``[s0, s1 * n + i]`` (so nearby steps
    never share a stream)."""
    if isinstance(seed, keras.random.SeedGenerator):
        return [seed] * n
    seed = ops.cast(seed, "uint32")
    return [ops.stack([seed[0], seed[1] * n + i]) for i in range(n)]


# ---------------------------------------------------------------------------------------
# AutoAugment / RandAugment on a batch
# ---------------------------------------------------------------------------------------

#: Every op index: ``OPS[i]``; 0 is "not applied". The policies use all but Cutout (which
#: the host supports too; no table here uses it).
OPS = ("Identity", "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
       "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
       "TranslateX", "TranslateY", "Cutout")
OP_INDEX = {name: i for i, name in enumerate(OPS)}
GEOMETRIC_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
BLEND_OPS = ("Color", "Contrast", "Brightness", "Sharpness")
POLICIES = tuple(sorted(policies.POLICIES))
RANDAUGMENT_OPS = policies.RANDAUGMENT_OPS
_MAX_LEVEL = policies._MAX_LEVEL
REPLACE_VALUE = policies.REPLACE_VALUE
# PIL's fixed-point ITU-R 601 luma weights (data.autoaugment.grayscale).
_LUMA = (19595.0, 38470.0, 7471.0)


class Hparams:
    """The host's op constants (``data.autoaugment._Hparams``): ``translate_const`` and
    ``cutout_const`` are pixels at level 10 (AutoAugment 250 / 100, RandAugment 100 / 40, as
    the TF code), ``scale_to_image`` reads them at 224 px and scales them to the image,
    ``posterize_mode`` "tf" (bits = int(level/10*4), the TF code) or "paper" (8 - that),
    ``replace`` the fill value of geometric ops and cutout, ``levels`` "tf" or "increasing"
    (level 0 is the identity of every op with a magnitude; RandAugment's ``levels``, see
    ``data.autoaugment``)."""

    def __init__(self, translate_const=250.0, cutout_const=100.0, scale_to_image=False,
                 posterize_mode="tf", replace=REPLACE_VALUE, levels="tf"):
        if posterize_mode not in ("tf", "paper"):
            raise ValueError(f"posterize_mode must be 'tf' or 'paper', got {posterize_mode!r}")
        self.levels = policies.check_levels(levels)
        self.translate_const = float(translate_const)
        self.cutout_const = float(cutout_const)
        self.scale_to_image = bool(scale_to_image)
        self.posterize_mode = posterize_mode
        self.replace = float(replace)


def _const(values, dtype="float32"):
    return ops.convert_to_tensor(np.asarray(values, dtype))


def _floor_u8(x):
    """``floor(clip(x, 0, 255))``: the uint8 truncation of PIL and the TF code."""
    return ops.floor(ops.clip(x, 0.0, 255.0))


def _col(v):
    """``[B]`` -> ``[B, 1, 1, 1]`` (broadcast over an NHWC batch)."""
    return ops.reshape(v, (-1, 1, 1, 1))


def _batch_size(images):
    b = images.shape[0]
    return b if b is not None else ops.shape(images)[0]


def grayscale(images):
    """PIL ``convert("L")`` of a batch: ``floor((19595 R + 38470 G + 7471 B) / 2**16 + 0.5)``,
    ``[B, H, W, 1]``. Elementwise, exact in float32 in any summation order (each product and
    partial sum is a multiple of 2**-16 below 256: 24 bits); not a matmul, which may run in
    TF32 on a GPU."""
    w = [v / 65536.0 for v in _LUMA]
    return ops.floor(images[..., 0:1] * w[0] + images[..., 1:2] * w[1] + images[..., 2:3] * w[2]
                     + 0.5)


def autocontrast(images):
    """PIL ``ImageOps.autocontrast`` (cutoff 0) per image and channel: ``[lo, hi] -> [0, 255]``,
    channels with ``hi == lo`` unchanged (``data.autoaugment.autocontrast``)."""
    lo = ops.min(images, axis=(1, 2), keepdims=True)
    hi = ops.max(images, axis=(1, 2), keepdims=True)
    valid = hi > lo
    lo = ops.where(valid, lo, 0.0)
    span = ops.where(valid, hi - lo, 255.0)
    return ops.floor((images - lo) * 255.0 / span)


def equalize(images):
    """PIL ``ImageOps.equalize`` per image and channel (``data.autoaugment.equalize``).

    The ``B x 3`` histograms are one ``segment_sum`` over bins ``768 b + 256 c + value``;
    ``step = (pixels - count of the last non-empty bin) // 255``, ``lut[i] = (step // 2 +
    pixels below i) // step`` (identity when ``step`` is 0), applied with one gather.
    Integer arithmetic (int32), as the host.
    """
    shape = ops.shape(images)
    batch = _batch_size(images)
    values = ops.cast(images, "int32")
    bins = (values + ops.reshape(ops.arange(3, dtype="int32") * 256, (1, 1, 1, 3))
            + ops.reshape(ops.arange(batch, dtype="int32") * 768, (-1, 1, 1, 1)))
    bins = ops.reshape(bins, (-1,))
    histo = ops.segment_sum(ops.ones_like(bins), bins, num_segments=batch * 768)
    histo = ops.reshape(histo, (-1, 3, 256))
    nonzero = ops.cast(histo > 0, "int32")
    last = 255 - ops.cast(ops.argmax(ops.flip(nonzero, axis=2), axis=2), "int32")  # [B, 3]
    last_count = ops.take_along_axis(histo, last[..., None], axis=2)[..., 0]
    step = ops.floor_divide(ops.sum(histo, axis=2) - last_count, 255)  # [B, 3]
    safe = ops.maximum(step, 1)[..., None]
    below = ops.cumsum(histo, axis=2) - histo
    lut = ops.clip(ops.floor_divide(below + ops.floor_divide(safe, 2), safe), 0, 255)
    lut = ops.where(step[..., None] > 0, lut, ops.arange(256, dtype="int32")[None, None, :])
    out = ops.take(ops.reshape(ops.cast(lut, "float32"), (-1,)), bins)
    return ops.reshape(out, shape)


def _smooth_degenerate(images):
    """PIL ``ImageFilter.SMOOTH`` (3x3 [[1,1,1],[1,5,1],[1,1,1]] / 13, rounded) on the interior,
    original pixels on the 1-pixel border (``data.autoaugment.sharpness``)."""
    h, w = int(images.shape[1]), int(images.shape[2])
    if h < 3 or w < 3:
        return images
    rows = images[:, :-2] + images[:, 1:-1] + images[:, 2:]
    box = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    centre = images[:, 1:-1, 1:-1]
    smooth = ops.floor((box + 4.0 * centre) * (1.0 / 13.0) + 0.5)
    return images + ops.pad(smooth - centre, [[0, 0], [1, 1], [1, 1], [0, 0]])


def affine_nearest(images, transforms, replace=REPLACE_VALUE):
    """Per-sample affine warp, nearest neighbour, constant fill: output pixel (x, y) of image
    ``b`` samples input ``(a0 x + a1 y + a2, b0 x + b1 y + b2)`` with ``transforms[b] = (a0, a1,
    a2, b0, b1, b2)``, rounded half away from zero; outside pixels get ``replace``.

    ``ImageProjectiveTransformV3`` (NEAREST, CONSTANT) semantics, with the same float32
    expressions as the host's ``data.autoaugment._affine`` (bit-identical to that kernel),
    as one gather of ``[B * (H * W + 1), C]`` pixels (each image with one fill pixel appended).
    """
    batch = _batch_size(images)
    h, w, c = int(images.shape[1]), int(images.shape[2]), int(images.shape[3])
    hf, wf = float(h), float(w)
    xs = ops.reshape(ops.arange(w, dtype="float32"), (1, 1, w))
    ys = ops.reshape(ops.arange(h, dtype="float32"), (1, h, 1))
    t = [ops.reshape(transforms[:, i], (-1, 1, 1)) for i in range(6)]
    vx = t[0] * xs + t[1] * ys + t[2]
    vy = t[3] * xs + t[4] * ys + t[5]
    tx, ty = vx + 0.5, vy + 0.5
    inside = ops.logical_and(ops.logical_and(tx < wf, 0.5 - vx < 1.0),
                             ops.logical_and(ty < hf, 0.5 - vy < 1.0))
    # index of the appended fill pixel (h * w) outside; exact in float32 below 2**24 pixels
    flat = ops.where(inside, ops.floor(ty) * wf + ops.floor(tx), hf * wf)
    flat = ops.cast(flat, "int32") + ops.reshape(ops.arange(batch, dtype="int32") * (h * w + 1),
                                                 (-1, 1, 1))
    pixels = ops.concatenate([ops.reshape(images, (-1, h * w, c)),
                              ops.full((batch, 1, c), replace, dtype=images.dtype)], axis=1)
    out = ops.take(ops.reshape(pixels, (-1, c)), ops.reshape(flat, (-1,)), axis=0)
    return ops.reshape(out, (-1, h, w, c))


def apply_ops(images, op_ids, levels, sign_u, cy_u=None, cx_u=None, *, hparams=None,
              present=None):
    """One layer: applies op ``OPS[op_ids[b]]`` at ``levels[b]`` (0..10 scale) to image ``b``.

    Args:
      images: float32 ``[B, H, W, 3]`` holding integers in [0, 255].
      op_ids: int ``[B]``, indices into :data:`OPS` (0: unchanged).
      levels: float ``[B]``; sign_u: uniforms ``[B]`` (signed magnitudes negated where < 0.5);
      cy_u, cx_u: uniforms ``[B]`` for the Cutout centre (only read if Cutout is present).
      hparams: :class:`Hparams` (default: AutoAugment's constants).
      present: names of the ops that may occur (static); groups of absent ops are not built.

    Returns float32 ``[B, H, W, 3]`` holding integers: for each image the host's
    ``data.autoaugment._apply_op(name, image, level, sign_u, cy_u, cx_u, hp)``.
    """
    hp = hparams or Hparams()
    names = set(OPS[1:]) if present is None else set(present) - {"Identity"}
    unknown = names - set(OPS)
    if unknown:
        raise ValueError(f"unknown augmentation ops {sorted(unknown)}; known: {list(OPS)}")
    x = ops.cast(images, "float32")
    h, w = int(x.shape[1]), int(x.shape[2])
    onehot = ops.one_hot(ops.cast(op_ids, "int32"), len(OPS), dtype="float32")  # [B, ops]

    def is_(name):
        return onehot[:, OP_INDEX[name]]

    def any_of(group):
        out = None
        for n in group:
            out = is_(n) if out is None else out + is_(n)
        return out

    frac = ops.cast(levels, "float32") / _MAX_LEVEL
    sign = ops.where(ops.cast(sign_u, "float32") < 0.5, -1.0, 1.0)

    geo = [n for n in GEOMETRIC_OPS if n in names]
    if geo:
        one, zero = ops.ones_like(frac), ops.zeros_like(frac)
        maps = {}
        if "Rotate" in names:
            radians = sign * frac * 30.0 * (math.pi / 180.0)
            cos, sin = ops.cos(radians), ops.sin(radians)
            hm, wm = h - 1.0, w - 1.0
            maps["Rotate"] = (cos, -sin, (wm - (cos * wm - sin * hm)) / 2.0,
                              sin, cos, (hm - (sin * wm + cos * hm)) / 2.0)
        if "ShearX" in names:
            maps["ShearX"] = (one, sign * frac * 0.3, zero, zero, one, zero)
        if "ShearY" in names:
            maps["ShearY"] = (one, zero, zero, sign * frac * 0.3, one, zero)
        for name, size, axis in (("TranslateX", w, 0), ("TranslateY", h, 1)):
            if name in names:
                const = hp.translate_const * (size / 224.0 if hp.scale_to_image else 1.0)
                # the host rounds the shift (half to even) and clips it to the image size
                pixels = ops.clip(ops.round(sign * frac * const), -float(size), float(size))
                maps[name] = ((one, zero, pixels, zero, one, zero) if axis == 0 else
                              (one, zero, zero, zero, one, pixels))
        rest = 1.0 - any_of(geo)
        params = []
        for i, ident in enumerate((1.0, 0.0, 0.0, 0.0, 1.0, 0.0)):
            p = rest * ident
            for name, m in maps.items():
                p = p + is_(name) * m[i]
            params.append(p)
        x = affine_nearest(x, ops.stack(params, axis=1), hp.replace)

    blends = [n for n in BLEND_OPS if n in names]
    if blends:
        chosen = _col(any_of(blends))
        degenerate = (1.0 - chosen) * x
        if "Color" in names or "Contrast" in names:
            gray = grayscale(x)
            if "Color" in names:
                degenerate = degenerate + _col(is_("Color")) * gray
            if "Contrast" in names:
                mean = ops.floor(ops.sum(gray, axis=(1, 2, 3)) / float(h * w) + 0.5)
                degenerate = degenerate + _col(is_("Contrast") * mean)
        if "Sharpness" in names:
            degenerate = degenerate + _col(is_("Sharpness")) * _smooth_degenerate(x)
        # Brightness blends with black: its degenerate term is 0
        if hp.levels == "increasing":
            factor = chosen * _col(1.0 + sign * (frac * 0.9)) + (1.0 - chosen)
        else:
            factor = chosen * _col(frac * 1.8 + 0.1) + (1.0 - chosen)
        x = _floor_u8(degenerate + factor * (x - degenerate))

    if "Solarize" in names or "Invert" in names:
        threshold = ops.full_like(frac, 256.0)  # nothing is >= 256: unchanged
        if "Solarize" in names:
            level_threshold = ops.floor(frac * 256.0)
            if hp.levels == "increasing":
                level_threshold = 256.0 - level_threshold
            threshold = threshold + is_("Solarize") * (level_threshold - 256.0)
        if "Invert" in names:  # solarize at threshold 0: 255 - x
            threshold = threshold - is_("Invert") * 256.0
        above = ops.cast(x >= _col(threshold), "float32")
        x = x + above * (255.0 - 2.0 * x)

    if "SolarizeAdd" in names:
        addition = _col(is_("SolarizeAdd") * ops.floor(frac * 110.0))
        below = ops.cast(x < 128.0, "float32")
        x = x + below * (ops.clip(x + addition, 0.0, 255.0) - x)

    if "Posterize" in names:
        bits = ops.floor(frac * 4.0)
        if hp.posterize_mode == "paper" or hp.levels == "increasing":
            bits = 8.0 - bits
        # 2 ** (8 - bits) from a table (exact; a backend's pow may go through exp/log)
        step = ops.take(_const([2.0 ** (8 - b) for b in range(9)]),
                        ops.cast(ops.clip(bits, 0.0, 8.0), "int32"))
        step = is_("Posterize") * step + (1.0 - is_("Posterize"))
        x = ops.floor(x / _col(step)) * _col(step)

    if "AutoContrast" in names:
        x = ops.where(_col(is_("AutoContrast")) > 0.5, autocontrast(x), x)
    if "Equalize" in names:
        x = ops.where(_col(is_("Equalize")) > 0.5, equalize(x), x)

    if "Cutout" in names:
        const = hp.cutout_const * (min(h, w) / 224.0 if hp.scale_to_image else 1.0)
        pad = _col(is_("Cutout") * ops.floor(frac * const))  # 0: an empty box
        cy = _col(ops.floor(ops.cast(cy_u, "float32") * float(h)))
        cx = _col(ops.floor(ops.cast(cx_u, "float32") * float(w)))
        rows = ops.reshape(ops.arange(h, dtype="float32"), (1, h, 1, 1))
        cols = ops.reshape(ops.arange(w, dtype="float32"), (1, 1, w, 1))
        box = ops.cast(ops.logical_and(
            ops.logical_and(rows >= cy - pad, rows < cy + pad),
            ops.logical_and(cols >= cx - pad, cols < cx + pad)), "float32")
        x = x + box * (hp.replace - x)
    return x


def _seed_stream(seed):
    """``next()`` hands out seeds for ``keras.random``: the generator itself (it advances on
    every draw), or for an int ``1000 seed + k`` (k = 1, 2, ...)."""
    if isinstance(seed, keras.random.SeedGenerator) or seed is None:
        return lambda: seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        count = [0]

        def nxt():
            count[0] += 1
            return int(seed) * 1000 + count[0]
        return nxt
    raise TypeError("seed must be None, an int or a keras.random.SeedGenerator (for a [2] seed "
                    f"tensor use DeviceAugment), got {type(seed).__name__}")


def _index(u, n):
    return ops.minimum(ops.cast(ops.floor(u * n), "int32"), n - 1)


def sample_autoaugment(batch, policy_name, seed):
    """Per-sample AutoAugment parameters: a list with one dict per position of the policy's
    sub-policies (``op`` int ``[B]`` into :data:`OPS`, 0 where the op is not applied;
    ``level``, ``sign_u``, ``cy_u``, ``cx_u`` ``[B]``; ``present``: the op names of that
    position, static), and the sub-policy index of each sample ``[B]``.

    As the host: one uniform picks the sub-policy row, and per position one uniform
    decides "applied" (``u < p``) and three more give the sign and the Cutout centre.
    """
    table = policies.get_policy(policy_name)
    for sub in table:
        for name, _, _ in sub:
            if name not in OP_INDEX:
                raise ValueError(f"unknown op {name!r} in policy {policy_name!r}")
    num_pos = max(len(sub) for sub in table)
    rows = [list(sub) + [("Identity", 0.0, 0)] * (num_pos - len(sub)) for sub in table]
    op_t = np.array([[OP_INDEX[n] for n, _, _ in r] for r in rows], "int32")
    prob_t = np.array([[p for _, p, _ in r] for r in rows], "float32")
    level_t = np.array([[lv for _, _, lv in r] for r in rows], "float32")
    rand = keras.random.uniform((batch, 1 + 4 * num_pos), seed=_seed_stream(seed)())
    sub_index = _index(rand[:, 0], len(table))
    layers = []
    for j in range(num_pos):
        u = rand[:, 1 + 4 * j: 5 + 4 * j]
        applied = u[:, 0] < ops.take(_const(prob_t[:, j]), sub_index)
        op = ops.where(applied, ops.take(_const(op_t[:, j], "int32"), sub_index), 0)
        layers.append(dict(op=op, level=ops.take(_const(level_t[:, j]), sub_index),
                           sign_u=u[:, 1], cy_u=u[:, 2], cx_u=u[:, 3],
                           present={r[j][0] for r in rows if r[j][1] > 0.0}))
    return layers, sub_index


def randaugment_level(magnitude, magnitude_scale=10.0):
    """The host's level: ``clip(M / scale, 0, 1) * 10`` in float32."""
    m = np.float32(magnitude) / np.float32(magnitude_scale)
    return float(np.clip(m, np.float32(0.0), np.float32(1.0)) * np.float32(_MAX_LEVEL))


def sample_randaugment(batch, num_layers, magnitude, seed, magnitude_scale=10.0):
    """Per-sample RandAugment parameters (one dict per layer, as :func:`sample_autoaugment`):
    each layer picks one of the paper's 14 ops uniformly (``RANDAUGMENT_OPS``, Identity
    included) and always applies it at magnitude ``magnitude`` (0..``magnitude_scale``)."""
    num_layers = int(num_layers)
    if num_layers < 0:
        raise ValueError("num_layers must be >= 0")
    level = randaugment_level(magnitude, magnitude_scale)
    rand = keras.random.uniform((batch, max(num_layers, 1), 2), seed=_seed_stream(seed)())
    ra_ids = _const([OP_INDEX[n] for n in RANDAUGMENT_OPS], "int32")
    layers = []
    for i in range(num_layers):
        op = ops.take(ra_ids, _index(rand[:, i, 0], len(RANDAUGMENT_OPS)))
        zeros = ops.zeros_like(rand[:, i, 1])
        layers.append(dict(op=op, level=zeros + level, sign_u=rand[:, i, 1], cy_u=zeros,
                           cx_u=zeros, present=set(RANDAUGMENT_OPS)))
    return layers


def _apply_layers(images, layers, hp):
    x = images
    for layer in layers:
        x = apply_ops(x, layer["op"], layer["level"], layer["sign_u"], layer["cy_u"],
                      layer["cx_u"], hparams=hp, present=layer["present"])
    return x


def autoaugment(images, policy_name, seed, *, translate_const=250.0, cutout_const=100.0,
                scale_to_image=False, posterize_mode="tf", replace=REPLACE_VALUE):
    """AutoAugment of a batch: each image gets its own random sub-policy (see the module
    docstring). ``images``: float ``[B, H, W, 3]`` holding integers in [0, 255] (e.g.
    ``floor`` of a resized image, as the host pipeline); returns float32 integers. ``seed``:
    int or ``keras.random.SeedGenerator`` (inside a traced step: :class:`DeviceAugment`).
    The keywords are the host's (``data.autoaugment.distort_float_with_autoaugment``)."""
    hp = Hparams(translate_const, cutout_const, scale_to_image, posterize_mode, replace)
    layers, _ = sample_autoaugment(_batch_size(images), policy_name, seed)
    return _apply_layers(ops.cast(images, "float32"), layers, hp)


def randaugment(images, num_layers, magnitude, seed, *, magnitude_scale=10.0,
                translate_const=100.0, scale_to_image=False, posterize_mode="tf",
                replace=REPLACE_VALUE, levels="tf"):
    """RandAugment (N = ``num_layers``, M = ``magnitude``) of a batch, each image drawing its
    own ops; as :func:`autoaugment` otherwise (host: ``distort_float_with_randaugment``;
    Cutout's constant is 40 there, unused: RandAugment's 14 ops have no Cutout). ``levels``:
    ``"tf"`` or ``"increasing"`` (:class:`Hparams`)."""
    hp = Hparams(translate_const, 40.0, scale_to_image, posterize_mode, replace, levels)
    layers = sample_randaugment(_batch_size(images), num_layers, magnitude, seed, magnitude_scale)
    return _apply_layers(ops.cast(images, "float32"), layers, hp)


def normalize(images, normalization):
    """``data.preprocessing.normalize``: ``x - mean`` (``"mean"``, the paper's) or
    ``(x - mean) * (1 / std)`` (``"mean_std"``), the same float32 expressions."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; use one of {NORMALIZATIONS}")
    mean = CHANNEL_MEANS if normalization == "mean" else IMAGENET_MEAN
    x = ops.cast(images, "float32") - _const(mean)
    if normalization == "mean_std":
        x = x * _const([1.0 / s for s in IMAGENET_STD])
    return x


def denormalize(images, normalization):
    """The inverse of :func:`normalize` (up to float rounding, ~1e-5)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; use one of {NORMALIZATIONS}")
    x = ops.cast(images, "float32")
    if normalization == "mean_std":
        x = x * _const(IMAGENET_STD)
    return x + _const(CHANNEL_MEANS if normalization == "mean" else IMAGENET_MEAN)


class DeviceAugment:
    """The trainer's augmentation inside the training step (``--augment_on=device``).

    ``images -> [un-normalize] -> [crop_flip] -> [floor, AutoAugment | RandAugment] ->
    [normalize]``; mixup/CutMix follow in the step (``data.mixing``).

    Args:
      crop_flip: random-resized crop + flip (npz input, ``--device_augment=crop_flip``).
      autoaugment: a policy name, or None; randaugment: ``(N, M)`` or None (not both).
      input_normalization: how the incoming images are normalized (``"mean"``,
        ``"mean_std"``) or None for pixels in 0..255 (``tf.data`` built with
        ``normalization="none"``).
      output_normalization: the normalization the model expects, or None.
      seed: seed of the internal generator, used when called without a seed.
      posterize_mode: Posterize's level -> bits, ``"tf"`` or ``"paper"`` (:class:`Hparams`).
      randaugment_levels: RandAugment's level mappings, ``"tf"`` or ``"increasing"``.

    ``__call__(images, seed=None)``: ``seed`` a ``[2]`` integer tensor ``(a, b)``, e.g.
    (data seed, step): every draw is then a function of it (inside ``jax.jit`` or
    ``tf.function``, and on resumption), through a ``keras.StatelessScope`` mapping the
    internal generator's state to ``(a, 1024 b)``. The generator is created here, outside
    any traced step (a ``tf.function`` cannot create variables on every trace).
    """

    def __init__(self, *, crop_flip=False, autoaugment=None, randaugment=None,
                 input_normalization=None, output_normalization=None, seed=0,
                 posterize_mode="tf", randaugment_levels="tf"):
        if autoaugment and randaugment:
            raise ValueError("use either autoaugment or randaugment, not both")
        if autoaugment and str(autoaugment).lower() not in policies.POLICIES:
            raise ValueError(f"unknown AutoAugment policy {autoaugment!r}; valid: {list(POLICIES)}")
        for norm in (input_normalization, output_normalization):
            if norm is not None and norm not in NORMALIZATIONS:
                raise ValueError(f"unknown normalization {norm!r}; use one of {NORMALIZATIONS}")
        Hparams(posterize_mode=posterize_mode, levels=randaugment_levels)  # their checks, now
        self.crop_flip = bool(crop_flip)
        self.posterize_mode = posterize_mode
        self.randaugment_levels = randaugment_levels
        self.autoaugment = autoaugment or None
        self.randaugment = tuple(randaugment) if randaugment else None
        self.input_normalization = input_normalization
        self.output_normalization = output_normalization
        self.generator = keras.random.SeedGenerator(seed)

    def __call__(self, images, seed=None):
        if seed is None:
            return self._run(images, self.generator)
        state = self.generator.state
        seed = ops.cast(seed, state.dtype)
        mapped = ops.stack([seed[0], seed[1] * ops.cast(1024, state.dtype)])
        with keras.StatelessScope(state_mapping=[(state, mapped)]):
            return self._run(images, self.generator)

    def _run(self, images, gen):
        x = ops.cast(images, "float32")
        color = self.autoaugment is not None or self.randaugment is not None
        norm_in = self.input_normalization
        if norm_in is not None and (color or norm_in != self.output_normalization):
            x = denormalize(x, norm_in)
            norm_in = None
        if self.crop_flip:
            x = crop_flip(x, gen)
        if color:
            # the host augments floor(resized image); 1e-3 absorbs the rounding of a round
            # trip through the normalization (module docstring)
            x = _floor_u8(x + 1e-3) if self.input_normalization is not None else _floor_u8(x)
            if self.autoaugment is not None:
                x = autoaugment(x, self.autoaugment, gen, posterize_mode=self.posterize_mode)
            else:
                x = randaugment(x, self.randaugment[0], self.randaugment[1], gen,
                                posterize_mode=self.posterize_mode,
                                levels=self.randaugment_levels)
        if self.output_normalization is not None and norm_in is None:
            x = normalize(x, self.output_normalization)
        return x


def augmentation_for(*, augment_on="host", device_augment="none", autoaugment=None,
                     randaugment=None, normalization="mean", npz_input=False, seed=0,
                     posterize_mode="tf", randaugment_levels="tf"):
    """The trainer's in-step augmentation, or None: ``augment_on="host"`` keeps the older
    ``--device_augment=crop_flip`` function for npz input (``AUGMENTATIONS``; the same draws
    as before), ``"device"`` returns a :class:`DeviceAugment` (AutoAugment/RandAugment and
    normalization here; crop/flip too for npz input with ``device_augment="crop_flip"``)."""
    if augment_on not in ("host", "device"):
        raise ValueError(f"augment_on must be 'host' or 'device', got {augment_on!r}")
    if device_augment not in AUGMENTATIONS:
        raise ValueError(f"device_augment must be one of {list(AUGMENTATIONS)}, got {device_augment!r}")
    if augment_on == "host":
        return AUGMENTATIONS[device_augment]
    return DeviceAugment(crop_flip=device_augment == "crop_flip", autoaugment=autoaugment,
                         randaugment=randaugment,
                         input_normalization=normalization if npz_input else None,
                         output_normalization=normalization, seed=seed,
                         posterize_mode=posterize_mode, randaugment_levels=randaugment_levels)
