"""DropBlock (Ghiasi et al., 2018, https://arxiv.org/abs/1810.12890).

Paper: Lee et al., 2020 (Assemble-ResNet, arXiv:2001.06268), regularization
"DropBlock": applied in stages 3 and 4 of ResNet-50 (the official code uses
``gamma_scale=0.25`` in stage 3 and ``1.0`` in stage 4, ``block_size=7``), keep
probability decayed linearly from 1.0 to 0.9 over training.
Official code: clovaai/assembled-cnn, ``regularization/dropblock.py`` (``DropBlock``) and
``nets/blocks.py`` (``dropblock``):

* ``gamma = gamma_scale * (1 - keep_prob) * (h * w) / block_size**2
  / ((h - block_size + 1) * (w - block_size + 1))``
* seeds ~ Bernoulli(gamma) sampled only in the valid region (shape
  ``[1, h - bs + 1, w - bs + 1, c]``, zero padded by ``[tl, br]`` with
  ``br = (bs - 1) // 2``, ``tl = bs - 1 - br``), expanded to ``bs x bs`` blocks by a stride-1
  SAME max pool, so every block lies fully inside the map;
* ``out = x * (1 - block_mask) * size(mask) / (sum(1 - block_mask) + 1e-8)`` (sum and size
  over the whole mask tensor, in float32).

This layer does the same, with these differences:

* ``per_sample=True`` (default) draws an independent mask for every sample (mask shape
  ``[B, h, w, c]``, as in the DropBlock paper and timm); ``per_sample=False`` shares one mask
  across the batch (mask shape ``[1, h, w, c]``) as the official code does.
* the valid region is applied as a multiplicative mask on a full ``[., h, w, c]`` uniform
  draw (same distribution as sampling the smaller tensor and zero padding it).
* ``block_size`` larger than the feature map is clipped to the map size per axis (as the
  DropBlock reference implementation in tensorflow/tpu does with ``min(block_size, width)``);
  the official Assemble code does not clip (it would build a negative sampling shape).
  Clipping needs static ``h, w``; with unknown spatial sizes the block size is used as is.
* ``keep_prob`` is a non-trainable float32 variable named ``keep_prob`` (initial 1.0), so a
  trainer can schedule it between steps under every backend and it is saved with the model.
  The official code passes a Python float / tensor.
* randomness comes from ``keras.random`` with a ``keras.random.SeedGenerator`` (JAX-safe).

Expected dropped fraction: each pixel at distance >= bs - 1 from the border is covered by
``bs**2`` possible seeds, so it is dropped with probability ``1 - (1 - gamma)**(bs**2)``;
summing the covers over the map, ``gamma * bs**2 * (h - bs + 1) * (w - bs + 1) =
gamma_scale * (1 - keep_prob) * h * w``, i.e. the expected dropped fraction is about
``gamma_scale * (1 - keep_prob)`` (slightly less, because blocks overlap). Exactly, pixel
``(i, j)`` survives with probability ``(1 - gamma)**(n_i * n_j)`` where ``n_i`` counts the block
origins covering row ``i``; for ``bs = 7, keep_prob = 0.9, gamma_scale = 1`` that gives a
dropped fraction of 0.0947 on 64x64 maps and 0.0929 on 14x14 maps (``tests/test_layers.py``).

At inference (``training`` falsy) and when ``keep_prob == 1`` (then gamma = 0, no seeds and
the scale is exactly 1) the layer is the identity.
"""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="assemble")
class DropBlock2D(keras.layers.Layer):
    """DropBlock for NHWC feature maps.

    Args:
      block_size: side of the dropped square blocks.
      gamma_scale: multiplier of the seed rate (official code: 0.25 in stage 3, 1.0 in
        stage 4); 0 disables the layer.
      per_sample: independent masks per sample (True) or one mask for the whole batch
        (False, official code).
      seed: seed of the layer's ``keras.random.SeedGenerator``.

    Attribute ``keep_prob``: non-trainable scalar float32 variable (initial 1.0); set it with
    ``layer.keep_prob.assign(v)`` or :meth:`set_keep_prob`.

    In training the mask is computed even at ``keep_prob == 1`` (it is then all ones): skipping
    it would take a ``keras.ops.cond`` on the variable with the random draw kept outside it
    (JAX-safe seed state), which saved no measurable CPU time in a training step of a small
    ResNet-D with DropBlock (the whole layer cost about 3% there), and the paper's linear
    schedule leaves ``keep_prob`` at 1 for the first step only.
    """

    def __init__(self, block_size=7, gamma_scale=1.0, per_sample=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(block_size, bool) or int(block_size) != block_size or block_size < 1:
            raise ValueError(
                f"block_size must be a positive integer, got block_size={block_size!r}")
        if gamma_scale < 0:
            raise ValueError(f"gamma_scale must be >= 0, got gamma_scale={gamma_scale!r}")
        self.block_size = int(block_size)
        self.gamma_scale = float(gamma_scale)
        self.per_sample = bool(per_sample)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        self.keep_prob = self.add_weight(
            name="keep_prob", shape=(), dtype="float32",
            initializer=keras.initializers.Constant(1.0), trainable=False, autocast=False)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self.supports_masking = True

    def set_keep_prob(self, value):
        value = float(value)
        if not 0.0 < value <= 1.0:
            raise ValueError(f"keep_prob must be in (0, 1], got {value!r}")
        self.keep_prob.assign(value)

    def effective_block_size(self, height, width):
        """``(bs_h, bs_w)`` after clipping to a (static) feature map size."""
        bs_h = self.block_size if height is None else min(self.block_size, int(height))
        bs_w = self.block_size if width is None else min(self.block_size, int(width))
        return bs_h, bs_w

    def gamma(self, height, width, keep_prob=None):
        """Seed rate for an ``height x width`` map (float32 tensor or Python float)."""
        keep = self.keep_prob if keep_prob is None else keep_prob
        bs_h, bs_w = self.effective_block_size(height, width)
        return (self.gamma_scale * (1.0 - keep) * (height * width) / (bs_h * bs_w)
                / ((height - bs_h + 1) * (width - bs_w + 1)))

    def drop_mask(self, inputs):
        """The float32 keep-mask (1 kept, 0 dropped), ``[B or 1, H, W, C]``, before scaling."""
        static = inputs.shape
        dyn = ops.shape(inputs)
        h = static[1] if static[1] is not None else dyn[1]
        w = static[2] if static[2] is not None else dyn[2]
        c = static[3] if static[3] is not None else dyn[3]
        n = (static[0] if static[0] is not None else dyn[0]) if self.per_sample else 1
        bs_h, bs_w = self.effective_block_size(static[1], static[2])
        keep = ops.cast(ops.convert_to_tensor(self.keep_prob), "float32")
        hf = ops.cast(h, "float32")
        wf = ops.cast(w, "float32")
        gamma = (self.gamma_scale * (1.0 - keep) * (hf * wf) / float(bs_h * bs_w)
                 / ((hf - bs_h + 1.0) * (wf - bs_w + 1.0)))
        # valid seed positions: rows [tl, h - 1 - br] (and the same for columns).
        br_h, br_w = (bs_h - 1) // 2, (bs_w - 1) // 2
        tl_h, tl_w = bs_h - 1 - br_h, bs_w - 1 - br_w
        rows = ops.arange(h)
        cols = ops.arange(w)
        valid_h = ops.logical_and(rows >= tl_h, rows < h - br_h)
        valid_w = ops.logical_and(cols >= tl_w, cols < w - br_w)
        valid = ops.logical_and(valid_h[:, None], valid_w[None, :])[None, :, :, None]
        uniform = keras.random.uniform((n, h, w, c), dtype="float32", seed=self.seed_generator)
        seeds = ops.cast(ops.logical_and(uniform < gamma, valid), "float32")
        block = ops.max_pool(seeds, pool_size=(bs_h, bs_w), strides=1, padding="same",
                             data_format="channels_last")
        return 1.0 - block

    def call(self, inputs, training=None):
        if not training or self.gamma_scale == 0.0:
            return inputs
        mask = self.drop_mask(inputs)
        size = ops.cast(ops.size(mask), "float32")
        scale = size / (ops.sum(mask) + 1e-8)
        return inputs * ops.cast(mask * scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "block_size": self.block_size,
            "gamma_scale": self.gamma_scale,
            "per_sample": self.per_sample,
            "seed": self.seed,
        })
        return config
