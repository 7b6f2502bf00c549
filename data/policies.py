"""AutoAugment / RandAugment policy tables and constants, without TensorFlow.

Shared by the host implementation (``data.autoaugment``, TensorFlow ops inside ``tf.data``)
and the accelerator implementation (``data.device_augment``, ``keras.ops`` only, which must
import on the JAX machine without TensorFlow), so both read the very same tables.

Tables: (op name, probability, level on the 0..10 integer scale), one list of sub-policies
per policy. Sources: the AutoAugment paper (Cubuk et al., CVPR 2019, arXiv:1805.09501,
appendix) for ``imagenet``; tensorflow/tpu ``models/official/efficientnet/autoaugment.py``
(``policy_v0``) and clovaai/assembled-cnn ``preprocessing/autoaugment.py`` for the others
(see docs/AUGMENTATION.md for what was and was not checked against the paper).
"""
from __future__ import annotations

_MAX_LEVEL = 10.0
REPLACE_VALUE = 128.0
#: RandAugment's level -> argument mappings: the TF code's, or timm-style "increasing" ones
#: in which level 0 is the identity of every op with a magnitude (``data.autoaugment``).
LEVEL_MAPPINGS = ("tf", "increasing")


def check_levels(levels, name="levels"):
    """Returns ``levels``; raises ``ValueError`` naming ``name`` unless it is one of
    :data:`LEVEL_MAPPINGS` (the host, the device and ``InputSpec`` share this check)."""
    if levels not in LEVEL_MAPPINGS:
        raise ValueError(f"{name} must be one of {LEVEL_MAPPINGS}, got {levels!r}")
    return levels


def policy_imagenet():
    """The ImageNet policy of the AutoAugment paper (appendix table; 25 sub-policies).

    The paper lists 5 policies x 5 sub-policies; several sub-policies appear twice, as in
    the paper and in clovaai/assembled-cnn ``imagenet_policies()``.
    """
    return [
        [("Posterize", 0.4, 8), ("Rotate", 0.6, 9)],
        [("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)],
        [("Equalize", 0.8, 8), ("Equalize", 0.6, 3)],
        [("Posterize", 0.6, 7), ("Posterize", 0.6, 6)],
        [("Equalize", 0.4, 7), ("Solarize", 0.2, 4)],
        [("Equalize", 0.4, 4), ("Rotate", 0.8, 8)],
        [("Solarize", 0.6, 3), ("Equalize", 0.6, 7)],
        [("Posterize", 0.8, 5), ("Equalize", 1.0, 2)],
        [("Rotate", 0.2, 3), ("Solarize", 0.6, 8)],
        [("Equalize", 0.6, 8), ("Posterize", 0.4, 6)],
        [("Rotate", 0.8, 8), ("Color", 0.4, 0)],
        [("Rotate", 0.4, 9), ("Equalize", 0.6, 2)],
        [("Equalize", 0.0, 7), ("Equalize", 0.8, 8)],
        [("Invert", 0.6, 4), ("Equalize", 1.0, 8)],
        [("Color", 0.6, 4), ("Contrast", 1.0, 8)],
        [("Rotate", 0.8, 8), ("Color", 1.0, 2)],
        [("Color", 0.8, 8), ("Solarize", 0.8, 7)],
        [("Sharpness", 0.4, 7), ("Invert", 0.6, 8)],
        [("ShearX", 0.6, 5), ("Equalize", 1.0, 9)],
        [("Color", 0.4, 0), ("Equalize", 0.6, 3)],
        [("Equalize", 0.4, 7), ("Solarize", 0.2, 4)],
        [("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)],
        [("Invert", 0.6, 4), ("Equalize", 1.0, 8)],
        [("Color", 0.6, 4), ("Contrast", 1.0, 8)],
        [("Equalize", 0.8, 8), ("Equalize", 0.6, 3)],
    ]


def policy_v0():
    """Policy ``v0`` of tensorflow/tpu (EfficientNet; 25 sub-policies, uses SolarizeAdd)."""
    return [
        [("Equalize", 0.8, 1), ("ShearY", 0.8, 4)],
        [("Color", 0.4, 9), ("Equalize", 0.6, 3)],
        [("Color", 0.4, 1), ("Rotate", 0.6, 8)],
        [("Solarize", 0.8, 3), ("Equalize", 0.4, 7)],
        [("Solarize", 0.4, 2), ("Solarize", 0.6, 2)],
        [("Color", 0.2, 0), ("Equalize", 0.8, 8)],
        [("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)],
        [("ShearX", 0.2, 9), ("Rotate", 0.6, 8)],
        [("Color", 0.6, 1), ("Equalize", 1.0, 2)],
        [("Invert", 0.4, 9), ("Rotate", 0.6, 0)],
        [("Equalize", 1.0, 9), ("ShearY", 0.6, 3)],
        [("Color", 0.4, 7), ("Equalize", 0.6, 0)],
        [("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)],
        [("Solarize", 0.6, 8), ("Color", 0.6, 9)],
        [("Solarize", 0.2, 4), ("Rotate", 0.8, 9)],
        [("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)],
        [("ShearX", 0.0, 0), ("Solarize", 0.8, 4)],
        [("ShearY", 0.8, 0), ("Color", 0.6, 4)],
        [("Color", 1.0, 0), ("Rotate", 0.6, 2)],
        [("Equalize", 0.8, 4), ("Equalize", 0.0, 8)],
        [("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)],
        [("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)],
        [("Posterize", 0.8, 2), ("Solarize", 0.6, 10)],
        [("Solarize", 0.6, 8), ("Equalize", 0.6, 1)],
        [("Color", 0.8, 6), ("Rotate", 0.4, 5)],
    ]


def policy_reduced_cifar10():
    """The reduced-CIFAR-10 policy (25 sub-policies), as in clovaai ``cifar10_policies()``."""
    return [
        [("Invert", 0.1, 7), ("Contrast", 0.2, 6)],
        [("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)],
        [("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)],
        [("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)],
        [("AutoContrast", 0.5, 8), ("Equalize", 0.9, 2)],
        [("ShearY", 0.2, 7), ("Posterize", 0.3, 7)],
        [("Color", 0.4, 3), ("Brightness", 0.6, 7)],
        [("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)],
        [("Equalize", 0.6, 5), ("Equalize", 0.5, 1)],
        [("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)],
        [("Color", 0.7, 7), ("TranslateX", 0.5, 8)],
        [("Equalize", 0.3, 7), ("AutoContrast", 0.4, 8)],
        [("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)],
        [("Brightness", 0.9, 6), ("Color", 0.2, 8)],
        [("Solarize", 0.5, 2), ("Invert", 0.0, 3)],
        [("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)],
        [("Equalize", 0.2, 8), ("Equalize", 0.8, 4)],
        [("Color", 0.9, 9), ("Equalize", 0.6, 6)],
        [("AutoContrast", 0.8, 4), ("Solarize", 0.2, 8)],
        [("Brightness", 0.1, 3), ("Color", 0.7, 0)],
        [("Solarize", 0.4, 5), ("AutoContrast", 0.9, 3)],
        [("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)],
        [("AutoContrast", 0.9, 2), ("Solarize", 0.8, 3)],
        [("Equalize", 0.8, 8), ("Invert", 0.1, 3)],
        [("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1)],
    ]


def policy_svhn():
    """The SVHN policy (25 sub-policies), as in clovaai ``SVHN_policies()``."""
    return [
        [("ShearX", 0.9, 4), ("Invert", 0.2, 3)],
        [("ShearY", 0.9, 8), ("Invert", 0.7, 5)],
        [("Equalize", 0.6, 5), ("Solarize", 0.6, 6)],
        [("Invert", 0.9, 3), ("Equalize", 0.6, 3)],
        [("Equalize", 0.6, 1), ("Rotate", 0.9, 3)],
        [("ShearX", 0.9, 4), ("AutoContrast", 0.8, 3)],
        [("ShearY", 0.9, 8), ("Invert", 0.4, 5)],
        [("ShearY", 0.9, 5), ("Solarize", 0.2, 6)],
        [("Invert", 0.9, 6), ("AutoContrast", 0.8, 1)],
        [("Equalize", 0.6, 3), ("Rotate", 0.9, 3)],
        [("ShearX", 0.9, 4), ("Solarize", 0.3, 3)],
        [("ShearY", 0.8, 8), ("Invert", 0.7, 4)],
        [("Equalize", 0.9, 5), ("TranslateY", 0.6, 6)],
        [("Invert", 0.9, 4), ("Equalize", 0.6, 7)],
        [("Contrast", 0.3, 3), ("Rotate", 0.8, 4)],  # 'contrast' (lower case) in the TF code
        [("Invert", 0.8, 5), ("TranslateY", 0.0, 2)],
        [("ShearY", 0.7, 6), ("Solarize", 0.4, 8)],
        [("Invert", 0.6, 4), ("Rotate", 0.8, 4)],
        [("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)],
        [("ShearX", 0.1, 6), ("Invert", 0.6, 5)],
        [("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)],
        [("ShearY", 0.8, 4), ("Invert", 0.8, 8)],
        [("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)],
        [("ShearY", 0.8, 5), ("AutoContrast", 0.7, 3)],
        [("ShearX", 0.7, 2), ("Invert", 0.1, 5)],
    ]


def policy_test():
    """Debugging policy of the TF code."""
    return [[("TranslateX", 1.0, 4), ("Equalize", 1.0, 10)]]


POLICIES = {
    "imagenet": policy_imagenet,
    "v0": policy_v0,
    "reduced_cifar10": policy_reduced_cifar10,
    "cifar10": policy_reduced_cifar10,
    "svhn": policy_svhn,
    "test": policy_test,
}

#: The 14 RandAugment operations of the RandAugment paper (section 3).
RANDAUGMENT_OPS = (
    "Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Posterize",
    "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY",
)


def get_policy(policy_name):
    """Returns the policy table (list of sub-policies) for ``policy_name``."""
    key = str(policy_name).lower()
    if key not in POLICIES:
        raise ValueError(f"unknown AutoAugment policy {policy_name!r}; valid: {sorted(POLICIES)}")
    return POLICIES[key]()

