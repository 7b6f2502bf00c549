"""Anti-aliased downsampling (BlurPool).

Paper: Lee et al., 2020, "Compounding the Performance Improvements of Assembled Techniques
in a Convolutional Neural Network" (arXiv:2001.06268), network tweak "anti-alias
downsampling" (after Zhang, 2019, "Making Convolutional Networks Shift-Invariant Again").
Official code: clovaai/assembled-cnn, ``network_tweaks/antialias.py`` (``AntiAliasing``) and
``nets/blocks.py`` (``anti_aliased_downsample``).

What the official code does, and what this layer does:

* binomial filter ``a`` of size 1..7 (rows of Pascal's triangle), 2-D filter ``a a^T``
  normalized to sum 1, applied per channel (depthwise) with stride ``s`` and VALID padding
  after an explicit REFLECT padding. Same here.
* padding: the official code pads ``int((k - 1) / 2) + pad_off`` on *both* sides. For even
  ``k`` this differs from Zhang's antialiased-cnns, which pads ``[(k-1)//2, ceil((k-1)/2)]``
  (one more on the right/bottom). We follow the official Assemble code by default
  (``asymmetric_padding=False``) and offer Zhang's form with ``asymmetric_padding=True``.
  The paper itself only uses ``k = 3`` where both agree.
* ``k == 1``: the official code returns ``inp[:, :, ::stride, ::stride]``, which is correct
  for channels_first but subsamples W and C (not H and W) for channels_last, a bug there.
  This layer always subsamples the two spatial axes (a 1x1 depthwise "filter" of value 1).
* deviation: the official layer only exists for the data format of the whole model; this
  layer is channels_last (NHWC) only, as is the rest of this project.

The layer has no weights. Reflect padding needs ``pad < spatial size`` (as in TF/NumPy).

Two implementations of the same arithmetic (``implementation=``):

* ``"depthwise"``: one depthwise convolution with the 2-D filter (the official code's form).
* ``"shifts"``: the binomial filter is separable (``a a^T``), so the blur is a weighted sum of
  ``k`` strided slices along H, then ``k`` along W: elementwise work that XLA can fuse into
  one memory-bound kernel instead of a grouped convolution with one group per channel.
  Outputs equal the depthwise form up to float rounding (summation order).
* ``"auto"`` (default): ``"depthwise"`` on every backend, chosen at call time. Until
  2026-11-26 it chose ``"shifts"`` under JAX, on the assumption that grouped convolutions
  are slow on GPUs; measured on an H200 (assemble_resnet50, batch 256, 224 px, XLA; same
  run, docs/BENCHMARKS.md) the depthwise form was as fast for inference (shifts 0.5-0.7 %
  faster, within noise) and 4-4.5 % faster for a training step, in bfloat16 and float32, so
  the assumption did not hold. ``"shifts"`` stays for measuring it on other hardware
  (``benchmarks/jax_throughput.py --variants assemble_resnet50:blur=shifts``).
"""
import math

import keras
import numpy as np
from keras import ops

from models.layers._validation import validate_strides

IMPLEMENTATIONS = ("auto", "depthwise", "shifts")

_BINOMIAL_ROWS = {
    1: [1.0],
    2: [1.0, 1.0],
    3: [1.0, 2.0, 1.0],
    4: [1.0, 3.0, 3.0, 1.0],
    5: [1.0, 4.0, 6.0, 4.0, 1.0],
    6: [1.0, 5.0, 10.0, 10.0, 5.0, 1.0],
    7: [1.0, 6.0, 15.0, 20.0, 15.0, 6.0, 1.0],
}


def binomial_filter_2d(filter_size):
    """Returns the normalized ``filter_size x filter_size`` binomial filter as float64 numpy."""
    if filter_size not in _BINOMIAL_ROWS:
        raise ValueError(f"filter_size must be an integer in 1..7, got filter_size={filter_size!r}")
    a = np.asarray(_BINOMIAL_ROWS[filter_size], dtype=np.float64)
    filt = a[:, None] * a[None, :]
    return filt / filt.sum()


def _pad_amounts(filter_size, pad_off, asymmetric):
    before = (filter_size - 1) // 2 + pad_off
    after = int(math.ceil((filter_size - 1) / 2)) + pad_off if asymmetric else before
    return before, after


@keras.saving.register_keras_serializable(package="assemble")
class BlurPool2D(keras.layers.Layer):
    """Anti-aliased downsampling: reflect pad, binomial blur, subsample (NHWC).

    Args:
      filter_size: binomial filter size, 1..7 (the paper uses 3).
      strides: subsampling stride (int).
      asymmetric_padding: False (default, official Assemble code): pad ``(k-1)//2`` on both
        sides. True: Zhang's antialiased-cnns padding ``[(k-1)//2, ceil((k-1)/2)]``. Only
        differs for even ``filter_size``.
      pad_off: extra padding on every side (the official code's ``pad_off``, default 0).

    Output spatial size: ``floor((H + pad_before + pad_after - k) / s) + 1``, i.e.
    ``ceil(H / s)`` for odd ``k`` and ``pad_off = 0``.
    """

    def __init__(self, filter_size=3, strides=2, asymmetric_padding=False, pad_off=0,
                 implementation="auto", **kwargs):
        super().__init__(**kwargs)
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got "
                             f"implementation={implementation!r}")
        self.implementation = implementation
        if isinstance(filter_size, bool) or not isinstance(filter_size, (int, np.integer)) \
                or filter_size not in _BINOMIAL_ROWS:
            raise ValueError(
                f"filter_size must be an integer in 1..7, got filter_size={filter_size!r}")
        strides = validate_strides(strides)
        if int(pad_off) < 0:
            raise ValueError(f"pad_off must be >= 0, got pad_off={pad_off!r}")
        self.filter_size = int(filter_size)
        self.strides = int(strides)
        self.asymmetric_padding = bool(asymmetric_padding)
        self.pad_off = int(pad_off)
        self._pads = _pad_amounts(self.filter_size, self.pad_off, self.asymmetric_padding)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("BlurPool2D needs a known number of channels (last axis).")
        filt = binomial_filter_2d(self.filter_size).astype(np.float32)
        # depthwise kernel: [k, k, C, 1]
        self._kernel_np = np.tile(filt[:, :, None, None], (1, 1, int(channels), 1))
        self.built = True

    def call(self, inputs):
        before, after = self._pads
        x = inputs
        if before or after:
            x = ops.pad(x, [[0, 0], [before, after], [before, after], [0, 0]], mode="reflect")
        impl = self.implementation
        if impl == "auto":
            impl = "depthwise"  # measured on CPU (TF) and GPU (JAX/XLA): see the module docstring
        if impl == "shifts" and x.shape[1] is not None and x.shape[2] is not None:
            return self._blur_shifts(x)  # (unknown spatial sizes: the depthwise form)
        kernel = ops.cast(ops.convert_to_tensor(self._kernel_np), x.dtype)
        return ops.depthwise_conv(x, kernel, strides=self.strides, padding="valid")

    def _blur_shifts(self, x):
        """Separable blur as strided slices: rows (H) first, then columns (W)."""
        k, s = self.filter_size, self.strides
        row = np.asarray(_BINOMIAL_ROWS[k], np.float64)
        row = row / row.sum()
        for axis in (1, 2):
            size = x.shape[axis]
            out = (size - k) // s + 1
            acc = None
            for i in range(k):
                idx = [slice(None)] * 4
                idx[axis] = slice(i, i + (out - 1) * s + 1, s)
                term = x[tuple(idx)] * float(row[i]) if k > 1 else x[tuple(idx)]
                acc = term if acc is None else acc + term
            x = acc
        return x

    def _out_size(self, size):
        if size is None:
            return None
        before, after = self._pads
        return (size + before + after - self.filter_size) // self.strides + 1

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, self._out_size(h), self._out_size(w), c)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filter_size": self.filter_size,
            "strides": self.strides,
            "asymmetric_padding": self.asymmetric_padding,
            "pad_off": self.pad_off,
            "implementation": self.implementation,
        })
        return config
