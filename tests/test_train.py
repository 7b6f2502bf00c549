"""Trainer tests that run in the pytest process (issue 4): losses by hand, schedules, config,
bad inputs, distillation (offline from TFRecord logits, online from a teacher run),
fine-tuning warm start, non-finite loss. Real images: imagenette2-224 at 32 px, a tiny
ResNet-18 (width 8, one block per stage). Multi-process tests: test_train_distributed.py.
"""
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import REPO_ROOT, require_data

TINY = dict(name="resnet18", overrides={"width": 8, "layers": [1, 1, 1, 1]}, image_size=32)


def tiny_config(model_dir, data_path, **fields):
    from official.config import RunConfig
    cfg = RunConfig(recipe="test")
    cfg.model.name = TINY["name"]
    cfg.model.overrides = dict(TINY["overrides"])
    cfg.model.image_size = TINY["image_size"]
    cfg.data.source = str(data_path)
    cfg.optimization.batch_size = 8
    cfg.optimization.train_steps = 2
    cfg.optimization.base_learning_rate = 0.05
    cfg.optimization.warmup_epochs = 0
    cfg.runtime.model_dir = str(model_dir)
    cfg.runtime.eval_steps = 0  # no evaluation (speed); tests that need it set it
    cfg.runtime.progress_bar = False
    cfg.runtime.log_every_steps = 1
    dotted = {k.replace("__", "."): v for k, v in fields.items()}
    return cfg.override(dotted) if dotted else cfg


@pytest.fixture(scope="module")
def imagenette():
    return require_data("imagenette2-224")


@pytest.fixture(scope="module")
def trained_run(imagenette, tmp_path_factory):
    """A 2-step run (used as online teacher and as fine-tuning source)."""
    from official import train
    d = tmp_path_factory.mktemp("run_a")
    train.train(tiny_config(d, imagenette))
    return d


# ----------------------------------------------------------------------------- losses
def _np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_losses_match_hand_computation():
    from official import losses
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 5)).astype("float32")
    teacher = rng.normal(size=(4, 5)).astype("float32")
    onehot = np.eye(5, dtype="float32")[[0, 3, 1, 4]]
    soft = onehot * 0.9 + 0.1 / 5  # tf.losses.softmax_cross_entropy(label_smoothing=0.1)
    np.testing.assert_allclose(np.asarray(losses.smooth_labels(onehot, 0.1)), soft, rtol=1e-6)
    ce = -(soft * _np_log_softmax(logits)).sum(-1)
    np.testing.assert_allclose(np.asarray(losses.soft_cross_entropy(soft, logits)), ce, rtol=1e-5)
    for t in (1.0, 4.0):
        p = np.exp(_np_log_softmax(teacher / t))
        kd = t * t * -(p * _np_log_softmax(logits / t)).sum(-1)
        total, ce_, kd_ = losses.classification_loss(soft, logits, teacher, distillation_weight=0.5,
                                                     temperature=t)
        np.testing.assert_allclose(np.asarray(kd_), kd, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(total), ce + 0.5 * kd, rtol=1e-5)


def test_weight_decay_skips_batch_norm_and_is_half_sum_of_squares():
    import models
    from official import losses
    model = models.build_model(TINY["name"], num_classes=3, input_shape=(32, 32, 3), **TINY["overrides"])
    decayed = losses.decayed_variables(model)
    ids = {id(v) for v in decayed}
    bn_paths = [v.path for v in model.trainable_variables if id(v) not in ids]
    assert bn_paths and all(("gamma" in p or "beta" in p) for p in bn_paths)
    expected = sum(float((np.asarray(v.value, np.float64) ** 2).sum()) / 2 for v in decayed)
    assert float(losses.weight_decay_loss(decayed, 1e-4)) == pytest.approx(1e-4 * expected, rel=1e-5)


# ----------------------------------------------------------------------------- schedules
def test_schedules():
    from official import schedules
    s = schedules.WarmupSchedule("cosine", 0.4, total_steps=100, warmup_steps=10)
    vals = [float(s(i)) for i in (0, 5, 10, 55, 100, 150)]
    assert vals[0] == 0 and vals[1] == pytest.approx(0.2) and vals[2] == pytest.approx(0.4)
    assert vals[3] == pytest.approx(0.2, abs=1e-6) and vals[4] == pytest.approx(0) and vals[5] == pytest.approx(0)
    p = schedules.WarmupSchedule("piecewise", 1.0, 100, boundaries=[30, 60], rates=[1, 0.1, 0.01])
    assert [float(p(i)) for i in (0, 29, 30, 60)] == pytest.approx([1, 1, 0.1, 0.01])
    e = schedules.WarmupSchedule("exponential", 1.0, 100, decay_steps=10, decay_rate=0.5)
    assert [float(e(i)) for i in (9, 10, 25)] == pytest.approx([1, 0.5, 0.25])
    assert schedules.initial_learning_rate(0.1, 1024, "linear") == pytest.approx(0.4)
    assert schedules.initial_learning_rate(0.4, 1024, "none") == 0.4
    assert [schedules.drop_block_keep_prob(i, 100) for i in (0, 50, 100, 200)] == pytest.approx([1, 0.95, 0.9, 0.9])


def _paper_cosine_lr(lr0, step, warmup, total):
    """clovaai/assembled-cnn ``learning_rate_with_decay`` ("cosine"), by hand in float64:
    ``lr0 * step / warmup`` while ``step < warmup``, else ``tf.train.cosine_decay(lr0,
    step - warmup, total - warmup)`` = ``0.5 * lr0 * (1 + cos(pi * min(step - warmup,
    total - warmup) / (total - warmup)))``."""
    import math
    if step < warmup:
        return lr0 * step / warmup
    return 0.5 * lr0 * (1.0 + math.cos(math.pi * min(step - warmup, total - warmup) / (total - warmup)))


# (lr0, warmup, total): ImageNet at batch 1024 (1251 steps/epoch, 5 warm-up epochs of 120),
# a short run, and no warm-up.
PAPER_COSINE_CASES = [(0.4, 6255, 150120), (0.4, 10, 100), (0.05, 0, 1000)]


def _paper_cosine_probes(warmup, total):
    return sorted({0, 1, max(warmup - 1, 0), warmup, warmup + 1, (warmup + total) // 2,
                   total - 1, total, total + 1, 2 * total})


def test_cosine_schedule_is_the_papers():
    """The cosine schedule (Keras' CosineDecay after the paper's linear warm-up) against the
    paper's formula computed by hand: every step of a short run and the probes of the ImageNet
    run to float32 rounding (< 1e-7); exactly 0 at step 0, exactly lr0 at the warm-up end and
    with no warm-up at step 0, exactly 0 at and after the last step; the warm-up in the paper's
    float32 operation order ``(lr0 * step) / warmup`` bit for bit; build_learning_rate builds it."""
    import types
    import keras
    from official import schedules
    for lr0, warmup, total in PAPER_COSINE_CASES:
        s = schedules.WarmupSchedule("cosine", lr0, total_steps=total, warmup_steps=warmup)
        steps = list(range(total + 20)) if total <= 1000 else _paper_cosine_probes(warmup, total)
        got = np.asarray(s(np.asarray(steps, np.int64)))
        assert got.dtype == np.float32
        want = np.asarray([_paper_cosine_lr(lr0, i, warmup, total) for i in steps])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
        at = dict(zip(steps, got.tolist()))
        assert at[0] == (0.0 if warmup else float(np.float32(lr0)))
        assert at[warmup] == float(np.float32(lr0))
        assert at[total] == 0.0 and all(v == 0.0 for i, v in at.items() if i >= total)
        for i in range(min(warmup, 50)):
            paper_f32 = np.float32(np.float32(lr0) * np.float32(i)) / np.float32(warmup)
            assert float(s(i)) == float(paper_f32), i
        # a serialized schedule (get_config unchanged) loads to the same values
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
        assert type(again) is schedules.WarmupSchedule
        np.testing.assert_array_equal(np.asarray(again(np.asarray(steps, np.int64))), got)
    cfg = types.SimpleNamespace(base_learning_rate=0.4, batch_size=1024, lr_scaling="none",
                                lr_schedule="cosine", warmup_epochs=5, piecewise_boundaries=[],
                                piecewise_rates=[], exponential_decay_epochs=2.4,
                                exponential_decay_rate=0.97)
    b = schedules.build_learning_rate(cfg, steps_per_epoch=1251, total_steps=150120)
    assert (b.warmup_steps, b.total_steps, b.initial_lr) == (6255, 150120, 0.4)
    probes = _paper_cosine_probes(6255, 150120)
    np.testing.assert_allclose(np.asarray(b(np.asarray(probes))),
                               [_paper_cosine_lr(0.4, i, 6255, 150120) for i in probes], rtol=0, atol=1e-7)
    # the schedule is not a variable of the optimizer: checkpoints (optimizer.variables by
    # position) are the same whichever schedule object is used
    v = keras.Variable(np.zeros(3, "float32"))
    for lr in (b, schedules.WarmupSchedule("piecewise", 0.4, 10, boundaries=[5], rates=[1, 0.1])):
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
        opt.build([v])
        assert len(opt.variables) == 2 and not any("learning_rate" in x.path for x in opt.variables)


def test_cosine_schedule_is_the_papers_jax_jit():
    """KERAS_BACKEND=jax: the schedule called on a traced step inside ``jax.jit`` (as the
    jitted training step calls it with ``optimizer.iterations``) gives the paper's values."""
    import inspect
    import textwrap
    helpers = inspect.getsource(_paper_cosine_lr) + inspect.getsource(_paper_cosine_probes)
    code = helpers + textwrap.dedent(f"""
        import numpy as np
        import jax, jax.numpy as jnp
        from official import schedules
        for lr0, warmup, total in {PAPER_COSINE_CASES!r}:
            s = schedules.WarmupSchedule("cosine", lr0, total_steps=total, warmup_steps=warmup)
            f = jax.jit(lambda step: s(step))
            steps = _paper_cosine_probes(warmup, total)
            got = np.asarray([f(jnp.asarray(i, jnp.int32)) for i in steps])
            want = np.asarray([_paper_cosine_lr(lr0, i, warmup, total) for i in steps])
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
            assert got[steps.index(warmup)] == np.float32(lr0) and got[steps.index(total)] == 0.0
        print("JAX_OK")
    """)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(REPO_ROOT),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "JAX_OK" in proc.stdout, proc.stderr[-3000:]


# ----------------------------------------------------------------------------- config / flags
def test_run_config_json_roundtrip_and_flags():
    from absl import flags as absl_flags
    import flags
    from official.config import RunConfig
    from official import train
    flags.define_all()
    argv = train.preprocess_argv(["prog", "--flagfile=smoke", "--batch_size=64", "--train_steps=7",
                                  "--model_overrides=width=8", "--drop_block_keep_prob=1,0.8"])
    assert argv[1] == "--recipe=smoke" and argv[2].endswith("official/configs/smoke.cfg")
    absl_flags.FLAGS.unparse_flags()
    absl_flags.FLAGS(argv)
    try:
        cfg = flags.build_run_config(absl_flags.FLAGS)
    finally:
        absl_flags.FLAGS.unparse_flags()
    assert cfg.recipe == "smoke" and cfg.model.name == "resnet18" and cfg.model.image_size == 64
    assert cfg.optimization.batch_size == 64 and cfg.optimization.train_steps == 7
    assert cfg.model.overrides == {"width": 8}  # command line merged over the recipe's
    assert cfg.regularization.drop_block_keep_prob == [1.0, 0.8]
    assert RunConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="unknown fields"):
        RunConfig.from_dict({"nope": 1})


# The trainer's flag names as the recipes, docs and users' scripts spell them (the hand-written
# flag modules before the flags were generated from official.config).
TRAINER_FLAGS = sorted("""augment_on augment_posterize autoaugment base_learning_rate batch_size checkpoint_every_steps data
    data_seed deterministic device_augment distillation distillation_temperature distillation_weight
    distribution_strategy drop_block_keep_prob dtype ema_decay epochs eval_batch_size fp16_without_gpu
    eval_every_epochs eval_preprocess eval_split eval_steps exponential_decay_epochs
    exponential_decay_rate image_size init_checkpoint jit_compile keep_checkpoints label_offset
    label_smoothing log_every_steps lr_scaling lr_schedule mixing mixing_alpha mixing_form
    mixing_per_sample model model_dir model_overrides momentum nesterov normalization num_classes
    num_gpus piecewise_boundaries piecewise_rates progress_bar randaugment randaugment_levels recipe seed split_seed
    sync_bn teacher tensorboard tpu train_split train_steps val_fraction warmup_epochs weight_decay
    weight_decay_mode weights zero_gamma""".split())


def test_flags_are_generated_from_the_config_schema():
    """One schema: every trainer flag comes from a field of official.config (names unchanged),
    its help carries the field's default, enum fields refuse other values at parse time, and
    ``--set section.field=value`` reaches any field (typed by the field), one builder override,
    and fields without a flag; a bad --set names the key."""
    from absl import flags as absl_flags
    import flags
    from official import train
    flags.define_all()
    assert sorted(flags.FLAG_TO_FIELD) == TRAINER_FLAGS
    fv = absl_flags.FLAGS
    assert "Default: 1024." in fv["batch_size"].help and "Default: 0.4." in fv["base_learning_rate"].help
    assert "Default: 1.0,0.9." in fv["drop_block_keep_prob"].help
    assert "Default" not in fv["teacher"].help  # empty default: the help says what unset means
    argv = train.preprocess_argv(["prog", "--flagfile=smoke", "--set=optimization.ema_decay=0.9999",
                                  "--set", "model.overrides.drop_block=true", "--set=data.eval_split=none",
                                  "--eval_split=val", "--set=regularization.drop_block_keep_prob=1,0.7",
                                  "--set=optimization.train_steps=9", "--set=data.num_train_examples=50"])
    fv.unparse_flags()
    fv(argv)
    try:
        cfg = flags.build_run_config(fv)
    finally:
        fv.unparse_flags()
    assert cfg.optimization.ema_decay == 0.9999 and cfg.optimization.train_steps == 9
    assert cfg.model.overrides["drop_block"] is True and cfg.data.eval_split is None
    assert cfg.regularization.drop_block_keep_prob == [1.0, 0.7] and cfg.data.num_train_examples == 50
    for bad, pattern in [("nope.x=1", "unknown config field 'nope.x'"),
                         ("optimization.batch_size=many", "optimization.batch_size='many'"),
                         ("optimization.nesterov=maybe", "optimization.nesterov='maybe'"),
                         ("optimization.ema_decay", "expected section.field=value")]:
        fv(["prog", f"--set={bad}"])
        try:
            with pytest.raises(ValueError, match=pattern):
                flags.build_run_config(fv)
        finally:
            fv.unparse_flags()
    with pytest.raises(absl_flags.IllegalFlagValueError, match="<host\\|device>"):
        fv(["prog", "--augment_on=gpu"])
    fv.unparse_flags()


def test_enum_fields_set_in_python_are_checked(tmp_path):
    """The same choices guard a config built in Python (or read from JSON): the error names the flag."""
    from official import train
    np.savez(tmp_path / "t.npz", x_train=np.zeros((8, 32, 32, 3), "float32"), y_train=np.arange(8) % 3,
             x_eval=np.zeros((4, 32, 32, 3), "float32"), y_eval=np.arange(4) % 3)
    cfg = tiny_config(tmp_path / "x", f"npz:{tmp_path / 't.npz'}", data__augment_on="gpu",
                      optimization__lr_schedule="linear")
    with pytest.raises(train.ConfigError, match=r"--augment_on='gpu': use one of host, device"):
        train.prepare_config(cfg, backend="jax")
    with pytest.raises(train.ConfigError, match=r"--lr_schedule='linear'"):
        train.prepare_config(cfg, backend="jax")


def test_run_config_stores_the_resolved_network(tmp_path):
    """run_config.json keeps the network the run built, not only the overrides: ResNet-18's
    published stage depths 2-2-2-2 (He et al. 2016, Table 1) with the width override applied; the
    restore path builds from that stored network (a stored width of 16 beats overrides that say 8)."""
    import models
    from official import checkpoints, train
    np.savez(tmp_path / "t.npz", x_train=np.zeros((8, 32, 32, 3), "float32"), y_train=np.arange(8) % 3,
             x_eval=np.zeros((4, 32, 32, 3), "float32"), y_eval=np.arange(4) % 3)
    cfg = train.prepare_config(tiny_config(tmp_path / "x", f"npz:{tmp_path / 't.npz'}",
                                           model__name="resnet18", model__overrides={"width": 8}),
                               backend="jax")
    assert list(cfg.model.network["layers"]) == [2, 2, 2, 2] and cfg.model.network["width"] == 8
    stored = type(cfg).from_json(cfg.to_json())
    assert stored.model.network == cfg.model.network
    stored.model.network = dict(stored.model.network, width=16)
    params = lambda m: sum(int(np.prod(w.shape)) for w in m.weights)  # noqa: E731
    width = {w: params(models.build_model("resnet18", num_classes=3, input_shape=(None, None, 3), width=w))
             for w in (8, 16)}
    assert params(checkpoints.build_model_from_config(stored)) == width[16] != width[8]


def test_every_recipe_parses():
    from absl import flags as absl_flags
    import flags
    from official import train
    flags.define_all()
    names = train.list_recipes()
    assert {"smoke", "finetune_food101"} <= set(names) and all(f"E{i}" in names for i in range(13))
    for name in names:
        absl_flags.FLAGS.unparse_flags()
        absl_flags.FLAGS(train.preprocess_argv(["prog", f"--flagfile={name}"]))
        cfg = flags.build_run_config(absl_flags.FLAGS)
        absl_flags.FLAGS.unparse_flags()
        assert cfg.recipe == name
        if name.startswith("E"):
            assert cfg.model.name == f"table7_e{name[1:]}" and cfg.optimization.batch_size == 1024


# ----------------------------------------------------------------------------- bad inputs
def test_bad_inputs_fail_before_work(imagenette, tmp_path):
    from official import train
    with pytest.raises(train.ConfigError, match="unknown recipe 'E99'.*smoke"):
        train.preprocess_argv(["prog", "--flagfile=E99"])
    cases = [
        (dict(distribution__strategy="tpu"), "needs --tpu"),
        (dict(regularization__distillation="online"), "needs --teacher"),
        (dict(regularization__teacher=str(tmp_path)), "--distillation=online"),
        (dict(regularization__distillation="offline"), "needs teacher logits"),
        (dict(model__name="resnet7"), "unknown model 'resnet7'"),
        (dict(optimization__lr_schedule="piecewise", optimization__piecewise_boundaries=[1.0]), "piecewise_rates"),
        (dict(data__randaugment="2"), "--randaugment='2': expected 'N,M'"),
        (dict(data__randaugment="2,x"), "--randaugment='2,x': expected 'N,M'"),
        (dict(data__randaugment="2,11"), "M in \\[0, 10\\]"),
        (dict(data__randaugment="2,9", data__autoaugment="imagenet"), "either --autoaugment or --randaugment"),
        (dict(data__randaugment_levels="increasing"), "--randaugment_levels=increasing .*needs --randaugment=N,M"),
        (dict(data__randaugment_levels="increasing", data__autoaugment="imagenet"), "needs --randaugment"),
        (dict(data__autoaugment="imagenett"), "--autoaugment='imagenett': unknown policy"),
        (dict(optimization__batch_size=1300, regularization__mixing="mixup",
              regularization__mixing_form="double_batch"), "2 x --batch_size"),
        # Big-Little: the big branch is upsampled 2x onto the little one (sizes: multiples of 32)
        (dict(model__name="table7_e11", model__overrides={"width": 8}, model__image_size=48),
         "--image_size gives 48 px.*multiple of 32"),
        (dict(model__name="table7_e11", model__overrides={"width": 8},
              data__eval_preprocess="imagenet_73"),
         "--eval_preprocess=imagenet_73 gives 73 px.*multiple of 32.*use e.g. 64"),
    ]
    for fields, pattern in cases:
        with pytest.raises(train.ConfigError, match=pattern):
            train.train(tiny_config(tmp_path / "x", imagenette, **fields))
        assert not (tmp_path / "x" / "run_config.json").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(train.ConfigError, match="not writable"):
        train.train(tiny_config(blocker / "run", imagenette))
    with pytest.raises(train.ConfigError, match="cannot be read"):
        train.train(tiny_config(tmp_path / "y", tmp_path / "no_such_data"))


def test_invalid_config_under_jax(tmp_path):
    """prepare_config(backend="jax"): multi-worker/TPU strategies and fp16 are refused; mirrored
    is accepted and implies --sync_bn (BN over the global batch); --sync_bn alone is accepted.
    (This process has one JAX device, so every batch divides; the 2-device divisibility error
    is tested in test_train_distributed.py.)"""
    from official import train
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", x_train=np.zeros((8, 32, 32, 3), "float32"), y_train=rng.integers(0, 3, 8),
             x_eval=np.zeros((4, 32, 32, 3), "float32"), y_eval=rng.integers(0, 3, 4))
    src = f"npz:{tmp_path / 't.npz'}"
    for fields, pattern in [(dict(distribution__strategy="multi_worker_mirrored"), "needs the TensorFlow backend"),
                            (dict(distribution__strategy="tpu", distribution__tpu="x"), "needs the TensorFlow backend"),
                            (dict(optimization__dtype="fp16"), "use bf16")]:
        with pytest.raises(train.ConfigError, match=pattern):
            train.prepare_config(tiny_config(tmp_path / "x", src, **fields), backend="jax")
    cfg = train.prepare_config(tiny_config(tmp_path / "x", src, distribution__strategy="mirrored"), backend="jax")
    assert cfg.distribution.sync_bn is True and cfg.backend == "jax"
    cfg = train.prepare_config(tiny_config(tmp_path / "x", src, distribution__sync_bn=True), backend="jax")
    assert cfg.distribution.strategy == "off" and cfg.distribution.sync_bn is True


def test_cli_unknown_recipe_exits_with_message():
    r = subprocess.run([sys.executable, "-m", "official.train", "--flagfile=E99", "--model_dir=/tmp/x"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown recipe 'E99'" in r.stderr


# ----------------------------------------------------------------------------- distillation
def _write_tfrecords_with_logits(zip_path, out_dir, n, num_classes, rng):
    import tensorflow as tf
    os.makedirs(out_dir, exist_ok=True)
    z = zipfile.ZipFile(zip_path)
    names = sorted(m for m in z.namelist() if not m.endswith("/"))
    folders = sorted({m.split("/")[1] for m in names})
    chosen = [names[i] for i in rng.choice(len(names), n, replace=False)]
    logits = rng.normal(size=(n, num_classes)).astype("float32") * 3
    for split in ("train", "validation"):
        with tf.io.TFRecordWriter(os.path.join(out_dir, f"{split}-00000-of-00001")) as w:
            for m, lg in zip(chosen, logits):
                feat = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[z.read(m)])),
                        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(
                            value=[folders.index(m.split("/")[1])])),
                        "image/logit": tf.train.Feature(float_list=tf.train.FloatList(value=lg))}
                w.write(tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString())
    return logits


def test_offline_distillation_loss_from_tfrecord_logits(imagenette, tmp_path):
    import data
    import models
    from official import train
    from official.train_backends import loss_terms
    rng = np.random.default_rng(1)
    _write_tfrecords_with_logits(imagenette / "val.zip", tmp_path / "tfr", 16, 10, rng)
    cfg = tiny_config(tmp_path / "run", tmp_path / "tfr", model__num_classes=10,
                      regularization__distillation="offline", regularization__distillation_temperature=2.0,
                      regularization__distillation_weight=0.7, regularization__label_smoothing=0.1)
    cfg = train.prepare_config(cfg)
    ds = data.build_dataset(str(tmp_path / "tfr"), "train", training=True, batch_size=4, image_size=32,
                            num_classes=10, teacher_logits=True, seed=0)
    images, labels = next(iter(ds))
    model = models.build_model(cfg.model.name, 10, (32, 32, 3), **cfg.model.overrides)
    t = loss_terms(cfg, model, images, labels["label"], labels["teacher_logits"], training=False)
    logits, teacher = np.asarray(t["logits"]), labels["teacher_logits"].numpy()
    soft = np.eye(10)[labels["label"].numpy()] * 0.9 + 0.01
    ce = -(soft * _np_log_softmax(logits)).sum(-1)
    p = np.exp(_np_log_softmax(teacher / 2.0))
    kd = 4.0 * -(p * _np_log_softmax(logits / 2.0)).sum(-1)
    np.testing.assert_allclose(np.asarray(t["per_example"]), ce + 0.7 * kd, rtol=1e-4)
    assert kd.mean() > 0.1  # the term is really there
    # and the trainer runs on that input end to end
    r = train.train(cfg)
    assert r["finished"] and r["step"] == 2


def test_online_distillation_uses_teacher_on_same_view(imagenette, trained_run, tmp_path):
    import data
    import models
    from official import checkpoints, train
    from official.train_backends import loss_terms
    cfg = train.prepare_config(tiny_config(tmp_path / "run", imagenette, regularization__distillation="online",
                                           regularization__teacher=str(trained_run),
                                           regularization__distillation_temperature=3.0))
    teacher = train.load_teacher(str(trained_run))
    ds = data.build_dataset(str(imagenette), "train", training=True, batch_size=4, image_size=32, seed=0)
    images, labels = next(iter(ds))
    model = models.build_model(cfg.model.name, 10, (32, 32, 3), **cfg.model.overrides)
    t = loss_terms(cfg, model, images, labels, None, teacher, training=False)
    ref_teacher, _ = checkpoints.restore_model(str(trained_run), "best")
    tl = np.asarray(ref_teacher(images, training=False))
    np.testing.assert_allclose(np.asarray(t["teacher_logits"]), tl, rtol=1e-4, atol=1e-5)
    logits = np.asarray(t["logits"])
    ce = -(np.eye(10)[labels.numpy()] * _np_log_softmax(logits)).sum(-1)
    p = np.exp(_np_log_softmax(tl / 3.0))
    kd = 9.0 * -(p * _np_log_softmax(logits / 3.0)).sum(-1)
    np.testing.assert_allclose(np.asarray(t["per_example"]), ce + kd, rtol=1e-4)


# ----------------------------------------------------------------------------- fine-tuning
def test_fine_tuning_restores_every_non_head_variable(trained_run, tmp_path):
    import models
    from official import checkpoints
    from official.config import RunConfig
    src, src_cfg = checkpoints.restore_model(str(trained_run))
    bn = [w for w in src.weights if w.path.endswith("moving_mean")]
    assert bn and any(np.abs(np.asarray(w.value)).max() > 0 for w in bn)  # stats really moved
    cfg = RunConfig.from_dict(src_cfg.to_dict())
    cfg.model.num_classes = 5
    target = checkpoints.build_model_from_config(cfg)
    fresh_head = [np.asarray(w.value).copy() for w in target.weights if w.path.startswith("logits/")]
    for source in (str(trained_run), os.path.join(checkpoints.checkpoint_path(str(trained_run)), "model.weights.h5")):
        copied = checkpoints.warm_start(target, source, cfg)
        src_w = {w.path: np.asarray(w.value) for w in src.weights}
        non_head = [w for w in target.weights if not w.path.startswith("logits/")]
        assert len(copied) == len(non_head) and any("moving_variance" in p for p in copied)
        for w in non_head:
            np.testing.assert_array_equal(np.asarray(w.value), src_w[w.path])
        head = [np.asarray(w.value) for w in target.weights if w.path.startswith("logits/")]
        for a, b in zip(head, fresh_head):
            np.testing.assert_array_equal(a, b)
    other = models.build_model("resnet18", 5, (32, 32, 3), width=16, layers=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="another architecture; mismatched variables:(.|\n)*shape mismatch"):
        checkpoints.warm_start(other, str(trained_run), cfg)


def test_fine_tuning_run_via_init_checkpoint(imagenette, trained_run, tmp_path):
    from official import checkpoints, train
    cfg = tiny_config(tmp_path / "ft", imagenette, runtime__init_checkpoint=str(trained_run),
                      optimization__train_steps=1, optimization__base_learning_rate=0.0)
    train.train(cfg)
    a, _ = checkpoints.restore_model(str(trained_run))
    b, _ = checkpoints.restore_model(str(tmp_path / "ft"))
    src = {w.path: np.asarray(w.value) for w in a.weights}
    for w in b.weights:  # lr 0: the weights are the warm start; BN stats moved one step
        if "moving" not in w.path and not w.path.startswith("logits/"):
            np.testing.assert_allclose(np.asarray(w.value), src[w.path], atol=1e-6)


# ----------------------------------------------------------------------------- failures
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(imagenette, tmp_path):
    from official import checkpoints, train
    cfg = tiny_config(tmp_path / "nan", imagenette, optimization__train_steps=6,
                      optimization__base_learning_rate=1e12, runtime__checkpoint_every_steps=1)
    with pytest.raises(train.NonFiniteLoss, match="non-finite"):
        train.train(cfg)
    latest = checkpoints.checkpoint_path(str(tmp_path / "nan"))
    if latest is not None:
        model, _ = checkpoints.restore_model(str(tmp_path / "nan"))
        assert all(np.isfinite(np.asarray(w.value)).all() for w in model.weights)


def test_sigterm_saves_checkpoint_and_exits_cleanly(imagenette, tmp_path):
    import signal
    import threading
    import time
    from official import checkpoints, train
    d = tmp_path / "term"
    cfg = tiny_config(d, imagenette, optimization__train_steps=10_000, runtime__checkpoint_every_steps=10_000,
                      runtime__eval_steps=0)

    def killer():  # SIGTERM once training has started (the train log has a first scalar)
        deadline = time.time() + 120
        while time.time() < deadline and not list((d / "train").glob("events*")):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=killer, daemon=True).start()
    r = train.train(cfg)
    assert r["sigterm"] and not r["finished"] and 0 < r["step"] < 10_000
    state = checkpoints.read_state(checkpoints.checkpoint_path(str(d)))
    assert state["step"] == r["step"] and state["data_position"] == r["step"]


@pytest.mark.parametrize("method,form", [("mixup", "double_batch"), ("cutmix", "reverse")])
def test_mixing_in_the_train_step(imagenette, tmp_path, method, form):
    """mix_batch runs inside the step; its seed-generator state is checkpointed for resumption."""
    from official import checkpoints, train
    cfg = tiny_config(tmp_path / method, imagenette, regularization__mixing=method,
                      regularization__mixing_form=form, regularization__label_smoothing=0.1,
                      runtime__eval_steps=0)
    r = train.train(cfg)
    assert r["finished"]
    state = checkpoints.read_state(checkpoints.checkpoint_path(str(tmp_path / method)))
    assert state["mix_seed_state"] is not None and state["mix_seed_state"] != [cfg.runtime.seed + 1, 0]


def test_randaugment_flag_text_reaches_the_pipeline_parsed(imagenette, tmp_path, monkeypatch):
    """--randaugment=2,9 (the flag's text, as stored in run_config.json) trains with RandAugment
    N=2, M=9 (it reached build_dataset as the string '2,9' and failed there)."""
    import data
    from official import train
    real, seen = data.build_dataset, []

    def spy(source, split, spec=None, **kw):
        if spec.training:
            seen.append(spec.randaugment)
        return real(source, split, spec, **kw)
    monkeypatch.setattr(data, "build_dataset", spy)
    r = train.train(tiny_config(tmp_path / "ra", imagenette, data__randaugment="2,9",
                                optimization__train_steps=1))
    assert r["finished"] and seen == [(2, 9.0)]


def test_evaluation_at_another_size_than_training(imagenette, tmp_path):
    """E9-E12 train at 224 and evaluate at 256 (Table 7): the trained network takes any input
    size in the trainer's evaluation and after restore (a model built for the training size
    rejected the evaluation batches)."""
    from official import checkpoints, train
    r = train.train(tiny_config(tmp_path / "r", imagenette, data__eval_preprocess="imagenet_64",
                                runtime__eval_steps=1))
    assert r["finished"] and r["eval_top1"] is not None          # evaluated on 64 px crops
    model, cfg = checkpoints.restore_model(str(tmp_path / "r"))
    assert cfg.model.image_size == 32
    for size in (32, 64, 96):
        assert tuple(model(np.zeros((1, size, size, 3), "float32")).shape) == (1, 10)


def test_double_batch_reads_two_batches_per_step(imagenette, tmp_path, monkeypatch):
    """--mixing_form=double_batch (the paper's mixup_type=1): each step reads 2B images and
    trains on B mixed samples, and an epoch is N // B steps, as the original
    (functions/input_fns.py doubles the batch it reads and the epochs of its input)."""
    import data
    from official import train
    real, seen = data.build_dataset, []

    def spy(source, split, spec=None, **kw):
        if spec.training:
            seen.append(spec.batch_size)
        return real(source, split, spec, **kw)
    monkeypatch.setattr(data, "build_dataset", spy)
    cfg = tiny_config(tmp_path / "db", imagenette, regularization__mixing="mixup",
                      regularization__mixing_form="double_batch", optimization__batch_size=6,
                      optimization__train_steps=None, optimization__epochs=0.01)
    r = train.train(cfg)
    assert seen == [12]                                        # 2B images read per step
    assert r["samples_per_step"] == 6 and r["images_per_step"] == 12
    assert r["total_steps"] == round(0.01 * (2500 // 6))      # epochs count N // B steps


def test_input_spec_of_a_run():
    """RunConfig.input_spec is what the trainer reads: host augmentation and normalization for
    training on the host; with --augment_on=device the host yields raw 0..255 pixels and no
    AutoAugment (the step does both); evaluation never augments and is normalized; offline
    distillation asks for teacher logits in training only; the training batch is the images a
    step reads (2B with double_batch mixing, the paper's mixup_type=1)."""
    from official.config import RunConfig
    cfg = RunConfig()
    cfg.model.image_size, cfg.model.num_classes = 64, 10
    cfg.data.autoaugment, cfg.optimization.batch_size = "imagenet", 8
    cfg.regularization.distillation = "offline"
    cfg.regularization.mixing, cfg.regularization.mixing_form = "mixup", "double_batch"
    t, e = cfg.input_spec(True), cfg.input_spec(False)
    assert (t.autoaugment, t.normalization, t.teacher_logits, t.batch_size) == (
        "imagenet", "mean", True, 16)
    assert (e.autoaugment, e.normalization, e.teacher_logits, e.batch_size) == (
        None, "mean", False, 8)
    assert (t.image_size, t.num_classes, e.output_size) == (64, 10, 64)
    cfg.data.augment_on, cfg.data.eval_batch_size = "device", 50
    t, e = cfg.input_spec(True), cfg.input_spec(False)
    assert (t.autoaugment, t.normalization) == (None, "none")
    assert (e.normalization, e.batch_size) == ("mean", 50)


# ----------------------------------------------------------------------------- precision, EMA
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_mixed_precision_trains_with_float32_variables(imagenette, tmp_path, dtype):
    """--dtype=fp16|bf16: the step runs (fp16 through dynamic loss scaling), the loss stays
    finite, variables and saved weights stay float32 and the logits come out float32."""
    import keras
    from official import checkpoints, train
    d = tmp_path / dtype
    r = train.train(tiny_config(d, imagenette, optimization__dtype=dtype,
                                optimization__fp16_without_gpu="fp16"))
    assert r["finished"] and np.isfinite(r["train_loss"])
    assert keras.config.dtype_policy().name == "float32"  # the run restores the global policy
    from official import evaluate
    model, cfg, _ = evaluate.restore(str(d), "latest", dtype)  # rebuilt under the run's policy
    assert cfg.optimization.dtype == dtype
    assert model.compute_dtype == {"fp16": "float16", "bf16": "bfloat16"}[dtype]
    assert all(str(w.dtype) == "float32" for w in model.weights)
    logits = model(np.zeros((1, 32, 32, 3), "float32"), training=False)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert keras.config.dtype_policy().name == "float32"


def test_fp16_without_gpu_trains_in_fp32_and_records_it(imagenette, tmp_path):
    """The recipes' --dtype=fp16 on a machine with no GPU (this one) trains in fp32 by default
    (float16 has no fast CPU kernels) and run_config.json says so; fp16 is kept on request
    (the test above)."""
    import json
    import tensorflow as tf
    from official import train
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: fp16 stays fp16 here")
    d = tmp_path / "fp16"
    r = train.train(tiny_config(d, imagenette, optimization__dtype="fp16"))
    assert r["finished"]
    assert json.load(open(d / "run_config.json"))["optimization"]["dtype"] == "fp32"


def test_weight_ema_follows_its_update_rule_across_a_resume(imagenette, tmp_path):
    """ema_{t+1} = d * ema_t + (1 - d) * w_{t+1} for every trainable weight, checked between
    the checkpoints of step 1 and step 2 (the second written by a resumed run)."""
    from official import checkpoints, train
    d, decay = tmp_path / "ema", 0.75
    train.train(tiny_config(d, imagenette, optimization__train_steps=1,
                            optimization__ema_decay=decay))
    w1, _ = checkpoints.restore_model(str(d))
    e1, _ = checkpoints.restore_model(str(d), ema=True)
    train.train(tiny_config(d, imagenette, optimization__train_steps=2,
                            optimization__ema_decay=decay))
    w2, _ = checkpoints.restore_model(str(d))
    e2, _ = checkpoints.restore_model(str(d), ema=True)
    pairs = list(zip(w2.trainable_weights, e1.trainable_weights, e2.trainable_weights))
    assert pairs and any(not np.allclose(np.asarray(a.value), np.asarray(b.value))
                         for a, b in zip(w1.trainable_weights, w2.trainable_weights))
    for w, ema1, ema2 in pairs:
        expected = decay * np.asarray(ema1.value) + (1 - decay) * np.asarray(w.value)
        np.testing.assert_allclose(np.asarray(ema2.value), expected, rtol=1e-5, atol=1e-6,
                                   err_msg=w.path)


# ----------------------------------------------------------------------------- summaries
def test_tensorboard_events_without_tensorflow_read_back_by_tensorflow(tmp_path):
    """official.summaries writes the scalars both backends log; TensorFlow's own reader (which
    checks the TFRecord CRCs) reads them back: file version, steps (also beyond 2**32), tags,
    float32 values, the scalars plugin. CRC-32C of "123456789" is 0xE3069283 (RFC 3720, B.4)."""
    import tensorflow as tf
    from official import summaries
    assert summaries.crc32c(b"123456789") == 0xE3069283
    w = summaries.ScalarWriter(str(tmp_path / "train"))
    w.scalars({"loss": 2.5, "top1": 0.125}, 3)
    w.scalars({"loss": -1e-3}, 2 ** 40)
    w.close()
    summaries.ScalarWriter(str(tmp_path / "off"), enabled=False).scalars({"loss": 1.0}, 1)
    assert not (tmp_path / "off").exists()
    (path,) = (tmp_path / "train").glob("events.out.tfevents.*")
    events = list(tf.compat.v1.train.summary_iterator(str(path)))
    assert events[0].file_version == "brain.Event:2"
    got = [(e.step, v.tag, float(tf.make_ndarray(v.tensor)), v.metadata.plugin_data.plugin_name)
           for e in events[1:] for v in e.summary.value]
    assert got == [(3, "loss", 2.5, "scalars"), (3, "top1", 0.125, "scalars"),
                   (2 ** 40, "loss", float(np.float32(-1e-3)), "scalars")]
