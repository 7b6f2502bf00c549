"""Tests of the model registry and builders (issue 2), against independent facts:

* parameter counts published by timm 1.0.31 (trainable parameters: timm counts
  ``nn.Parameter``s, i.e. without BN running statistics);
* the official code's printed Keras summary of its Assemble-ResNet-50 (clovaai/assembled-cnn,
  ``script/ctl_r50zc_bldskaa_ls_drbl_mixupaa_kd_ep600.sh``: 1001 classes, trainable
  41,848,489, non-trainable (BN moving mean/variance) 77,312);
* a per-layer formula written here from the architecture description (paper section 3.1,
  official ``nets/resnet_model.py`` / ``network_tweaks/big_little.py``);
* ``keras.applications.MobileNet`` for the MobileNet V1 count.

Time budget (2 shared CPU cores): parameter counts build at 32x32 (counts do not depend on
the input size); save/load and mixed precision use 64x64, batch 1, and every
distinct network with the fewest blocks per stage (:func:`minimal`: 1 per stage, Big-Little
2, 2, 2, 1). Those checks exercise every layer type and every tweak of the variant, which do
not depend on depth; full-depth builds are covered by the parameter-count tests (all
timm-counted variants, MobileNet and both Assemble networks) and the 224x224 shape test.
The JAX run: see ``JAX_CASES``.
"""
import dataclasses
import json
import os
import subprocess
import sys
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

# Every named network of the registry except the table7_* aliases: those map onto these
# (tested in test_table7_aliases_map_to_documented_networks), and the rows with their own
# combination (E4/E5 = resnet50d + SE (+ DropBlock), E6-E8 = resnet50d + SK + DropBlock,
# E9 = assemble_resnet50 without anti-aliasing) consist only of layers that resnet50d,
# seresnet50, skresnet50 and assemble_resnet50 already contain.
DISTINCT = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50d",
            "resnet101d", "resnet152d", "seresnet50", "skresnet50", "resnetblur50",
            "assemble_resnet50", "assemble_resnet152", "mobilenet_v1", "se_mobilenet_v1",
            "se_mobilenet_v1_r2"]


def minimal(name):
    """Overrides giving the fewest blocks per stage (every layer type and tweak is kept)."""
    cfg = models.get_model_config(name)
    if not isinstance(cfg, ResNetConfig):
        return {}
    return dict(layers=(2, 2, 2, 1) if cfg.arch == "big_little" else (1, 1, 1, 1))


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
@pytest.mark.parametrize("name", sorted(TIMM_COUNTS))
def test_parameter_count_matches_timm(name):
    model = models.build_model(name, input_shape=(32, 32, 3))
    assert trainable_count(model) == TIMM_COUNTS[name]


def test_mobilenet_v1_count_matches_keras_applications():
    ours = models.build_model("mobilenet_v1", input_shape=(32, 32, 3))
    ref = keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3))
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


def test_assemble_resnet152_count_formula():
    model = models.build_model("assemble_resnet152", input_shape=(32, 32, 3))
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


# ----------------------------------------------------------------------------- save/load
@pytest.mark.parametrize("name", DISTINCT)
def test_save_load_identical_outputs(name, tmp_path):
    model = models.build_model(name, num_classes=10, input_shape=(64, 64, 3), **minimal(name))
    x = np.random.default_rng(1).normal(size=(1, 64, 64, 3)).astype("float32")
    check_model_save_load(model, x, tmp_path)


# ----------------------------------------------------------------------------- precision
@pytest.mark.parametrize("name", DISTINCT)
def test_mixed_precision_float32_logits(name):
    x = np.random.default_rng(2).normal(size=(1, 64, 64, 3)).astype("float32")
    for policy in ("mixed_bfloat16", "mixed_float16"):
        keras.config.set_dtype_policy(policy)
        try:
            model = models.build_model(name, num_classes=10, input_shape=(64, 64, 3),
                                       **minimal(name))
        finally:
            keras.config.set_dtype_policy("float32")
        assert model.get_layer("stage1_output").output.dtype == policy.split("_")[1]
        out = model(x, training=False)
        assert keras.backend.standardize_dtype(out.dtype) == "float32", policy
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(out))), policy


# ----------------------------------------------------------------------------- backends
# Under JAX, building a model compiles one XLA program per new weight shape (initializers)
# and an eager call one per new op shape: about 0.5 s per layer on this machine. The JAX run
# therefore covers every layer type and every tweak in five builds instead of all variants
# (which are combinations of these): basic blocks; a bottleneck ResNet with the deep stem,
# ResNet-D and anti-alias "proj" shortcuts, blurred max-pool and sconv, SE with biases, SK,
# GeM + embedding + dropout head; the Assemble network (Big-Little, SK, sconv, DropBlock,
# zero-gamma), also one training call with DropBlock active; SE-MobileNet. A persistent
# compilation cache (system temp dir) makes later runs faster.
JAX_CASES = [
    ("resnet18", dict(layers=(1, 1, 1, 1))),
    ("resnet50d", dict(layers=(1, 1, 1, 1), se_ratio=16, se_use_bias=True,
                       anti_alias_type="sconv,max,proj", selective_kernel=True, pool="gem",
                       embedding_dim=16, dropout_rate=0.1)),
    ("resnet50", dict(layers=(1, 1, 1, 1), anti_alias_type="proj")),
    ("assemble_resnet50", dict(layers=(2, 2, 2, 1))),
    ("se_mobilenet_v1", {}),
]


def test_variants_run_under_jax():
    script = textwrap.dedent("""
        import os, tempfile
        import jax
        jax.config.update("jax_compilation_cache_dir",
                          os.path.join(tempfile.gettempdir(), "assemble-cnn-jax-cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        import numpy as np, keras, models
        assert keras.backend.backend() == "jax"
        x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
        cases = %r
        for name, overrides in cases:
            m = models.build_model(name, num_classes=7, input_shape=(32, 32, 3), **overrides)
            y = m(x, training=False)
            assert y.shape == (2, 7) and str(y.dtype) == "float32", name
            assert np.all(np.isfinite(np.asarray(y))), name
            if models.drop_block_layers(m):
                models.set_drop_block_keep_prob(m, 0.8)
                assert np.all(np.isfinite(np.asarray(m(x, training=True)))), name
        print("JAX_OK", len(cases))
    """) % (JAX_CASES,)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"JAX_OK {len(JAX_CASES)}" in proc.stdout


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
