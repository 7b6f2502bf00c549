"""ImageNet-C style image corruptions, reproducible from a seed, for any image size.

The 15 benchmark corruptions of ImageNet-C (Hendrycks & Dietterich, "Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations", ICLR 2019) plus the 4 extra
("validation") corruptions that the Assemble-ResNet code evaluates as well
(clovaai/assembled-cnn, ``datasets/CE_dataset/CE_validation_generator.py`` and
``mce/eval_robustness.py``: speckle_noise, gaussian_blur, spatter, saturate), each at
severities 1-5.

Implementation: the corruption functions themselves come from ``imagecorruptions``
(package ``imagecorruptions-imaug==1.1.5``, a maintained fork of Michaelis et al.'s
``imagecorruptions`` that works with NumPy 2). That package is a port of the ImageNet-C code
to arbitrary image sizes with the same severity constants. This module adds:

* Reproducibility. ``imagecorruptions`` draws from NumPy's *global* random state (and, for
  ``impulse_noise`` and ``glass_blur``, from a fresh unseeded generator unless given a seed).
  :func:`corrupt` derives one 32-bit seed from ``(seed, index, corruption, severity)`` with
  ``numpy.random.SeedSequence``, seeds the global state with it under a lock, passes it to
  the two functions that take an explicit seed, and restores the caller's global state
  afterwards. The same arguments therefore always give the same bytes, in any order and from
  any thread, and the caller's own ``np.random`` stream is left untouched.
* Input checks: unknown corruption names and severities outside 1..5 raise ``ValueError``
  naming the bad value; images must be ``uint8`` ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]``
  with ``H, W >= 32`` (a limit of ``imagecorruptions``). Grayscale input is returned as RGB.
* A ``tf.numpy_function`` wrapper (:func:`tf_corrupt`) for on-the-fly use in ``tf.data``.

Where this deviates from the original ImageNet-C images (all inherited from
``imagecorruptions``, which generalizes the 224x224-only reference code to any size):

* ``motion_blur`` and ``snow`` use a NumPy re-implementation of ImageMagick's motion blur
  instead of Wand/ImageMagick (not installable everywhere); the results are visually
  equivalent but not bit-identical.
* ``elastic_transform`` uses size-relative parameters and no random affine pre-warp (the
  ImageNet-C code hard-codes 244-pixel constants and an affine step).
* ``frost`` rescales the texture when the image is larger than it and draws from all six
  textures (the Assemble-ResNet generator's ``np.random.randint(5)`` never picks the sixth);
  the textures are byte-identical to the ImageNet-C ones (tested against
  ``shared/data/imagenet-c-frost``).
* ``fog`` builds its plasma fractal at the next power of two above the image size (the
  reference code always uses 256 and crops).
* ``pixelate`` upsamples with NEAREST (the Assemble-ResNet generator uses BOX both ways).
* ``glass_blur`` shuffles pixels with Numba's RNG (seeded here), so even at 224x224 it is
  not the same random field as the reference code's NumPy RNG.
* The published ImageNet-C files are JPEG (quality 85) re-encodings of 224x224 center crops;
  :mod:`data.make_corruptions` can write JPEG q85 (its default) or lossless PNG.

Hence errors measured on images made here are close to, but not exactly, errors on the
released ImageNet-C files; compare models only on images generated the same way.
"""
from __future__ import annotations

import importlib.resources
import threading
from typing import Sequence

import numpy as np

__all__ = [
    "CORRUPTIONS_15", "CORRUPTIONS_EXTRA", "CORRUPTIONS_19", "CORRUPTION_CATEGORIES",
    "SEVERITIES", "MIN_IMAGE_SIZE", "validate_corruption", "validate_severity", "derive_seed",
    "corrupt", "corrupt_batch", "tf_corrupt", "frost_texture_paths",
]

CORRUPTIONS_15 = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
"""The 15 ImageNet-C benchmark corruptions, in the order of Hendrycks & Dietterich."""

CORRUPTIONS_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
"""The 4 held-out ("validation") corruptions of ImageNet-C, also evaluated by Assemble-ResNet."""

CORRUPTIONS_19 = CORRUPTIONS_15 + CORRUPTIONS_EXTRA
"""All 19 corruptions, in the order of ``ALEXNET_CE`` in assembled-cnn ``mce/eval_robustness.py``."""

CORRUPTION_CATEGORIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra": CORRUPTIONS_EXTRA,
}

SEVERITIES = (1, 2, 3, 4, 5)
MIN_IMAGE_SIZE = 32

# imagecorruptions functions that take an explicit ``seed`` argument (they do not use the
# global NumPy state: skimage's random_noise uses its own Generator, glass_blur seeds Numba).
_EXPLICIT_SEED = ("impulse_noise", "glass_blur")

_LOCK = threading.RLock()


def validate_corruption(name: str) -> str:
    """Returns ``name`` if it is one of :data:`CORRUPTIONS_19`, else raises ``ValueError``."""
    if not isinstance(name, str) or name not in CORRUPTIONS_19:
        raise ValueError(f"unknown corruption {name!r}; valid names: {', '.join(CORRUPTIONS_19)}")
    return name


def validate_severity(severity) -> int:
    """Returns ``severity`` as ``int`` if it is an integer in 1..5, else raises ``ValueError``."""
    if isinstance(severity, (bool, np.bool_)):
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    if not isinstance(severity, (int, np.integer)):
        try:
            as_float = float(severity)
        except (TypeError, ValueError):
            raise ValueError(f"severity must be an integer in 1..5, got {severity!r}") from None
        if not as_float.is_integer():
            raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
        severity = int(as_float)
    severity = int(severity)
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    return severity


def derive_seed(seed: int, index: int, name: str, severity: int) -> int:
    """The 32-bit seed used for one ``(seed, image index, corruption, severity)`` cell.

    Derived with ``numpy.random.SeedSequence`` so that neighbouring seeds or indices give
    statistically independent streams.
    """
    name = validate_corruption(name)
    severity = validate_severity(severity)
    entropy = [int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF,
               int(index) & 0xFFFFFFFF, (int(index) >> 32) & 0xFFFFFFFF,
               CORRUPTIONS_19.index(name), severity]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])


def _corruption_functions():
    # Imported lazily: imagecorruptions pulls in numba, cv2, skimage and scipy.
    from imagecorruptions import corruption_dict  # pylint: disable=import-outside-toplevel
    return corruption_dict


def _as_rgb_uint8(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape [H, W], [H, W, 1] or [H, W, 3], got {image.shape}")
    if image.shape[0] < MIN_IMAGE_SIZE or image.shape[1] < MIN_IMAGE_SIZE:
        raise ValueError(f"image height and width must be at least {MIN_IMAGE_SIZE} pixels "
                         f"(a limit of imagecorruptions), got {image.shape[:2]}")
    return np.ascontiguousarray(image)


def corrupt(image, name: str, severity: int, seed: int = 0, index: int = 0) -> np.ndarray:
    """Applies corruption ``name`` at ``severity`` (1..5) to one image, reproducibly.

    Args:
      image: ``uint8`` array ``[H, W, 3]`` (or ``[H, W]`` / ``[H, W, 1]``, treated as gray RGB),
        ``H, W >= 32``.
      name: one of :data:`CORRUPTIONS_19`.
      severity: integer 1..5.
      seed: the experiment seed.
      index: the image's index (or any stable per-image integer key) in the data set, so
        that different images get different noise for the same seed.

    Returns:
      ``uint8`` array ``[H, W, 3]``. The same arguments always give the same result, and
      NumPy's global random state is the same after the call as before it.
    """
    name = validate_corruption(name)
    severity = validate_severity(severity)
    image = _as_rgb_uint8(image)
    cell_seed = derive_seed(seed, index, name, severity)
    function = _corruption_functions()[name]
    from PIL import Image  # pylint: disable=import-outside-toplevel
    kwargs = {"seed": cell_seed} if name in _EXPLICIT_SEED else {}
    with _LOCK:
        saved = np.random.get_state()
        try:
            np.random.seed(cell_seed)
            out = function(Image.fromarray(image), severity, **kwargs)
        finally:
            np.random.set_state(saved)
    # Same rounding as imagecorruptions.corrupt: truncation by np.uint8 after clipping.
    out = np.asarray(out)
    if out.dtype != np.uint8:
        out = np.uint8(np.clip(out, 0, 255))
    if out.ndim == 2:
        out = np.stack([out] * 3, axis=-1)
    if out.shape != image.shape:
        raise RuntimeError(f"{name} returned shape {out.shape} for an image of shape {image.shape}")
    return out


def corrupt_batch(images, name: str, severity: int, seed: int = 0,
                  indices: Sequence[int] | None = None) -> np.ndarray:
    """:func:`corrupt` over a batch ``[B, H, W, 3]``; ``indices`` default to ``0..B-1``."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape [B, H, W, C], got {images.shape}")
    if indices is None:
        indices = range(images.shape[0])
    indices = list(indices)
    if len(indices) != images.shape[0]:
        raise ValueError(f"got {len(indices)} indices for a batch of {images.shape[0]} images")
    return np.stack([corrupt(img, name, severity, seed, int(i)) for img, i in zip(images, indices)])


def tf_corrupt(image, name: str, severity: int, seed: int = 0, index=0):
    """On-the-fly corruption inside ``tf.data``: ``tf.numpy_function`` around :func:`corrupt`.

    ``image`` is a ``uint8`` tensor ``[H, W, 3]`` with static or dynamic shape; ``index`` a
    scalar integer tensor (for example from ``Dataset.enumerate()``). Returns a ``uint8``
    tensor ``[H, W, 3]`` with the input's static shape. ``name`` / ``severity`` / ``seed``
    are Python values (validated now, not at graph run time)::

        ds = ds.enumerate().map(lambda i, x: (tf_corrupt(x["image"], "fog", 3, seed=0, index=i),
                                              x["label"]))
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    name = validate_corruption(name)
    severity = validate_severity(severity)
    seed = int(seed)

    def _fn(img, idx):
        return corrupt(img, name, severity, seed, int(idx))

    image = tf.convert_to_tensor(image)
    out = tf.numpy_function(_fn, [image, tf.cast(index, tf.int64)], tf.uint8, stateful=False)
    static = image.shape
    if static.rank == 3:
        out.set_shape([static[0], static[1], 3])
    else:
        out.set_shape([None, None, 3])
    return out


def frost_texture_paths() -> list:
    """Paths of the six frost textures shipped inside ``imagecorruptions``."""
    root = importlib.resources.files("imagecorruptions") / "frost"
    names = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"]
    return [root / n for n in names]


#: The extra of ``setup.py`` that installs ``imagecorruptions`` and what it imports (OpenCV,
#: scikit-image, SciPy, Numba); ``official.extras`` names the same extra.
INSTALL_HINT = "pip install 'assemble-cnn[robustness]'"


def available() -> bool:
    """True when ``imagecorruptions`` can be imported."""
    try:
        _corruption_functions()
    except ImportError:
        return False
    return True


def require_available(program: str = "this program") -> None:
    """Raises ``ImportError`` with the ``pip install`` line when ``imagecorruptions`` (or a
    package it imports) is missing; programs call it before any work."""
    try:
        _corruption_functions()
    except ImportError as e:
        raise ImportError(f"{program} needs imagecorruptions to corrupt images ({e}): "
                          f"{INSTALL_HINT}") from e
