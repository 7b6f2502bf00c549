"""Typed model configurations.

Every registered variant (see :mod:`models`) is one of these dataclasses with a few fields
overridden. ``dataclasses.asdict(config)`` is JSON-serializable (tuples become lists;
:func:`config_from_dict` turns them back), so a run directory can store the exact network.

Field names follow the official code's flags where one exists (clovaai/assembled-cnn,
``nets/hparams_config.py``): ``zero_gamma``, ``bn_momentum``, ``anti_alias_type``,
``anti_alias_filter_size``, ``embedding_size`` -> ``embedding_dim``, ``pool_type`` -> ``pool``,
``bl_alpha``/``bl_beta`` -> ``alpha``/``beta`` (the Big-Little paper's notation).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ARCHS = ("resnet", "big_little", "mobilenet_v1")
BLOCKS = ("basic", "bottleneck")
STEMS = ("classic", "deep", "cifar")
SHORTCUTS = ("conv", "avg2", "avg3")
POOLS = ("avg", "gem")
ANTI_ALIAS_PARTS = ("sconv", "max", "proj")
SK_VARIANTS = ("code", "sknet")


@dataclass
class BaseModelConfig:
    """Fields shared by every model config: squeeze-excitation, head and batch norm.

    Squeeze-excitation:
      se_ratio: squeeze-excitation ratio ``r`` (0 = off); where the SE unit sits is the
        subclass's business (see its docstring).
      se_use_bias: biases in the SE 1x1 convs (timm / SE paper: True; official code: False).
    Head:
      pool: ``"avg"`` global average pooling or ``"gem"`` generalized mean pooling (``gem_p``,
        fixed as in the official code unless ``gem_trainable_p``).
      embedding_dim: > 0 adds a bias-free dense (= 1x1 conv) + BN (layer ``embedding``) + ReLU
        between pooling and logits (official code's ``embedding_size``).
      dropout_rate: dropout before the logits (0 = off).
    Batch norm:
      bn_momentum: 0.997, bn_epsilon: 1e-5 (official code); synchronized_bn: cross-replica
        BN (``keras.layers.BatchNormalization(synchronized=True)``).

    Being the base class, these fields come first in ``dataclasses.fields`` /
    ``dataclasses.asdict`` order; configs are always built and loaded by keyword.
    """
    se_ratio: int = 0
    se_use_bias: bool = False
    pool: str = "avg"
    gem_p: float = 3.0
    gem_trainable_p: bool = False
    embedding_dim: int = 0
    dropout_rate: float = 0.0
    bn_momentum: float = 0.997
    bn_epsilon: float = 1e-5
    synchronized_bn: bool = False


@dataclass
class ResNetConfig(BaseModelConfig):
    """A ResNet v1.5 / ResNet-D / Big-Little ResNet and its tweaks.

    Architecture:
      arch: ``"resnet"`` (``models.resnet``) or ``"big_little"`` (``models.big_little``; the
        official code's ``resnet_version=2``).
      block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (expansion 4, stride on the 3x3
        conv: v1.5).
      layers: blocks per stage (4 stages).
      width: filters of the first stage (64); stage ``i`` uses ``width * 2**i``.
      stem: ``"classic"`` 7x7/2 conv + BN + ReLU (+ 3x3/2 max-pool for ``arch="resnet"``),
        ``"deep"`` ResNet-C/D stem (3x3/2 ``stem_width``, 3x3 ``stem_width``, 3x3 ``width``,
        each + BN + ReLU, then the max-pool), ``"cifar"`` 3x3/1 conv + BN + ReLU, no max-pool
        (total stride 8 instead of 32, for 32x32 inputs).
      stem_width: width of the first two convs of the deep stem (32).
      shortcut: projection shortcut: ``"conv"`` strided 1x1 conv (ResNet v1), ``"avg2"``
        2x2 average pool (stride s) then 1x1 conv (ResNet-D; paper, timm and the official
        Keras code ``network_tweaks/resnet_d.py``), ``"avg3"`` zero pad 1 + 3x3 average
        pool (stride s) then 1x1 conv (official estimator code's ``bl_projection_shortcut``).
      always_project: first block of every stage gets a projection shortcut even when
        stride 1 and channels match (official code's ``block_layer``; default: only
        when shapes differ, as torchvision / timm). Forced on by ``arch="big_little"``.
    Tweaks:
      se_ratio: squeeze-excitation after the last BN of each block (0 = off).
      selective_kernel: the 3x3 conv (+BN+ReLU) of each block is a ``SelectiveKernel``.
      sk_ratio, sk_min_dim, sk_variant: its ``r``, ``L`` and form (``"code"``: one 3x3 conv
        with 2f outputs split in two, the official code; ``"sknet"``: SKNet's two dilated
        branches).
      anti_alias_type: comma separated subset of ``sconv`` (the strided 3x3 conv runs at
        stride 1 and a BlurPool with the stride follows its ReLU; the paper's setting),
        ``max`` (stem max-pool at stride 1 followed by a BlurPool, as timm's resnetblur),
        ``proj`` (BlurPool before a stride-1 projection conv); the official code's flag.
      anti_alias_filter_size: BlurPool filter size, 1..7 (paper: 3).
      drop_block: DropBlock after each BN of the blocks of stages 3 and 4 and on their
        projection shortcuts (official code).
      drop_block_size: 7. drop_block_gamma_scales: per stage (official: 0, 0, 0.25, 1.0).
      drop_block_per_sample: False = one mask per batch (official code); True = one per
        sample (DropBlock paper, timm).
      zero_gamma: gamma of the last BN of each residual branch initialized to 0.
    Big-Little (``arch="big_little"``):
      alpha: little-branch width divisor; beta: little-branch depth divisor
        (little branch has ``max(1, n // beta - 1)`` blocks).
    ``se_use_bias``, head and batch norm: the fields of :class:`BaseModelConfig`.
    """
    arch: str = "resnet"
    block: str = "bottleneck"
    layers: tuple = (3, 4, 6, 3)
    width: int = 64
    stem: str = "classic"
    stem_width: int = 32
    shortcut: str = "conv"
    always_project: bool = False
    selective_kernel: bool = False
    sk_ratio: int = 2
    sk_min_dim: int = 32
    sk_variant: str = "code"
    anti_alias_type: str = ""
    anti_alias_filter_size: int = 3
    drop_block: bool = False
    drop_block_size: int = 7
    drop_block_gamma_scales: tuple = (0.0, 0.0, 0.25, 1.0)
    drop_block_per_sample: bool = False
    zero_gamma: bool = False
    alpha: int = 2
    beta: int = 4

    def anti_alias_parts(self) -> tuple:
        return tuple(p.strip() for p in self.anti_alias_type.split(",") if p.strip())

    def total_stride(self) -> int:
        """Downsampling factor from the input to the last feature map."""
        return 8 if self.stem == "cifar" else 32


@dataclass
class MobileNetConfig(BaseModelConfig):
    """MobileNet V1 (Howard et al., 2017) with optional squeeze-excitation (the paper's
    mobile ablation, Lee et al. 2020, section 4.5).

      width_multiplier: the MobileNet ``alpha`` (channel multiplier, 1.0).
      se_ratio: 0 = off, else SE (ratio r, no bias as in the official code's ``se_block``)
        after each depthwise-separable block.
      activation: ``"relu6"`` (TF-slim / keras.applications) or ``"relu"`` (MobileNet paper).
      cifar_stem: first conv at stride 1 (total stride 16 instead of 32).
    ``se_use_bias``, head and batch norm: the fields of :class:`BaseModelConfig`.
    """
    arch: str = "mobilenet_v1"
    width_multiplier: float = 1.0
    activation: str = "relu6"
    cifar_stem: bool = False

    def total_stride(self) -> int:
        return 16 if self.cifar_stem else 32


ModelConfig = ResNetConfig | MobileNetConfig

_TUPLE_FIELDS = ("layers", "drop_block_gamma_scales")


def _fail(argument: str, message: str):
    raise ValueError(f"invalid {argument}={message}")


def validate_config(cfg: Any) -> None:
    """Raises ``ValueError`` naming the offending argument."""
    def positive_int(name):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            _fail(name, f"{value!r}: must be a positive integer")

    def boolean(name):
        if not isinstance(getattr(cfg, name), bool):
            _fail(name, f"{getattr(cfg, name)!r}: must be True or False")

    def non_negative_int(name):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            _fail(name, f"{value!r}: must be an integer >= 0")

    def choice(name, options):
        if getattr(cfg, name) not in options:
            _fail(name, f"{getattr(cfg, name)!r}: must be one of {list(options)}")

    for name in ("bn_momentum", "bn_epsilon", "dropout_rate", "gem_p"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(name, f"{value!r}: must be a number")
    if not 0.0 <= cfg.bn_momentum < 1.0:
        _fail("bn_momentum", f"{cfg.bn_momentum!r}: must be in [0, 1)")
    if not cfg.bn_epsilon > 0:
        _fail("bn_epsilon", f"{cfg.bn_epsilon!r}: must be > 0")
    if not 0.0 <= cfg.dropout_rate < 1.0:
        _fail("dropout_rate", f"{cfg.dropout_rate!r}: must be in [0, 1)")
    if not cfg.gem_p > 0:
        _fail("gem_p", f"{cfg.gem_p!r}: must be > 0")
    choice("pool", POOLS)
    non_negative_int("embedding_dim")
    non_negative_int("se_ratio")
    boolean("se_use_bias")
    boolean("synchronized_bn")
    boolean("gem_trainable_p")

    if isinstance(cfg, MobileNetConfig):
        choice("arch", ("mobilenet_v1",))
        wm = cfg.width_multiplier
        if isinstance(wm, bool) or not isinstance(wm, (int, float)) or wm <= 0:
            _fail("width_multiplier", f"{wm!r}: must be > 0")
        choice("activation", ("relu", "relu6"))
        boolean("cifar_stem")
        return

    choice("arch", ("resnet", "big_little"))
    choice("block", BLOCKS)
    choice("stem", STEMS)
    choice("shortcut", SHORTCUTS)
    choice("sk_variant", SK_VARIANTS)
    for name in ("width", "stem_width", "sk_ratio", "sk_min_dim", "drop_block_size", "alpha",
                 "beta"):
        positive_int(name)
    for name in ("always_project", "selective_kernel", "drop_block", "drop_block_per_sample",
                 "zero_gamma"):
        boolean(name)
    layers = cfg.layers
    if (not isinstance(layers, (tuple, list)) or len(layers) != 4
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in layers)):
        _fail("layers", f"{layers!r}: must be 4 positive integers (blocks per stage)")
    scales = cfg.drop_block_gamma_scales
    if (not isinstance(scales, (tuple, list)) or len(scales) != 4
            or any(isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0
                   for s in scales)):
        _fail("drop_block_gamma_scales", f"{scales!r}: must be 4 numbers >= 0 (per stage)")
    if not isinstance(cfg.anti_alias_type, str):
        _fail("anti_alias_type", f"{cfg.anti_alias_type!r}: must be a string")
    for part in cfg.anti_alias_parts():
        if part not in ANTI_ALIAS_PARTS:
            _fail("anti_alias_type", f"{cfg.anti_alias_type!r}: parts must be among "
                  f"{list(ANTI_ALIAS_PARTS)} (comma separated)")
    fs = cfg.anti_alias_filter_size
    if isinstance(fs, bool) or not isinstance(fs, int) or not 1 <= fs <= 7:
        _fail("anti_alias_filter_size", f"{fs!r}: must be an integer in 1..7")
    if cfg.arch == "big_little":
        if cfg.block != "bottleneck":
            _fail("block", f"{cfg.block!r}: Big-Little networks use bottleneck blocks")
        if any(n < 2 for n in cfg.layers[:3]):
            _fail("layers", f"{cfg.layers!r}: Big-Little stages 1-3 need >= 2 blocks "
                  "(big branch n-1 blocks + the merge block)")
        if cfg.stem == "deep":
            _fail("stem", "'deep': the Big-Little stem replaces the deep stem "
                  "(the official code warns that it degrades accuracy); use 'classic' or 'cifar'")
        if cfg.width // cfg.alpha < 1:
            _fail("alpha", f"{cfg.alpha!r}: larger than width={cfg.width}")


def replace_config(cfg: Any, overrides: dict) -> Any:
    """``dataclasses.replace`` with a ``ValueError`` naming unknown keys, then validation."""
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {type(cfg).__name__}; valid "
                         f"keys: {sorted(names)}")
    overrides = dict(overrides)
    for key in _TUPLE_FIELDS:
        if key in overrides and isinstance(overrides[key], list):
            overrides[key] = tuple(overrides[key])
    new = dataclasses.replace(cfg, **overrides)
    validate_config(new)
    return new


def config_from_dict(data: dict) -> Any:
    """Inverse of ``dataclasses.asdict`` for both config classes."""
    data = dict(data)
    cls = MobileNetConfig if data.get("arch") == "mobilenet_v1" else ResNetConfig
    return replace_config(cls(), data)
