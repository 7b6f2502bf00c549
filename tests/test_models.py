"""Tests of the model registry and builders (issue 2), against independent facts:

* parameter counts published by timm 1.0.31 (trainable parameters: timm counts
  ``nn.Parameter``s, i.e. without BN running statistics);
* the official code's printed Keras summary of its Assemble-ResNet-50 (clovaai/assembled-cnn,
  ``script/ctl_r50zc_bldskaa_ls_drbl_mixupaa_kd_ep600.sh``: 1001 classes, trainable
  41,848,489, non-trainable (BN moving mean/variance) 77,312);
* a per-layer formula written here from the architecture description (paper section 3.1,
  official ``nets/resnet_model.py`` / ``network_tweaks/big_little.py``);
* ``keras.applications.MobileNet`` for the MobileNet V1 count.

Every registered name at its real depth and width (issue 2: "Every model: ``.keras`` save
and load gives identical outputs; builds and runs under ``mixed_bfloat16`` and
``mixed_float16`` with float32 logits; runs under the JAX backend too"): ``FULL_DEPTH`` holds
one name per distinct network, ``IDENTICAL`` the names whose build is exactly that of another
name (checked on the two full builds' ``get_config``, so the repeat is skipped). Time budget
(2 shared CPU cores): each full network is built once at 32x32 (the smallest size its total
stride of 32 allows; parameter counts do not depend on the input size), batch 2, and shared
by the count, save/load and mixed-precision tests of that name (the ``full_model`` fixture);
the JAX checks run in one subprocess over all of them, started with the module so that it
runs beside the in-process tests (see ``_JAX_SCRIPT``). The heaviest tests are marked
``full_depth`` (CI runs them; ``-m "not full_depth"`` leaves them out locally).
"""
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import keras
import numpy as np
import pytest

import models
from models.config import ResNetConfig
from tests.keras_test_utils import check_model_save_load

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TIMM_COUNTS = {  # timm 1.0.31, num_classes=1000
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnet50d": 25_576_264,
    "resnet101d": 44_568_392,
    "resnet152d": 60_212_040,
    "seresnet50": 28_088_024,
    "resnetblur50": 25_557_032,
}

# Names whose network is exactly that of another name (the Table 7 rows that differ from
# their base only in the training recipe; docs/MODELS.md "Table 7 rows"). Each pair is
# checked on the two full-depth builds (test_identical_names_build_identical_networks, in the
# JAX run), and the full-depth checks then run once per network, on the name given here.
IDENTICAL = {
    "table7_e0": "resnet50",
    "table7_e1": "resnet50d",
    "table7_e2": "resnet50d",
    "table7_e3": "resnet50d",
    "table7_e7": "table7_e6",
    "table7_e8": "table7_e6",
    "table7_e10": "assemble_resnet50",
    "table7_e11": "assemble_resnet50",
    "table7_e12": "assemble_resnet152",
}
# One name per distinct network: every registered name not in IDENTICAL (a new variant joins
# the full-depth checks by registering it).
FULL_DEPTH = [name for name in models.list_models() if name not in IDENTICAL]
# Deeper variants built from exactly the blocks of a 50-layer one, only more of them (checked
# by test_deep_variants_differ_only_in_depth): the per-layer checks (mixed precision,
# save/load) run on the 50-layer network, the parameter counts on every depth.
# (Assemble-ResNet-152 is not one: its Big-Little alpha/beta differ from the 50-layer one's.)
DEPTH_OF = {"resnet101": "resnet50", "resnet152": "resnet50", "resnet101d": "resnet50d",
            "resnet152d": "resnet50d"}
FULL_INPUT = (32, 32, 3)  # the smallest input the total stride (32) of every network allows
FULL_CLASSES = 1000       # as the published parameter counts, so the count tests share builds
FULL_X = np.random.default_rng(1).normal(size=(2,) + FULL_INPUT).astype("float32")
full_depth = pytest.mark.full_depth


@pytest.fixture(scope="module")
def full_model(request):
    """The float32 network ``request.param`` at its real depth and width, built once per run.

    Tests take it through ``indirect`` parametrization; pytest runs the tests of one name
    together (module-scoped parametrized fixture), so one full network is alive at a time.
    """
    model = models.build_model(request.param, num_classes=FULL_CLASSES, input_shape=FULL_INPUT)
    assert model.name == request.param
    return model


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def bn_moving_count(model):
    return sum(int(np.prod(v.shape)) for v in model.non_trainable_weights
               if "moving_" in v.path)


# ----------------------------------------------------------------------------- registry
def test_list_models_contains_spec_names():
    names = models.list_models()
    for name in list(TIMM_COUNTS) + ["skresnet50", "assemble_resnet50", "assemble_resnet152",
                                     "mobilenet_v1", "se_mobilenet_v1", "se_mobilenet_v1_r2"]:
        assert name in names
    for row in range(13):
        assert f"table7_e{row}" in names
    assert names == sorted(names)


def test_config_json_round_trip():
    cfg = models.get_model_config("assemble_resnet50", pool="gem", embedding_dim=128)
    text = json.dumps(dataclasses.asdict(cfg))
    assert models.config_from_dict(json.loads(text)) == cfg
    mcfg = models.get_model_config("se_mobilenet_v1_r2")
    assert models.config_from_dict(json.loads(json.dumps(dataclasses.asdict(mcfg)))) == mcfg
    assert mcfg.se_ratio == 2


def test_shared_head_and_bn_fields_keep_names_and_defaults():
    """ResNet and MobileNet configs take the SE / head / batch-norm fields from one base
    class; names and defaults are those of the configs written before the refactor, and a
    dict in the old field order (arch first, head last) loads to the same config."""
    from models.config import BaseModelConfig, MobileNetConfig
    shared = {"se_ratio": 0, "se_use_bias": False, "pool": "avg", "gem_p": 3.0,
              "gem_trainable_p": False, "embedding_dim": 0, "dropout_rate": 0.0,
              "bn_momentum": 0.997, "bn_epsilon": 1e-5, "synchronized_bn": False}
    assert {f.name: f.default for f in dataclasses.fields(BaseModelConfig)} == shared
    for cls in (ResNetConfig, MobileNetConfig):
        assert issubclass(cls, BaseModelConfig)
        assert {k: v for k, v in dataclasses.asdict(cls()).items() if k in shared} == shared
    old = {"arch": "mobilenet_v1", "width_multiplier": 0.5, "se_ratio": 2, "se_use_bias": False,
           "activation": "relu", "cifar_stem": True, "pool": "gem", "gem_p": 3.0,
           "gem_trainable_p": True, "embedding_dim": 16, "dropout_rate": 0.1,
           "bn_momentum": 0.9, "bn_epsilon": 1e-3, "synchronized_bn": False}
    assert dataclasses.asdict(models.config_from_dict(json.loads(json.dumps(old)))) == old
    assert models.config_from_dict({"block": "basic"}) == ResNetConfig(block="basic")


def test_table7_aliases_map_to_documented_networks():
    """Rows as the paper's text states them (docs/MODELS.md "Table 7 rows"); E0, E3, E6 and
    E11 as issue #6 defines them."""
    cfg = models.get_model_config
    assert cfg("table7_e0") == cfg("resnet50")
    for row in (1, 2, 3):  # E3 = ResNet-D network (+ LS + mixup in the recipe)
        assert cfg(f"table7_e{row}") == cfg("resnet50d")
    e4, e5 = cfg("table7_e4"), cfg("table7_e5")
    assert e4.se_ratio == 16 and not e4.selective_kernel and not e4.drop_block
    assert e4.stem == "deep" and e4.shortcut == "avg2"
    assert e5 == dataclasses.replace(e4, drop_block=True)  # E5 = E4 + DropBlock
    e6 = cfg("table7_e6")  # E6 = SE -> SK, + DropBlock (issue #6: ResNet-D + SK + DropBlock)
    assert e6 == dataclasses.replace(e5, se_ratio=0, selective_kernel=True)
    assert e6.arch == "resnet" and e6.drop_block and not e6.se_ratio
    for row in (7, 8):  # E7 + KD, E8 600 epochs: recipe changes only
        assert cfg(f"table7_e{row}") == e6
    e9 = cfg("table7_e9")  # E9 + Big-Little, no anti-aliasing yet
    assert e9.arch == "big_little" and e9.selective_kernel and e9.drop_block
    assert not e9.anti_alias_type and not e9.se_ratio
    for row in (10, 11):  # E10 + anti-aliasing = Assemble-ResNet-50; E11 + AutoAugment
        assert cfg(f"table7_e{row}") == cfg("assemble_resnet50")
    assert cfg("table7_e12") == cfg("assemble_resnet152")


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, argument", [
    (dict(alpha=0), "alpha"),
    (dict(alpha=-1), "alpha"),
    (dict(anti_alias_filter_size=8), "anti_alias_filter_size"),
    (dict(input_shape=(16, 16, 3)), "input_shape"),
    (dict(input_shape=(48, 48, 3)), "input_shape"),  # Big-Little: not divisible by 32
    (dict(num_classes=-3), "num_classes"),
    (dict(num_classes=0), "num_classes"),
    (dict(no_such_option=1), "no_such_option"),
    (dict(layers=(3, 4, 6)), "layers"),
    (dict(stem="deep"), "stem"),
    (dict(anti_alias_type="sconv,blur"), "anti_alias_type"),
    (dict(pool="max"), "pool"),
    (dict(dropout_rate=1.5), "dropout_rate"),
])
def test_bad_overrides_raise_value_error_naming_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        models.build_model("assemble_resnet50", **kwargs)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        models.build_model("resnet51")
    message = str(info.value)
    assert "resnet51" in message and "resnet50" in message and "assemble_resnet50" in message
    with pytest.raises(ValueError, match="valid names"):
        models.get_model_config("nope")


def test_plain_resnet_input_size_and_mobilenet_overrides():
    with pytest.raises(ValueError, match="input_shape"):
        models.build_model("resnet18", input_shape=(31, 64, 3))
    with pytest.raises(ValueError, match="width_multiplier"):
        models.build_model("mobilenet_v1", width_multiplier=0)
    with pytest.raises(ValueError, match="selective_kernel"):  # not a MobileNet field
        models.build_model("mobilenet_v1", selective_kernel=True)
    with pytest.raises(ValueError, match="keep_prob"):
        models.set_drop_block_keep_prob(None, 0.0)


# ----------------------------------------------------------------------------- counts
@pytest.mark.parametrize("full_model", sorted(TIMM_COUNTS), indirect=True)
def test_parameter_count_matches_timm(full_model):
    assert trainable_count(full_model) == TIMM_COUNTS[full_model.name]


@pytest.mark.parametrize("full_model", ["mobilenet_v1"], indirect=True)
def test_mobilenet_v1_count_matches_keras_applications(full_model):
    ours = full_model
    ref = keras.applications.MobileNet(weights=None, input_shape=FULL_INPUT)
    assert trainable_count(ours) == trainable_count(ref) == 4_231_976
    assert bn_moving_count(ours) == sum(int(np.prod(v.shape)) for v in ref.non_trainable_weights)


def _conv(k, cin, cout):
    return k * k * cin * cout


def _bottleneck(cin, f, *, project, sk=True):
    """Trainable params and BN channels of one official-code bottleneck."""
    params, bn = _conv(1, cin, f), f
    if sk:  # SK unit: 3x3 conv f->2f + BN, fc1 f->d + BN, fc2 d->2f (no biases)
        d = max(f // 2, 32)
        params += _conv(3, f, 2 * f) + _conv(1, f, d) + _conv(1, d, 2 * f)
        bn += 2 * f + d
    else:
        params += _conv(3, f, f)
        bn += f
    params += _conv(1, f, 4 * f)
    bn += 4 * f
    if project:
        params += _conv(1, cin, 4 * f)
        bn += 4 * f
    return params, bn


def assemble_formula(layers, alpha, beta, num_classes, width=64):
    """Independent count of the Big-Little + SK (+ ResNet-D shortcut, BlurPool, DropBlock:
    no weights) network: returns ``(trainable, bn_channels)``; trainable counts conv kernels,
    BN gamma+beta (2 per channel) and the logits kernel+bias; BN moving statistics are
    another 2 per channel."""
    w = width
    conv_params = (_conv(7, 3, w)                                    # stem 7x7/2
                   + _conv(3, w, w)                                  # big 3x3/2
                   + _conv(3, w, w // alpha) + _conv(3, w // alpha, w // alpha)
                   + _conv(1, w // alpha, w)                         # little
                   + _conv(1, w, w))                                 # fuse 1x1
    bn_ch = w + w + (w // alpha) * 2 + w + w

    def group(cin, f, n):
        p = c = 0
        for b in range(n):
            bp, bc = _bottleneck(cin if b == 0 else 4 * f, f, project=(b == 0))
            p, c = p + bp, c + bc
        return p, c

    cin = w
    for i, n in enumerate(layers):
        f = w * 2 ** i
        if i < 3:
            parts = [group(cin, f, n - 1),                           # big
                     group(cin, f // alpha, max(1, n // beta - 1)),  # little
                     (_conv(1, 4 * (f // alpha), 4 * f), 4 * f),     # little 1x1 expansion
                     group(4 * f, f, 1)]                             # merge block
        else:
            parts = [group(cin, f, n)]
        for p, c in parts:
            conv_params, bn_ch = conv_params + p, bn_ch + c
        cin = 4 * f
    trainable = conv_params + 2 * bn_ch + cin * num_classes + num_classes
    return trainable, bn_ch


@pytest.fixture(scope="module")
def assemble50_224():
    """Full Assemble-ResNet-50 at 224x224 with the official code's 1001 classes (shared)."""
    return models.build_model("assemble_resnet50", num_classes=1001, input_shape=(224, 224, 3))


def test_assemble_resnet50_count_formula_and_official_summary(assemble50_224):
    model = assemble50_224
    trainable, bn_ch = assemble_formula((3, 4, 6, 3), 2, 4, 1001)
    assert trainable_count(model) == trainable == 41_848_489  # official Keras summary
    assert bn_moving_count(model) == 2 * bn_ch == 77_312
    assert assemble_formula((3, 4, 6, 3), 2, 4, 1000)[0] == 41_846_440  # docs/MODELS.md


@pytest.mark.parametrize("full_model", ["assemble_resnet152"], indirect=True)
def test_assemble_resnet152_count_formula(full_model):
    model = full_model
    trainable, bn_ch = assemble_formula((5, 12, 30, 3), 1, 2, 1000)
    assert trainable_count(model) == trainable == 117_004_200  # docs/MODELS.md
    assert bn_moving_count(model) == 2 * bn_ch
    assert len(models.drop_block_layers(model)) > 0


# ----------------------------------------------------------------------------- structure
def test_assemble_resnet50_shapes_at_224(assemble50_224):
    model = assemble50_224
    spatial = lambda name: model.get_layer(name).output.shape[1:3]  # noqa: E731
    assert spatial("stem_fuse_relu") == (56, 56)
    assert [spatial(f"stage{s}_output") for s in (1, 2, 3, 4)] == [
        (28, 28), (14, 14), (14, 14), (7, 7)]
    assert spatial("stage1_big_upsample") == (56, 56)
    assert model.get_layer("stage4_output").output.shape[-1] == 2048
    assert model.get_layer("pool").output.shape == (None, 2048)
    # every block of stages 3 and 4 (and their projections) has DropBlock, none before.
    names = [layer.name for layer in models.drop_block_layers(model)]
    assert names and all(n.startswith(("stage3_", "stage4_")) for n in names)
    assert "stage4_block1_down_drop" in names and "stage3_merge_block1_drop2" in names
    gammas = {layer.name.split("_")[0]: layer.gamma_scale
              for layer in models.drop_block_layers(model)}
    assert gammas == {"stage3": 0.25, "stage4": 1.0}
    # big branch: the last block has no final ReLU (official last_relu=False)
    layer_names = {layer.name for layer in model.layers}
    assert "stage1_big_block2_out" not in layer_names and "stage1_big_block1_out" in layer_names
    assert "stage2_big_block3_out" not in layer_names
    # anti-alias sconv: strided blocks blur after the stride-1 SK unit
    assert model.get_layer("stage1_big_block1_sk").strides == 1
    assert model.get_layer("stage1_big_block1_aa").strides == 2
    # zero-gamma on the last BN of every residual branch
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(
        model.get_layer("stage2_merge_block1_bn3").gamma), 0.0)

    assert models.set_drop_block_keep_prob(model, 0.9) == len(names)
    for layer in models.drop_block_layers(model):
        assert float(keras.ops.convert_to_numpy(layer.keep_prob)) == pytest.approx(0.9)


def test_resnet_naming_and_shapes():
    model = models.build_model("resnet50d", input_shape=(64, 64, 3), num_classes=10)
    names = {layer.name for layer in model.layers}
    for n in ["stem_conv1", "stem_bn1", "stem_conv2", "stem_conv3", "stem_bn3", "stem_pool",
              "stage1_block1_conv1", "stage1_block1_bn1", "stage1_block1_conv2",
              "stage1_block1_conv3", "stage1_block1_down_conv", "stage2_block1_down_pool",
              "stage2_block1_down_bn", "stage4_block3_out", "pool", "logits"]:
        assert n in names, n
    assert "stage1_block1_down_pool" not in names  # stride 1: no pooling in the shortcut
    assert model.get_layer("stage2_block1_conv2").strides == (2, 2)  # v1.5
    assert model.get_layer("logits").dtype_policy.name == "float32"


def test_cifar_stem_and_head_options():
    model = models.build_model("resnet18", num_classes=10, input_shape=(32, 32, 3),
                               stem="cifar", pool="gem", embedding_dim=64, dropout_rate=0.2)
    assert model.get_layer("stage4_output").output.shape[1:3] == (4, 4)
    assert model.get_layer("embedding").output.shape == (None, 64)
    assert model.get_layer("pool").output.shape == (None, 512)
    out = model(np.zeros((2, 32, 32, 3), "float32"), training=False)
    assert tuple(out.shape) == (2, 10)
    bl = models.build_model("assemble_resnet50", num_classes=10, input_shape=(32, 32, 3),
                            stem="cifar", layers=(2, 2, 2, 1))
    assert bl.get_layer("stage4_output").output.shape[1:3] == (4, 4)


def test_drop_block_trains_and_is_identity_at_inference():
    model = models.build_model("assemble_resnet50", num_classes=10, input_shape=(64, 64, 3),
                               layers=(2, 2, 2, 1), drop_block_size=3)
    models.set_drop_block_keep_prob(model, 0.7)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    a = keras.ops.convert_to_numpy(model(x, training=False))
    b = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_array_equal(a, b)
    t = keras.ops.convert_to_numpy(model(x, training=True))
    assert np.all(np.isfinite(t)) and t.shape == (2, 10)


# ----------------------------------------------------------------------------- full depth
def _network_config(model):
    """``get_config`` of a functional model without the model's own name, as JSON data (a
    loaded model gives lists where the built one has tuples)."""
    config = json.loads(json.dumps(model.get_config()))
    config.pop("name")
    return config


def test_full_depth_names_cover_the_registry():
    names = set(models.list_models())
    assert set(FULL_DEPTH) | set(IDENTICAL) == names
    assert not set(FULL_DEPTH) & set(IDENTICAL)
    assert set(IDENTICAL.values()) <= set(FULL_DEPTH)


def test_deep_variants_differ_only_in_depth():
    """ResNet-101/152 have 3-4-23-3 / 3-8-36-3 blocks (He et al. 2016, Table 1); everything but
    the block counts equals the 50-layer variant's config."""
    import dataclasses
    depth = {"101": (3, 4, 23, 3), "152": (3, 8, 36, 3)}
    for deep, shallow in DEPTH_OF.items():
        d, s = models.get_model_config(deep), models.get_model_config(shallow)
        assert tuple(d.layers) == depth[deep.split("resnet")[1][:3]], deep
        assert dataclasses.replace(d, layers=s.layers) == s, deep


@full_depth
@pytest.mark.parametrize("full_model", [n for n in FULL_DEPTH if n not in DEPTH_OF], indirect=True)
def test_save_load_identical_outputs(full_model):
    # A temporary directory removed at once (the Assemble-ResNet-152 file is ~470 MB):
    # every weight and the outputs on FULL_X must be bit-identical after .keras save/load.
    loaded = check_model_save_load(full_model, FULL_X, atol=0.0, rtol=0.0)
    assert loaded.name == full_model.name
    assert _network_config(loaded) == _network_config(full_model)


_CONV_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def _convolutions(model):
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, _CONV_TYPES)]


@full_depth
@pytest.mark.parametrize("full_model", [n for n in FULL_DEPTH if n not in DEPTH_OF], indirect=True)
def test_mixed_precision_float32_logits(full_model):
    """Built under each global mixed policy: every convolution (nested ones in SK / SE units
    included) computes in the low-precision type with float32 variables, the pooled features
    are low precision, the logits float32 and finite. (Closeness to float32 with the same
    weights is checked per layer by run_layer_test in tests/test_layers.py: through 50-150
    randomly initialized blocks the float32 logits themselves range from 1e-25 to 1e2, and
    BN statistics calibrated on a small batch make the networks chaotic, so a whole-network
    tolerance would be meaningless.)"""
    name = full_model.name
    num_convs = len(_convolutions(full_model))
    for policy in ("mixed_bfloat16", "mixed_float16"):
        compute = keras.DTypePolicy(policy).compute_dtype
        keras.config.set_dtype_policy(policy)
        try:
            model = models.build_model(name, num_classes=FULL_CLASSES, input_shape=FULL_INPUT)
        finally:
            keras.config.set_dtype_policy("float32")
        convs = _convolutions(model)
        assert len(convs) == num_convs > 0, policy
        wrong = [layer.name for layer in convs if layer.compute_dtype != compute]
        assert not wrong, f"{policy}: convolutions not computing in {compute}: {wrong[:5]}"
        assert {v.dtype for v in model.weights} == {"float32"}, policy
        assert model.get_layer("pool").output.dtype == compute, policy
        assert model.get_layer("logits").compute_dtype == "float32", policy
        assert model.get_layer("logits").output.dtype == "float32", policy
        out = model(FULL_X, training=False)
        assert keras.backend.standardize_dtype(out.dtype) == "float32", policy
        out = keras.ops.convert_to_numpy(out)
        assert out.shape == (len(FULL_X), FULL_CLASSES), policy
        assert np.all(np.isfinite(out)), policy
        del model


# ----------------------------------------------------------------------------- backends
# One JAX subprocess, started with the module so that it runs beside the in-process tests:
# every FULL_DEPTH network at real depth and width built under KERAS_BACKEND=jax and called
# eagerly with training=False and training=True (DropBlock active). Eager calls compile one
# XLA program per op and new shape, which the networks mostly share: about 3 CPU minutes for
# all of them, where a jitted stateless_call compiles every network whole (10-35 s each,
# about three times as much). So only the paper's network (JAX_JIT_NAMES) also runs as the
# JAX trainer runs it, a jitted stateless_call (both modes in one program), whose inference
# logits must match the eager ones; tests/test_layers.py runs every layer under jax.jit with
# gradients. The same process then builds each IDENTICAL name and compares its get_config and
# weights with its base's build (the TF process skips those repeats). JAX_EXTRA_CASES cover
# options that no registered variant uses (SE with biases on a ResNet-D, the anti-alias
# "proj" shortcut, blurred max-pool, GeM + embedding + dropout head) at 1 block per stage.
JAX_EXTRA_CASES = [
    ("resnet50d", dict(layers=[1, 1, 1, 1], se_ratio=16, se_use_bias=True,
                       anti_alias_type="sconv,max,proj", selective_kernel=True, pool="gem",
                       embedding_dim=16, dropout_rate=0.1)),
    ("resnet50", dict(layers=[1, 1, 1, 1], anti_alias_type="proj")),
]
JAX_JIT_NAMES = ["assemble_resnet50"]
_JAX_SCRIPT = textwrap.dedent("""
    import json, os, sys, tempfile
    import jax
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(tempfile.gettempdir(), "assemble-cnn-jax-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    import numpy as np, keras, models
    assert keras.backend.backend() == "jax", keras.backend.backend()
    cases, identical, jit_names, input_shape, num_classes = json.loads(sys.argv[1])
    x = np.random.default_rng(0).normal(size=[2] + input_shape).astype("float32")

    def description(m):
        config = json.loads(json.dumps(m.get_config()))
        config.pop("name")
        return config, [[v.path, list(v.shape)] for v in m.weights]

    bases = {}
    for name, overrides in cases:
        m = models.build_model(name, num_classes=num_classes, input_shape=tuple(input_shape),
                               **overrides)
        if not overrides and name in identical.values():
            bases[name] = description(m)
        infer = m(x, training=False)
        drop_blocks = models.set_drop_block_keep_prob(m, 0.8) if models.drop_block_layers(m) else 0
        jit = None
        if not overrides and name in jit_names:
            @jax.jit
            def both_modes(tv, ntv, x):
                y_infer, _ = m.stateless_call(tv, ntv, x, training=False)
                y_train, new_ntv = m.stateless_call(tv, ntv, x, training=True)
                return y_infer, y_train, new_ntv
            y_infer, y_train, new_ntv = both_modes(
                [v.value for v in m.trainable_variables],
                [v.value for v in m.non_trainable_variables], x)
            scale = float(np.max(np.abs(np.asarray(infer))))
            jit = {"dtypes": [str(y_infer.dtype), str(y_train.dtype)],
                   "finite": bool(np.all(np.isfinite(np.asarray(y_train)))),
                   "infer_max_diff": float(np.max(np.abs(np.asarray(y_infer)
                                                          - np.asarray(infer)))) / scale,
                   "num_ntv": [len(new_ntv), len(m.non_trainable_variables)]}
        train = m(x, training=True)
        result = {"name": name, "overrides": overrides, "model_name": m.name,
                  "dtypes": [str(infer.dtype), str(train.dtype)],
                  "shapes": [list(infer.shape), list(train.shape)],
                  "finite": bool(np.all(np.isfinite(np.asarray(infer)))
                                 and np.all(np.isfinite(np.asarray(train)))),
                  "train_differs": not np.array_equal(np.asarray(infer), np.asarray(train)),
                  "trainable": sum(int(np.prod(v.shape)) for v in m.trainable_weights),
                  "bn_moving": sum(int(np.prod(v.shape)) for v in m.non_trainable_weights
                                   if "moving_" in v.path),
                  "drop_blocks": drop_blocks, "jit": jit}
        print("RESULT " + json.dumps(result), flush=True)
        del m, infer, train
    for twin, base in sorted(identical.items()):
        m = models.build_model(twin, num_classes=num_classes, input_shape=tuple(input_shape))
        config, weights = description(m)
        print("TWIN " + json.dumps({"twin": twin, "base": base, "model_name": m.name,
                                    "same_config": config == bases[base][0],
                                    "same_weights": weights == bases[base][1],
                                    "num_weights": len(weights)}), flush=True)
        del m
    print("JAX_DONE", flush=True)
""")
_JAX_RUN = {}


def _jax_cases():
    return [[name, {}] for name in FULL_DEPTH] + [[n, dict(o)] for n, o in JAX_EXTRA_CASES]


def _start_jax_run():
    if "proc" not in _JAX_RUN:
        env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
                   PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        arg = json.dumps([_jax_cases(), IDENTICAL, JAX_JIT_NAMES, list(FULL_INPUT),
                          FULL_CLASSES])
        # Output to files, not pipes: nobody reads a pipe until the end, and a full pipe
        # would stall the subprocess.
        _JAX_RUN["out"], _JAX_RUN["err"] = tempfile.TemporaryFile("w+"), \
            tempfile.TemporaryFile("w+")
        _JAX_RUN["proc"] = subprocess.Popen([sys.executable, "-c", _JAX_SCRIPT, arg], cwd=REPO,
                                            env=env, stdout=_JAX_RUN["out"],
                                            stderr=_JAX_RUN["err"], text=True)
    return _JAX_RUN["proc"]


def _read(file):
    file.seek(0)
    return file.read()


def _jax_results():
    """``(RESULT records, TWIN records)`` of the JAX subprocess (waited for once)."""
    if "results" not in _JAX_RUN:
        proc = _start_jax_run()
        try:
            proc.wait(timeout=1500)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"JAX subprocess timed out; stderr tail: {_read(_JAX_RUN['err'])[-2000:]}")
        out, err = _read(_JAX_RUN["out"]), _read(_JAX_RUN["err"])
        assert proc.returncode == 0, err[-4000:]
        assert "JAX_DONE" in out, err[-4000:]
        lines = out.splitlines()
        _JAX_RUN["results"] = tuple(
            [json.loads(line[len(tag) + 1:]) for line in lines if line.startswith(tag + " ")]
            for tag in ("RESULT", "TWIN"))
    return _JAX_RUN["results"]


@pytest.fixture(scope="module", autouse=True)
def _prestart_jax_run(request):
    """The JAX subprocess starts with the first test of this module when a test that reads
    it is selected, and runs beside the in-process tests."""
    readers = {"test_identical_names_build_identical_networks",
               "test_every_network_runs_under_jax"}
    if any(getattr(item, "originalname", item.name) in readers
           for item in request.session.items):
        _start_jax_run()
    yield
    proc = _JAX_RUN.get("proc")
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
    for key in ("out", "err"):
        if key in _JAX_RUN:
            _JAX_RUN[key].close()
    _JAX_RUN.clear()


def _expected_trainable(name):
    """Independent trainable counts at FULL_CLASSES (None where there is none)."""
    if name in TIMM_COUNTS:
        return TIMM_COUNTS[name]
    if name == "mobilenet_v1":
        return 4_231_976  # keras.applications.MobileNet (test above)
    if name == "assemble_resnet50":
        return assemble_formula((3, 4, 6, 3), 2, 4, FULL_CLASSES)[0]
    if name == "assemble_resnet152":
        return assemble_formula((5, 12, 30, 3), 1, 2, FULL_CLASSES)[0]
    return None


@full_depth
def test_identical_names_build_identical_networks():
    """Each IDENTICAL name's full build is layer for layer (config, weight paths and shapes)
    that of its base, so the full-depth checks of the base cover it."""
    twins = _jax_results()[1]
    assert sorted(t["twin"] for t in twins) == sorted(IDENTICAL)
    for t in twins:
        assert t["base"] == IDENTICAL[t["twin"]] and t["model_name"] == t["twin"], t
        assert t["same_config"] and t["same_weights"] and t["num_weights"] > 0, t


@full_depth
def test_every_network_runs_under_jax():
    results = _jax_results()[0]
    assert [[r["name"], r["overrides"]] for r in results] == _jax_cases()
    for r in results:
        label = (r["name"], r["overrides"])
        assert r["model_name"] == r["name"], label
        assert r["dtypes"] == ["float32", "float32"], label
        assert r["shapes"] == [[len(FULL_X), FULL_CLASSES]] * 2, label
        assert r["finite"], label
        assert r["train_differs"], label  # BN batch statistics (and DropBlock) in training
        cfg = models.get_model_config(r["name"], **r["overrides"])
        assert (r["drop_blocks"] > 0) == bool(getattr(cfg, "drop_block", False)), label
        expected = None if r["overrides"] else _expected_trainable(r["name"])
        if expected is not None:
            assert r["trainable"] == expected, label
    by_name = {r["name"]: r for r in results if not r["overrides"]}
    for name in JAX_JIT_NAMES:
        jit = by_name[name]["jit"]
        assert jit["dtypes"] == ["float32", "float32"] and jit["finite"], (name, jit)
        assert jit["infer_max_diff"] < 1e-4, (name, jit)  # relative to the largest logit
        assert jit["num_ntv"][0] == jit["num_ntv"][1] > 0, (name, jit)
    assert by_name["assemble_resnet50"]["bn_moving"] == 2 * assemble_formula(
        (3, 4, 6, 3), 2, 4, FULL_CLASSES)[1]


def test_summary_cli(capsys):
    from absl import flags
    from official import summary
    flags.FLAGS(["assemble-summary", "--model=resnet18", "--image_size=32", "--nosummary",
                 "--model_overrides=zero_gamma=True"])
    try:
        assert summary.main([]) == 0
    finally:
        flags.FLAGS.unparse_flags()
    out = capsys.readouterr().out
    assert "trainable parameters: 11,689,512" in out
    assert summary.parse_overrides('{"alpha": 1}') == {"alpha": 1}
    assert summary.parse_overrides("alpha=1,anti_alias_type=sconv") == {
        "alpha": 1, "anti_alias_type": "sconv"}
