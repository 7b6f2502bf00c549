"""Tests of official.convert (issue 5): timm / torchvision ResNet state dicts -> Keras models.

The equivalence tests need torch and timm (and torchvision for the torchvision test); they are
skipped when these are not importable. Install line (x86_64, Python 3.11, this machine's local
wheels): ``pip install torch==2.14.1 torchvision==0.29.1 timm`` (see docs/EVALUATION.md).

Tolerance: float32 on the CPU, eval mode, max |logits_keras - logits_torch| < 1e-4 for logits
of magnitude up to ~100 (BN statistics and affine parameters are randomized first, so that the
batch-norm mapping is actually exercised); the 101/152-layer nets' logits grow to 1e4-1e7 with
those statistics, and there the bound is 5e-6 of the logit scale (float32 rounding).
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from official import convert as C

SIZE = 64


def test_key_mapping():
    f = C.map_key
    assert f("conv1.weight", False, False) == ("stem_conv1/kernel", "conv")
    assert f("bn1.running_var", False, False) == ("stem_bn1/moving_variance", "copy")
    assert f("conv1.3.weight", True, True) == ("stem_conv2/kernel", "conv")
    assert f("conv1.4.bias", True, True) == ("stem_bn2/beta", "copy")
    assert f("bn1.weight", True, True) == ("stem_bn3/gamma", "copy")
    assert f("layer2.0.conv2.weight", False, False) == ("stage2_block1_conv2/kernel", "conv")
    assert f("layer3.5.bn3.running_mean", False, False) == ("stage3_block6_bn3/moving_mean",
                                                            "copy")
    assert f("layer1.0.downsample.0.weight", False, False) == ("stage1_block1_down_conv/kernel",
                                                               "conv")
    assert f("layer1.0.downsample.1.weight", True, True) == ("stage1_block1_down_conv/kernel",
                                                             "conv")
    assert f("layer1.0.downsample.2.bias", True, True) == ("stage1_block1_down_bn/beta", "copy")
    assert f("layer4.2.se.fc1.bias", False, False) == ("stage4_block3_se/se_reduce/bias", "copy")
    assert f("fc.weight", False, False) == ("logits/kernel", "linear")
    assert f("layer1.0.attn.weight", False, False) is None
    w = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)
    assert C._transform(w, "conv").shape == (5, 7, 3, 2)
    assert C._transform(w, "conv")[1, 2, 0, 1] == w[1, 0, 1, 2]


def test_bad_arguments_write_nothing(tmp_path):
    out = tmp_path / "x.weights.h5"
    with pytest.raises(ValueError, match="not supported for --source torchvision"):
        C.convert("torchvision", "resnet50d", str(tmp_path / "none.pth"), str(out))
    with pytest.raises(ValueError, match="must end with .weights.h5"):
        C.convert("timm", "resnet18", str(tmp_path / "none.pth"), str(tmp_path / "x.h5"))
    with pytest.raises(FileNotFoundError):
        C.convert("timm", "resnet18", str(tmp_path / "none.pth"), str(out))
    assert os.listdir(tmp_path) == []


# Every architecture issue 5 names for conversion (timm 1.0.31 names).
ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50d",
         "resnet101d", "resnet152d", "seresnet50", "resnetblur50"]

# Runs in its own process: torch, torchvision and timm only (importing torchvision / timm after
# TensorFlow crashes the process, see official/convert.py). Writes, per network, a state dict
# (.pth) with randomized BN statistics and affine parameters, an input batch and the reference
# logits in eval mode.
_MAKE_REFERENCES = textwrap.dedent(r"""
    import sys
    import numpy as np
    import torch
    out, size = sys.argv[1], int(sys.argv[2])
    wanted = sys.argv[3:]

    def randomize_bn(module):
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    n = m.num_features
                    m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                    m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
        return module.eval()

    x = np.random.RandomState(0).randn(2, size, size, 3).astype(np.float32)
    np.save(f"{out}/input.npy", x)
    nets = {}
    if any(w.startswith("timm:") for w in wanted):
        import timm
    if any(w.startswith("torchvision:") for w in wanted):
        import torchvision
    for item in wanted:
        source, arch = item.split(":")
        torch.manual_seed(0)
        if source == "timm":
            net = timm.create_model(arch, pretrained=False, num_classes=10)
        else:
            net = getattr(torchvision.models, arch)(weights=None, num_classes=10)
        net = randomize_bn(net)
        with torch.no_grad():
            ref = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
        state = net.state_dict()
        if source == "torchvision":  # exercise the wrapper / DataParallel unwrapping
            state = {"state_dict": {"module." + k: v for k, v in state.items()}}
        torch.save(state, f"{out}/{source}_{arch}.pth")
        np.save(f"{out}/{source}_{arch}.npy", ref)
    print("ok")
""")


def _have(*names):
    import importlib.util
    return all(importlib.util.find_spec(n) is not None for n in names)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    if not _have("torch", "torchvision", "timm"):
        pytest.skip("torch, torchvision and timm are not installed: pip install torch==2.14.1 "
                    "torchvision==0.29.1 timm")
    out = tmp_path_factory.mktemp("torch_refs")
    wanted = [f"timm:{a}" for a in ARCHS] + ["torchvision:resnet18", "torchvision:resnet50"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", _MAKE_REFERENCES, str(out), str(SIZE), *wanted],
                          cwd=str(out), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
    return out


def _logits(model, refs):
    x = np.load(refs / "input.npy")
    return np.asarray(model(x, training=False))


@pytest.mark.parametrize("arch", ARCHS)
def test_timm_random_weights_give_equal_logits(arch, references):
    import models
    state = C.load_torch_state_dict(str(references / f"timm_{arch}.pth"))
    model = models.build_model(arch, num_classes=10, input_shape=(SIZE, SIZE, 3))
    C.convert_state_dict(state, model, arch)
    ref = np.load(references / f"timm_{arch}.npy")
    diff = float(np.abs(_logits(model, references) - ref).max())
    # Randomized BN statistics make the deep nets' logits grow to 1e4-1e7, where float32 alone
    # leaves ~1e-7 relative rounding per op: the bound is 1e-4 absolute or 5e-6 of the scale.
    scale = float(np.abs(ref).max())
    assert diff < max(1e-4, 5e-6 * scale), f"{arch}: max |diff| {diff} (logit scale {scale})"


def test_torchvision_resnet50_gives_equal_logits(references):
    import models
    state = C.load_torch_state_dict(str(references / "torchvision_resnet50.pth"))
    model = models.build_model("resnet50", num_classes=10, input_shape=(SIZE, SIZE, 3))
    C.convert_state_dict(state, model, "resnet50")
    ref = np.load(references / "torchvision_resnet50.npy")
    diff = float(np.abs(_logits(model, references) - ref).max())
    assert diff < 1e-4, f"max |diff| {diff} (logit scale {np.abs(ref).max()})"


def test_torchvision_cli_roundtrip_and_head_replacement(references, tmp_path, capsys):
    import models
    ckpt = references / "torchvision_resnet18.pth"
    out = tmp_path / "converted" / "resnet18.weights.h5"
    C.main(["--source", "torchvision", "--arch", "resnet18", "--checkpoint", str(ckpt),
            "--output", str(out), "--image_size", str(SIZE)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["num_classes"] == 10 and summary["head_converted"]
    with open(tmp_path / "converted" / "resnet18.json") as f:
        assert json.load(f)["normalization"] == "mean_std"
    model = models.build_model("resnet18", num_classes=10, input_shape=(SIZE, SIZE, 3))
    model.load_weights(str(out))
    ref = np.load(references / "torchvision_resnet18.npy")
    diff = float(np.abs(_logits(model, references) - ref).max())
    assert diff < 1e-4, f"max |diff| {diff} (logit scale {np.abs(ref).max()})"
    # Another class count: backbone converted, fc skipped, fresh logits layer.
    out5 = tmp_path / "five.weights.h5"
    summary = C.convert("torchvision", "resnet18", str(ckpt), str(out5), num_classes=5,
                        image_size=SIZE)
    assert summary["num_classes"] == 5 and not summary["head_converted"]
    five = models.build_model("resnet18", num_classes=5, input_shape=(SIZE, SIZE, 3))
    five.load_weights(str(out5))
    np.testing.assert_array_equal(np.asarray(five.get_layer("stem_conv1").kernel),
                                  np.asarray(model.get_layer("stem_conv1").kernel))
    assert sorted(os.listdir(tmp_path)) == ["converted", "five.json", "five.weights.h5"]


def test_other_architecture_lists_mismatched_keys(references, tmp_path):
    ckpt = references / "timm_resnet18.pth"
    out = tmp_path / "x.weights.h5"
    with pytest.raises(ValueError) as e:
        C.convert("timm", "resnet34", str(ckpt), str(out), image_size=SIZE)
    message = str(e.value)
    assert "does not match model 'resnet34'" in message
    assert "model variables the state dict does not fill" in message
    assert "stage1_block3_conv1/kernel" in message
    with pytest.raises(ValueError) as e:
        C.convert("timm", "resnet50d", str(ckpt), str(out), image_size=SIZE)
    assert "shape mismatches" in str(e.value) or "no place in the model" in str(e.value)
    assert os.listdir(tmp_path) == []
