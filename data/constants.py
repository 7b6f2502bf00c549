"""Constants and size rules both input paths need, without TensorFlow (as ``timm/data/constants.py``).

:mod:`data.preprocessing` (the ``tf.data`` path, TensorFlow) and :mod:`data.device_augment`
(``keras.ops``, also on the JAX path where TensorFlow is absent) read the paper's normalization
and crop parameters from here, and start-up checks such as ``official.train``'s check that the
evaluation size suits a Big-Little network use :func:`eval_sizes` without importing TensorFlow.
Values follow ``preprocessing/imagenet_preprocessing.py`` of clovaai/assembled-cnn.
"""
from __future__ import annotations

import re

# The paper's RGB means (``imagenet_preprocessing.CHANNEL_MEANS``), for ``normalization="mean"``.
CHANNEL_MEANS = (123.68, 116.78, 103.94)
# ImageNet mean / std in 0..255 units, for ``normalization="mean_std"``.
IMAGENET_MEAN = (0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0)
IMAGENET_STD = (0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0)
NORMALIZATIONS = ("mean", "mean_std")

# Random-resized-crop parameters of the paper (``_decode_crop_and_flip``).
MIN_OBJECT_COVERED = 0.1
ASPECT_RATIO_RANGE = (0.75, 1.33)  # the official code's 1.33, not 4/3
AREA_RANGE = (0.05, 1.0)
MAX_ATTEMPTS = 100

# Default eval crop fraction: 224 / 256.
CROP_FRACTION = 0.875

_NAMED_EVAL = re.compile(r"^imagenet_(\d{2,4})(a?)$")


def eval_sizes(image_size: int, eval_preprocess="imagenet") -> tuple[int, int]:
    """Returns ``(resize_short_side, crop_size)`` for an eval preprocessing type.

    Types, as in ``utils/data_util.py`` of the official code:

    * ``"imagenet"``: crop ``image_size``, short side ``int(image_size / 0.875)``
      (224 -> 256 then 224; at 256 -> 292).
    * ``"imagenet_224_256"``: train at 224, evaluate at 256: resize 292, crop 256.
    * ``"imagenet_224_256a"``: resize 257, crop 256.
    * ``"imagenet_NNN"``: crop NNN, resize ``int(NNN / 0.875)``; ``"imagenet_NNNa"``: crop NNN,
      resize NNN + 1. These types fix the eval size whatever ``image_size`` is.
    * a float in (0, 1] (or its string, e.g. ``"0.9"``): crop fraction: crop ``image_size``,
      resize ``int(image_size / fraction)``.
    * an int >= ``image_size`` (or its string, e.g. ``"320"``): resize the short side to it,
      crop ``image_size``.
    """
    image_size = int(image_size)
    ep = eval_preprocess
    if isinstance(ep, str):
        if ep == "imagenet":
            return int(image_size / CROP_FRACTION), image_size
        if ep == "imagenet_224_256":
            return int(256 / CROP_FRACTION), 256
        if ep == "imagenet_224_256a":
            return 257, 256
        m = _NAMED_EVAL.match(ep)
        if m:
            size = int(m.group(1))
            return (size + 1, size) if m.group(2) else (int(size / CROP_FRACTION), size)
        try:
            ep = float(ep) if ("." in ep or "e" in ep.lower()) else int(ep)
        except ValueError:
            raise ValueError(
                f"unknown eval_preprocess {eval_preprocess!r}: use 'imagenet', 'imagenet_224_256', "
                "'imagenet_224_256a', 'imagenet_NNN', 'imagenet_NNNa', a crop fraction in (0, 1] "
                "or a short-side size >= image_size") from None
    if isinstance(ep, bool):
        raise ValueError(f"invalid eval_preprocess {eval_preprocess!r}")
    if isinstance(ep, float):
        if not 0.0 < ep <= 1.0:
            raise ValueError(f"eval crop fraction must be in (0, 1], got {ep}")
        return int(image_size / ep + 1e-6), image_size
    if isinstance(ep, int):
        if ep < image_size:
            raise ValueError(f"eval resize size {ep} is smaller than the crop size {image_size}")
        return ep, image_size
    raise ValueError(f"invalid eval_preprocess {eval_preprocess!r}")


def eval_image_size(image_size: int, eval_preprocess="imagenet") -> int:
    """The side of the images that :func:`preprocess_for_eval` returns."""
    return eval_sizes(image_size, eval_preprocess)[1]
