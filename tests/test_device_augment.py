"""data.device_augment: random-resized crop + flip on the accelerator (keras.ops).

References: the identity and a mirror image (hand-known), ``tf.image.resize`` (bilinear,
half-pixel centres) of an integer crop box, and the sampling ranges of the paper's
Inception crop (area 0.05-1, aspect 3/4-4/3)."""
import numpy as np
import pytest
import keras
from keras import ops

from data import device_augment as da


def _images(b=3, h=16, w=12, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(b, h, w, 3)).astype("float32")


def _apply(x, boxes, flip):
    t = da.crop_resize_transforms(ops.convert_to_tensor(np.asarray(boxes, "float32")), x.shape[1], x.shape[2],
                                  ops.convert_to_tensor(np.asarray(flip)))
    return np.asarray(ops.image.affine_transform(x, t, interpolation="bilinear", fill_mode="nearest"))


def test_whole_image_box_is_identity_and_flip_mirrors():
    x = _images()
    box = [[0, 0, 16, 12]] * 3
    np.testing.assert_allclose(_apply(x, box, [False] * 3), x, atol=1e-3)
    np.testing.assert_allclose(_apply(x, box, [True] * 3), x[:, :, ::-1], atol=1e-3)


def test_crop_matches_tf_image_resize_of_the_crop():
    import tensorflow as tf
    x = _images(b=2, h=16, w=16)
    # bottom-right 8x8 box (2x upsampling) and a 12x6 box at the top-left corner
    boxes = [[8, 8, 8, 8], [0, 0, 12, 6]]
    out = _apply(x, boxes, [False, False])
    for i, (y0, x0, h, w) in enumerate(boxes):
        ref = tf.image.resize(x[i, y0:y0 + h, x0:x0 + w], (16, 16), method="bilinear", antialias=False).numpy()
        # the affine form reads the image around the box where tf.image.resize clamps to the
        # crop's edge: they agree except on an output edge whose box edge lies inside the image
        r0, r1 = (1 if y0 > 0 else 0), (15 if y0 + h < 16 else 16)
        c0, c1 = (1 if x0 > 0 else 0), (15 if x0 + w < 16 else 16)
        np.testing.assert_allclose(out[i, r0:r1, c0:c1], ref[r0:r1, c0:c1], atol=1e-2)
        assert np.abs(out[i] - ref).max() > 1.0  # ... where they do differ (the test can fail)
    # the mirrored crop is the mirror of the crop
    out_f = _apply(x, boxes, [True, True])
    np.testing.assert_allclose(out_f[1], out[1, :, ::-1], atol=1e-2)


def test_sampled_boxes_follow_the_paper_ranges():
    n, h, w = 4000, 32, 32
    boxes = np.asarray(da.sample_boxes(n, h, w, keras.random.SeedGenerator(0)))
    y0, x0, bh, bw = boxes.T
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y0 + bh <= h + 1e-4).all() and (x0 + bw <= w + 1e-4).all()
    area = bh * bw / (h * w)
    aspect = bw / bh
    assert area.min() >= 0.05 - 1e-5 and area.max() <= 1.0 + 1e-5
    assert aspect.min() >= 0.75 - 1e-4 and aspect.max() <= 4 / 3 + 1e-4
    # P(one try out of bounds) is about 0.14 for a square image; 10 tries almost never all fail,
    # and the accepted areas spread over the whole range (a uniform draw has mean 0.525; the
    # rejected large boxes pull it lower)
    assert 0.40 < area.mean() < 0.53
    assert np.mean(area < 0.2) > 0.1 and np.mean(area > 0.8) > 0.05


def test_crop_flip_is_seeded_and_changes_the_batch():
    x = _images(b=8, h=32, w=32)
    a = np.asarray(da.crop_flip(x, keras.random.SeedGenerator(3)))
    b = np.asarray(da.crop_flip(x, keras.random.SeedGenerator(3)))
    c = np.asarray(da.crop_flip(x, keras.random.SeedGenerator(4)))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert np.abs(a - c).max() > 1.0 and np.abs(a - x).max() > 1.0
    # values stay within the input's range (bilinear interpolation, edge pixels repeated)
    assert a.min() >= x.min() - 1e-3 and a.max() <= x.max() + 1e-3


def test_bad_ranges_name_the_argument():
    with pytest.raises(ValueError, match="area_range"):
        da.sample_boxes(2, 8, 8, keras.random.SeedGenerator(0), area_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="aspect_range"):
        da.sample_boxes(2, 8, 8, keras.random.SeedGenerator(0), aspect_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="attempts"):
        da.sample_boxes(2, 8, 8, keras.random.SeedGenerator(0), attempts=0)


def test_crop_and_normalization_constants_are_the_official_codes():
    """Both input paths read one TensorFlow-free module (data.constants); its values are those
    of clovaai/assembled-cnn ``preprocessing/imagenet_preprocessing.py``: ``_R_MEAN = 123.68``,
    ``_G_MEAN = 116.78``, ``_B_MEAN = 103.94``, ``aspect_ratio_range=[0.75, 1.33]``,
    ``area_range=[0.05, 1.0]``, ``min_object_covered=0.1``, ``max_attempts=100``, and the
    ImageNet mean/std 0.485/0.456/0.406, 0.229/0.224/0.225 (torchvision)."""
    from data import constants, preprocessing
    assert da.AREA_RANGE is constants.AREA_RANGE is preprocessing.AREA_RANGE
    assert tuple(constants.AREA_RANGE) == (0.05, 1.0)
    assert tuple(constants.ASPECT_RATIO_RANGE) == (0.75, 1.33)
    assert (constants.MIN_OBJECT_COVERED, constants.MAX_ATTEMPTS) == (0.1, 100)
    assert tuple(constants.CHANNEL_MEANS) == (123.68, 116.78, 103.94)
    np.testing.assert_allclose(np.array(constants.IMAGENET_MEAN) / 255, [0.485, 0.456, 0.406])
    np.testing.assert_allclose(np.array(constants.IMAGENET_STD) / 255, [0.229, 0.224, 0.225])


# =========================================================================== AutoAugment / RandAugment
# References: the host implementation data.autoaugment (TF ops per image, itself tested against PIL
# and hand-computed geometry in tests/test_autoaugment.py) on real ImageNet photos, and the policy
# tables (probabilities of each op).
import os
import subprocess
import sys
import zipfile

from conftest import REPO_ROOT, require_data

OPS = da.OPS[1:]


@pytest.fixture(scope="module")
def real_batch():
    """Four real ImageNet photos, a 64 px crop of each resized like the training pipeline,
    floored to integers (what the host augments): float32 [4, 64, 64, 3]."""
    import tensorflow as tf
    path = require_data("imagenet-sample-images/images.zip")
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.lower().endswith((".jpeg", ".jpg")))
        out = []
        for n in names[3::13][:4]:
            img = tf.io.decode_jpeg(z.read(n), channels=3)
            out.append(tf.floor(tf.image.resize(img[:160, :200], (64, 64))).numpy())
    return np.stack(out).astype("float32")


def _op_grid(batch, levels=(1.0, 5.5, 9.0)):
    """Every op x level x image, signs alternating: (images, op ids, levels, sign_u, cy_u, cx_u)."""
    grid = [(i, op, lv) for op in OPS for lv in levels for i in range(len(batch))]
    rows = [(i, op, lv, 0.25 if k % 2 else 0.75) for k, (i, op, lv) in enumerate(grid)]
    images = batch[[r[0] for r in rows]]
    ids = np.array([da.OP_INDEX[r[1]] for r in rows], "int32")
    levels_ = np.array([r[2] for r in rows], "float32")
    sign_u = np.array([r[3] for r in rows], "float32")
    cy_u = np.linspace(0.1, 0.9, len(rows)).astype("float32")
    cx_u = cy_u[::-1].copy()
    return rows, images, ids, levels_, sign_u, cy_u, cx_u


def _host_ops(rows, images, levels_, sign_u, cy_u, cx_u, hp):
    import tensorflow as tf
    from data import autoaugment as aa
    host_hp = aa._Hparams(hp.translate_const, hp.cutout_const, hp.scale_to_image, hp.posterize_mode, hp.replace,
                          hp.levels)
    return np.stack([aa._apply_op(r[1], tf.constant(images[k]), tf.constant(levels_[k]), tf.constant(sign_u[k]),
                                  tf.constant(cy_u[k]), tf.constant(cx_u[k]), host_hp).numpy()
                     for k, r in enumerate(rows)])


def _compare_per_op(rows, ours, ref):
    """{op: (mean |diff| in 0..255 units, fraction of exact pixels)}."""
    out = {}
    for op in OPS:
        idx = [k for k, r in enumerate(rows) if r[1] == op]
        d = np.abs(ours[idx].astype("float64") - ref[idx])
        out[op] = (d.mean(), (d == 0).mean())
    return out


@pytest.mark.parametrize("hp_args", [dict(), dict(translate_const=100.0, cutout_const=40.0, scale_to_image=True,
                                                   posterize_mode="paper"),
                                     dict(translate_const=100.0, cutout_const=40.0, levels="increasing")],
                         ids=["autoaugment", "randaugment_paper", "randaugment_increasing"])
def test_every_op_matches_the_host_op_on_real_images(real_batch, hp_args):
    """One batch in which every sample has its own op, level and sign (16 ops x 3 levels x 4 photos),
    against data.autoaugment._apply_op image by image with the same parameters. The colour ops
    are exact; the geometric ops compute the host's float32 expressions, so under this (TF)
    backend every op is bit-identical to the host (measured: every pixel of every op equal).
    Other backends: test_other_backends_match_the_host."""
    hp = da.Hparams(**hp_args)
    rows, images, ids, levels_, sign_u, cy_u, cx_u = _op_grid(real_batch)
    ours = np.asarray(da.apply_ops(images, ids, levels_, sign_u, cy_u, cx_u, hparams=hp))
    ref = _host_ops(rows, images, levels_, sign_u, cy_u, cx_u, hp)
    stats = _compare_per_op(rows, ours, ref)
    assert all(exact == 1.0 for _, exact in stats.values()), stats
    # the test can fail: the ops do change the images (each op, some level)
    for op in OPS:
        idx = [k for k, r in enumerate(rows) if r[1] == op]
        assert np.abs(ref[idx] - images[idx]).max() > 0, op


def _expected_op_probs(table, j):
    """P(op o at position j) from the policy table: sub-policy uniform, applied with its p."""
    probs = {}
    for sub in table:
        name, p, _ = sub[j] if j < len(sub) else ("Identity", 0.0, 0)
        probs[name] = probs.get(name, 0.0) + p / len(table)
        probs["Identity"] = probs.get("Identity", 0.0) + (1.0 - p) / len(table)
    return probs


def _binomial_ok(count, n, p, z=5.0):
    return abs(count - n * p) <= z * np.sqrt(n * p * (1 - p)) + 1e-9


@pytest.mark.parametrize("policy", ["imagenet", "v0", "reduced_cifar10", "svhn"])
def test_sampled_operations_follow_the_policy_table(policy):
    """4,000 samples (fixed seed): the sub-policy is uniform, each op's frequency at each position
    is sum_s p_s/25 from the table, within 5 binomial standard deviations; and every sample's ops
    are those of its own sub-policy row (an op appears only if that row has it)."""
    from data import autoaugment as aa  # the host's table
    table = aa.get_policy(policy)
    n = 4000
    layers, sub = da.sample_autoaugment(n, policy, keras.random.SeedGenerator(11))
    sub = np.asarray(sub)
    counts = np.bincount(sub, minlength=len(table))
    assert all(_binomial_ok(c, n, 1 / len(table)) for c in counts), counts
    for j, layer in enumerate(layers):
        op = np.asarray(layer["op"])
        names = np.array(da.OPS)[op]
        for name, p in _expected_op_probs(table, j).items():
            c = int(np.sum(names == name))
            assert _binomial_ok(c, n, p), (policy, j, name, c, n * p)
        row_ops = np.array([table[s][j][0] for s in sub])
        assert np.all((names == "Identity") | (names == row_ops))
        levels = np.asarray(layer["level"])
        np.testing.assert_array_equal(levels, [table[s][j][2] for s in sub])
    # a batch mixes operations: not one op for every image
    assert len(set(np.asarray(layers[0]["op"][:32]).tolist())) > 3


def test_sampled_randaugment_ops_are_uniform_and_always_applied():
    n, layers_n = 2800, 2
    layers = da.sample_randaugment(n, layers_n, 9, keras.random.SeedGenerator(5))
    assert len(layers) == layers_n
    for layer in layers:
        names = np.array(da.OPS)[np.asarray(layer["op"])]
        for name in da.RANDAUGMENT_OPS:  # the 14 ops of the paper, each 1/14 (Identity included)
            assert _binomial_ok(int(np.sum(names == name)), n, 1 / 14), name
        assert set(names) == set(da.RANDAUGMENT_OPS)
        np.testing.assert_array_equal(np.asarray(layer["level"]), 9.0)
    # magnitude 15 on the default 0..10 scale is clipped to level 10, as on the host
    assert da.randaugment_level(15) == 10.0 and da.randaugment_level(9, 30) == pytest.approx(3.0)
    a = np.asarray(layers[0]["op"])
    b = np.asarray(layers[1]["op"])
    assert np.mean(a == b) < 0.2  # layers draw independently


def test_pipeline_in_an_xla_compiled_tf_function_is_seeded(real_batch):
    """DeviceAugment (RandAugment 1, 9: one layer of the 14 ops; the paper's mean normalization) in a
    tf.function compiled by XLA (jit_compile=True, as the trainer's --jit_compile step) on a
    tiny batch: the same output for the same seed, another for the next step, integer pixels
    before the normalization, the images changed. (XLA's stateless RNG is not the CPU kernel's,
    so the draws differ from eager mode's; the ops under XLA are compared with the host in
    test_other_backends_match_the_host[jax].)"""
    import tensorflow as tf
    aug = da.DeviceAugment(randaugment=(1, 9), output_normalization="mean")
    fn = tf.function(lambda im, s: aug(im, s), jit_compile=True)
    small = tf.constant(real_batch[:, :24, :24])
    a, b, c = (fn(small, tf.constant(s, tf.int64)).numpy() for s in ([3, 7], [3, 7], [3, 8]))
    np.testing.assert_array_equal(a, b)
    pixels = a + np.array(da.CHANNEL_MEANS, "float32")
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
    assert np.abs(pixels - small.numpy()).max() > 1.0 and np.abs(c - a).max() > 1.0


def test_normalization_matches_the_tf_data_preprocessing():
    from data import preprocessing
    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    for norm in da.NORMALIZATIONS:
        np.testing.assert_array_equal(np.asarray(da.normalize(x, norm)), preprocessing.normalize(x, norm).numpy())
        np.testing.assert_allclose(np.asarray(da.denormalize(da.normalize(x, norm), norm)), x, atol=1e-4)


BACKEND_DRIVER = r"""
import sys
sys.modules["tensorflow"] = None  # data.device_augment must not need TensorFlow
import numpy as np, keras
assert keras.backend.backend() == sys.argv[1]
from data import device_augment as da
z = np.load(sys.argv[2])
ops_fn = da.apply_ops
if sys.argv[1] == "jax":
    import jax
    ops_fn = jax.jit(da.apply_ops)  # the ops compiled by XLA
out = {"ops": keras.ops.convert_to_numpy(ops_fn(z["images"], z["ids"], z["levels"], z["sign_u"], z["cy_u"],
                                                z["cx_u"]))}
aug = da.DeviceAugment(crop_flip=True, autoaugment="imagenet", input_normalization="mean",
                       output_normalization="mean")
small = z["images"][:4, :24, :24] - np.array(da.CHANNEL_MEANS, "float32")
if sys.argv[1] == "jax":
    import jax
    f = jax.jit(lambda im, s: aug(im, s))
    seed = np.array([1, 2], "uint32")
    a, b = np.asarray(f(small, seed)), np.asarray(f(small, seed))
    c = np.asarray(f(small, np.array([1, 3], "uint32")))
else:
    seed = np.array([1, 2], "int64")
    a, b, c = (np.asarray(keras.ops.convert_to_numpy(aug(small, s)))
               for s in (seed, seed, np.array([1, 3], "int64")))
out.update(a=a, b=b, c=c)
np.savez(sys.argv[3], **out)
print("BACKEND_OK", "tensorflow" in sys.modules and sys.modules["tensorflow"] is not None)
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_match_the_host(real_batch, tmp_path, backend):
    """Under KERAS_BACKEND=jax (ops and pipeline jitted: XLA) and torch, with TensorFlow blocked: the per-op results on
    the real photos against the host ops (mean |diff| <= 1/255 of the range; geometric ops may
    differ where the backend's sin/cos moves a sampling point across a rounding boundary), and
    the whole pipeline (crop, flip, AutoAugment, normalization) deterministic under a seed."""
    rows, images, ids, levels_, sign_u, cy_u, cx_u = _op_grid(real_batch, levels=(2.0, 8.0))
    np.savez(tmp_path / "in.npz", images=images, ids=ids, levels=levels_, sign_u=sign_u, cy_u=cy_u, cx_u=cx_u)
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT),
               XLA_FLAGS="--xla_backend_optimization_level=0")  # shorter compiles, same results
    proc = subprocess.run([sys.executable, "-c", BACKEND_DRIVER, backend, str(tmp_path / "in.npz"),
                           str(tmp_path / "out.npz")], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "BACKEND_OK False" in proc.stdout, proc.stderr[-3000:]
    z = np.load(tmp_path / "out.npz")
    ref = _host_ops(rows, images, levels_, sign_u, cy_u, cx_u, da.Hparams())
    stats = _compare_per_op(rows, z["ops"], ref)
    for op, (mad, exact) in stats.items():
        assert mad <= 1.0, f"{backend} {op}: mean |diff| {mad:.3f} > 1/255 of the range ({stats})"
        if op not in da.GEOMETRIC_OPS:
            assert exact >= 0.999, f"{backend} {op}: only {exact:.4f} of the pixels equal ({stats})"
    np.testing.assert_array_equal(z["a"], z["b"])
    assert z["a"].shape == (4, 24, 24, 3) and np.abs(z["a"] - z["c"]).max() > 1.0


def test_trainer_augment_on_device_through_the_entry_point(tmp_path):
    """``python -m official.train --flagfile=smoke ... --augment_on=device --autoaugment=imagenet``
    (TensorFlow backend, shrunk: 32 px, batch 4, 2 steps, one eval batch): tf.data crops and flips,
    AutoAugment and the normalization run in the training step; the run finishes and records the
    choice. (The JAX path with npz input: tests/test_train_distributed.py, the KD run.)"""
    import json
    imagenette = require_data("imagenette2-224")
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "official.train", "--flagfile=smoke", f"--data={imagenette}",
            f"--model_dir={run}", "--augment_on=device", "--autoaugment=imagenet", "--image_size=32",
            "--batch_size=4", "--train_steps=2", "--eval_steps=1", "--progress_bar=false",
            '--model_overrides={"width": 8, "layers": [1, 1, 1, 1]}', "--mixing=cutmix"]
    env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.load(open(run / "results.json"))
    assert res["finished"] and res["step"] == 2 and np.isfinite(res["train_loss"])
    cfg = json.load(open(run / "run_config.json"))
    assert cfg["data"]["augment_on"] == "device" and cfg["data"]["autoaugment"] == "imagenet"


def test_trainer_device_dataset_is_unnormalized_and_unaugmented(tmp_path):
    """With --augment_on=device the trainer's tf.data batches are 0..255 pixels without
    AutoAugment (the step does both); evaluation batches stay normalized."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from test_train import tiny_config
    from official import train
    from official.train_backends import TFBackend, _device_augmentation
    src = require_data("imagenette2-224")
    cfg = train.prepare_config(tiny_config(tmp_path, src, data__augment_on="device", data__autoaugment="imagenet",
                                           optimization__batch_size=4))
    backend = TFBackend(cfg)
    images, _ = next(backend.train_batches(0))
    x = np.asarray(images)
    assert x.min() >= 0.0 and x.max() <= 255.0 and x.max() > 128.0
    host = TFBackend(train.prepare_config(tiny_config(tmp_path, src, optimization__batch_size=4)))
    y = np.asarray(next(host.train_batches(0))[0])
    # the host path's batch is normalized (and AutoAugment'ed on the host)
    assert y.min() < 0.0
    ev = np.asarray(next(iter(backend.eval_batches()))[0])
    assert ev.min() < 0.0
    aug = _device_augmentation(cfg)
    assert isinstance(aug, da.DeviceAugment) and aug.autoaugment == "imagenet"
    assert aug.input_normalization is None and aug.output_normalization == "mean"
    with pytest.raises(train.ConfigError, match="--augment_on=device"):
        npz = tmp_path / "t.npz"
        np.savez(npz, x_train=np.zeros((8, 32, 32, 3), "float32"), y_train=np.arange(8) % 2,
                 x_eval=np.zeros((4, 32, 32, 3), "float32"), y_eval=np.arange(4) % 2)
        train.prepare_config(tiny_config(tmp_path, f"npz:{npz}", data__autoaugment="imagenet"), backend="jax")


@pytest.mark.parametrize("where", ["host", "device"])
def test_trainer_posterize_flag_reaches_the_augmentation(where):
    """``--augment_posterize`` reaches the host (tf.data) and the device AutoAugment.

    Independent fact, from the ImageNet policy table (AutoAugment paper, appendix): Posterize
    appears at levels 5-8 in sub-policies 1, 4 (twice), 8 and 10 of 25, so an image is
    posterized with probability (0.4 + (1 - 0.4 * 0.4) + 0.8 + 0.4) / 25 = 9.76 %.
    The TF code's mapping keeps int(level / 10 * 4) = 2-3 bits there (at most 8 grey levels; the
    other ops of those sub-policies, Rotate/Equalize, keep a gray ramp on that grid, Rotate's
    fill 128 included), the paper's 8 - that keeps 5-6 bits (at least 32 levels), and no other
    op of the policy leaves a 256-level grey ramp with <= 9 levels."""
    from data import policies
    from official.config import RunConfig
    table = policies.policy_imagenet()
    expected = sum(1 - np.prod([1 - p for name, p, _ in sub if name == "Posterize"]) for sub in table) / len(table)
    assert abs(expected - 2.44 / 25) < 1e-9  # 0.4 + 0.84 + 0.8 + 0.4 over 25 sub-policies
    n = 600
    ramp = np.arange(256, dtype="float32").reshape(16, 16, 1).repeat(3, 2)
    few = {}
    for mode in ("tf", "paper"):
        cfg = RunConfig()
        cfg.model.image_size = 16
        cfg.data.autoaugment, cfg.data.augment_posterize, cfg.data.augment_on = "imagenet", mode, where
        if where == "host":
            import tensorflow as tf
            from data import pipeline
            augment = pipeline._augment_fn(cfg.input_spec(training=True))
            fn = tf.function(lambda s: augment(tf.constant(ramp), s))
            outs = [fn(tf.constant([7, i], tf.int64)).numpy() for i in range(n)]
        else:
            from official.train_backends import _device_augmentation
            aug = _device_augmentation(cfg)
            assert aug.posterize_mode == mode
            outs = np.asarray(aug(np.repeat(ramp[None], n, 0), seed=np.array([7, 0])))
        few[mode] = np.mean([len(np.unique(o[..., 0])) <= 9 for o in outs])  # device: normalized per channel
    sd = np.sqrt(expected * (1 - expected) / n)
    assert abs(few["tf"] - expected) < 5 * sd, (few, expected)
    assert few["paper"] == 0.0, few


@pytest.mark.parametrize("where", ["host", "device"])
def test_trainer_randaugment_levels_flag_reaches_the_augmentation(where):
    """``--randaugment=1,0 --randaugment_levels=...`` on the host (tf.data) and on the device.

    Independent facts: on a 16x16 gray ramp holding each value 0..255 once, PIL's equalize and
    autocontrast are the identity (checked here), so with the increasing mappings, where M = 0 is
    the identity of every op with a magnitude, no image changes. With the TF code's mappings at
    M = 0, Posterize (0 bits), Solarize (threshold 0), Contrast and Brightness (factor 0.1) and
    Sharpness (0.1, the interior) change the ramp, Color does not (it is gray): 5 of the 14 ops,
    so 5/14 of the images change (binomial, 5 sd)."""
    from PIL import Image, ImageOps
    from official.config import RunConfig
    ramp = np.arange(256, dtype="float32").reshape(16, 16, 1).repeat(3, 2)
    pil = Image.fromarray(ramp.astype("uint8"))
    assert np.array_equal(np.asarray(ImageOps.equalize(pil)), ramp)
    assert np.array_equal(np.asarray(ImageOps.autocontrast(pil)), ramp)
    n, changed = 420, {}
    for levels in ("tf", "increasing"):
        cfg = RunConfig()
        cfg.model.image_size = 16
        cfg.data.randaugment, cfg.data.randaugment_levels, cfg.data.augment_on = "1,0", levels, where
        cfg.data.normalization = "mean"
        if where == "host":
            import tensorflow as tf
            from data import pipeline
            augment = pipeline._augment_fn(cfg.input_spec(training=True))
            fn = tf.function(lambda s: augment(tf.constant(ramp), s))
            outs = np.stack([fn(tf.constant([7, i], tf.int64)).numpy() for i in range(n)])
            ref = ramp
        else:
            from official.train_backends import _device_augmentation
            aug = _device_augmentation(cfg)
            assert aug.randaugment_levels == levels
            outs = np.asarray(aug(np.repeat(ramp[None], n, 0), seed=np.array([7, 0])))
            ref = np.asarray(da.normalize(ramp[None], "mean"))[0]
        changed[levels] = np.mean([np.abs(o - ref).max() > 1e-3 for o in outs])
    p = 5 / 14
    assert changed["increasing"] == 0.0, changed
    assert abs(changed["tf"] - p) < 5 * np.sqrt(p * (1 - p) / n), changed
