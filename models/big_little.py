"""Big-Little ResNet (Chen et al., 2019, "Big-Little Net", arXiv:1807.03848) as used by
Assemble-ResNet (Lee et al., 2020, arXiv:2001.06268, section 3.1 "Big Little Network").

Official code: clovaai/assembled-cnn, ``nets/resnet_model.py`` (``Model.__call__`` with
``resnet_version=2``; ``block_layer`` with ``use_bl=True``) and the Keras version
``network_tweaks/big_little.py`` (``bl_stage1``, ``bl_block``) + ``resnet_model.py``
(``resnet50`` with ``use_bl``: block counts ``[3, 4, 6, 3]`` for 50, ``[4, 8, 18, 3]`` for 101,
``[5, 12, 30, 3]`` for 152; stage strides ``[2, 2, 1, 2]``).

Structure (``f = width * 2**i``, ``n = layers[i]``)::

    stem:    7x7/2 conv(w) + BN + ReLU                             (no max-pool)
             big    = 3x3/2 conv(w) + BN
             little = 3x3 conv(w/a)+BN+ReLU, 3x3/2 conv(w/a)+BN+ReLU, 1x1 conv(w)+BN
             x = 1x1 conv(w) + BN + ReLU applied to ReLU(big + little)
    stage 1-3: big    = n-1 bottlenecks(f) at stride 2 (the last one without its final
                        ReLU, only when n-1 >= 2, as the official block_layer)
               little = max(1, n // beta - 1) bottlenecks(f / a) at stride 1,
                        then 1x1 conv(4f) + BN
               x = one bottleneck(f) with the stage stride on ReLU(upsample2x(big) + little)
    stage 4:   n bottlenecks(f) at stride 2 (a plain ResNet stage)

Every first block of a block group has a projection shortcut (official ``block_layer``),
also at stride 1. Shortcut: ``cfg.shortcut`` = ``"avg2"`` (2x2 average pool, ResNet-D: the
paper and the official Keras code with ``--use_resnet_d``) or ``"avg3"`` (zero pad 1 + 3x3
average pool: the official estimator's ``bl_projection_shortcut``) or ``"conv"``.
Tweaks (SE, SK, anti-aliasing, DropBlock in stages 3-4, zero-gamma) apply to every block of
every branch, as in the official code (DropBlock is not applied to the little branch's 1x1
expansion, as there).

Layer names: ``stem_conv1``/``stem_bn1``/``stem_relu1``, ``stem_big_conv``/``_bn``,
``stem_little_conv{1,2,3}``/``_bn{1,2,3}``/``_relu{1,2}``, ``stem_merge_add``,
``stem_merge_relu``, ``stem_fuse_conv``/``_bn``/``_relu``; stages 1-3:
``stage{s}_big_block{b}_*``, ``stage{s}_little_block{b}_*``, ``stage{s}_little_expand_conv``
/``_bn``, ``stage{s}_big_upsample``, ``stage{s}_merge_add``, ``stage{s}_merge_relu``,
``stage{s}_merge_block1_*``; stage 4: ``stage4_block{b}_*``; ``stage{s}_output``; head as in
:mod:`models.resnet`.

Deviation: the official code warns that ResNet-D's deep stem with Big-Little degrades
accuracy and the Keras version never combines them; we reject ``stem="deep"`` here.
``stem="cifar"`` (3x3/1 conv and the Big-Little stem at stride 1, total stride 8) mirrors the
official ``use_space2depth`` path that runs ``bl_stage1`` at stride 1.
"""
from __future__ import annotations

import keras

from models.config import ResNetConfig
from models.resnet import batch_norm, conv, head, mark, relu, stage_blocks

BL_STRIDES = (2, 2, 1, 2)


def big_little_stem(x, cfg: ResNetConfig):
    w = cfg.width
    a = cfg.alpha
    if cfg.stem == "cifar":
        x = conv(x, w, 3, 1, "stem_conv1")
        s = 1
    else:
        x = conv(x, w, 7, 2, "stem_conv1")
        s = 2
    x = relu(batch_norm(x, cfg, "stem_bn1"), "stem_relu1")

    big = conv(x, w, 3, s, "stem_big_conv")
    big = batch_norm(big, cfg, "stem_big_bn")

    little = conv(x, w // a, 3, 1, "stem_little_conv1")
    little = relu(batch_norm(little, cfg, "stem_little_bn1"), "stem_little_relu1")
    little = conv(little, w // a, 3, s, "stem_little_conv2")
    little = relu(batch_norm(little, cfg, "stem_little_bn2"), "stem_little_relu2")
    little = conv(little, w, 1, 1, "stem_little_conv3")
    little = batch_norm(little, cfg, "stem_little_bn3")

    x = keras.layers.Add(name="stem_merge_add")([big, little])
    x = relu(x, "stem_merge_relu")
    x = conv(x, w, 1, 1, "stem_fuse_conv")
    x = relu(batch_norm(x, cfg, "stem_fuse_bn"), "stem_fuse_relu")
    return x


def big_little_stage(x, cfg: ResNetConfig, stage, num_blocks, filters, strides):
    """One Big-Little stage (official ``bl_block``): big branch at half resolution, little
    branch at full resolution and ``1/alpha`` width, merged and followed by one block with
    the stage stride."""
    prefix = f"stage{stage}"
    gamma = cfg.drop_block_gamma_scales[stage - 1]
    big = stage_blocks(x, cfg, stage, num_blocks - 1, filters, 2, prefix + "_big",
                       gamma_scale=gamma, always_project=True, last_relu=False)
    little = stage_blocks(x, cfg, stage, max(1, num_blocks // cfg.beta - 1),
                          filters // cfg.alpha, 1, prefix + "_little",
                          gamma_scale=gamma, always_project=True)
    little = conv(little, filters * 4, 1, 1, prefix + "_little_expand_conv")
    little = batch_norm(little, cfg, prefix + "_little_expand_bn")
    big = keras.layers.UpSampling2D(2, interpolation="nearest", name=prefix + "_big_upsample")(big)
    x = keras.layers.Add(name=prefix + "_merge_add")([little, big])
    x = relu(x, prefix + "_merge_relu")
    return stage_blocks(x, cfg, stage, 1, filters, strides, prefix + "_merge",
                        gamma_scale=gamma, always_project=True)


def build_big_little(cfg: ResNetConfig, num_classes, input_shape, name="big_little"):
    inputs = keras.Input(shape=input_shape, name="images")
    x = big_little_stem(inputs, cfg)
    for i, n in enumerate(cfg.layers):
        filters = cfg.width * 2 ** i
        if i < 3:
            x = big_little_stage(x, cfg, i + 1, n, filters, BL_STRIDES[i])
        else:
            x = stage_blocks(x, cfg, i + 1, n, filters, BL_STRIDES[i], f"stage{i + 1}",
                             gamma_scale=cfg.drop_block_gamma_scales[i], always_project=True)
        x = mark(x, f"stage{i + 1}_output")
    outputs = head(x, cfg, num_classes)
    return keras.Model(inputs, outputs, name=name)
