"""Batch-level training augmentation that runs on the accelerator (``keras.ops`` only).

Paper: Lee et al., 2020, "Compounding the Performance Improvements of Assembled Techniques in a
Convolutional Neural Network" (arXiv:2001.06268), section 3 "preprocessing": Inception-style
random-resized crop (area 0.05-1.0 of the image, aspect ratio 0.75-1.33 in the official code) and a
random horizontal flip, which this project normally does per image in ``tf.data`` (``data.preprocessing``,
decoding only the crop window).

This module is for inputs that are already decoded and resized on the device, i.e. the
trainer's JAX path with an ``npz:FILE`` source (no TensorFlow, no ``tf.data``):
``--device_augment=crop_flip``. The crop box is sampled per image, then the crop is resized
back to the input size with one per-sample affine map (``keras.ops.image.affine_transform``,
bilinear, half-pixel centres as ``tf.image.resize``, edge pixels repeated outside the image).

Deviations from the ``tf.data`` form, and why:

* the box is sampled as ``tf.image.sample_distorted_bounding_box`` does (area and log-uniform
  aspect, then a uniform position) but in continuous coordinates and with ``attempts`` tries
  (default 10, not 100) before falling back to the whole image: the tries are vectorized over
  the batch, and at 10 tries the fallback is already rare (< 1 % of images for the default
  ranges);
* the input is the already-resized image, not the original JPEG, so a crop is upsampled from
  fewer pixels than the ``tf.data`` path would decode (the same as any pre-decoded dataset).
"""
from __future__ import annotations

import math

from keras import ops
import keras

# The same values as data.preprocessing.AREA_RANGE / ASPECT_RATIO_RANGE, repeated because that
# module imports TensorFlow and this one must not (the JAX path runs without it);
# tests/test_device_augment.py checks that the two agree.
AREA_RANGE = (0.05, 1.0)
ASPECT_RATIO_RANGE = (0.75, 1.33)  # the official code's 1.33, not 4/3


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
