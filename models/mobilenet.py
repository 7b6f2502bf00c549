"""MobileNet V1 (Howard et al., 2017, arXiv:1704.04861) with optional squeeze-excitation,
for the mobile ablation of Lee et al., 2020 (arXiv:2001.06268, section 4.5, "MobileNet"):
MobileNet V1 baseline and with SE (ratio 16 and ratio 2).

The official repository (clovaai/assembled-cnn) does not publish its MobileNet code; the SE
unit follows its ``nets/blocks.py`` ``se_block`` (no biases) and is placed after the
pointwise conv's BN + activation of every depthwise-separable block (an assumption, the
common SE-MobileNet placement). Structure as keras.applications / TF-slim MobileNet V1:

    stem: 3x3/2 conv(32a) + BN + act
    13 x [3x3 depthwise (stride s) + BN + act, 1x1 conv + BN + act, (SE)]
         with (filters, stride) = (64,1) (128,2) (128,1) (256,2) (256,1) (512,2) (512,1)x5
         (1024,2) (1024,1), times the width multiplier a
    head: pool, (embedding), (dropout), logits

Layer names: ``stem_conv1``/``stem_bn1``/``stem_relu1``, ``block{b}_dw``/``_dw_bn``/
``_dw_relu``, ``block{b}_pw``/``_pw_bn``/``_pw_relu``, ``block{b}_se``; ``stage{s}_output``
after the last block at strides 4, 8, 16, 32 (blocks 3, 5, 11, 13); head as in
:mod:`models.resnet`. Strided depthwise convs use symmetric padding (``{name}_pad``) as
torch / the official ``conv2d_fixed_padding``; keras.applications pads only bottom/right.
"""
from __future__ import annotations

import keras

from models.config import MobileNetConfig
from models.layers.squeeze_excite import SqueezeExcite
from models.resnet import _conv_init, batch_norm, conv, head, mark

BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
          (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
STAGE_ENDS = {3: 1, 5: 2, 11: 3, 13: 4}


def _act(x, cfg, name):
    return keras.layers.ReLU(max_value=6.0 if cfg.activation == "relu6" else None, name=name)(x)


def build_mobilenet_v1(cfg: MobileNetConfig, num_classes, input_shape, name="mobilenet_v1"):
    inputs = keras.Input(shape=input_shape, name="images")
    a = cfg.width_multiplier
    x = conv(inputs, int(32 * a), 3, 1 if cfg.cifar_stem else 2, "stem_conv1")
    x = _act(batch_norm(x, cfg, "stem_bn1"), cfg, "stem_relu1")
    for b, (filters, strides) in enumerate(BLOCKS, start=1):
        p = f"block{b}"
        if strides > 1:
            x = keras.layers.ZeroPadding2D(1, name=p + "_dw_pad")(x)
        x = keras.layers.DepthwiseConv2D(3, strides=strides,
                                         padding="valid" if strides > 1 else "same",
                                         use_bias=False, depthwise_initializer=_conv_init(),
                                         name=p + "_dw")(x)
        x = _act(batch_norm(x, cfg, p + "_dw_bn"), cfg, p + "_dw_relu")
        x = conv(x, int(filters * a), 1, 1, p + "_pw")
        x = _act(batch_norm(x, cfg, p + "_pw_bn"), cfg, p + "_pw_relu")
        if cfg.se_ratio:
            x = SqueezeExcite(ratio=cfg.se_ratio, use_bias=cfg.se_use_bias, name=p + "_se")(x)
        if b in STAGE_ENDS:
            x = mark(x, f"stage{STAGE_ENDS[b]}_output")
    outputs = head(x, cfg, num_classes)
    return keras.Model(inputs, outputs, name=name)
