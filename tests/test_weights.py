"""Weights in (issue 14 item 2): ``models.build_model(weights=...)``, ``--weights`` of the
programs, timm ``.safetensors`` / ``.pth`` files and hub names, and the metadata that travels
with them.

References are independent of this project's code: a timm ResNet-18 with random weights (BN
statistics and affine parameters randomized so that the batch-norm mapping is exercised) run
by timm itself in another process on real ImageNet JPEGs, timm's own pretrained configs, and
the ImageNet class list in the shared data. No download: the hub is mocked.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from conftest import REPO_ROOT, require_data

ARCH = "resnet18"
EVAL = (224, "0.95")  # timm resnet18.a1_in1k: 224 px, crop_pct 0.95 (models.timm_weights)
N_IMAGES = 3

# torch + timm + safetensors only, in their own process (importing timm after TensorFlow
# crashes with the CUDA torch build; see official/convert.py).
_TIMM = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    import torch, timm
    from safetensors.torch import save_file
    out, arch = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    net = timm.create_model(arch, pretrained=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    net.eval()
    x = np.load(f"{out}/images.npy")
    with torch.no_grad():
        logits = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.save(f"{out}/timm_logits.npy", logits)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, f"{out}/{arch}.safetensors")
    torch.save({"state_dict": state}, f"{out}/weights.pth")  # no name in the file name
    cfgs = {}
    for a in sys.argv[3:]:
        c = timm.models.get_pretrained_cfg(a)
        cfgs[a] = {"tag": c.tag, "input_size": list(c.input_size), "crop_pct": c.crop_pct,
                   "interpolation": c.interpolation, "mean": list(c.mean), "std": list(c.std),
                   "num_classes": c.num_classes}
    json.dump(cfgs, open(f"{out}/pretrained_cfgs.json", "w"))
    print("ok")
""")


def _have(*names):
    import importlib.util
    return all(importlib.util.find_spec(n) is not None for n in names)


def sample_jpegs(n=N_IMAGES):
    """``[(name, bytes)]`` of the first ``n`` real ImageNet JPEGs of the shared sample."""
    z = zipfile.ZipFile(require_data("imagenet-sample-images") / "images.zip")
    names = sorted(m for m in z.namelist() if m.endswith(".JPEG"))[:n]
    return [(os.path.basename(m), z.read(m)) for m in names]


@pytest.fixture(scope="module")
def timm_files(tmp_path_factory):
    """A timm resnet18 (1000 classes, random weights) as ``resnet18.safetensors`` and
    ``weights.pth``, real JPEGs under ``images/``, their evaluation crops (224, crop 0.95,
    mean_std: what the weights' metadata says) and timm's logits on them."""
    if not _have("torch", "timm", "safetensors"):
        pytest.skip("torch, timm and safetensors are needed: pip install -e '.[test,test-torch]'")
    import tensorflow as tf
    from data import preprocessing as pp
    from models import timm_weights
    out = tmp_path_factory.mktemp("timm_weights")
    (out / "images").mkdir()
    crops = []
    for name, raw in sample_jpegs():
        (out / "images" / name).write_bytes(raw)
        crops.append(pp.normalize(pp.preprocess_for_eval(tf.constant(raw), *EVAL),
                                  "mean_std").numpy())
    np.save(out / "images.npy", np.stack(crops))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", _TIMM, str(out), ARCH,
                           *timm_weights.TIMM_ARCHS], cwd=str(out), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
    return out


def _close(ours, ref):
    scale = max(1.0, float(np.abs(ref).max()))
    assert float(np.abs(np.asarray(ours) - ref).max()) <= 1e-4 * scale


def test_pretrained_table_is_timms_own_config(timm_files):
    """models.timm_weights.PRETRAINED (hard-coded) == timm's default pretrained config."""
    from models import timm_weights
    cfgs = json.load(open(timm_files / "pretrained_cfgs.json"))
    for arch, (tag, size, crop, interpolation) in timm_weights.PRETRAINED.items():
        c = cfgs[arch]
        assert (c["tag"], c["input_size"][-1], c["crop_pct"], c["interpolation"]) == (
            tag, size, crop, interpolation), arch
        assert c["num_classes"] == 1000
        info = timm_weights.pretrained_info(arch, c)
        assert info["normalization"] == "mean_std" and info["image_size"] == size
        np.testing.assert_allclose(c["mean"], timm_weights.TIMM_IMAGENET_MEAN)
        np.testing.assert_allclose(c["std"], timm_weights.TIMM_IMAGENET_STD)


def test_imagenet_class_list_matches_the_shared_list():
    """The 1000 names timm weights carry are in the ImageNet-1k index order (wnids of the
    shared data's imagenet1k_classes.csv)."""
    import csv
    from models import imagenet_classes
    rows = list(csv.DictReader(open(require_data("imagenet-sample-images")
                                    / "imagenet1k_classes.csv")))
    assert [r["wnid"] for r in rows] == list(imagenet_classes.WNIDS)
    assert imagenet_classes.NAMES[0] == "tench" and imagenet_classes.NAMES[207] == \
        "golden retriever" and rows[207]["name"] == "golden_retriever"


def test_build_model_with_safetensors_and_pth_gives_timms_logits(timm_files):
    import models
    from models import pretrained
    x = np.load(timm_files / "images.npy")
    ref = np.load(timm_files / "timm_logits.npy")
    st = str(timm_files / f"{ARCH}.safetensors")
    model = models.build_model(ARCH, input_shape=(None, None, 3), weights=st)
    assert model.outputs[0].shape[-1] == 1000  # the weights' class count
    _close(model(x, training=False), ref)
    # the metadata travels with the file: timm name in the file name -> timm's eval settings
    info = pretrained.resolve(st)
    assert (info.arch, info.num_classes, info.normalization, info.image_size,
            info.eval_preprocess) == (ARCH, 1000, "mean_std", 224, "0.95")
    assert info.class_names[207] == "golden retriever"
    # a torch state dict with no name in it: the architecture asked for is used (same
    # variables as from the .safetensors, whose logits are timm's)
    pth = models.build_model(ARCH, input_shape=(None, None, 3),
                             weights=str(timm_files / "weights.pth"))
    for a, b in zip(pth.weights, model.weights):
        np.testing.assert_array_equal(np.asarray(a.value), np.asarray(b.value))
    # another class count: the backbone is timm's, the head is fresh (fine-tuning)
    from safetensors.numpy import load_file
    five = models.build_model(ARCH, num_classes=5, input_shape=(64, 64, 3), weights=st)
    conv1 = load_file(st)["conv1.weight"]  # OIHW
    np.testing.assert_array_equal(np.asarray(five.get_layer("stem_conv1").kernel),
                                  conv1.transpose(2, 3, 1, 0))
    assert five.outputs[0].shape[-1] == 5


def test_weights_of_another_network_are_refused_naming_the_file(timm_files, tmp_path):
    import models
    from models.pretrained import WeightsError
    st = str(timm_files / f"{ARCH}.safetensors")
    with pytest.raises(WeightsError, match=r"resnet18\.safetensors.*holds a resnet18 network.*"
                                           r"not name=resnet34"):
        models.build_model("resnet34", weights=st)
    with pytest.raises(WeightsError, match="holds a resnet18 network"):
        models.build_model("resnet18", weights=st, width=32)
    with pytest.raises(FileNotFoundError, match="does not exist and is not a timm name"):
        models.build_model("resnet18", weights=str(tmp_path / "nothing.safetensors"))
    bad = tmp_path / "resnet18.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(WeightsError, match="resnet18.safetensors' is not a readable .safetensors"):
        models.build_model("resnet18", weights=str(bad))


class _FakeHub:
    """Stands in for ``huggingface_hub.hf_hub_download``: serves local files, records calls."""

    def __init__(self, files, error=None):
        self.files, self.error, self.calls = files, error, []

    def __call__(self, repo_id, filename, **kwargs):
        self.calls.append((repo_id, filename))
        if self.error is not None:
            raise self.error
        return self.files[filename]


def test_timm_hub_name_downloads_with_huggingface_hub(timm_files, tmp_path, monkeypatch):
    import huggingface_hub
    import models
    from models import pretrained
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    shutil.copy(timm_files / f"{ARCH}.safetensors", snapshot / "model.safetensors")
    cfg = json.load(open(timm_files / "pretrained_cfgs.json"))[ARCH]
    (snapshot / "config.json").write_text(json.dumps(
        {"architecture": ARCH, "num_classes": 1000, "pretrained_cfg": cfg}))
    hub = _FakeHub({"model.safetensors": str(snapshot / "model.safetensors"),
                    "config.json": str(snapshot / "config.json")})
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    model = models.build_model(ARCH, input_shape=(None, None, 3), weights="resnet18")
    assert hub.calls[:2] == [("timm/resnet18.a1_in1k", "model.safetensors"),
                             ("timm/resnet18.a1_in1k", "config.json")]
    _close(model(np.load(timm_files / "images.npy"), training=False),
           np.load(timm_files / "timm_logits.npy"))
    info = pretrained.resolve("timm/resnet18.a1_in1k")
    assert info.hub_repo == "timm/resnet18.a1_in1k" and info.normalization == "mean_std"
    assert info.eval_preprocess == "0.95" and info.metadata_from.endswith("config.json")
    # offline: the error says what to do
    from huggingface_hub.errors import LocalEntryNotFoundError
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        _FakeHub({}, LocalEntryNotFoundError("connection refused")))
    with pytest.raises(pretrained.WeightsError) as e:
        pretrained.resolve("resnet50d", what="--weights")
    message = str(e.value)
    assert "--weights 'resnet50d'" in message and "timm/resnet50d.ra2_in1k" in message
    assert "offline" in message and "hf download timm/resnet50d.ra2_in1k" in message


def test_warm_start_from_safetensors(timm_files):
    """official.checkpoints.warm_start (--weights of official.train) from a timm state dict:
    every non-head variable is timm's, the 7-class head keeps its initialization."""
    import models
    from official import checkpoints
    from official.config import RunConfig
    from safetensors.numpy import load_file
    cfg = RunConfig()
    cfg.model.name, cfg.model.num_classes, cfg.data.normalization = ARCH, 7, "mean_std"
    cfg.runtime.init_checkpoint = str(timm_files / f"{ARCH}.safetensors")
    model = checkpoints.build_model_from_config(cfg)
    head = np.asarray(model.get_layer("logits").kernel).copy()
    copied = checkpoints.warm_start(model, cfg.runtime.init_checkpoint, cfg, flag="--weights")
    assert "stage4_block2_bn2/moving_variance" in copied
    sd = load_file(cfg.runtime.init_checkpoint)
    np.testing.assert_array_equal(np.asarray(model.get_layer("stage4_block2_bn2").moving_variance),
                                  sd["layer4.1.bn2.running_var"])
    np.testing.assert_array_equal(np.asarray(model.get_layer("logits").kernel), head)
    wrong = RunConfig()
    wrong.model.name, wrong.model.num_classes = "resnet34", 7
    with pytest.raises(ValueError, match="--weights .*holds a resnet18 network.*not --model=resnet34"):
        checkpoints.warm_start(models.build_model("resnet34", 7, (None, None, 3)),
                               cfg.runtime.init_checkpoint, wrong, flag="--weights")


def test_train_weights_flag_applies_and_checks_the_metadata(timm_files):
    """official.train's flags (parsed as the program parses them): --weights fills the
    network, normalization, image size and eval crop from the weights' metadata where no flag
    gave them; a --normalization or --model that contradicts them is refused naming the flag
    and the file; --weights and --init_checkpoint are one setting."""
    from absl import flags as absl_flags
    import flags
    from official import train
    st = str(timm_files / f"{ARCH}.safetensors")
    flags.define_all()

    def config(*argv):
        absl_flags.FLAGS.unparse_flags()
        absl_flags.FLAGS(["prog", *argv])
        try:
            return train.config_from_flags()
        finally:
            absl_flags.FLAGS.unparse_flags()
    cfg = config(f"--weights={st}", "--data=unused")
    assert (cfg.model.name, cfg.data.normalization, cfg.model.image_size,
            cfg.data.eval_preprocess, cfg.runtime.init_checkpoint) == (
        ARCH, "mean_std", 224, "0.95", st)
    cfg = config(f"--weights={st}", "--image_size=64", "--eval_preprocess=imagenet")
    assert (cfg.model.image_size, cfg.data.eval_preprocess) == (64, "imagenet")  # given: kept
    with pytest.raises(train.ConfigError) as e:
        config(f"--weights={st}", "--normalization=mean")
    assert "--normalization=mean contradicts --weights" in str(e.value)
    assert "resnet18.safetensors" in str(e.value) and "'mean_std'" in str(e.value)
    with pytest.raises(train.ConfigError, match="holds a resnet18 network .*not --model=resnet50"):
        config(f"--init_checkpoint={st}", "--model=resnet50")
    with pytest.raises(train.ConfigError, match="are the same setting"):
        config(f"--weights={st}", "--init_checkpoint=other")


def test_export_weights_then_predict_matches_timm(timm_files, tmp_path):
    """official.export --weights (no run): the SavedModel decodes and preprocesses as the
    weights' metadata says (224, crop 0.95, mean_std) and returns ImageNet class names;
    official.predict on it gives timm's probabilities for the real JPEGs."""
    from models import imagenet_classes
    from official import export as X
    from official import predict as P
    meta = X.main(["--weights", str(timm_files / f"{ARCH}.safetensors"), "--export_dir",
                   str(tmp_path / "saved"), "--no_verify", "--top_k=3"])
    assert (meta["model"], meta["normalization"], meta["image_size"], meta["eval_preprocess"],
            meta["model_dir"]) == (ARCH, "mean_std", 224, "0.95", None)
    records = P.predict(str(tmp_path / "saved"), [str(timm_files / "images")], top_k=3)
    logits = np.load(timm_files / "timm_logits.npy").astype(np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    assert [os.path.basename(r["image"]) for r in records] == [n for n, _ in sample_jpegs()]
    for record, p in zip(records, probs):
        top = np.argsort(-p)[:3]
        assert [e["class_id"] for e in record["top_k"]] == [int(t) for t in top]
        assert [e["class_name"] for e in record["top_k"]] == [imagenet_classes.NAMES[t]
                                                               for t in top]
        np.testing.assert_allclose([e["probability"] for e in record["top_k"]], p[top],
                                   atol=1e-5)
