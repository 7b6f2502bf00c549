"""AutoAugment and RandAugment with TensorFlow core ops (stateless, graph-mode safe).

References
----------
* E. D. Cubuk, B. Zoph, D. Mane, V. Vasudevan, Q. V. Le. "AutoAugment: Learning
  Augmentation Policies from Data", CVPR 2019, arXiv:1805.09501 (policy tables in its
  appendix: ImageNet, reduced CIFAR-10, SVHN).
* E. D. Cubuk, B. Zoph, J. Shlens, Q. V. Le. "RandAugment: Practical automated data
  augmentation with a reduced search space", NeurIPS 2020, arXiv:1909.13719.
* Official TF code: tensorflow/tpu ``models/official/efficientnet/autoaugment.py`` and its
  copy in clovaai/assembled-cnn ``preprocessing/autoaugment.py`` (the code of the
  Assemble-ResNet paper, Lee et al. 2020, arXiv:2001.06268). This module re-implements the
  same operations and magnitude mappings from scratch with TF 2 core ops; nothing from
  ``tf.contrib`` / tensorflow-addons is used. Geometric ops use
  ``tf.raw_ops.ImageProjectiveTransformV3`` semantics (nearest neighbour, constant fill);
  rotate / shear compute the same result with a row gather (faster on CPU, tested
  bit-identical) and translate with slice + pad.

Public API (called by ``data.pipeline`` inside ``tf.data`` ``map``)
------------------------------------------------------------------
``distort_image_with_autoaugment(image, policy_name, seed, ...)``
``distort_image_with_randaugment(image, num_layers, magnitude, seed, ...)``

``image`` is a uint8 ``[H, W, 3]`` tensor of any size, ``seed`` a stateless seed of shape
``[2]`` (int32 or int64). The result is uint8 of the same shape and depends only on
``(image, seed)``: all randomness comes from one ``tf.random.stateless_uniform`` call.
``distort_float_with_autoaugment`` / ``distort_float_with_randaugment`` do the same on
float32 pixels holding integers in [0, 255] and return float32 (same values, no casts; the
input pipeline uses these).

Implementation notes and deviations from the official code (see docs/AUGMENTATION.md)
-------------------------------------------------------------------------------------
* The image is converted to float32 once; every op works on integer-valued float32 pixels
  and ends with ``floor(clip(x, 0, 255))``, which reproduces the uint8 truncation of the
  official code (``tf.cast(float, uint8)``) and of PIL without casting back and forth.
* One sub-policy is chosen per image by a stateless random index into constant
  (op, probability, level) tables; each of its two positions is one ``tf.switch_case`` over
  the policy's distinct ops, so only the chosen ops run and the graph stays small (the
  official code builds a chain of 25 ``tf.cond`` s holding 50 op sub-graphs).
* ``Contrast``: the official TF code computes the "mean" as ``sum(histogram) / 256``, i.e.
  the number of pixels divided by 256 (a bug: for a 224x224 image the degenerate image is
  196, whatever the image). Here the mean of the PIL grayscale image is used, as PIL's
  ``ImageEnhance.Contrast`` (and the fixed TF Model Garden version) do.
* Grayscale (``Color``, ``Contrast``) uses PIL's fixed-point ITU-R 601 luma
  ``(19595 R + 38470 G + 7471 B + 2**15) >> 16`` (exact in float32), not
  ``tf.image.rgb_to_grayscale``; so these ops match PIL.
* ``Sharpness``: the smoothed image is rounded (PIL rounds), the official TF code truncates;
  border pixels keep their original value in both PIL and here.
* ``Posterize``: the official TF code maps level -> bits as ``int(level / 10 * 4)``, i.e.
  0..4 bits kept (level 0 keeps 0 bits = black image), while the AutoAugment paper's range is
  4..8 bits. ``posterize_mode="tf"`` (default, reproduces the Assemble-ResNet code) or
  ``"paper"`` (bits = 8 - int(level / 10 * 4)).
* ``Translate``: ``translate_const`` pixels at level 10 (250 for AutoAugment, 100 for
  RandAugment, as in the TF code, made for 224 px images: at level 9 the AutoAugment shift,
  225 px, moves the whole image out). With ``scale_to_image=True`` the constants (also
  ``cutout_const``) are interpreted at a 224 px reference and scaled to the image's width
  (X) / height (Y).
* The SVHN table of the official code spells one op ``'contrast'`` (it would raise
  ``KeyError`` there); it is ``'Contrast'`` here.
* RandAugment follows the paper: each of ``num_layers`` layers picks one of the paper's 14
  ops uniformly (``Identity`` included) and always applies it. The TF code instead uses 16
  ops (adds ``Invert``, ``Cutout``, ``SolarizeAdd``; no ``Identity``) applied with a random
  probability in [0.2, 0.8]. ``magnitude`` is on the TF code's 0..10 scale by default
  (``magnitude_scale=10``; use ``magnitude_scale=30`` for the 0..30 scale of some of the
  paper's ImageNet experiments). Magnitudes above the scale are clipped to it.
* RandAugment's level mappings (``levels``): ``"tf"`` (default) is the TF code's, in which
  a low magnitude is not a mild augmentation: Posterize keeps ``int(M/10*4)`` bits (M < 2.5:
  0 bits, a black image), Solarize inverts every pixel above ``M/10*256`` (M = 0: the whole
  image), Color/Contrast/Brightness/Sharpness use the factor ``M/10*1.8 + 0.1`` (the
  identity is M = 5; M = 0 is a near-gray, near-black or blurred image). ``"increasing"``
  follows timm's "increasing" ops (``rand-m*-inc1``, R. Wightman, pytorch-image-models
  ``timm/data/auto_augment.py``): M = 0 is the identity of every op with a magnitude and a
  larger M is a stronger change: Posterize keeps ``8 - int(M/10*4)`` bits (8..4, the
  AutoAugment paper's range), Solarize inverts above ``256 - int(M/10*256)``, the enhance
  factor is ``1 +- M/10*0.9`` with a random sign (0.1..1.9); geometric ops are unchanged
  (they are already 0 at M = 0). Equalize and AutoContrast have no magnitude. Deviation from
  timm: its increasing Posterize keeps ``4 - int(M/10*4)`` bits (4 at M = 0, not the
  identity). Only RandAugment takes ``levels``: AutoAugment's policies were searched with
  their own mappings.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

# The policy tables, RANDAUGMENT_OPS and get_policy live in data.policies (no TensorFlow), so
# the accelerator implementation (data.device_augment) reads the very same tables; re-exported
# here unchanged (``POLICIES`` is the same dict object).
from data.policies import (_MAX_LEVEL, POLICIES, RANDAUGMENT_OPS,  # noqa: F401
                           REPLACE_VALUE, check_levels,
                           get_policy, policy_imagenet, policy_reduced_cifar10, policy_svhn,
                           policy_test, policy_v0)


# ---------------------------------------------------------------------------------------
# Image operations. All take and return integer-valued float32 [H, W, 3] images.
# ---------------------------------------------------------------------------------------


def _to_u8_range(x):
    """Clips to [0, 255] and truncates, like ``tf.cast(x, tf.uint8)`` after clipping."""
    return tf.floor(tf.clip_by_value(x, 0.0, 255.0))


def blend(image1, image2, factor):
    """``image1 + factor * (image2 - image1)``, clipped and truncated (PIL ``Image.blend``)."""
    return _to_u8_range(image1 + factor * (image2 - image1))


_LUMA = (19595.0, 38470.0, 7471.0)


def grayscale(image, channels=1):
    """PIL's ``convert("L")``: ``(19595 R + 38470 G + 7471 B + 32768) >> 16``.

    Returns ``[H, W, channels]`` (the gray level repeated). Computed as
    ``floor(matmul(image, weights / 65536) + 0.5)``, which is exact in float32: each product
    (8-bit integer times a weight with at most 16 significant bits, scaled by 2**-16) and
    each partial sum (a multiple of 2**-16 below 256) fit in 24 bits. A matmul is several
    times faster on CPU than a broadcast multiply + reduce_sum, and producing the repeated
    channels directly avoids a broadcast in the following blend.
    """
    shape = tf.shape(image)
    weights = tf.constant([[v / 65536.0] * channels for v in _LUMA], tf.float32)
    gray = tf.floor(tf.matmul(tf.reshape(image, [-1, 3]), weights) + 0.5)
    return tf.reshape(gray, tf.concat([shape[:2], [channels]], 0))


def identity(image):
    return image


def invert(image):
    return 255.0 - image


# Note: selections are written as arithmetic with 0/1 masks; tf.where (SelectV2) is several
# times slower than a few fused element-wise ops on CPU.


def solarize(image, threshold=128.0):
    """Pixels >= threshold are inverted (PIL ``ImageOps.solarize``)."""
    above = tf.cast(image >= threshold, tf.float32)
    return image + above * (255.0 - 2.0 * image)


def solarize_add(image, addition=0.0, threshold=128.0):
    """Adds ``addition`` (clipped) to pixels below ``threshold`` (TF code ``solarize_add``)."""
    below = tf.cast(image < threshold, tf.float32)
    added = tf.clip_by_value(image + addition, 0.0, 255.0)
    return image + below * (added - image)


def posterize(image, bits):
    """Keeps the ``bits`` most significant bits (PIL ``ImageOps.posterize``)."""
    step = tf.pow(2.0, 8.0 - tf.cast(bits, tf.float32))
    return tf.floor(image / step) * step


def color(image, factor):
    """PIL ``ImageEnhance.Color``: blend with the grayscale image."""
    return blend(grayscale(image, channels=3), image, factor)


def brightness(image, factor):
    """PIL ``ImageEnhance.Brightness``: blend with black."""
    return _to_u8_range(image * factor)


def contrast(image, factor):
    """PIL ``ImageEnhance.Contrast``: blend with the (rounded) mean grayscale level.

    Deviation from the TF code, whose "mean" is ``num_pixels / 256`` (bug).
    """
    gray = grayscale(image)
    total = tf.reduce_sum(tf.cast(gray, tf.int32))
    count = tf.size(gray)
    mean = tf.floor(tf.cast(total, tf.float32) / tf.cast(count, tf.float32) + 0.5)
    return blend(mean, image, factor)


def sharpness(image, factor):
    """PIL ``ImageEnhance.Sharpness``: blend with ``ImageFilter.SMOOTH`` (borders kept).

    SMOOTH is the 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 = (box sum + 4 centre)
    / 13, computed with shifted slices (a depthwise conv is ~20x slower on CPU). The
    smoothed value is rounded (PIL); the 1-pixel border keeps the original pixels (PIL and
    the TF code). Images smaller than 3x3 are returned unchanged.
    """
    def smooth_blend():
        rows = image[:-2] + image[1:-1] + image[2:]
        box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
        centre = image[1:-1, 1:-1]
        smooth = tf.floor((box + 4.0 * centre) * (1.0 / 13.0) + 0.5)
        # Degenerate = original + zero-padded (smooth - original) on the interior.
        degenerate = image + tf.pad(smooth - centre, [[1, 1], [1, 1], [0, 0]])
        return blend(degenerate, image, factor)

    shape = tf.shape(image)
    return tf.cond((shape[0] >= 3) & (shape[1] >= 3), smooth_blend, lambda: image)


def autocontrast(image):
    """PIL ``ImageOps.autocontrast`` (cutoff 0): per channel, stretch [lo, hi] to [0, 255]."""
    # Channel-major layout: row reductions and [3, 1] broadcasts are ~2x faster on CPU than
    # reducing / broadcasting over the innermost axis of size 3.
    shape = tf.shape(image)
    planes = tf.transpose(tf.reshape(image, [-1, 3]))  # [3, H*W]
    lo = tf.reduce_min(planes, axis=1, keepdims=True)
    hi = tf.reduce_max(planes, axis=1, keepdims=True)
    valid = hi > lo
    # Channels with hi == lo are left unchanged: (x - 0) * 255 / 255 == x exactly.
    lo = tf.where(valid, lo, 0.0)
    span = tf.where(valid, hi - lo, 255.0)
    # No clip needed: lo <= x <= lo + span, so (x - lo) * 255 / span is in [0, 255] (float
    # rounding is monotone and 255 * span / span == 255 exactly).
    out = tf.floor((planes - lo) * 255.0 / span)
    return tf.reshape(tf.transpose(out), shape)


def _channel_offsets(image, dtype=tf.int32):
    """``[H, W, 3]`` tensor holding 0, 256, 512 in channels 0, 1, 2 (a constant when the
    static shape is known, else a ``tf.tile``). Adding it gives indices into a ``[3 * 256]``
    table without a broadcast over the innermost axis of size 3 (slow in Eigen)."""
    shape = image.shape
    if shape.rank == 3 and shape.is_fully_defined():
        return tf.constant(np.broadcast_to(np.array([0, 256, 512]), shape.as_list()), dtype)
    dyn = tf.shape(image)
    return tf.tile(tf.constant([[[0, 256, 512]]], dtype), [dyn[0], dyn[1], 1])


def equalize(image):
    """PIL ``ImageOps.equalize``: per-channel histogram equalization (exact).

    PIL: ``step = (sum of the non-empty bins - count of the last non-empty bin) // 255``;
    ``lut[i] = (step // 2 + number of pixels below i) // step`` (identity when step is 0).
    Implementation choices measured on CPU (224 px, one thread): the pixels stay in the HWC
    layout and get channel offsets (:func:`_channel_offsets`), so one 768-bin
    ``histogram_fixed_width`` gives the three histograms and one ``gather_nd`` applies the
    three tables, chosen over per-channel histograms on the channel-major layout (two
    transposes, a broadcast offset), ``bincount`` and ``gather``. Equalize costs 0.78 ms per
    224 px image (benchmarks/autoaugment_cost.py, docs/results/autoaugment_cost_2026-12-04_cpu.txt).
    """
    indices = tf.cast(image, tf.int32) + _channel_offsets(image)   # [H, W, 3] in 0..767
    # Bins of width 1 over [0, 768): (v - 0) / 1.0 is exact.
    histo = tf.reshape(tf.histogram_fixed_width(indices, [0, 768], nbins=768), [3, 256])
    nonzero = tf.cast(histo > 0, tf.int32)
    last = 255 - tf.argmax(tf.reverse(nonzero, [1]), axis=1, output_type=tf.int32)
    last_count = tf.gather(histo, last, batch_dims=1)
    step = (tf.reduce_sum(histo, axis=1) - last_count) // 255  # [3]
    safe_step = tf.maximum(step, 1)[:, None]
    exclusive = tf.cumsum(histo, axis=1, exclusive=True)
    lut = tf.clip_by_value((exclusive + safe_step // 2) // safe_step, 0, 255)
    lut = tf.where(step[:, None] > 0, lut, tf.range(256, dtype=tf.int32)[None, :])
    out = tf.gather_nd(tf.cast(tf.reshape(lut, [-1, 1]), tf.float32), indices[..., None])
    return tf.reshape(out, tf.shape(image))


def _transform(image, transform, replace=REPLACE_VALUE):
    """Applies an 8-parameter projective transform (output -> input mapping).

    Reference implementation (``tf.raw_ops.ImageProjectiveTransformV3``, nearest, constant
    fill); the ops use the equivalent but faster :func:`_affine` below.
    """
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=tf.reshape(tf.cast(transform, tf.float32), [1, 8]),
        output_shape=tf.shape(image)[:2],
        fill_value=tf.constant(replace, tf.float32),
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )
    return out[0]


def _affine(image, a0, a1, a2, b0, b1, b2, replace=REPLACE_VALUE):
    """Nearest-neighbour affine warp: output (x, y) samples input (a0 x + a1 y + a2,
    b0 x + b1 y + b2); outside pixels get ``replace``.

    Bit-identical to ``ImageProjectiveTransformV3`` (NEAREST, CONSTANT: it rounds the source
    coordinate v half away from zero, then bounds-checks), but computed as one row gather of
    [H*W, 3] pixels, which is ~2x cheaper on CPU than the projective-transform kernel.
    The rounding and the bounds check are folded into fewer [H, W] passes, with the same
    float32 expressions as ``sign(v) * floor(|v| + 0.5)``: for v >= 0 the index is
    ``floor(v + 0.5)`` and it is inside iff ``v + 0.5 < size``; for v < 0 the rounded value
    is >= 0 (i.e. 0) iff ``0.5 - v = |v| + 0.5 < 1``, and then ``floor(v + 0.5)`` is 0 too.
    """
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    ys = tf.range(hf)[:, None]
    xs = tf.range(wf)[None, :]
    vx = a0 * xs + a1 * ys + a2
    vy = b0 * xs + b1 * ys + b2
    tx = vx + 0.5
    ty = vy + 0.5
    inside = (tx < wf) & (0.5 - vx < 1.0) & (ty < hf) & (0.5 - vy < 1.0)
    # Index of the appended fill pixel (h * w) outside; exact in float32 below 2**24 pixels.
    flat = tf.where(inside, tf.floor(ty) * wf + tf.floor(tx), hf * wf)
    pixels = tf.concat([tf.reshape(image, [-1, 3]), tf.fill([1, 3], tf.cast(replace, tf.float32))], 0)
    return tf.reshape(tf.gather(pixels, tf.cast(flat, tf.int32)), shape)


def rotate(image, degrees, replace=REPLACE_VALUE):
    """Rotates about the image centre; positive degrees = counterclockwise as displayed.

    Same transform as ``tf.contrib.image.rotate`` used by the TF code: ``rotate(img, 90)``
    of a square image equals ``np.rot90(img)``.
    """
    radians = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    shape = tf.cast(tf.shape(image), tf.float32)
    h, w = shape[0] - 1.0, shape[1] - 1.0
    cos, sin = tf.cos(radians), tf.sin(radians)
    x_offset = (w - (cos * w - sin * h)) / 2.0
    y_offset = (h - (sin * w + cos * h)) / 2.0
    return _affine(image, cos, -sin, x_offset, sin, cos, y_offset, replace)


def shear_x(image, level, replace=REPLACE_VALUE):
    """Output pixel (x, y) samples input (x + level * y, y) (PIL affine convention)."""
    level = tf.cast(level, tf.float32)
    return _affine(image, 1.0, level, 0.0, 0.0, 1.0, 0.0, replace)


def shear_y(image, level, replace=REPLACE_VALUE):
    """Output pixel (x, y) samples input (x, y + level * x)."""
    level = tf.cast(level, tf.float32)
    return _affine(image, 1.0, 0.0, 0.0, level, 1.0, 0.0, replace)


def _shift(image, pixels, axis, replace):
    """``out[..., i, ...] = image[..., i + d, ...]`` (d = round(pixels)), else ``replace``.

    Same result as the nearest-neighbour projective transform of the TF code for integer
    shifts (TF rounds ``i + pixels``; for fractional ``pixels`` the two can differ at .5),
    but a slice + pad is ~4x cheaper than ``ImageProjectiveTransformV3`` on CPU.
    """
    size = tf.shape(image)[axis]
    d = tf.clip_by_value(tf.cast(tf.round(tf.cast(pixels, tf.float32)), tf.int32), -size, size)
    start = tf.maximum(d, 0)
    length = size - tf.abs(d)
    begin = tf.tensor_scatter_nd_update(tf.zeros([3], tf.int32), [[axis]], [start])
    sizes = tf.tensor_scatter_nd_update(tf.constant([-1, -1, -1]), [[axis]], [length])
    kept = tf.slice(image, begin, sizes)
    pads = tf.tensor_scatter_nd_update(tf.zeros([3, 2], tf.int32), [[axis]],
                                       [tf.stack([tf.maximum(-d, 0), start])])
    return tf.pad(kept, pads, constant_values=replace)


def translate_x(image, pixels, replace=REPLACE_VALUE):
    """Output pixel (x, y) samples input (x + pixels, y): content moves by ``-pixels``.

    As the TF code (``tf.contrib.image.translate(image, [-pixels, 0])``) and PIL
    ``transform(AFFINE, (1, 0, pixels, 0, 1, 0))``.
    """
    return _shift(image, pixels, 1, replace)


def translate_y(image, pixels, replace=REPLACE_VALUE):
    """Output pixel (x, y) samples input (x, y + pixels): content moves by ``-pixels``."""
    return _shift(image, pixels, 0, replace)


def cutout(image, pad_size, center_y, center_x, replace=REPLACE_VALUE):
    """Fills the ``2 pad_size`` square around (center_y, center_x) with ``replace``."""
    shape = tf.shape(image)
    rows = tf.range(shape[0])[:, None, None]
    cols = tf.range(shape[1])[None, :, None]
    pad = tf.cast(pad_size, tf.int32)
    in_rows = tf.cast((rows >= center_y - pad) & (rows < center_y + pad), tf.float32)
    in_cols = tf.cast((cols >= center_x - pad) & (cols < center_x + pad), tf.float32)
    return image + (in_rows * in_cols) * (replace - image)


# ---------------------------------------------------------------------------------------
# Level -> argument mapping (tensorflow/tpu ``level_to_arg``) and op dispatch.
# ---------------------------------------------------------------------------------------

_SIGNED_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")


class _Hparams:
    def __init__(self, translate_const, cutout_const, scale_to_image, posterize_mode, replace,
                 levels="tf"):
        if posterize_mode not in ("tf", "paper"):
            raise ValueError(f"posterize_mode must be 'tf' or 'paper', got {posterize_mode!r}")
        self.levels = check_levels(levels)
        self.translate_const = float(translate_const)
        self.cutout_const = float(cutout_const)
        self.scale_to_image = bool(scale_to_image)
        self.posterize_mode = posterize_mode
        self.replace = float(replace)


def _apply_op(name, image, level, sign_u, cy_u, cx_u, hp):
    """Applies op ``name`` at ``level`` (python float or scalar tensor, 0..10 scale).

    ``sign_u``: uniform [0, 1) deciding the sign of signed magnitudes (negative if < 0.5);
    ``cy_u``, ``cx_u``: uniforms for the cutout centre. ``hp.levels == "increasing"``: the
    level -> argument mappings in which level 0 is the identity of every op that has a
    magnitude (module docstring).
    """
    frac = level / _MAX_LEVEL
    sign = tf.where(sign_u < 0.5, -1.0, 1.0)
    if name == "Identity":
        return image
    if name == "AutoContrast":
        return autocontrast(image)
    if name == "Equalize":
        return equalize(image)
    if name == "Invert":
        return invert(image)
    if name == "Rotate":
        return rotate(image, sign * frac * 30.0, hp.replace)
    if name == "Posterize":
        bits = tf.floor(tf.cast(frac, tf.float32) * 4.0)
        if hp.posterize_mode == "paper" or hp.levels == "increasing":
            bits = 8.0 - bits
        return posterize(image, bits)
    if name == "Solarize":
        threshold = tf.floor(tf.cast(frac, tf.float32) * 256.0)
        if hp.levels == "increasing":
            threshold = 256.0 - threshold
        return solarize(image, threshold)
    if name == "SolarizeAdd":
        return solarize_add(image, tf.floor(tf.cast(frac, tf.float32) * 110.0))
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        if hp.levels == "increasing":
            factor = 1.0 + sign * (tf.cast(frac, tf.float32) * 0.9)
        else:
            factor = tf.cast(frac, tf.float32) * 1.8 + 0.1
        return {"Color": color, "Contrast": contrast, "Brightness": brightness,
                "Sharpness": sharpness}[name](image, factor)
    if name == "ShearX":
        return shear_x(image, sign * frac * 0.3, hp.replace)
    if name == "ShearY":
        return shear_y(image, sign * frac * 0.3, hp.replace)
    shape = tf.cast(tf.shape(image), tf.float32)
    if name in ("TranslateX", "TranslateY"):
        const = hp.translate_const
        if hp.scale_to_image:
            const = const * (shape[1] if name == "TranslateX" else shape[0]) / 224.0
        pixels = sign * frac * const
        fn = translate_x if name == "TranslateX" else translate_y
        return fn(image, pixels, hp.replace)
    if name == "Cutout":
        const = hp.cutout_const
        if hp.scale_to_image:
            const = const * tf.minimum(shape[0], shape[1]) / 224.0
        pad = tf.cast(tf.floor(frac * const), tf.int32)
        cy = tf.cast(tf.floor(cy_u * shape[0]), tf.int32)
        cx = tf.cast(tf.floor(cx_u * shape[1]), tf.int32)
        return cutout(image, pad, cy, cx, hp.replace)
    raise ValueError(f"unknown augmentation op {name!r}")


_KNOWN_OPS = set(RANDAUGMENT_OPS) | {"Invert", "SolarizeAdd", "Cutout"}


def _check_image(image, dtype=tf.uint8):
    image = tf.convert_to_tensor(image)
    if image.dtype != dtype:
        raise TypeError(f"expected a {dtype.name} image, got {image.dtype}")
    if image.shape.rank is not None and image.shape.rank != 3:
        raise ValueError(f"expected an [H, W, 3] image, got shape {image.shape}")
    return image


def _switch(index, branches, shape):
    """``tf.switch_case`` kept as a functional ``Case`` op (not lowered to Switch/Merge).

    Lowered control flow (the default inside ``tf.data`` functions) walks the dead nodes of
    every untaken branch for each element; marking the op with
    ``_lower_using_switch_merge=False`` makes the runtime call only the chosen branch
    function. On TF 2.21 the two cost the same within noise (lowered / not lowered 0.94, 0.002
    ms per untaken branch at 224 px: docs/results/autoaugment_cost_2026-12-04_cpu.txt); the
    functional form is kept because it does no work for untaken branches by construction.
    This uses the private ``Operation._set_attr``; if that API goes away the switch simply
    stays lowered (same results).
    """
    out = tf.switch_case(index, branches)
    if not tf.executing_eagerly():
        try:
            from tensorflow.core.framework import attr_value_pb2

            op = out.op
            while op.type not in ("Case", "StatelessCase") and op.inputs:
                op = op.inputs[0].op
            if op.type in ("Case", "StatelessCase"):
                op._set_attr("_lower_using_switch_merge", attr_value_pb2.AttrValue(b=False))
        except Exception:  # pragma: no cover - private API changed
            pass
    return tf.ensure_shape(out, shape)


def _index_from_uniform(u, n):
    return tf.minimum(tf.cast(tf.floor(u * n), tf.int32), n - 1)


@tf.autograph.experimental.do_not_convert
def distort_image_with_autoaugment(image, policy_name, seed, *, translate_const=250.0,
                                   cutout_const=100.0, scale_to_image=False,
                                   posterize_mode="tf", replace=REPLACE_VALUE):
    """Applies one random sub-policy of AutoAugment policy ``policy_name`` to ``image``.

    Args:
      image: uint8 ``[H, W, 3]`` tensor (any H, W).
      policy_name: ``"imagenet"`` (AutoAugment paper, ImageNet), ``"v0"`` (tensorflow/tpu,
        EfficientNet), ``"reduced_cifar10"`` (alias ``"cifar10"``), ``"svhn"``, ``"test"``.
      seed: stateless seed, shape ``[2]``, int32 or int64.
      translate_const, cutout_const: pixels at level 10 (TF code: 250 and 100).
      scale_to_image: interpret the constants at 224 px and scale them to the image size.
      posterize_mode: ``"tf"`` (bits = int(level/10*4), TF code) or ``"paper"``.
      replace: fill value of geometric ops and cutout (TF code: 128).

    Returns:
      uint8 tensor of the same shape. Each op of the chosen sub-policy is applied with its
      probability; signed magnitudes are negated with probability 1/2.
    """
    image = _check_image(image)
    out = distort_float_with_autoaugment(
        tf.cast(image, tf.float32), policy_name, seed, translate_const=translate_const,
        cutout_const=cutout_const, scale_to_image=scale_to_image,
        posterize_mode=posterize_mode, replace=replace)
    return tf.cast(out, tf.uint8)


@tf.autograph.experimental.do_not_convert
def distort_float_with_autoaugment(image, policy_name, seed, *, translate_const=250.0,
                                   cutout_const=100.0, scale_to_image=False,
                                   posterize_mode="tf", replace=REPLACE_VALUE):
    """:func:`distort_image_with_autoaugment` on float32 pixels, without the casts.

    ``image``: float32 ``[H, W, 3]`` holding integers in [0, 255] (e.g. ``floor(clip(x, 0,
    255))`` of a resized image, which equals its uint8 cast). Returns float32 holding the
    integers the uint8 version returns (every op ends in ``floor(clip(., 0, 255))``), so
    ``tf.cast(., tf.uint8)`` of it is that result exactly. The input pipeline uses this.
    """
    image = _check_image(image, tf.float32)
    policy = get_policy(policy_name)
    for sub in policy:
        for name, _, _ in sub:
            if name not in _KNOWN_OPS:
                raise ValueError(f"unknown op {name!r} in policy {policy_name!r}")
    hp = _Hparams(translate_const, cutout_const, scale_to_image, posterize_mode, replace)
    seed = tf.convert_to_tensor(seed)
    # Table-driven: the sub-policy index selects rows of constant (op, prob, level) tables
    # and each position runs one tf.switch_case over the policy's distinct ops (branch 0 =
    # not applied). Only the chosen op is computed. This is the same distribution as a
    # switch over the 25 sub-policies, but the graph holds each op once per position instead
    # of once per sub-policy (a smaller graph for tf.data to instantiate and, when a switch
    # is lowered, to walk per element).
    names = sorted({name for sub in policy for name, _, _ in sub})
    num_pos = max(len(sub) for sub in policy)
    ops_t, probs_t, levels_t = [], [], []
    for sub in policy:
        padded = list(sub) + [("Identity", 0.0, 0)] * (num_pos - len(sub))
        ops_t.append([names.index(n) + 1 if n != "Identity" else 0 for n, _, _ in padded])
        probs_t.append([float(p) for _, p, _ in padded])
        levels_t.append([float(lv) for _, _, lv in padded])
    ops_t = tf.constant(ops_t, tf.int32)
    probs_t = tf.constant(probs_t, tf.float32)
    levels_t = tf.constant(levels_t, tf.float32)

    rand = tf.random.stateless_uniform([1 + 4 * num_pos], seed=seed, dtype=tf.float32)
    index = _index_from_uniform(rand[0], len(policy))
    x = image
    for j in range(num_pos):
        u = rand[1 + 4 * j: 5 + 4 * j]
        op = tf.where(u[0] < probs_t[index, j], ops_t[index, j], 0)
        level = levels_t[index, j]
        branches = [lambda x=x: x] + [
            (lambda name=name, x=x, level=level, u=u:
             _apply_op(name, x, level, u[1], u[2], u[3], hp))
            for name in names]
        x = _switch(op, branches, image.shape)
    return x


@tf.autograph.experimental.do_not_convert
def distort_image_with_randaugment(image, num_layers, magnitude, seed, *,
                                   magnitude_scale=10.0, translate_const=100.0,
                                   scale_to_image=False, posterize_mode="tf",
                                   replace=REPLACE_VALUE, levels="tf"):
    """RandAugment (Cubuk et al. 2020): ``num_layers`` ops chosen uniformly, each applied.

    Args:
      image: uint8 ``[H, W, 3]`` tensor.
      num_layers: N, a python int.
      magnitude: M on the ``0..magnitude_scale`` scale (python number or scalar tensor),
        clipped to that range. ``magnitude_scale=10`` is the TF code's scale.
      seed: stateless seed, shape ``[2]``.
      translate_const: pixels at full magnitude (TF RandAugment code: 100).
      levels: ``"tf"`` (the TF code's level -> argument mappings) or ``"increasing"`` (M = 0
        is the identity of every op with a magnitude and a larger M is a stronger change;
        Posterize keeps 8 - int(M/10*4) bits whatever ``posterize_mode``; module docstring).
    Returns:
      uint8 tensor of the same shape.
    """
    image = _check_image(image)
    out = distort_float_with_randaugment(
        tf.cast(image, tf.float32), num_layers, magnitude, seed,
        magnitude_scale=magnitude_scale, translate_const=translate_const,
        scale_to_image=scale_to_image, posterize_mode=posterize_mode, replace=replace,
        levels=levels)
    return tf.cast(out, tf.uint8)


@tf.autograph.experimental.do_not_convert
def distort_float_with_randaugment(image, num_layers, magnitude, seed, *,
                                   magnitude_scale=10.0, translate_const=100.0,
                                   scale_to_image=False, posterize_mode="tf",
                                   replace=REPLACE_VALUE, levels="tf"):
    """:func:`distort_image_with_randaugment` on float32 pixels holding integers in [0, 255],
    without the casts (see :func:`distort_float_with_autoaugment`)."""
    image = _check_image(image, tf.float32)
    num_layers = int(num_layers)
    if num_layers < 0:
        raise ValueError("num_layers must be >= 0")
    hp = _Hparams(translate_const, 40.0, scale_to_image, posterize_mode, replace, levels)
    level = tf.clip_by_value(tf.cast(magnitude, tf.float32) / float(magnitude_scale), 0.0, 1.0)
    level = level * _MAX_LEVEL
    seed = tf.convert_to_tensor(seed)
    rand = tf.random.stateless_uniform([max(num_layers, 1), 2], seed=seed, dtype=tf.float32)
    x = image
    for i in range(num_layers):
        index = _index_from_uniform(rand[i, 0], len(RANDAUGMENT_OPS))
        sign_u = rand[i, 1]
        branches = [
            (lambda name=name, x=x: _apply_op(name, x, level, sign_u, 0.0, 0.0, hp))
            for name in RANDAUGMENT_OPS
        ]
        x = _switch(index, branches, image.shape)
    return x
