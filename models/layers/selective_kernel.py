"""Selective Kernel convolution (Li et al., 2019, "Selective Kernel Networks",
https://arxiv.org/abs/1903.06586).

Paper: Lee et al., 2020 (Assemble-ResNet, arXiv:2001.06268), network tweak "channel
attention (SK)": the 3x3 conv of every bottleneck is replaced by an SK unit. The SKNet unit
has a 3x3 and a dilated 3x3 (the "5x5") branch with grouped convs; the official Assemble code
uses a lighter form (below) with r = 2, L = 32. The paper's exact wording was not at hand
while writing this: the official code is the reference we follow.
Official code: clovaai/assembled-cnn, ``network_tweaks/selective_kernel.py`` (``SKBlock``) and
``nets/blocks.py`` (``sk_conv2d``):

* one 3x3 conv, ``2f`` outputs, stride ``s`` (``conv2d_fixed_padding``: explicit symmetric
  zero padding of 1 then VALID, for any stride) + BN + ReLU; split along channels into two
  ``f``-channel branches (first half = branch 0).
* ``U = sum of branches``; ``s = GAP(U)``; ``z = ReLU(BN(conv1x1_d(s)))`` with
  ``d = max(int(f / r), L)``, no bias; ``a = conv1x1_2f(z)`` (no bias), split in two,
  softmax across the two branches; ``V = sum_i a_i * branch_i``.

``variant="code"`` (default) is exactly that. ``variant="sknet"`` is the SKNet paper form:
two branches, 3x3 conv with dilation ``dilation_rate`` and 3x3 conv with dilation
``2 * dilation_rate`` (the "5x5"), each grouped (``groups``) + BN + ReLU, then the same fuse /
select. SKNet uses ``groups=32``, ``ratio=16``, ``min_dim=32``; pass them explicitly.

Padding: a strided branch conv pads explicitly and symmetrically (``dilation`` on every
side) then runs VALID, as the official code (TF's "same" would pad asymmetrically at stride
2); a branch conv that runs at stride 1 uses ``padding="same"``, which pads the same amounts.
Layer and weight names do not depend on it.

Deviations: NHWC only. ``keras.layers.Conv2D`` does not allow ``strides > 1`` together with
``dilation_rate > 1``; such a branch runs its conv at stride 1 and keeps every
``strides``-th row / column (identical output, more compute). BN defaults
``momentum=0.997, epsilon=1e-5`` match the official code (its flag default and
``batch_norm``). The attention softmax is computed in the layer's
compute dtype as in the official code's fp16 path.
"""
import keras
from keras import ops

from models.layers._validation import validate_strides

VARIANTS = ("code", "sknet")


def _default_initializer():
    return keras.initializers.VarianceScaling(scale=1.0, mode="fan_in",
                                              distribution="truncated_normal")


@keras.saving.register_keras_serializable(package="assemble")
class SelectiveKernel(keras.layers.Layer):
    """Selective-kernel convolution with two branches (NHWC).

    Args:
      filters: ``f``, output channels.
      strides: stride of the branch conv(s).
      ratio: ``r``; fuse width ``d = max(int(f / r), min_dim)``.
      min_dim: ``L``.
      variant: ``"code"`` (official Assemble code, one 3x3 conv with ``2f`` outputs split in
        two) or ``"sknet"`` (two separate 3x3 convs with dilations 1 and 2, grouped).
      groups: groups of the branch conv(s) (official code: 1).
      dilation_rate: base dilation of the branch conv(s).
      momentum, epsilon, synchronized: for every ``keras.layers.BatchNormalization``.
      kernel_initializer, kernel_regularizer: for every conv.

    Sublayers: variant "code": ``sk_conv`` / ``sk_conv_bn``; variant "sknet": ``sk_conv0``,
    ``sk_conv0_bn``, ``sk_conv1``, ``sk_conv1_bn``; both: ``sk_fc1``, ``sk_fc1_bn``,
    ``sk_fc2``. No conv has a bias.

    ``call(x, training=None, return_attention=False)``: with ``return_attention=True``
    returns ``(V, attention)``, attention of shape ``[B, 2, f]`` (softmax over axis 1).
    """

    def __init__(self, filters, strides=1, ratio=2, min_dim=32, variant="code", groups=1,
                 dilation_rate=1, momentum=0.997, epsilon=1e-5, synchronized=False,
                 kernel_initializer=None, kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got variant={variant!r}")
        if int(filters) < 1:
            raise ValueError(f"filters must be >= 1, got filters={filters!r}")
        strides = validate_strides(strides)
        if ratio is None or ratio <= 0:
            raise ValueError(f"ratio must be > 0, got ratio={ratio!r}")
        if int(groups) < 1 or int(filters) % int(groups):
            raise ValueError(f"groups must divide filters, got groups={groups!r}, "
                             f"filters={filters!r}")
        if int(dilation_rate) < 1:
            raise ValueError(f"dilation_rate must be >= 1, got dilation_rate={dilation_rate!r}")
        self.filters = int(filters)
        self.strides = int(strides)
        self.ratio = ratio
        self.min_dim = int(min_dim)
        self.variant = variant
        self.groups = int(groups)
        self.dilation_rate = int(dilation_rate)
        self.momentum = momentum
        self.epsilon = epsilon
        self.synchronized = bool(synchronized)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer if kernel_initializer is not None else _default_initializer())
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.fuse_dim = max(int(self.filters / self.ratio), self.min_dim)
        self.input_spec = keras.layers.InputSpec(ndim=4)

        def conv(filters, kernel_size, name, strides=1, dilation_rate=1, groups=1):
            if dilation_rate > 1:
                # keras Conv2D refuses strides > 1 with dilation > 1: run it at stride 1 and
                # subsample in call() (same result, see _branches).
                strides = 1
            # stride 1, odd kernel: "same" pads dilation * (k - 1) / 2 on every side, what the
            # explicit padding in _branches would do, without a padded copy of the input.
            padding = "same" if strides == 1 and kernel_size > 1 else "valid"
            return keras.layers.Conv2D(
                filters, kernel_size, strides=strides, padding=padding,
                dilation_rate=dilation_rate, groups=groups, use_bias=False,
                kernel_initializer=self.kernel_initializer,
                kernel_regularizer=self.kernel_regularizer, name=name, dtype=self.dtype_policy)

        def bn(name):
            return keras.layers.BatchNormalization(
                axis=-1, momentum=self.momentum, epsilon=self.epsilon,
                synchronized=self.synchronized, name=name, dtype=self.dtype_policy)

        if variant == "code":
            self.branch_dilations = (self.dilation_rate,)
            self.sk_conv = conv(2 * self.filters, 3, "sk_conv", strides=self.strides,
                                dilation_rate=self.dilation_rate, groups=self.groups)
            self.sk_conv_bn = bn("sk_conv_bn")
        else:
            self.branch_dilations = (self.dilation_rate, 2 * self.dilation_rate)
            self.sk_conv0 = conv(self.filters, 3, "sk_conv0", strides=self.strides,
                                 dilation_rate=self.branch_dilations[0], groups=self.groups)
            self.sk_conv0_bn = bn("sk_conv0_bn")
            self.sk_conv1 = conv(self.filters, 3, "sk_conv1", strides=self.strides,
                                 dilation_rate=self.branch_dilations[1], groups=self.groups)
            self.sk_conv1_bn = bn("sk_conv1_bn")
        self.sk_fc1 = conv(self.fuse_dim, 1, "sk_fc1")
        self.sk_fc1_bn = bn("sk_fc1_bn")
        self.sk_fc2 = conv(2 * self.filters, 1, "sk_fc2")

    def _branch_layers(self):
        if self.variant == "code":
            return [(self.sk_conv, self.sk_conv_bn)]
        return [(self.sk_conv0, self.sk_conv0_bn), (self.sk_conv1, self.sk_conv1_bn)]

    # ------------------------------------------------------------------ shapes / build
    def _out_size(self, size):
        if size is None:
            return None
        # pad of `dilation` on both sides (3x3 "same" padding; explicit when strided).
        return (size - 1) // self.strides + 1

    def build(self, input_shape):
        b, h, w, c = input_shape
        if c is None:
            raise ValueError("SelectiveKernel needs a known number of channels (last axis).")
        for (conv, bn), dil in zip(self._branch_layers(), self.branch_dilations):
            pad = 0 if conv.padding == "same" else 2 * dil
            conv.build((b, None if h is None else h + pad, None if w is None else w + pad, c))
            bn.build((b, self._out_size(h), self._out_size(w), conv.filters))
        self.sk_fc1.build((b, 1, 1, self.filters))
        self.sk_fc1_bn.build((b, 1, 1, self.fuse_dim))
        self.sk_fc2.build((b, 1, 1, self.fuse_dim))
        self.built = True

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, self._out_size(h), self._out_size(w), self.filters)

    def compute_output_spec(self, inputs, training=None, return_attention=False):
        out = keras.KerasTensor(self.compute_output_shape(inputs.shape),
                                dtype=self.compute_dtype)
        if return_attention:
            att = keras.KerasTensor((inputs.shape[0], 2, self.filters), dtype=self.compute_dtype)
            return out, att
        return out

    # ------------------------------------------------------------------ forward
    def _branches(self, inputs, training):
        feats = []
        for (conv, bn), dil in zip(self._branch_layers(), self.branch_dilations):
            x = inputs
            if conv.padding == "valid":  # strided conv: explicit symmetric pad (official code)
                x = ops.pad(x, [[0, 0], [dil, dil], [dil, dil], [0, 0]])
            x = conv(x)
            if dil > 1 and self.strides > 1:
                x = x[:, ::self.strides, ::self.strides, :]
            x = ops.relu(bn(x, training=training))
            feats.append(x)
        if self.variant == "code":
            feats = [feats[0][..., :self.filters], feats[0][..., self.filters:]]
        return feats

    def call(self, inputs, training=None, return_attention=False):
        feats = self._branches(inputs, training)
        u = feats[0] + feats[1]
        s = ops.mean(u, axis=(1, 2), keepdims=True)
        z = ops.relu(self.sk_fc1_bn(self.sk_fc1(s), training=training))
        a = self.sk_fc2(z)                                     # [B, 1, 1, 2f]
        a = ops.stack([a[..., :self.filters], a[..., self.filters:]], axis=-2)  # [B,1,1,2,f]
        a = ops.softmax(a, axis=-2)
        v = feats[0] * a[..., 0, :] + feats[1] * a[..., 1, :]
        if return_attention:
            return v, a[:, 0, 0]
        return v

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "strides": self.strides,
            "ratio": self.ratio,
            "min_dim": self.min_dim,
            "variant": self.variant,
            "groups": self.groups,
            "dilation_rate": self.dilation_rate,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "synchronized": self.synchronized,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer is not None else None,
        })
        return config
