"""Model registry: named variants of ResNet / ResNet-D / Big-Little / Assemble-ResNet and
MobileNet V1, built as Keras 3 functional models (backend-neutral: TensorFlow, JAX, PyTorch).

Paper: Lee et al., 2020, "Compounding the Performance Improvements of Assembled Techniques
in a Convolutional Neural Network" (arXiv:2001.06268). Official code: clovaai/assembled-cnn.
See ``docs/MODELS.md`` for every variant, its parameter count and what it is.

Public API::

    build_model(name, num_classes=1000, input_shape=(224, 224, 3), weights=None, **overrides)
        -> keras.Model (weights: a run, a weights file or a timm name; models/pretrained.py)
    list_models() -> list[str]
    get_model_config(name, **overrides) -> ResNetConfig | MobileNetConfig
    set_drop_block_keep_prob(model, keep_prob)
    drop_block_layers(model) -> list[DropBlock2D]
    TABLE7: alias -> (base variant, config overrides, description), one per Table 7 row
    TABLE7_PAPER: alias -> Table7Row, the paper's epochs, sizes, top-1, mCE and img/s

``overrides`` are fields of the variant's config dataclass (:mod:`models.config`), e.g.
``build_model("resnet50", stem="cifar", num_classes=10, input_shape=(32, 32, 3))`` or
``build_model("assemble_resnet50", alpha=1, beta=2, pool="gem", embedding_dim=512)``.
"""
from __future__ import annotations

import dataclasses

from models.config import (MobileNetConfig, ResNetConfig, config_from_dict,  # noqa: F401
                           replace_config, validate_config)

__all__ = ["build_model", "list_models", "get_model_config", "set_drop_block_keep_prob",
           "drop_block_layers", "describe_model", "build_from_config", "ResNetConfig",
           "MobileNetConfig", "config_from_dict", "TABLE7", "TABLE7_PAPER", "Table7Row"]

_REGISTRY: dict = {}


def _register(name, base, description, **fields):
    cfg = dataclasses.replace(base, **fields)
    validate_config(cfg)
    _REGISTRY[name] = (cfg, description)


R = ResNetConfig()
# --- plain ResNets (v1.5: stride on the 3x3 conv), torchvision / timm layouts ------------
_register("resnet18", R, "ResNet-18 (basic blocks)", block="basic", layers=(2, 2, 2, 2))
_register("resnet34", R, "ResNet-34 (basic blocks)", block="basic", layers=(3, 4, 6, 3))
_register("resnet50", R, "ResNet-50 v1.5", layers=(3, 4, 6, 3))
_register("resnet101", R, "ResNet-101 v1.5", layers=(3, 4, 23, 3))
_register("resnet152", R, "ResNet-152 v1.5", layers=(3, 8, 36, 3))
# --- ResNet-D (He et al., 2019, "Bag of Tricks"): deep stem + avg-pool shortcut ----------
_D = dict(stem="deep", shortcut="avg2")
_register("resnet50d", R, "ResNet-50-D: deep stem, 2x2 avg-pool shortcut", layers=(3, 4, 6, 3), **_D)
_register("resnet101d", R, "ResNet-101-D", layers=(3, 4, 23, 3), **_D)
_register("resnet152d", R, "ResNet-152-D", layers=(3, 8, 36, 3), **_D)
# --- single tweaks ------------------------------------------------------------------------
_register("seresnet50", R, "SE-ResNet-50 (r=16, SE with biases as timm)", se_ratio=16,
          se_use_bias=True)
_register("skresnet50", R, "ResNet-50 with the official code's SK unit replacing each 3x3 "
          "conv (r=2, L=32)", selective_kernel=True)
_register("resnetblur50", R, "ResNet-50 + BlurPool (filter 3) after the strided 3x3 convs and "
          "after a stride-1 stem max-pool (timm resnetblur50)", anti_alias_type="sconv,max")
# --- Assemble-ResNet -----------------------------------------------------------------------
_ASSEMBLE = dict(arch="big_little", shortcut="avg2", selective_kernel=True,
                 anti_alias_type="sconv", anti_alias_filter_size=3, drop_block=True,
                 zero_gamma=True)
_register("assemble_resnet50", R, "Assemble-ResNet-50 (Table 7 E11 network): ResNet-D "
          "shortcut + Big-Little (alpha 2, beta 4) + SK + anti-alias sconv (3) + DropBlock, "
          "zero-gamma", layers=(3, 4, 6, 3), alpha=2, beta=4, **_ASSEMBLE)
_register("assemble_resnet152", R, "Assemble-ResNet-152 (Table 7 E12 network): as "
          "assemble_resnet50 with blocks [5, 12, 30, 3], alpha 1, beta 2",
          layers=(5, 12, 30, 3), alpha=1, beta=2, **_ASSEMBLE)
# --- MobileNet V1 ablation (paper section 4.5) ---------------------------------------------
M = MobileNetConfig()
_register("mobilenet_v1", M, "MobileNet V1 1.0")
_register("se_mobilenet_v1", M, "MobileNet V1 1.0 + SE (r=16) after every block", se_ratio=16)
_register("se_mobilenet_v1_r2", M, "MobileNet V1 1.0 + SE (r=2) after every block", se_ratio=2)

# --- Table 7 of the paper: one alias per row, mapped to the network that row trains -------
# Rows as in Lee et al. 2020, Table 7 (as transcribed in ../shared/reference/paper-tables.md,
# read from the official repository's figures/ablation_study_imagenet.png): E1 + ResNet-D, E2 +
# label smoothing, E3 + mixup, E4 + SE, E5 + DropBlock, E6 SE -> SK, E7 + knowledge
# distillation, E8 270 -> 600 epochs, E9 + Big-Little, E10 + anti-aliasing, E11 + AutoAugment
# = Assemble-ResNet-50, E12 = Assemble-ResNet-152. DropBlock has no weights. Rows that differ
# only in training (E1-E3, E6-E8, E10/E11) share a network; their recipes
# (official/configs/E*.cfg) hold the regularization. The paper's figures of each row are in
# TABLE7_PAPER below. See docs/MODELS.md "Table 7 rows".
_BL_ONLY = {"anti_alias_type": ""}
_SK_DB = {"selective_kernel": True, "drop_block": True}
TABLE7 = {
    "table7_e0": ("resnet50", {}, "E0 baseline ResNet-50"),
    "table7_e1": ("resnet50d", {}, "E1 + ResNet-D"),
    "table7_e2": ("resnet50d", {}, "E2 E1 network (+ label smoothing in the recipe)"),
    "table7_e3": ("resnet50d", {}, "E3 E1 network (+ label smoothing + mixup in the recipe)"),
    "table7_e4": ("resnet50d", {"se_ratio": 16}, "E4 + Squeeze-Excitation (r=16)"),
    "table7_e5": ("resnet50d", {"se_ratio": 16, "drop_block": True},
                  "E5 + DropBlock (stages 3, 4)"),
    "table7_e6": ("resnet50d", _SK_DB, "E6 SE replaced by Selective Kernel (+ DropBlock)"),
    "table7_e7": ("resnet50d", _SK_DB, "E7 E6 network (+ distillation in the recipe)"),
    "table7_e8": ("resnet50d", _SK_DB, "E8 E6 network (600 epochs in the recipe)"),
    "table7_e9": ("assemble_resnet50", _BL_ONLY, "E9 + Big-Little (alpha 2, beta 4)"),
    "table7_e10": ("assemble_resnet50", {}, "E10 + anti-aliasing (sconv, filter 3)"),
    "table7_e11": ("assemble_resnet50", {}, "E11 Assemble-ResNet-50 (+ AutoAugment in the recipe)"),
    "table7_e12": ("assemble_resnet152", {}, "E12 Assemble-ResNet-152"),
}
for _alias, (_base, _fields, _desc) in TABLE7.items():
    _register(_alias, _REGISTRY[_base][0], f"{_desc} (network of {_base}"
              + (f" with {_fields}" if _fields else "") + ")", **_fields)


@dataclasses.dataclass(frozen=True)
class Table7Row:
    """The paper's figures for one row of Table 7 (Lee et al. 2020, arXiv:2001.06268, Table 7,
    as transcribed in ../shared/reference/paper-tables.md): training ``epochs``, training and
    evaluation input sizes (px), ``top1`` (%, ILSVRC2012 validation), ``mce`` (ImageNet-C mean
    corruption error) and ``images_per_sec`` (inference throughput on one NVIDIA Tesla P40)."""
    row: str
    epochs: int
    train_size: int
    eval_size: int
    top1: float
    mce: float
    images_per_sec: int


def _t7(row, epochs, eval_size, top1, mce, images_per_sec):
    return Table7Row(row, epochs, 224, eval_size, top1, mce, images_per_sec)


# Keyed like TABLE7. Training is at 224 px in every row; E9-E12 evaluate at 256 px.
TABLE7_PAPER = {
    "table7_e0": _t7("E0", 120, 224, 76.87, 75.55, 536),
    "table7_e1": _t7("E1", 120, 224, 77.37, 75.73, 493),
    "table7_e2": _t7("E2", 120, 224, 78.35, 74.27, 493),
    "table7_e3": _t7("E3", 200, 224, 79.10, 68.19, 493),
    "table7_e4": _t7("E4", 200, 224, 79.71, 64.48, 420),
    "table7_e5": _t7("E5", 270, 224, 80.40, 62.64, 420),
    "table7_e6": _t7("E6", 270, 224, 81.40, 58.34, 359),
    "table7_e7": _t7("E7", 270, 224, 81.69, 57.08, 359),
    "table7_e8": _t7("E8", 600, 224, 82.10, 56.48, 359),
    "table7_e9": _t7("E9", 600, 256, 82.44, 55.20, 359),
    "table7_e10": _t7("E10", 600, 256, 82.69, 54.12, 312),
    "table7_e11": _t7("E11", 600, 256, 82.78, 48.89, 312),
    "table7_e12": _t7("E12", 600, 256, 84.19, 43.27, 143),
}
assert TABLE7_PAPER.keys() == TABLE7.keys()


# ---------------------------------------------------------------------------- API
def list_models() -> list:
    """Names of all registered variants (sorted)."""
    return sorted(_REGISTRY)


def describe_model(name: str) -> str:
    """One-line description of a variant."""
    return _lookup(name)[1]


def _lookup(name):
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(list_models())}")
    return _REGISTRY[name]


def get_model_config(name: str, **overrides):
    """The typed config dataclass of variant ``name`` with ``overrides`` applied (unknown keys
    and invalid values raise ``ValueError`` naming the argument)."""
    cfg = _lookup(name)[0]
    return replace_config(cfg, overrides)


def input_size_error(cfg, size: int):
    """Why the network of ``cfg`` cannot take ``size`` px inputs, or ``None``. Big-Little
    networks need a multiple of the total stride (the big branch is upsampled 2x and added to
    the little branch); every network needs at least the total stride."""
    stride = cfg.total_stride()
    if getattr(cfg, "arch", None) == "big_little" and size % stride:
        return (f"Big-Little networks need height and width divisible by the total stride "
                f"{stride} (the big branch is upsampled 2x and added to the little branch)")
    return None


def _check_build_args(cfg, num_classes, input_shape):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"invalid num_classes={num_classes!r}: must be a positive integer")
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(f"invalid input_shape={input_shape!r}: must be (height, width, channels)")
    if len(shape) != 3:
        raise ValueError(f"invalid input_shape={input_shape!r}: must be (height, width, channels)")
    h, w, c = shape
    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
        raise ValueError(f"invalid input_shape={input_shape!r}: channels must be a positive int")
    stride = cfg.total_stride()
    for size in (h, w):
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < stride:
            raise ValueError(
                f"invalid input_shape={input_shape!r}: height and width must be integers >= "
                f"{stride}, the network's total stride (or None)")
        reason = input_size_error(cfg, size)
        if reason:
            raise ValueError(f"invalid input_shape={input_shape!r}: {reason}")
    return shape


def build_from_config(cfg, num_classes=1000, input_shape=(224, 224, 3), name=None):
    """Builds the functional model of a config dataclass (see :func:`build_model`)."""
    validate_config(cfg)
    shape = _check_build_args(cfg, num_classes, input_shape)
    if cfg.arch == "resnet":
        from models.resnet import build_resnet
        return build_resnet(cfg, num_classes, shape, name=name or "resnet")
    if cfg.arch == "big_little":
        from models.big_little import build_big_little
        return build_big_little(cfg, num_classes, shape, name=name or "big_little")
    from models.mobilenet import build_mobilenet_v1
    return build_mobilenet_v1(cfg, num_classes, shape, name=name or "mobilenet_v1")


def build_model(name: str, num_classes=None, input_shape=(224, 224, 3), weights=None,
                **overrides):
    """Builds variant ``name`` as a functional ``keras.Model``.

    Input: preprocessed float images NHWC ``input_shape``. Output: float32 logits from the
    final Dense ``logits`` (float32 also under mixed precision). ``pool`` is the global
    pooling layer, ``embedding`` exists when ``embedding_dim > 0``, ``stage{1..4}_output``
    mark the stage outputs. Raises ``ValueError`` for unknown names (listing the valid ones)
    and invalid arguments / overrides (naming the argument).

    ``num_classes``: default 1000, or the class count of ``weights``.

    ``weights``: a run or checkpoint directory, ``.weights.h5`` (with the JSON that
    ``official.convert`` writes beside it), ``.keras``, a timm / torchvision state dict
    (``.safetensors``, ``.pth``, ``.bin``) or a timm hub name (``"resnet50d"``,
    ``"timm/resnet50d.ra2_in1k"``, downloaded with ``huggingface_hub``); see
    :mod:`models.pretrained`. The weights must belong to this network (compared as configs:
    ``table7_e1`` accepts ``resnet50d`` weights; another network raises
    :class:`models.pretrained.WeightsError`, a ``ValueError`` naming the file). Their overrides
    are used when none are given. A ``num_classes`` other than the weights' keeps a freshly
    initialized ``logits`` head (fine-tuning). The preprocessing the weights expect (timm:
    ``mean_std``) is in ``models.pretrained.resolve(weights).preprocessing()``; the programs
    apply it themselves.
    """
    if weights is not None:
        from models import pretrained
        return pretrained.build_with_weights(name, num_classes, input_shape, weights, overrides)
    cfg = get_model_config(name, **overrides)
    return build_from_config(cfg, 1000 if num_classes is None else num_classes, input_shape,
                             name=name)


def drop_block_layers(model) -> list:
    """All ``DropBlock2D`` layers of ``model`` (nested ones included)."""
    from models.layers.drop_block import DropBlock2D
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, DropBlock2D)]


def set_drop_block_keep_prob(model, keep_prob: float) -> int:
    """Assigns ``keep_prob`` (in (0, 1]) to every DropBlock2D of ``model``; returns how many."""
    if isinstance(keep_prob, bool) or not isinstance(keep_prob, (int, float)) \
            or not 0.0 < float(keep_prob) <= 1.0:
        raise ValueError(f"invalid keep_prob={keep_prob!r}: must be in (0, 1]")
    layers = drop_block_layers(model)
    for layer in layers:
        layer.keep_prob.assign(float(keep_prob))
    return len(layers)
