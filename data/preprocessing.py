"""The paper's ImageNet preprocessing as plain TensorFlow functions.

Follows ``preprocessing/imagenet_preprocessing.py`` and ``utils/data_util.py`` of
clovaai/assembled-cnn (itself adapted from the TF ResNet "official/r1" code):

* training: Inception-style random-resized crop (``sample_distorted_bounding_box``:
  ``min_object_covered=0.1``, aspect ratio 0.75-1.33, area 0.05-1.0, 100 attempts, the whole
  image as fallback; sampled on the whole image: the original's training parser
  ``parse_record_sup`` passes no bounding boxes, and ``data.pipeline`` passes none either),
  decoded with the fused ``decode_and_crop_jpeg`` so only the crop window is decoded, bilinear
  resize to the training size, random horizontal flip (after the resize: same result up to
  float rounding, cheaper; see :func:`preprocess_for_train`). All randomness is stateless
  (``seed`` is a shape-[2] tensor).
* evaluation: aspect-preserving bilinear resize of the short side, then a central crop
  (see :func:`data.constants.eval_sizes` for the eval preprocessing types).
* normalization: ``"mean"`` subtracts the RGB means (the paper), ``"mean_std"`` uses the
  ImageNet mean and standard deviation.

Everything here is graph-safe so the SavedModel export can reuse :func:`preprocess_for_eval` and
:func:`normalize` in its serving function. Non-JPEG inputs (PNG, GIF, BMP, WebP) are decoded whole
and then cropped; every image is decoded with ``channels=3`` (grayscale and CMYK JPEGs give RGB).

Difference from the original: TF2 ``tf.image.resize`` (half-pixel centers) instead of TF1
``resize_images(align_corners=False)``; the two differ by a sub-pixel shift.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

# Re-exported: callers and tests read them as data.preprocessing.<name>.
from data.constants import (  # noqa: F401
    AREA_RANGE, ASPECT_RATIO_RANGE, CHANNEL_MEANS, CROP_FRACTION, IMAGENET_MEAN, IMAGENET_STD,
    MAX_ATTEMPTS, MIN_OBJECT_COVERED, NORMALIZATIONS, eval_image_size, eval_sizes)


def decode_image(image_bytes):
    """Decodes JPEG / PNG / GIF / BMP / WebP bytes to uint8 ``[H, W, 3]``."""
    return tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.io.decode_jpeg(image_bytes, channels=3),
        lambda: tf.ensure_shape(
            tf.io.decode_image(image_bytes, channels=3, expand_animations=False), [None, None, 3]))


def image_shape(image_bytes):
    """``[height, width, 3]`` (int32) of encoded image bytes (JPEG header only; else decodes)."""
    return tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.image.extract_jpeg_shape(image_bytes)[:2],
        lambda: tf.shape(decode_image(image_bytes))[:2])


def _sample_crop_window(shape_hw, bbox, seed):
    """Stateless random crop window ``[y, x, h, w]`` (int32) as in the paper."""
    if bbox is None:
        bbox = tf.zeros([1, 0, 4], tf.float32)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([tf.cast(shape_hw, tf.int32), [3]], 0),
        bounding_boxes=bbox,
        seed=seed,
        min_object_covered=MIN_OBJECT_COVERED,
        aspect_ratio_range=ASPECT_RATIO_RANGE,
        area_range=AREA_RANGE,
        max_attempts=MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def decode_and_random_crop(image_bytes, bbox, seed, fused=True, jpeg=None):
    """Random-resized-crop window decode. ``fused=False`` decodes the whole image, then crops.

    ``jpeg=True`` promises JPEG bytes (checked beforehand, e.g. with :func:`is_jpeg_py`): the
    graph then holds only the JPEG path, without the ``is_jpeg`` branch (same result).
    """
    seed = tf.convert_to_tensor(seed)

    def _jpeg():
        window = _sample_crop_window(tf.image.extract_jpeg_shape(image_bytes)[:2], bbox, seed)
        if fused:
            return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
        image = tf.io.decode_jpeg(image_bytes, channels=3)
        return image[window[0]:window[0] + window[2], window[1]:window[1] + window[3]]

    def _other():
        image = tf.ensure_shape(
            tf.io.decode_image(image_bytes, channels=3, expand_animations=False), [None, None, 3])
        window = _sample_crop_window(tf.shape(image)[:2], bbox, seed)
        return image[window[0]:window[0] + window[2], window[1]:window[1] + window[3]]

    if jpeg:
        return _jpeg()
    return tf.cond(tf.io.is_jpeg(image_bytes), _jpeg, _other)


def preprocess_for_train(image_bytes, image_size, seed, bbox=None, fused=True, jpeg=None):
    """Crop + resize + flip. Returns float32 ``[S, S, 3]`` in 0..255 (not normalized).

    ``seed``: stateless seed, shape ``[2]``; ``bbox``: float32 ``[1, num_boxes, 4]``
    (ymin, xmin, ymax, xmax in [0, 1]) to guide the crop, or None (the whole image; what the
    paper's training and ``data.pipeline`` use); ``jpeg``: see :func:`decode_and_random_crop`.

    Deviation in order, not in result: the paper's code flips the crop, then resizes; here the
    resized image is flipped. A bilinear resize with half-pixel centres is mirror-symmetric
    (output column ``x`` samples input ``(x + 0.5) * w / S - 0.5``; column ``S - 1 - x``
    samples its mirror ``w - 1 - that``), so the two orders agree up to float rounding
    (measured: at most 0.005 of 255, tests/test_data_pipeline.py). The flip is a per-pixel
    copy, and a crop of an ImageNet-size JPEG is usually larger than ``S x S``: flipping after
    the resize measured 0.08 CPU ms per image cheaper on Flowers-102 (short side 500) and
    0.02 ms (within the noise) on Imagewoof-320 (``benchmarks/jpeg_decode.py``; raw:
    docs/results/jpeg_decode_2026-12-04_cpu.txt).
    """
    seed = tf.cast(seed, tf.int64)
    image = decode_and_random_crop(image_bytes, bbox, seed, fused=fused, jpeg=jpeg)
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
    image = random_flip_left_right(image, seed + tf.constant([0x0F11, 0], tf.int64))
    return tf.ensure_shape(image, [image_size, image_size, 3])


def random_flip_left_right(image, seed):
    """``tf.image.stateless_random_flip_left_right`` of an ``[H, W, C]`` image, same result
    (the same uniform draw: flip iff ``u < 0.5``), but without its ``tf.cond`` and shape
    asserts: ``tf.reverse`` over the axes ``[1][:flip]`` (no axis: the input is returned)."""
    u = tf.random.stateless_uniform([], seed=seed, minval=0, maxval=1.0)
    axes = tf.slice(tf.constant([1]), [0], tf.reshape(tf.cast(u < 0.5, tf.int32), [1]))
    return tf.reverse(image, axes)


def aspect_preserving_resize(image, resize_min):
    """Resizes so the short side is ``resize_min`` (sizes truncated as in the paper)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(resize_min, tf.float32) / tf.reduce_min(shape)
    new_hw = tf.cast(shape * scale, tf.int32)
    return tf.image.resize(image, new_hw, method="bilinear")


def central_crop(image, crop_height, crop_width):
    shape = tf.shape(image)
    top = (shape[0] - crop_height) // 2
    left = (shape[1] - crop_width) // 2
    return tf.slice(image, [top, left, 0], [crop_height, crop_width, -1])


def preprocess_for_eval(image_bytes, image_size, eval_preprocess="imagenet"):
    """Decode, resize the short side, central crop. Returns float32 ``[S', S', 3]`` in 0..255.

    ``S'`` is :func:`eval_image_size` ``(image_size, eval_preprocess)``. Works on a scalar string
    tensor; map it over a batch of bytes for serving.
    """
    resize_min, crop = eval_sizes(image_size, eval_preprocess)
    image = decode_image(image_bytes)
    image = aspect_preserving_resize(image, resize_min)
    image = central_crop(image, crop, crop)
    return tf.ensure_shape(image, [crop, crop, 3])


def normalize(images, normalization="mean"):
    """Normalizes float images in 0..255 (any leading dims, channels last)."""
    images = tf.cast(images, tf.float32)
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; use one of {NORMALIZATIONS}")
    mean = CHANNEL_MEANS if normalization == "mean" else IMAGENET_MEAN
    scale = None if normalization == "mean" else tuple(1.0 / s for s in IMAGENET_STD)
    hwc = images.shape[-3:] if images.shape.rank is not None and images.shape.rank >= 3 else None
    if hwc is not None and hwc.is_fully_defined() and hwc.num_elements() <= 4096 * 4096 * 3:
        # Broadcasting a 3-vector over [H, W, 3] is slow in Eigen (~7x); use full-size
        # constants when the static shape is known (same values).
        mean = np.broadcast_to(np.asarray(mean, np.float32), hwc.as_list())
        scale = None if scale is None else np.broadcast_to(np.asarray(scale, np.float32),
                                                           hwc.as_list())
    images = images - tf.constant(mean, tf.float32)
    return images if scale is None else images * tf.constant(scale, tf.float32)


# --- cheap validity check (string ops only, never raises) -------------------------------------
REASON_OK = 0
REASON_UNKNOWN_FORMAT = 1
REASON_TRUNCATED = 2
REASON_EMPTY = 3
REASONS = {
    REASON_OK: "ok",
    REASON_UNKNOWN_FORMAT: "not an image (unknown format)",
    REASON_TRUNCATED: "truncated image (no end marker)",
    REASON_EMPTY: "empty file",
}
_TAIL = 64
# magic bytes (first 12 bytes; 0x100 = any byte): JPEG, PNG, GIF, BMP, WebP
_ANY = 0x100
_MAGIC = (
    (0xFF, 0xD8, 0xFF) + (_ANY,) * 9,
    (0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A) + (_ANY,) * 4,
    (0x47, 0x49, 0x46, 0x38) + (_ANY,) * 8,
    (0x42, 0x4D) + (_ANY,) * 10,
    (0x52, 0x49, 0x46, 0x46, _ANY, _ANY, _ANY, _ANY, 0x57, 0x45, 0x42, 0x50),
)


def check_image_bytes(image_bytes):
    """Returns an int32 reason code (0 = looks decodable) using only string ops.

    Recognises JPEG, PNG, GIF, BMP and WebP by their magic bytes; a JPEG must hold its end
    marker (FF D9) and a PNG its IEND chunk in the last 64 bytes, which catches truncated files.
    Corruption that this cannot see is caught when decoding (see ``data.pipeline``).
    """
    n = tf.strings.length(image_bytes)
    head = tf.io.decode_raw(tf.strings.substr(image_bytes, 0, 12), tf.uint8)
    head = tf.cast(tf.pad(head, [[0, 12 - tf.size(head)]], constant_values=0), tf.int32)
    magic = tf.constant(_MAGIC, tf.int32)
    match = tf.reduce_all((magic == head[None, :]) | (magic == _ANY), axis=1)  # [5]
    tail = tf.io.decode_raw(tf.strings.substr(image_bytes, tf.maximum(n - _TAIL, 0), _TAIL),
                            tf.uint8)
    tail = tf.cast(tf.pad(tail, [[_TAIL - tf.size(tail), 0]]), tf.int32)
    # big-endian 16-bit and 32-bit windows over the tail
    w16 = tail[:-1] * 256 + tail[1:]
    w32 = w16[:-2] * 65536 + w16[2:]
    jpeg_end = tf.reduce_any(tf.equal(w16, 0xFFD9))
    png_end = tf.reduce_any(tf.equal(w32, 0x49454E44))   # "IEND"
    truncated = (match[0] & ~jpeg_end) | (match[1] & ~png_end)
    return tf.where(
        n == 0, REASON_EMPTY,
        tf.where(~tf.reduce_any(match), REASON_UNKNOWN_FORMAT,
                 tf.where(truncated, REASON_TRUNCATED, REASON_OK)))


def check_image_bytes_py(image_bytes: bytes) -> int:
    """:func:`check_image_bytes` in Python, for bytes already in memory (same reason codes).

    The pipeline checks preloaded records once when building the dataset with this, instead
    of ~25 small graph ops per element.
    """
    n = len(image_bytes)
    if n == 0:
        return REASON_EMPTY
    head = bytes(image_bytes[:12]).ljust(12, b"\0")   # the graph version pads with zeros too
    match = [all(m == _ANY or m == h for m, h in zip(magic, head)) for magic in _MAGIC]
    if not any(match):
        return REASON_UNKNOWN_FORMAT
    tail = bytes(image_bytes[-_TAIL:])
    if (match[0] and b"\xff\xd9" not in tail) or (match[1] and b"IEND" not in tail):
        return REASON_TRUNCATED
    return REASON_OK


def is_jpeg_py(image_bytes: bytes) -> bool:
    """``tf.io.is_jpeg`` in Python (the first three bytes are FF D8 FF)."""
    return bytes(image_bytes[:3]) == b"\xff\xd8\xff"


# A valid 8x8 gray JPEG, decoded in place of rejected records so the map needs no branch.
PLACEHOLDER_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010101012c012c0000ffdb004300100b0c0e0c0a100e0d0e1211101318281a1816"
    "16183123251d283a333d3c3933383740485c4e404457453738506d51575f626768673e4d71797064785c6567"
    "63ffdb0043011112121815182f1a1a2f63423842636363636363636363636363636363636363636363636363"
    "6363636363636363636363636363636363636363636363636363ffc000110800080008030122000211010311"
    "01ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303"
    "020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f024"
    "33627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566"
    "6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7"
    "b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffc400"
    "1f0100030101010101010101010000000000000102030405060708090a0bffc400b511000201020404030407"
    "05040400010277000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a"
    "162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869"
    "6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9"
    "bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffda000c030100"
    "02110311003f0028a28a00ffd9")
