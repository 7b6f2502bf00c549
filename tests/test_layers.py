"""Tests of ``models.layers`` against independent facts (hand-written kernels, numpy
references, hand parameter formulas, distribution properties), plus the shared generic layer
checks of ``tests/keras_test_utils.py`` and one run of every layer under the JAX backend.
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from models.layers import (BlurPool2D, DropBlock2D, GeneralizedMeanPooling2D, SelectiveKernel,
                           SqueezeExcite, binomial_filter_2d)
try:
    from keras_test_utils import check_model_save_load, run_layer_test
except ImportError:  # pragma: no cover - tests/ not on sys.path
    from tests.keras_test_utils import check_model_save_load, run_layer_test

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Rows of Pascal's triangle, written out by hand (independent of the layer's table).
PASCAL = {1: [1], 2: [1, 1], 3: [1, 2, 1], 4: [1, 3, 3, 1], 5: [1, 4, 6, 4, 1],
          6: [1, 5, 10, 10, 5, 1], 7: [1, 6, 15, 20, 15, 6, 1]}


def np_conv2d(x, kernel, stride=1, dilation=1, groups=1):
    """VALID cross-correlation, NHWC, kernel [kh, kw, Cin/groups, Cout], float64."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    b, h, w, cin = x.shape
    kh, kw, cig, cout = kernel.shape
    assert cig * groups == cin
    oh = (h - dilation * (kh - 1) - 1) // stride + 1
    ow = (w - dilation * (kw - 1) - 1) // stride + 1
    cog = cout // groups
    out = np.zeros((b, oh, ow, cout))
    for g in range(groups):
        xs = x[..., g * cig:(g + 1) * cig]
        ks = kernel[..., g * cog:(g + 1) * cog]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, i * dilation:i * dilation + stride * (oh - 1) + 1:stride,
                           j * dilation:j * dilation + stride * (ow - 1) + 1:stride, :]
                out[..., g * cog:(g + 1) * cog] += patch @ ks[i, j]
    return out


def to_np(x):
    return keras.ops.convert_to_numpy(x)


# ----------------------------------------------------------------------------- BlurPool2D
@pytest.mark.parametrize("k", [3, 5])
def test_blurpool_impulse_response_is_binomial_kernel(k):
    x = np.zeros((1, 11, 11, 1), np.float32)
    x[0, 5, 5, 0] = 1.0
    y = to_np(BlurPool2D(filter_size=k, strides=1)(x))[0, :, :, 0]
    row = np.array(PASCAL[k], np.float64)
    expected = np.outer(row, row) / row.sum() ** 2
    r = (k - 1) // 2
    np.testing.assert_allclose(y[5 - r:5 + r + 1, 5 - r:5 + r + 1], expected, atol=1e-7)
    assert abs(y.sum() - 1.0) < 1e-6  # impulse far from the border: nothing else
    if k == 3:
        np.testing.assert_allclose(
            y[4:7, 4:7], np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0, atol=1e-7)


@pytest.mark.parametrize("k", range(1, 8))
def test_blurpool_filter_sizes(k):
    filt = binomial_filter_2d(k)
    assert filt.shape == (k, k)
    assert abs(filt.sum() - 1.0) < 1e-12
    row = np.array(PASCAL[k], np.float64)
    np.testing.assert_allclose(filt, np.outer(row, row) / row.sum() ** 2, atol=1e-15)
    y = BlurPool2D(filter_size=k, strides=1)(np.ones((1, 9, 9, 2), np.float32))
    np.testing.assert_allclose(to_np(y), 1.0, atol=1e-6)  # constant in -> constant out


@pytest.mark.parametrize("bad", [0, 8, -1, 2.5])
def test_blurpool_invalid_filter_size(bad):
    with pytest.raises(ValueError, match="filter_size"):
        BlurPool2D(filter_size=bad)


@pytest.mark.parametrize("k,size,asym,expected", [
    (3, 7, False, 4), (3, 8, False, 4), (3, 56, False, 28), (3, 57, False, 29),
    (1, 7, False, 4), (1, 8, False, 4), (5, 7, False, 4), (5, 8, False, 4),
    # even k: the official code pads (k-1)//2 on both sides -> one row fewer on odd sizes
    (4, 8, False, 4), (4, 7, False, 3), (2, 7, False, 3), (2, 8, False, 4),
    # Zhang's asymmetric padding [(k-1)//2, ceil((k-1)/2)] -> ceil(size / 2)
    (4, 7, True, 4), (4, 8, True, 4), (2, 7, True, 4),
])
def test_blurpool_stride2_output_shape(k, size, asym, expected):
    layer = BlurPool2D(filter_size=k, strides=2, asymmetric_padding=asym)
    y = layer(np.random.rand(2, size, size, 3).astype(np.float32))
    assert tuple(y.shape) == (2, expected, expected, 3)
    assert layer.compute_output_shape((2, size, size, 3)) == (2, expected, expected, 3)


@pytest.mark.parametrize("k,strides,asym", [(1, 2, False), (2, 2, False), (3, 2, False),
                                            (4, 2, False), (4, 2, True), (5, 2, False),
                                            (7, 2, False), (3, 1, False), (3, 3, False)])
@pytest.mark.parametrize("impl", ["depthwise", "shifts"])
def test_blurpool_matches_numpy_reference(k, strides, asym, impl):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(2, 13, 10, 3)).astype(np.float32)
    before = (k - 1) // 2
    after = k // 2 if asym else before
    padded = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)), mode="reflect")
    row = np.array(PASCAL[k], np.float64)
    filt = np.outer(row, row) / row.sum() ** 2
    kernel = np.tile(filt[:, :, None, None], (1, 1, 1, 3))  # depthwise == groups = C
    expected = np_conv2d(padded, kernel, stride=strides, groups=3)
    y = to_np(BlurPool2D(filter_size=k, strides=strides, asymmetric_padding=asym, implementation=impl)(x))
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_blurpool_bad_implementation_names_the_argument():
    with pytest.raises(ValueError, match="implementation"):
        BlurPool2D(3, 2, implementation="fft")


@pytest.mark.parametrize("layer_cls,args", [(BlurPool2D, (3,)), (SelectiveKernel, (8,))])
def test_strides_validation_shared_by_blurpool_and_sk(layer_cls, args):
    assert layer_cls(*args, strides=(2, 2)).strides == 2
    assert layer_cls(*args, strides=[3, 3]).strides == 3
    for bad in [(2, 1), [], 0, -2]:
        with pytest.raises(ValueError, match="strides"):
            layer_cls(*args, strides=bad)


def test_blurpool_generic(tmp_path):
    layer = run_layer_test(BlurPool2D, {"filter_size": 3, "strides": 2}, (2, 8, 8, 4),
                           (2, 4, 4, 4), expected_num_trainable_weights=0,
                           expected_num_non_trainable_weights=0, tmp_path=tmp_path)
    assert layer.count_params() == 0


# ----------------------------------------------------------------------------- SqueezeExcite
@pytest.mark.parametrize("use_bias", [False, True])
def test_squeeze_excite_numpy_reference(use_bias):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 2, 4)).astype(np.float32)
    layer = SqueezeExcite(ratio=2, use_bias=use_bias)
    layer(x)
    w1 = rng.normal(size=(4, 2)).astype(np.float32)
    w2 = rng.normal(size=(2, 4)).astype(np.float32)
    b1 = rng.normal(size=(2,)).astype(np.float32) if use_bias else np.zeros(2, np.float32)
    b2 = rng.normal(size=(4,)).astype(np.float32) if use_bias else np.zeros(4, np.float32)
    layer.se_reduce.kernel.assign(w1.reshape(1, 1, 4, 2))
    layer.se_expand.kernel.assign(w2.reshape(1, 1, 2, 4))
    if use_bias:
        layer.se_reduce.bias.assign(b1)
        layer.se_expand.bias.assign(b2)
    s = x.astype(np.float64).mean(axis=(1, 2))
    z = np.maximum(s @ w1 + b1, 0.0)
    e = 1.0 / (1.0 + np.exp(-(z @ w2 + b2)))
    expected = x * e[:, None, None, :]
    np.testing.assert_allclose(to_np(layer(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels,ratio,use_bias,expected", [
    (64, 16, False, 64 * 4 * 2),                  # C*rd + rd*C
    (64, 16, True, 64 * 4 * 2 + 4 + 64),          # + biases (timm / SE paper)
    (256, 16, True, 256 * 16 * 2 + 16 + 256),     # timm seresnet50, stage-1 SE module
    (8, 16, False, 8 * 1 * 2),                    # reduce width max(1, C // r)
])
def test_squeeze_excite_param_count(channels, ratio, use_bias, expected):
    layer = SqueezeExcite(ratio=ratio, use_bias=use_bias)
    layer(np.zeros((1, 4, 4, channels), np.float32))
    assert layer.count_params() == expected


def test_squeeze_excite_generic(tmp_path):
    run_layer_test(SqueezeExcite, {"ratio": 4}, (2, 5, 5, 16), (2, 5, 5, 16),
                   expected_num_trainable_weights=2, expected_num_non_trainable_weights=0,
                   expected_num_params=16 * 4 * 2, tmp_path=tmp_path)
    run_layer_test(SqueezeExcite, {"ratio": 4, "use_bias": True}, (2, 5, 5, 16),
                   (2, 5, 5, 16), expected_num_params=16 * 4 * 2 + 4 + 16, run_save_load=False,
                   mixed_precision_policies=("mixed_float16",))


# ----------------------------------------------------------------------------- SelectiveKernel
def _set_bn(bn, rng):
    n = bn.gamma.shape[0]
    bn.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
    bn.beta.assign(rng.normal(size=n).astype(np.float32))
    bn.moving_mean.assign(rng.normal(size=n).astype(np.float32) * 0.1)
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
    return [to_np(v).astype(np.float64) for v in
            (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)]


def _np_bn(x, params, eps):
    gamma, beta, mean, var = params
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


@pytest.mark.parametrize("variant,strides,groups", [("code", 1, 1), ("code", 2, 1),
                                                    ("sknet", 1, 2), ("sknet", 2, 1)])
def test_selective_kernel_numpy_reference(variant, strides, groups):
    rng = np.random.default_rng(3)
    cin, f, d = 4, 6, 5  # d = max(int(6 / 2), 5) = 5
    x = rng.normal(size=(2, 7, 6, cin)).astype(np.float32)
    layer = SelectiveKernel(f, strides=strides, ratio=2, min_dim=5, variant=variant,
                            groups=groups, epsilon=1e-3)
    layer(x)
    assert layer.fuse_dim == d
    eps = 1e-3

    def branch(conv, bn, out_channels, dil):
        k = rng.normal(size=(3, 3, cin // groups, out_channels)).astype(np.float32) * 0.3
        conv.kernel.assign(k)
        params = _set_bn(bn, rng)
        padded = np.pad(x.astype(np.float64), ((0, 0), (dil, dil), (dil, dil), (0, 0)))
        return np.maximum(_np_bn(np_conv2d(padded, k, strides, dil, groups), params, eps), 0)

    if variant == "code":
        y = branch(layer.sk_conv, layer.sk_conv_bn, 2 * f, 1)
        feats = [y[..., :f], y[..., f:]]
    else:
        feats = [branch(layer.sk_conv0, layer.sk_conv0_bn, f, 1),
                 branch(layer.sk_conv1, layer.sk_conv1_bn, f, 2)]
    w1 = rng.normal(size=(f, d)).astype(np.float32)
    w2 = rng.normal(size=(d, 2 * f)).astype(np.float32)
    layer.sk_fc1.kernel.assign(w1.reshape(1, 1, f, d))
    layer.sk_fc2.kernel.assign(w2.reshape(1, 1, d, 2 * f))
    fc_bn = _set_bn(layer.sk_fc1_bn, rng)

    s = (feats[0] + feats[1]).mean(axis=(1, 2))
    z = np.maximum(_np_bn(s @ w1, fc_bn, eps), 0)
    logits = z @ w2
    a0, a1 = logits[:, :f], logits[:, f:]
    att0 = np.exp(a0) / (np.exp(a0) + np.exp(a1))
    att1 = 1.0 - att0
    expected = feats[0] * att0[:, None, None] + feats[1] * att1[:, None, None]

    out, att = layer(x, training=False, return_attention=True)
    np.testing.assert_allclose(to_np(out), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_np(att), np.stack([att0, att1], axis=1), rtol=1e-4, atol=1e-5)
    oh = (7 - 1) // strides + 1
    ow = (6 - 1) // strides + 1
    assert tuple(out.shape) == (2, oh, ow, f)


@pytest.mark.parametrize("variant", ["code", "sknet"])
@pytest.mark.parametrize("training", [False, True])
def test_selective_kernel_attention_sums_to_one(variant, training):
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 16)).astype(np.float32)
    layer = SelectiveKernel(16, variant=variant, min_dim=8)
    out, att = layer(x, training=training, return_attention=True)
    att = to_np(att)
    assert att.shape == (3, 2, 16)
    assert np.all(att > 0) and np.all(att < 1)
    np.testing.assert_allclose(att.sum(axis=1), 1.0, atol=1e-6)
    assert tuple(out.shape) == (3, 8, 8, 16)


@pytest.mark.parametrize("variant,cin,f,ratio,min_dim,groups", [
    ("code", 64, 64, 2, 32, 1),       # Assemble-ResNet stage 1: d = max(32, 32) = 32
    ("code", 128, 256, 2, 32, 1),     # d = 128
    ("sknet", 64, 64, 16, 32, 32),    # SKNet-50 stage 1: d = max(4, 32) = 32
])
def test_selective_kernel_param_count(variant, cin, f, ratio, min_dim, groups):
    d = max(int(f / ratio), min_dim)
    if variant == "code":
        conv = 3 * 3 * cin * 2 * f          # one 3x3 conv, 2f outputs, no bias
    else:
        conv = 2 * 3 * 3 * (cin // groups) * f  # two grouped 3x3 convs, f outputs each
    bn_branch = 2 * 2 * f                     # gamma, beta of 2f channels
    trainable = conv + bn_branch + f * d + 2 * d + d * 2 * f
    non_trainable = 2 * 2 * f + 2 * d         # moving mean / variance
    layer = SelectiveKernel(f, ratio=ratio, min_dim=min_dim, variant=variant, groups=groups)
    layer(np.zeros((1, 6, 6, cin), np.float32))
    assert sum(int(np.prod(w.shape)) for w in layer.trainable_weights) == trainable
    assert sum(int(np.prod(w.shape)) for w in layer.non_trainable_weights) == non_trainable
    bns = [l for l in layer._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == (2 if variant == "code" else 3)
    assert all(abs(bn.momentum - 0.997) < 1e-12 and abs(bn.epsilon - 1e-5) < 1e-12
               for bn in bns)


def test_selective_kernel_invalid_arguments():
    with pytest.raises(ValueError, match="variant"):
        SelectiveKernel(8, variant="bogus")
    with pytest.raises(ValueError, match="groups"):
        SelectiveKernel(8, groups=3)


@pytest.mark.parametrize("init,inp,out", [
    ({"filters": 8, "strides": 2, "min_dim": 4}, (2, 7, 7, 4), (2, 4, 4, 8)),
    ({"filters": 8, "variant": "sknet", "groups": 2, "min_dim": 4, "momentum": 0.9},
     (2, 6, 6, 4), (2, 6, 6, 8)),
])
def test_selective_kernel_generic(tmp_path, init, inp, out):
    run_layer_test(SelectiveKernel, init, inp, out, tmp_path=tmp_path,
                   expected_num_trainable_weights=10 if init.get("variant") == "sknet" else 7)


def test_selective_kernel_sublayer_dtype_follows_layer_policy():
    layer = SelectiveKernel(8, dtype="mixed_bfloat16")
    y = layer(np.ones((1, 4, 4, 3), np.float32))
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    for sub in layer._flatten_layers(include_self=False):
        assert sub.compute_dtype == "bfloat16", sub.name


# ----------------------------------------------------------------------------- DropBlock2D
def _dropblock(keep, **kw):
    layer = DropBlock2D(**kw)
    layer.set_keep_prob(keep)
    return layer


def test_dropblock_keep_prob_variable():
    layer = DropBlock2D(block_size=3)
    assert layer.keep_prob.name == "keep_prob"
    assert not layer.keep_prob.trainable
    assert float(to_np(layer.keep_prob)) == 1.0
    assert layer.trainable_weights == []
    assert any(v is layer.keep_prob for v in layer.non_trainable_weights)
    layer.keep_prob.assign(0.93)
    assert abs(float(to_np(layer.keep_prob)) - 0.93) < 1e-7


def test_dropblock_identity_at_inference_and_keep_one():
    x = np.random.default_rng(0).normal(size=(4, 16, 16, 8)).astype(np.float32)
    layer = _dropblock(0.7, block_size=5, seed=1)
    np.testing.assert_array_equal(to_np(layer(x, training=False)), x)
    np.testing.assert_array_equal(to_np(layer(x)), x)  # training unset -> inference
    layer.set_keep_prob(1.0)
    np.testing.assert_array_equal(to_np(layer(x, training=True)), x)
    layer.set_keep_prob(0.7)
    assert not np.array_equal(to_np(layer(x, training=True)), x)


def _expected_drop_fraction(h, w, bs, gamma):
    """Exact E[dropped fraction]: pixel i is covered by the valid block origins t with
    t <= i <= t + bs - 1, 0 <= t <= n - bs; dropped unless none of them is a seed."""
    def cover(n):
        i = np.arange(n)
        return np.minimum(i, n - bs) - np.maximum(0, i - bs + 1) + 1
    n = cover(h)[:, None] * cover(w)[None, :]
    return float(np.mean(1.0 - (1.0 - gamma) ** n))


def test_dropblock_dropped_fraction():
    h = w = 64
    bs, keep = 7, 0.9
    # gamma from the DropBlock paper / official code, by hand.
    gamma = (1 - keep) * h * w / bs ** 2 / ((h - bs + 1) * (w - bs + 1))
    expected = _expected_drop_fraction(h, w, bs, gamma)
    # The formula targets (1 - keep): overlaps make the exact expectation slightly lower.
    assert 0.085 < expected < 0.1
    layer = _dropblock(keep, block_size=bs, seed=123)
    y = to_np(layer(np.ones((8, h, w, 8), np.float32), training=True))
    dropped = float(np.mean(y == 0))
    # ~540 blocks are drawn: the sampling std of the fraction is ~0.005; tolerance 0.02.
    assert abs(dropped - expected) < 0.02, (dropped, expected)
    assert abs(dropped - (1 - keep)) < 0.03


def _check_blocks(zero, bs):
    """Every zero pixel of the 2-D map belongs to an all-zero bs x bs square in the map."""
    from numpy.lib.stride_tricks import sliding_window_view
    squares = sliding_window_view(zero, (bs, bs)).all(axis=(-2, -1))
    covered = np.zeros_like(zero)
    for ti, tj in zip(*np.nonzero(squares)):
        covered[ti:ti + bs, tj:tj + bs] = True
    np.testing.assert_array_equal(covered, zero)


@pytest.mark.parametrize("bs", [3, 4, 7])
def test_dropblock_drops_contiguous_blocks(bs):
    layer = _dropblock(0.8, block_size=bs, seed=7)
    y = to_np(layer(np.ones((2, 24, 20, 3), np.float32), training=True))
    zero = y == 0
    assert zero.any() and (~zero).any()
    for b in range(2):
        for c in range(3):
            _check_blocks(zero[b, :, :, c], bs)


def test_dropblock_per_sample_masks():
    x = np.ones((4, 16, 16, 4), np.float32)
    y = to_np(_dropblock(0.7, block_size=3, per_sample=True, seed=3)(x, training=True))
    assert not all(np.array_equal(y[0] == 0, y[i] == 0) for i in range(1, 4))
    y = to_np(_dropblock(0.7, block_size=3, per_sample=False, seed=3)(x, training=True))
    assert (y == 0).any()
    for i in range(1, 4):
        np.testing.assert_array_equal(y[0], y[i])


@pytest.mark.parametrize("per_sample", [True, False])
def test_dropblock_rescaling_keeps_mean(per_sample):
    x = np.ones((4, 20, 20, 6), np.float32)
    y = to_np(_dropblock(0.85, block_size=5, per_sample=per_sample, seed=5)(x, training=True))
    kept = y[y != 0]
    # out = x * count / count_ones: all kept values equal that factor, the mean stays 1.
    np.testing.assert_allclose(kept, y.size / kept.size, rtol=1e-5)
    assert abs(y.mean() - 1.0) < 1e-5


def test_dropblock_block_larger_than_map_is_clipped():
    # block_size 7 on a 5x5 map: clipped to 5, a single valid seed per (sample, channel) map
    # with gamma = (1 - keep) -> every map is either fully dropped or fully kept.
    layer = _dropblock(0.5, block_size=7, seed=11)
    y = to_np(layer(np.ones((16, 5, 5, 8), np.float32), training=True))
    per_map = (y == 0).reshape(16, 25, 8)
    assert np.all(per_map.all(axis=1) | ~per_map.any(axis=1))
    frac = per_map.all(axis=1).mean()
    assert 0.25 < frac < 0.75  # 128 maps, Bernoulli(0.5)
    assert tuple(y.shape) == (16, 5, 5, 8)
    assert layer.effective_block_size(5, 3) == (5, 3)


def test_dropblock_mixed_precision_training():
    keras.config.set_dtype_policy("mixed_bfloat16")
    layer = _dropblock(0.9, block_size=3, seed=2)
    y = layer(np.ones((2, 12, 12, 4), np.float32), training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(layer.keep_prob.dtype) == "float32"
    assert np.all(np.isfinite(to_np(keras.ops.cast(y, "float32"))))


def test_dropblock_generic(tmp_path):
    layer = run_layer_test(DropBlock2D, {"block_size": 3, "gamma_scale": 0.25, "seed": 1},
                           (2, 8, 8, 4), (2, 8, 8, 4), expected_num_trainable_weights=0,
                           tmp_path=tmp_path, mixed_precision_policies=("mixed_bfloat16",
                                                                        "mixed_float16"))
    layer.set_keep_prob(0.9)
    inp = keras.Input((8, 8, 4))
    model = keras.Model(inp, DropBlock2D(block_size=3, name="db")(inp))
    model.get_layer("db").set_keep_prob(0.8)
    loaded = check_model_save_load(model, np.ones((1, 8, 8, 4), np.float32), tmp_path)
    assert abs(float(to_np(loaded.get_layer("db").keep_prob)) - 0.8) < 1e-7


# ----------------------------------------------------------------------------- GeM
def test_gem_p1_is_average_pooling():
    x = np.random.default_rng(0).uniform(0.01, 3.0, size=(2, 5, 4, 3)).astype(np.float32)
    y = to_np(GeneralizedMeanPooling2D(p=1.0)(x))
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)), rtol=1e-5)


def test_gem_p3_numpy_reference():
    x = np.random.default_rng(1).uniform(-1.0, 3.0, size=(2, 5, 4, 3)).astype(np.float32)
    clipped = np.clip(x.astype(np.float64), 1e-6, None)
    expected = np.mean(clipped ** 3, axis=(1, 2)) ** (1 / 3)
    y = to_np(GeneralizedMeanPooling2D(p=3.0, keepdims=True)(x))
    assert y.shape == (2, 1, 1, 3)
    np.testing.assert_allclose(y[:, 0, 0], expected, rtol=1e-5)


def test_gem_dead_channel_follows_official_guard():
    # all-zero map: x -> eps, sum(x^p) = N eps^p < eps -> guard: N^(-1/p) * eps^(1/p)
    y = to_np(GeneralizedMeanPooling2D(p=3.0)(np.zeros((1, 7, 7, 2), np.float32)))
    np.testing.assert_allclose(y, 49 ** (-1 / 3) * 1e-6 ** (1 / 3), rtol=1e-5)


def test_gem_large_p_approaches_max():
    # values >= 1 so that sum(x^p) stays above the official eps guard (1e-6)
    x = np.random.default_rng(2).uniform(1.0, 2.0, size=(2, 4, 4, 5)).astype(np.float32)
    mx = x.max(axis=(1, 2))
    p = 60.0
    y = to_np(GeneralizedMeanPooling2D(p=p)(x))
    # max * N^(-1/p) <= GeM_p <= max  (N = 16 pixels)
    assert np.all(y <= mx * (1 + 1e-5))
    assert np.all(y >= mx * 16 ** (-1 / p) * (1 - 1e-5))
    np.testing.assert_allclose(y, mx, rtol=0.05)


def test_gem_trainable_p():
    layer = GeneralizedMeanPooling2D(p=2.0)
    assert [v.name for v in layer.trainable_weights] == ["p"]
    fixed = GeneralizedMeanPooling2D(p=3.0, trainable_p=False)
    assert fixed.trainable_weights == [] and len(fixed.non_trainable_weights) == 1
    with pytest.raises(ValueError, match="p"):
        GeneralizedMeanPooling2D(p=0.0)


@pytest.mark.parametrize("keepdims,out", [(False, (2, 6)), (True, (2, 1, 1, 6))])
def test_gem_generic(tmp_path, keepdims, out):
    run_layer_test(GeneralizedMeanPooling2D, {"p": 3.0, "keepdims": keepdims},
                   (2, 5, 5, 6), out, expected_num_trainable_weights=1, tmp_path=tmp_path,
                   mixed_precision_policies=("mixed_bfloat16", "mixed_float16"))


# ----------------------------------------------------------------------------- JAX backend
_JAX_SCRIPT = textwrap.dedent("""
    import json
    import jax
    import keras
    import numpy as np
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from models.layers import (BlurPool2D, DropBlock2D, GeneralizedMeanPooling2D,
                               SelectiveKernel, SqueezeExcite)
    # One functional model holding every layer, compiled once (eager JAX compiles op by op,
    # which is much slower on a small CPU machine).
    inp = keras.Input((8, 8, 8))
    se = SqueezeExcite(4, name="se")(inp)
    db_layer = DropBlock2D(3, seed=0, name="db")
    db = db_layer(se)
    outputs = {
        "BlurPool2D": BlurPool2D(3, 2, name="blur")(inp),
        "SqueezeExcite": se,
        "SelectiveKernel": SelectiveKernel(8, strides=2, min_dim=4, name="sk")(se),
        "SelectiveKernel_sknet": SelectiveKernel(8, strides=2, variant="sknet", groups=2,
                                                 min_dim=4, name="sks")(se),
        "DropBlock2D": db,
        "GeneralizedMeanPooling2D": GeneralizedMeanPooling2D(name="gem")(db),
    }
    expected = {"BlurPool2D": [2, 4, 4, 8], "SqueezeExcite": [2, 8, 8, 8],
                "SelectiveKernel": [2, 4, 4, 8], "SelectiveKernel_sknet": [2, 4, 4, 8],
                "DropBlock2D": [2, 8, 8, 8], "GeneralizedMeanPooling2D": [2, 8]}
    model = keras.Model(inp, outputs)
    db_layer.set_keep_prob(0.8)
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def step(tv, ntv, x):
        infer, _ = model.stateless_call(tv, ntv, x, training=False)
        def loss_fn(tv):
            y, ntv2 = model.stateless_call(tv, ntv, x, training=True)
            loss = sum(keras.ops.mean(v) for v in y.values())
            return loss, (y, ntv2)
        (loss, (train, ntv2)), grads = jax.value_and_grad(loss_fn, has_aux=True)(tv)
        return infer, train, loss, grads, ntv2

    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 8)).astype("float32")
    infer, train, loss, grads, ntv = step(tv, ntv, x)
    # the seed generator state is a non-trainable variable: feeding it back gives new masks
    _, train2, _, _, _ = step(tv, ntv, x)
    results = {}
    for name, shape in expected.items():
        ys = [np.asarray(infer[name]), np.asarray(train[name])]
        results[name] = {"shape": [list(y.shape) for y in ys],
                         "finite": all(bool(np.all(np.isfinite(y))) for y in ys),
                         "expected": shape}
    results["DropBlock2D"]["dropped"] = float(np.mean(np.asarray(train["DropBlock2D"]) == 0))
    results["DropBlock2D"]["identity_at_inference"] = bool(
        np.array_equal(np.asarray(infer["DropBlock2D"]), np.asarray(infer["SqueezeExcite"])))
    results["DropBlock2D"]["new_mask_next_step"] = not bool(np.array_equal(
        np.asarray(train["DropBlock2D"]) == 0, np.asarray(train2["DropBlock2D"]) == 0))
    results["jit_step"] = {"finite": bool(np.isfinite(float(loss))) and
                           all(bool(np.all(np.isfinite(np.asarray(g)))) for g in grads)}
    print("RESULTS " + json.dumps(results))
""")


_TORCH_SCRIPT = textwrap.dedent("""
    import numpy as np
    import keras
    assert keras.backend.backend() == "torch", keras.backend.backend()
    from models.layers import (BlurPool2D, DropBlock2D, GeneralizedMeanPooling2D,
                               SelectiveKernel, SqueezeExcite)
    x = np.random.default_rng(0).uniform(size=(2, 9, 9, 8)).astype("float32")
    db = DropBlock2D(4, seed=0)
    db.set_keep_prob(0.8)
    cases = [(BlurPool2D(3, 2), (2, 5, 5, 8)), (BlurPool2D(4, 2), (2, 4, 4, 8)),
             (SqueezeExcite(4), (2, 9, 9, 8)),
             (SelectiveKernel(8, strides=2, min_dim=4), (2, 5, 5, 8)),
             (SelectiveKernel(8, strides=2, variant="sknet", groups=2, min_dim=4), (2, 5, 5, 8)),
             (db, (2, 9, 9, 8)), (GeneralizedMeanPooling2D(), (2, 8))]
    for layer, shape in cases:
        for training in (False, True):
            y = keras.ops.convert_to_numpy(layer(x, training=training))
            assert y.shape == shape, (layer.name, y.shape, shape)
            assert np.all(np.isfinite(y)), layer.name
    y = keras.ops.convert_to_numpy(db(np.ones((2, 24, 20, 3), "float32"), training=True))
    assert 0.0 < np.mean(y == 0) < 0.5 and abs(y.mean() - 1.0) < 1e-5
    print("TORCH OK")
""")


_HAS_TORCH = importlib.util.find_spec("torch") is not None
_BACKEND_SCRIPTS = {"jax": _JAX_SCRIPT, "torch": _TORCH_SCRIPT}
_BACKEND_RUNS = {}


def _backend_run(backend):
    """Starts (once) the subprocess that runs the layers under ``backend``."""
    if backend not in _BACKEND_RUNS:
        env = dict(os.environ, KERAS_BACKEND=backend,
                   PYTHONPATH=os.pathsep.join([str(REPO_ROOT),
                                               os.environ.get("PYTHONPATH", "")]))
        if backend == "jax":
            # Cheap XLA CPU compilation: the check is about tracing / semantics, not speed;
            # this cuts the subprocess' CPU time about 3x.
            env["JAX_PLATFORMS"] = "cpu"
            env["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),
                                         "--xla_backend_optimization_level=0",
                                         "--xla_llvm_disable_expensive_passes=true"]).strip()
        _BACKEND_RUNS[backend] = subprocess.Popen(
            [sys.executable, "-c", _BACKEND_SCRIPTS[backend]], cwd=REPO_ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return _BACKEND_RUNS[backend]


def _backend_result(backend):
    proc = _backend_run(backend)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{backend} subprocess timed out: {err[-2000:]}")
    assert proc.returncode == 0, err[-4000:]
    return out


@pytest.fixture(scope="module", autouse=True)
def _prestart_backend_runs(request):
    """The JAX / torch subprocesses start with the first test of this module and run beside
    the in-process tests (they only wait on imports and XLA compilation)."""
    selected = {item.name for item in request.session.items}
    if "test_layers_under_jax_backend" in selected:
        _backend_run("jax")
    if _HAS_TORCH and "test_layers_under_torch_backend" in selected:
        _backend_run("torch")
    yield
    for proc in _BACKEND_RUNS.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    _BACKEND_RUNS.clear()


def test_layers_under_jax_backend():
    out = _backend_result("jax")
    line = [l for l in out.splitlines() if l.startswith("RESULTS ")][-1]
    results = json.loads(line[len("RESULTS "):])
    for name, r in results.items():
        if name == "jit_step":
            assert r["finite"], r
            continue
        assert r["finite"], (name, r)
        assert r["shape"] == [r["expected"], r["expected"]], (name, r)
    assert 0.0 < results["DropBlock2D"]["dropped"] < 0.6
    assert results["DropBlock2D"]["identity_at_inference"]
    assert results["DropBlock2D"]["new_mask_next_step"]




@pytest.mark.skipif(not _HAS_TORCH, reason="torch not installed")
def test_layers_under_torch_backend():
    assert "TORCH OK" in _backend_result("torch")
