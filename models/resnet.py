"""ResNet v1.5, ResNet-D and their Assemble tweaks (SE, SK, anti-aliasing, DropBlock).

Paper: Lee et al., 2020, "Compounding the Performance Improvements of Assembled Techniques in
a Convolutional Neural Network" (arXiv:2001.06268), section 3.1 (network tweaks).
Official code: clovaai/assembled-cnn, ``nets/resnet_model.py`` (``_bottleneck_block_v1``,
``block_layer``, ``Model.__call__``), ``resnet_model.py`` (the Keras version: ``bottleneck``,
``basic``, ``conv_block``), ``network_tweaks/resnet_d.py`` (``tweakC`` deep stem,
``tweakD`` average-pool shortcut), ``conv_bn.py`` (``conv2d_fixed_padding``, ``batch_norm``).

Bottleneck block (``bottleneck_block``), as in the official ``_bottleneck_block_v1``::

    shortcut = [proj: (avgpool) 1x1 conv -> BN -> DropBlock]   or identity
    x = 1x1 conv -> BN -> DropBlock -> ReLU
    x = 3x3 conv (stride s; 1 with "sconv") -> BN -> DropBlock -> ReLU
        | SelectiveKernel (stride s; 1 with "sconv") -> DropBlock
    x = BlurPool(stride s)                       (only "sconv" and s > 1)
    x = 1x1 conv -> BN (gamma 0 with zero_gamma) -> DropBlock -> SE
    out = ReLU(x + shortcut)                    (no ReLU when last_relu=False: Big-Little)

Layer names (stable: checkpoints and the timm / torchvision weight conversion use them):
``stem_conv1``/``stem_bn1``/``stem_relu1`` (deep stem also ``..2``, ``..3``), ``stem_pool``
(+ ``stem_pool_pad``, ``stem_aa`` with anti-alias "max"); per block ``{p}_conv1``, ``{p}_bn1``,
``{p}_relu1``, ``{p}_conv2``, ``{p}_bn2``, ``{p}_relu2`` (or ``{p}_sk``), ``{p}_aa``,
``{p}_conv3``, ``{p}_bn3``, ``{p}_se``, ``{p}_drop1..3``, ``{p}_down_pool``, ``{p}_down_aa``,
``{p}_down_conv``, ``{p}_down_bn``, ``{p}_down_drop``, ``{p}_add``, ``{p}_out`` with
``p = stage{s}_block{b}`` (1-based); strided convs have a ``{name}_pad`` ZeroPadding2D
before them. ``stage{s}_output`` marks each stage's output. Head: ``pool``,
``embedding_dense``/``embedding``/``embedding_relu`` (``embedding_dim > 0``), ``dropout``,
``logits`` (float32).

Deviations from the official code, and why:

* Padding of strided convs: explicit symmetric zero padding ``(k-1)//2`` then VALID, like the
  official ``conv2d_fixed_padding`` (and torchvision / timm, so their weights convert
  exactly). The stem max-pool is padded the same way (ZeroPadding2D(1) + 3x3/2 VALID, as
  torchvision and keras.applications; zero padding equals -inf padding after a ReLU); the
  official code uses TF "SAME" there, which pads only at the bottom/right for even sizes.
* ResNet-D shortcut ``"avg2"``: ``AveragePooling2D(2, s, "same")``; for even feature maps
  identical to the official ``fixed_padding + VALID`` and to timm's
  ``AvgPool2d(2, s, ceil_mode=True, count_include_pad=False)``; for odd maps it equals timm
  (padding excluded from the mean) where the official code averages in a zero.
* Projection shortcuts only where shapes change (torchvision / timm), unless
  ``always_project`` (official ``block_layer``, always on for Big-Little).
* SE reduce width ``C // ratio`` with optional biases (timm's ``seresnet50``); the official
  code has no biases (``se_use_bias=False``, the default of the config).
* Basic blocks (ResNet-18/34) are not in the official estimator code; we follow the official
  Keras ``basic`` (SK replaces the first 3x3 conv, sconv blur after its ReLU) and torchvision.
* Initializers: convs ``VarianceScaling()`` (scale 1, fan_in, truncated normal: the official
  ``tf.variance_scaling_initializer()``), dense ``glorot_uniform`` (``tf.layers.dense``).
"""
from __future__ import annotations

import keras

from models.config import ResNetConfig
from models.layers.blur_pool import BlurPool2D
from models.layers.drop_block import DropBlock2D
from models.layers.pooling import GeneralizedMeanPooling2D
from models.layers.selective_kernel import SelectiveKernel
from models.layers.squeeze_excite import SqueezeExcite


def _conv_init():
    return keras.initializers.VarianceScaling(scale=1.0, mode="fan_in",
                                              distribution="truncated_normal")


# ---------------------------------------------------------------------------- primitives
def conv(x, filters, kernel_size, strides, name):
    """Bias-free conv; strided convs get explicit symmetric padding (official
    ``conv2d_fixed_padding``), stride-1 convs ``"same"``."""
    if strides > 1 and kernel_size > 1:
        pad = (kernel_size - 1) // 2
        x = keras.layers.ZeroPadding2D(((pad, kernel_size - 1 - pad),) * 2, name=name + "_pad")(x)
        padding = "valid"
    else:
        padding = "same" if strides == 1 else "valid"
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                               use_bias=False, kernel_initializer=_conv_init(), name=name)(x)


def batch_norm(x, cfg, name, zero_gamma=False):
    return keras.layers.BatchNormalization(
        axis=-1, momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon,
        synchronized=cfg.synchronized_bn,
        gamma_initializer="zeros" if zero_gamma else "ones", name=name)(x)


def relu(x, name):
    return keras.layers.ReLU(name=name)(x)


def blur_pool(x, strides, cfg, name):
    return BlurPool2D(filter_size=cfg.anti_alias_filter_size, strides=strides, name=name)(x)


def make_drop_block(cfg, gamma_scale, name_prefix):
    """Returns ``f(x, suffix)`` applying a DropBlock2D named ``{name_prefix}_{suffix}``, or
    ``None`` when DropBlock is off for this stage."""
    if not cfg.drop_block or gamma_scale <= 0:
        return None

    def apply(x, suffix):
        return DropBlock2D(block_size=cfg.drop_block_size, gamma_scale=float(gamma_scale),
                           per_sample=cfg.drop_block_per_sample,
                           name=f"{name_prefix}_{suffix}")(x)
    return apply


def _maybe(fn, x, suffix):
    return fn(x, suffix) if fn is not None else x


# ---------------------------------------------------------------------------- shortcut
def projection_shortcut(x, filters_out, strides, cfg, name, drop_block=None,
                        shortcut=None):
    """Projection shortcut ``{name}_down_*``: ``conv`` (strided 1x1), ``avg2`` / ``avg3``
    (average pool with the stride, then 1x1; ResNet-D), or with anti-alias ``proj`` a
    BlurPool then a stride-1 1x1 (official ``projection_shortcut``)."""
    kind = shortcut or cfg.shortcut
    conv_strides = strides
    if strides > 1:
        if kind == "avg2":
            x = keras.layers.AveragePooling2D(2, strides=strides, padding="same",
                                              name=name + "_down_pool")(x)
            conv_strides = 1
        elif kind == "avg3":
            x = keras.layers.ZeroPadding2D(1, name=name + "_down_pool_pad")(x)
            x = keras.layers.AveragePooling2D(3, strides=strides, padding="valid",
                                              name=name + "_down_pool")(x)
            conv_strides = 1
        elif "proj" in cfg.anti_alias_parts():
            x = blur_pool(x, strides, cfg, name + "_down_aa")
            conv_strides = 1
    x = conv(x, filters_out, 1, conv_strides, name + "_down_conv")
    x = batch_norm(x, cfg, name + "_down_bn")
    return _maybe(drop_block, x, "down_drop")


# ---------------------------------------------------------------------------- blocks
def selective_kernel(x, filters, strides, cfg: ResNetConfig, name):
    """The block's SK unit (replaces its 3x3 conv + BN + ReLU), layer ``{name}_sk``."""
    return SelectiveKernel(filters, strides=strides, ratio=cfg.sk_ratio,
                           min_dim=cfg.sk_min_dim, variant=cfg.sk_variant,
                           momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon,
                           synchronized=cfg.synchronized_bn, name=name + "_sk")(x)


def squeeze_excite(x, cfg: ResNetConfig, name):
    """The block's SE unit on the residual branch before the add, layer ``{name}_se``."""
    return SqueezeExcite(ratio=cfg.se_ratio, use_bias=cfg.se_use_bias, name=name + "_se")(x)


def bottleneck_block(x, filters, strides, cfg: ResNetConfig, name, *, project=None,
                     drop_block=None, last_relu=True, expansion=4):
    """ResNet v1.5 bottleneck (official ``_bottleneck_block_v1``). Tweaks come from ``cfg``
    (SE, SK, anti-alias sconv, ResNet-D shortcut, zero-gamma) and the arguments
    (``drop_block`` from :func:`make_drop_block`, ``last_relu``, ``project``: force or
    forbid the projection shortcut; default: when shapes change)."""
    filters_out = filters * expansion
    if project is None:
        project = strides != 1 or x.shape[-1] != filters_out
    shortcut = (projection_shortcut(x, filters_out, strides, cfg, name, drop_block)
                if project else x)

    y = conv(x, filters, 1, 1, name + "_conv1")
    y = batch_norm(y, cfg, name + "_bn1")
    y = _maybe(drop_block, y, "drop1")
    y = relu(y, name + "_relu1")
    y = _spatial(y, filters, strides, cfg, name, 2, drop_block)

    y = conv(y, filters_out, 1, 1, name + "_conv3")
    y = batch_norm(y, cfg, name + "_bn3", zero_gamma=cfg.zero_gamma)
    y = _maybe(drop_block, y, "drop3")
    return _merge(y, shortcut, cfg, name, last_relu)


def basic_block(x, filters, strides, cfg: ResNetConfig, name, *, project=None,
                drop_block=None, last_relu=True):
    """ResNet basic block (two 3x3 convs; official Keras ``basic``, torchvision)."""
    if project is None:
        project = strides != 1 or x.shape[-1] != filters
    shortcut = (projection_shortcut(x, filters, strides, cfg, name, drop_block)
                if project else x)
    y = _spatial(x, filters, strides, cfg, name, 1, drop_block)
    y = conv(y, filters, 3, 1, name + "_conv2")
    y = batch_norm(y, cfg, name + "_bn2", zero_gamma=cfg.zero_gamma)
    y = _maybe(drop_block, y, "drop2")
    return _merge(y, shortcut, cfg, name, last_relu)


def _spatial(y, filters, strides, cfg, name, index, drop_block):
    """The block's strided 3x3: a conv-BN-ReLU named ``_conv{index}``/``_bn{index}``, or the
    Selective Kernel unit; with the "sconv" anti-alias part, the conv runs at stride 1 and a
    BlurPool (``_aa``) does the downsampling after it (Zhang 2019, as the paper places it)."""
    sconv = "sconv" in cfg.anti_alias_parts() and strides > 1
    mid_strides = 1 if sconv else strides
    if cfg.selective_kernel:
        y = selective_kernel(y, filters, mid_strides, cfg, name)
        y = _maybe(drop_block, y, f"drop{index}")
    else:
        y = conv(y, filters, 3, mid_strides, f"{name}_conv{index}")
        y = batch_norm(y, cfg, f"{name}_bn{index}")
        y = _maybe(drop_block, y, f"drop{index}")
        y = relu(y, f"{name}_relu{index}")
    if sconv:
        y = blur_pool(y, strides, cfg, name + "_aa")
    return y


def _merge(y, shortcut, cfg, name, last_relu):
    """Squeeze-Excitation on the residual branch (if ``se_ratio``), the add, the last ReLU."""
    if cfg.se_ratio:
        y = squeeze_excite(y, cfg, name)
    y = keras.layers.Add(name=name + "_add")([y, shortcut])
    if last_relu:
        y = relu(y, name + "_out")
    return y


def block_fn(cfg):
    return basic_block if cfg.block == "basic" else bottleneck_block


def stage_blocks(x, cfg, stage, num_blocks, filters, strides, prefix, *, gamma_scale,
                 always_project=False, last_relu=True):
    """``num_blocks`` blocks named ``{prefix}_block{b}``; the first has the stride (official
    ``block_layer``). ``last_relu=False`` drops the ReLU of the last block only when there
    are >= 2 blocks, exactly as the official ``block_layer`` (its first block always has
    the ReLU)."""
    fn = block_fn(cfg)
    for b in range(num_blocks):
        name = f"{prefix}_block{b + 1}"
        db = make_drop_block(cfg, gamma_scale, name)
        x = fn(x, filters, strides if b == 0 else 1, cfg, name,
               project=(True if (b == 0 and (always_project or cfg.always_project)) else None),
               drop_block=db,
               last_relu=(last_relu if (b == num_blocks - 1 and b > 0) else True))
    return x


# ---------------------------------------------------------------------------- stem / head
def stem(x, cfg: ResNetConfig, max_pool=True):
    """``classic`` (7x7/2), ``deep`` (official ``tweakC``: 3x3/2 w/2, 3x3 w/2, 3x3 w) or
    ``cifar`` (3x3/1) conv stem, then (``max_pool`` and not cifar) the 3x3/2 max-pool;
    with anti-alias ``max`` the max-pool runs at stride 1 followed by a BlurPool (timm's
    ``resnetblur``)."""
    if cfg.stem == "deep":
        x = conv(x, cfg.stem_width, 3, 2, "stem_conv1")
        x = relu(batch_norm(x, cfg, "stem_bn1"), "stem_relu1")
        x = conv(x, cfg.stem_width, 3, 1, "stem_conv2")
        x = relu(batch_norm(x, cfg, "stem_bn2"), "stem_relu2")
        x = conv(x, cfg.width, 3, 1, "stem_conv3")
        x = relu(batch_norm(x, cfg, "stem_bn3"), "stem_relu3")
    elif cfg.stem == "cifar":
        x = conv(x, cfg.width, 3, 1, "stem_conv1")
        x = relu(batch_norm(x, cfg, "stem_bn1"), "stem_relu1")
        return x
    else:
        x = conv(x, cfg.width, 7, 2, "stem_conv1")
        x = relu(batch_norm(x, cfg, "stem_bn1"), "stem_relu1")
    if max_pool:
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        if "max" in cfg.anti_alias_parts():
            x = keras.layers.MaxPooling2D(3, strides=1, padding="valid", name="stem_pool")(x)
            x = blur_pool(x, 2, cfg, "stem_aa")
        else:
            x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")(x)
    return x


def head(x, cfg, num_classes):
    """Global pooling (``pool``), optional embedding (``embedding``), dropout, ``logits``
    (float32 even under mixed precision)."""
    if cfg.pool == "gem":
        x = GeneralizedMeanPooling2D(p=cfg.gem_p, trainable_p=cfg.gem_trainable_p,
                                     name="pool")(x)
        if len(x.shape) == 4:
            x = keras.layers.Flatten(name="pool_flatten")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if cfg.embedding_dim:
        x = keras.layers.Dense(cfg.embedding_dim, use_bias=False, kernel_initializer=_conv_init(),
                               name="embedding_dense")(x)
        x = keras.layers.BatchNormalization(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon,
                                            synchronized=cfg.synchronized_bn,
                                            name="embedding")(x)
        x = relu(x, "embedding_relu")
    if cfg.dropout_rate:
        x = keras.layers.Dropout(cfg.dropout_rate, name="dropout")(x)
    return keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)


def mark(x, name):
    return keras.layers.Identity(name=name)(x)


# ---------------------------------------------------------------------------- builder
def build_resnet(cfg: ResNetConfig, num_classes, input_shape, name="resnet"):
    """Functional ResNet v1.5 / ResNet-D with the tweaks of ``cfg``."""
    inputs = keras.Input(shape=input_shape, name="images")
    x = stem(inputs, cfg)
    strides = (1, 2, 2, 2)
    for i, n in enumerate(cfg.layers):
        x = stage_blocks(x, cfg, i + 1, n, cfg.width * 2 ** i, strides[i], f"stage{i + 1}",
                         gamma_scale=cfg.drop_block_gamma_scales[i])
        x = mark(x, f"stage{i + 1}_output")
    outputs = head(x, cfg, num_classes)
    return keras.Model(inputs, outputs, name=name)
