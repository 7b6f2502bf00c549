"""Generalized-mean (GeM) pooling (Radenovic et al., 2018, https://arxiv.org/abs/1711.02512).

Paper: Lee et al., 2020 (Assemble-ResNet, arXiv:2001.06268): GeM pooling is an option of
the official code (``pool_type='gem'``) used for the transfer-learning / retrieval runs.
Official code: clovaai/assembled-cnn, ``nets/blocks.py``
(``generalized_mean_pooling``): cast fp16 to fp32, ``x = clip(x, eps, 1e12)``,
``pooled = N**(-1/p) * max(sum(x**p), eps)**(1/p)`` over the spatial axes (keepdims), with a
fixed ``p = 3`` and ``eps = 1e-6``.

This layer computes exactly that, ``N**(-1/p) * max(sum(clip(x, eps, 1e12)**p), eps)**(1/p)``,
in float32 (``eps`` is both the clip value and the guard, as in the code) and casts the result
back to the compute dtype. Note the guard binds for channels that are all ~0 (e.g. dead ReLU
channels): the code then returns ``N**(-1/p) * eps**(1/p)`` (0.0026 for p=3, N=49) instead of
the GeM paper's ``eps``; we keep the code's value.

Deviations: ``p`` is a float32 scalar variable named ``p``, trainable by default
(``trainable_p=True``, as in the GeM paper); the official code uses a fixed ``p = 3``: pass
``trainable_p=False`` to reproduce it. ``keepdims=False`` by default (output ``[B, C]``);
the official code keeps the spatial axes (``keepdims=True``).
"""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="assemble")
class GeneralizedMeanPooling2D(keras.layers.Layer):
    """GeM pooling over the spatial axes of NHWC maps.

    Args:
      p: initial exponent (1 = average pooling, -> inf = max pooling).
      trainable_p: whether ``p`` is trained.
      epsilon: inputs are clipped to ``[epsilon, 1e12]`` before the power, and the spatial
        sum of powers to ``>= epsilon`` (official code).
      keepdims: output ``[B, 1, 1, C]`` instead of ``[B, C]``.
    """

    def __init__(self, p=3.0, trainable_p=True, epsilon=1e-6, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if p is None or float(p) <= 0:
            raise ValueError(f"p must be > 0, got p={p!r}")
        if epsilon is None or float(epsilon) <= 0:
            raise ValueError(f"epsilon must be > 0, got epsilon={epsilon!r}")
        self.initial_p = float(p)
        self.trainable_p = bool(trainable_p)
        self.epsilon = float(epsilon)
        self.keepdims = bool(keepdims)
        self.p = self.add_weight(
            name="p", shape=(), dtype="float32",
            initializer=keras.initializers.Constant(self.initial_p),
            trainable=self.trainable_p, autocast=False)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        p = ops.cast(ops.convert_to_tensor(self.p), "float32")
        x = ops.clip(ops.cast(inputs, "float32"), self.epsilon, 1e12)
        shape = ops.shape(x)
        n = ops.cast(shape[1] * shape[2], "float32")
        total = ops.sum(ops.power(x, p), axis=(1, 2), keepdims=self.keepdims)
        total = ops.maximum(total, self.epsilon)
        pooled = ops.power(n, -1.0 / p) * ops.power(total, 1.0 / p)
        return ops.cast(pooled, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        b, _, _, c = input_shape
        return (b, 1, 1, c) if self.keepdims else (b, c)

    def get_config(self):
        config = super().get_config()
        config.update({
            "p": self.initial_p,
            "trainable_p": self.trainable_p,
            "epsilon": self.epsilon,
            "keepdims": self.keepdims,
        })
        return config
