"""Squeeze-and-Excitation (Hu et al., 2018, https://arxiv.org/abs/1709.01507).

Paper: Lee et al., 2020 (Assemble-ResNet, arXiv:2001.06268), network tweak "channel
attention (SE)". In the official code SE (ratio 16) sits at the end of every bottleneck block,
after the last BN (and DropBlock), before the shortcut addition.
Official code: clovaai/assembled-cnn, ``network_tweaks/squeeze_excitation.py`` (``SEBlock``)
and ``nets/blocks.py`` (``se_block``): GAP -> 1x1 conv ``C // ratio`` (no bias) -> ReLU ->
1x1 conv ``C`` (no bias) -> sigmoid -> ``x * excitation``.

Choices and deviations:

* ``use_bias=False`` by default, as in the official code (the SE paper and timm's
  ``seresnet50``, 28,088,024 parameters, use biases: pass ``use_bias=True`` to get timm's
  count).
* reduce width: the official code uses ``C // ratio`` (which is 0 for ``C < ratio`` and
  breaks); we use ``max(1, C // ratio)``, identical whenever the official code works.
  ``reduced_channels`` overrides it (the official ``SEBlock``'s ``reduce_channels``).
* the excitation is computed in the layer's compute dtype (as the official fp16 path).
"""
import keras
from keras import ops


def _default_initializer():
    # tf.variance_scaling_initializer() of the official code: scale 1, fan_in, truncated normal.
    return keras.initializers.VarianceScaling(scale=1.0, mode="fan_in",
                                              distribution="truncated_normal")


@keras.saving.register_keras_serializable(package="assemble")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-excitation channel attention for NHWC feature maps.

    Args:
      ratio: reduction ratio ``r``; reduce width is ``max(1, C // r)``.
      use_bias: biases in both 1x1 convs (False: official code; True: SE paper / timm).
      reduced_channels: explicit reduce width (overrides ``ratio``).
      kernel_initializer, kernel_regularizer: for both 1x1 convs.

    Sublayers: ``se_reduce`` and ``se_expand`` (``keras.layers.Conv2D``).
    """

    def __init__(self, ratio=16, use_bias=False, reduced_channels=None,
                 kernel_initializer=None, kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if ratio is None or ratio <= 0:
            raise ValueError(f"ratio must be > 0, got ratio={ratio!r}")
        if reduced_channels is not None and int(reduced_channels) < 1:
            raise ValueError(f"reduced_channels must be >= 1, got {reduced_channels!r}")
        self.ratio = ratio
        self.use_bias = bool(use_bias)
        self.reduced_channels = None if reduced_channels is None else int(reduced_channels)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer if kernel_initializer is not None else _default_initializer())
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self.se_reduce = None
        self.se_expand = None

    def reduce_width(self, channels):
        if self.reduced_channels is not None:
            return self.reduced_channels
        return max(1, int(channels // self.ratio))

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("SqueezeExcite needs a known number of channels (last axis).")
        common = dict(kernel_size=1, use_bias=self.use_bias,
                      kernel_initializer=self.kernel_initializer,
                      kernel_regularizer=self.kernel_regularizer, dtype=self.dtype_policy)
        self.se_reduce = keras.layers.Conv2D(self.reduce_width(channels), name="se_reduce",
                                             **common)
        self.se_expand = keras.layers.Conv2D(int(channels), name="se_expand", **common)
        pooled = (input_shape[0], 1, 1, channels)
        self.se_reduce.build(pooled)
        self.se_expand.build((input_shape[0], 1, 1, self.reduce_width(channels)))
        self.built = True

    def excitation(self, inputs):
        """The per-channel gates ``[B, 1, 1, C]`` in (0, 1)."""
        s = ops.mean(inputs, axis=(1, 2), keepdims=True)
        s = ops.relu(self.se_reduce(s))
        return ops.sigmoid(self.se_expand(s))

    def call(self, inputs):
        return inputs * self.excitation(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "ratio": self.ratio,
            "use_bias": self.use_bias,
            "reduced_channels": self.reduced_channels,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer is not None else None,
        })
        return config
