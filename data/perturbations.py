"""ImageNet-P style perturbation sequences, reproducible from a seed, for any image size.

Follows ``ImageNet-P/create_p/make_imagenet_p.py`` of hendrycks/robustness (Hendrycks &
Dietterich, ICLR 2019) for the 10 test perturbations at difficulty 1:

==============  =======  ==========================================================
perturbation    frames   frame ``i``
==============  =======  ==========================================================
gaussian_noise  31       0: clean; 1..30: independent ``clip(x + N(0, 0.03))``
shot_noise      31       0: clean; 1..30: independent ``Poisson(300 x) / 300``
motion_blur     31       motion blur radius 10, sigma 3, angle ``4 (i - 30)`` degrees
zoom_blur       31       running mean of zooms ``1 + 0.004 j``, ``j <= i``
snow            31       one fixed snow layer, motion-blurred at angle ``4 i - 150``
brightness      31       HSV value ``+ 0.02 (i - 15)``
translate       41       horizontal shift ``i - 20`` pixels
rotate          31       rotation ``i - 15`` degrees
tilt            31       3-D tilt (perspective) of ``i - 15`` degrees about both axes
scale           31       zoom ``(40 + 2.5 i) / 100``
==============  =======  ==========================================================

Noise sequences at difficulty 2 / 3 use sigma 0.05 / 0.08 and Poisson rates 120 / 60; for the
other perturbations the difficulty only changes the frame stride of the metric (see
:func:`official.robustness.flip_probability`).

Geometric perturbations (and zoom) are applied to the whole input image and the result is
center-cropped to ``crop_size`` (ImageNet-P: images resized to 256, crops of 224), so the
moving content comes from outside the crop instead of from padding.

Deviations: frames are returned as raw ``uint8`` arrays (ImageNet-P stores them as H.264
videos, whose compression adds its own small artefacts); motion blur uses the NumPy
re-implementation of ImageMagick's motion blur from ``imagecorruptions`` instead of Wand;
geometric warps use OpenCV bilinear interpolation with zero (black) fill like torchvision's
``affine`` but not bit-identical to it; the snow layer is sized to the crop. The 4 extra
ImageNet-P perturbations (speckle_noise, gaussian_blur, spatter, shear) are not generated.

Randomness (noise draws, the snow layer) comes from a ``numpy.random.Generator`` seeded from
``(seed, index, perturbation, difficulty)``; NumPy's global state is never used.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["PERTURBATIONS", "NOISE_PERTURBATIONS", "NUM_FRAMES", "perturbation_sequence"]

PERTURBATIONS = ("gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow",
                 "brightness", "translate", "rotate", "tilt", "scale")
NOISE_PERTURBATIONS = ("gaussian_noise", "shot_noise")
NUM_FRAMES = {name: 31 for name in PERTURBATIONS}
NUM_FRAMES["translate"] = 41

_GAUSSIAN_SIGMA = {1: 0.03, 2: 0.05, 3: 0.08}
_SHOT_RATE = {1: 300.0, 2: 120.0, 3: 60.0}


def _validate(name, difficulty):
    if not isinstance(name, str) or name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; valid names: {', '.join(PERTURBATIONS)}")
    if isinstance(difficulty, bool) or difficulty not in (1, 2, 3):
        raise ValueError(f"difficulty must be 1, 2 or 3, got {difficulty!r}")


def _rng(seed, index, name, difficulty):
    entropy = [int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF,
               int(index) & 0xFFFFFFFF, (int(index) >> 32) & 0xFFFFFFFF,
               100 + PERTURBATIONS.index(name), difficulty]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _center_crop(image, size):
    h, w = image.shape[:2]
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return image[top:top + size[0], left:left + size[1]]


def _warp_affine(image, matrix):
    import cv2  # pylint: disable=import-outside-toplevel
    h, w = image.shape[:2]
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _affine(image, angle=0.0, translate=(0.0, 0.0), scale=1.0):
    """Rotation (degrees, counter-clockwise) and scale about the center, then translation."""
    import cv2  # pylint: disable=import-outside-toplevel
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, scale)
    matrix[0, 2] += translate[0]
    matrix[1, 2] += translate[1]
    return _warp_affine(image, matrix)


def _tilt(image, degrees):
    import cv2  # pylint: disable=import-outside-toplevel
    h, w = image.shape[:2]
    phi = theta = np.deg2rad(degrees)
    f = math.sqrt(w ** 2 + h ** 2)
    p1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
    rx = np.array([[1, 0, 0, 0], [0, np.cos(theta), -np.sin(theta), 0],
                   [0, np.sin(theta), np.cos(theta), 0], [0, 0, 0, 1]])
    ry = np.array([[np.cos(phi), 0, -np.sin(phi), 0], [0, 1, 0, 0],
                   [np.sin(phi), 0, np.cos(phi), 0], [0, 0, 0, 1]])
    t = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
    p2 = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
    matrix = p2 @ t @ rx @ ry @ p1
    return cv2.warpPerspective(image, matrix, (w, h))


def _brightness(image, delta):
    import skimage.color  # pylint: disable=import-outside-toplevel
    x = skimage.color.rgb2hsv(image / 255.0)
    x[:, :, 2] = np.clip(x[:, :, 2] + delta, 0, 1)
    return np.uint8(np.clip(skimage.color.hsv2rgb(x), 0, 1) * 255)


def _motion_blur(x, radius, sigma, angle):
    from imagecorruptions.corruptions import _motion_blur as mb  # pylint: disable=import-outside-toplevel
    return mb(x, radius=radius, sigma=sigma, angle=angle)


def perturbation_sequence(image, name: str, seed: int = 0, index: int = 0,
                          crop_size=None, difficulty: int = 1) -> np.ndarray:
    """The ImageNet-P frame sequence of one image.

    Args:
      image: ``uint8`` ``[H, W, 3]`` (``[H, W]`` is treated as gray RGB), e.g. an image whose
        shorter side was resized to 256.
      name: one of :data:`PERTURBATIONS`.
      seed, index: experiment seed and a stable per-image key (noise and snow draws).
      crop_size: ``int`` or ``(h, w)`` of the center crop returned (default: the input size).
      difficulty: 1..3; changes the noise strength of noise sequences only.

    Returns:
      ``uint8`` ``[NUM_FRAMES[name], h, w, 3]``.
    """
    _validate(name, difficulty)
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape [H, W, 3], got {image.shape}")
    if crop_size is None:
        crop = image.shape[:2]
    elif np.ndim(crop_size) == 0:
        crop = (int(crop_size), int(crop_size))
    else:
        crop = tuple(int(s) for s in crop_size)
    if crop[0] > image.shape[0] or crop[1] > image.shape[1] or min(crop) < 1:
        raise ValueError(f"crop_size {crop} does not fit in an image of shape {image.shape[:2]}")
    rng = _rng(seed, index, name, difficulty)
    frames = []
    n = NUM_FRAMES[name]
    clean = _center_crop(image, crop)

    if name == "gaussian_noise":
        x = clean / 255.0
        frames.append(clean)
        for _ in range(1, n):
            noisy = np.clip(x + _GAUSSIAN_SIGMA[difficulty] * rng.standard_normal(x.shape), 0, 1)
            frames.append(np.uint8(255 * noisy))
    elif name == "shot_noise":
        x = clean / 255.0
        rate = _SHOT_RATE[difficulty]
        frames.append(clean)
        for _ in range(1, n):
            frames.append(np.uint8(255 * np.clip(rng.poisson(x * rate) / rate, 0, 1)))
    elif name == "motion_blur":
        for i in range(n):
            blurred = _motion_blur(clean, radius=10, sigma=3, angle=(i - 30) * 4)
            frames.append(np.uint8(np.clip(blurred, 0, 255)))
    elif name == "zoom_blur":
        frames.append(clean)
        total = clean.astype(np.float64) / 255.0
        for i in range(1, n):
            zoomed = _center_crop(_affine(image, scale=1 + 0.004 * i), crop) / 255.0
            total = total + zoomed
            frames.append(np.uint8(np.clip(total / (i + 1), 0, 1) * 255))
    elif name == "snow":
        import cv2  # pylint: disable=import-outside-toplevel
        from imagecorruptions.corruptions import clipped_zoom  # pylint: disable=import-outside-toplevel
        x = clean / 255.0
        layer = rng.normal(size=crop, loc=0.05, scale=0.3)
        layer = clipped_zoom(layer[..., np.newaxis], 3)[:crop[0], :crop[1]]
        layer[layer < 0.5] = 0
        layer = np.clip(layer.squeeze(-1), 0, 1)
        layer = np.round(layer * 255).astype(np.uint8)
        gray = cv2.cvtColor(np.float32(x), cv2.COLOR_RGB2GRAY)[..., np.newaxis]
        base = 0.85 * x + 0.15 * np.maximum(x, gray * 1.5 + 0.5)
        for i in range(n):
            moving = _motion_blur(layer.astype(np.float64), radius=14, sigma=4, angle=i * 4 - 150)
            moving = (np.round(np.clip(moving, 0, 255)) / 255.0)[..., np.newaxis]
            frames.append(np.uint8(np.clip(base + moving + np.rot90(moving, k=2), 0, 1) * 255))
    elif name == "brightness":
        for i in range(n):
            frames.append(_brightness(clean, (i - 15) * 2 / 100.0))
    elif name == "translate":
        for i in range(n):
            frames.append(_center_crop(_affine(image, translate=(i - 20, 0)), crop))
    elif name == "rotate":
        for i in range(n):
            frames.append(_center_crop(_affine(image, angle=i - 15), crop))
    elif name == "tilt":
        for i in range(n):
            frames.append(_center_crop(_tilt(image, i - 15), crop))
    elif name == "scale":
        for i in range(n):
            frames.append(_center_crop(_affine(image, scale=(i * 2.5 + 40) / 100.0), crop))
    return np.stack(frames).astype(np.uint8)
