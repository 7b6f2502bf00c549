"""Training learns, and each optimizer flag changes the update as documented (issue 12, part 3).

* ``test_update_matches_hand_computation``: the trainer's TensorFlow step
  (``official.train.make_optimizer`` + ``TFBackend.make_train_step``, as ``train.train`` builds
  them) runs 3 steps on a fixed batch; after every step its weights are compared with a
  reference trajectory computed here from the documented formulas (docs/TRAINING.md "Loss",
  Keras' SGD): gradients of ``mean over the GLOBAL batch of CE(smoothed one-hot, logits)``
  taken with ``tf.GradientTape`` on a second copy of the network, the learning rate of the
  warm-up + cosine schedule written out by hand, the weight decay applied to kernels and
  biases only (never to batch norm's gamma / beta), the momentum buffer kept in NumPy. Each
  flag is also checked to change the update: the trainer's weights are far from the
  reference of the other choice (l2-loss vs decoupled decay, plain vs Nesterov momentum).
  ``--jit_compile`` gives the same weights within float tolerance, and its step's graph calls
  the replica step with ``_XlaMustCompile`` (without the flag, nothing does). Each of these
  was checked to fail on a scratch copy with: a sum instead of a mean over the batch, l2
  decay never applied / also applied in decoupled mode / applied to BN, decoupled decay
  dropped / applied to BN, Nesterov or momentum ignored, the jit path not taken, the LR
  stuck at 0, the warm-up off by one step.
* ``test_smoke_recipe_learns_on_real_images``: the real entry point (``python -m
  official.train --flagfile=smoke``) on imagenette2-224, scaled down; eval top-1 above a floor
  set from measured runs, and the logged training loss falls.
"""
import inspect
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, require_data

# A small network (kernels, biases, batch norm; ~1k weights): its step traces and compiles fast.
SIZE, CLASSES = 8, 10
BATCH, BASE_LR, MOMENTUM, WD, LS = 8, 0.1, 0.9, 0.1, 0.1  # WD large so that decay is visible
# warm-up 1 step, then cosine to 0 at step 4: lr(0) = 0 (warm-up from 0), lr(1) = BASE_LR,
# lr(2) = BASE_LR * (1 + cos(pi / 3)) / 2 = 0.75 BASE_LR (hand-computed, not read from the code)
LRS = [0.0, BASE_LR, 0.75 * BASE_LR]
TOTAL_STEPS, STEPS_PER_EPOCH = 4, 1
TOL = 1e-4  # relative to each tensor's largest weight; observed ~1e-6 (float32 round-off)


def _config(mode, nesterov, jit):
    from official.config import RunConfig
    cfg = RunConfig(recipe="test")
    cfg.model.image_size, cfg.model.num_classes = SIZE, CLASSES
    o = cfg.optimization
    o.batch_size, o.base_learning_rate, o.momentum, o.nesterov = BATCH, BASE_LR, MOMENTUM, nesterov
    o.lr_schedule, o.warmup_epochs, o.train_steps = "cosine", 1.0, TOTAL_STEPS
    o.weight_decay, o.weight_decay_mode, o.jit_compile = WD, mode, jit
    cfg.regularization.label_smoothing = LS
    return cfg


def _build_net():
    import keras
    x = inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, strides=2, name="conv1")(x)           # kernel + bias
    x = keras.layers.Activation("relu")(keras.layers.BatchNormalization(name="bn1")(x))
    x = keras.layers.Conv2D(8, 3, use_bias=False, name="conv2")(x)
    x = keras.layers.Activation("relu")(keras.layers.BatchNormalization(name="bn2")(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(x))


def _fixed_batch():
    rng = np.random.default_rng(12)
    images = rng.normal(size=(BATCH, SIZE, SIZE, 3)).astype("float32")
    labels = np.array([0, 3, 7, 1, 9, 3, 5, 2], "int64")
    return images, labels


def _is_bn(path):
    return path.endswith("/gamma") or path.endswith("/beta")  # keras BatchNormalization weights


def _reference_trajectory(model, w0, images, labels, mode, nesterov):
    """The documented update, step by step, from the starting weights ``w0``."""
    import tensorflow as tf
    variables = model.trainable_variables
    for v, w in zip(variables, w0):
        v.assign(w)
    targets = np.eye(CLASSES, dtype="float32")[labels] * (1 - LS) + LS / CLASSES
    decay = [not _is_bn(v.path) for v in variables]
    w = [x.astype("float64") for x in w0]
    vel = [np.zeros_like(x) for x in w]
    out, losses = [], []
    for lr in LRS:
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = -tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=-1), axis=-1)
            loss = tf.reduce_sum(per_example) / BATCH  # mean over the global batch
        grads = [g.numpy().astype("float64") for g in tape.gradient(loss, variables)]
        l2 = sum(float(np.sum(x ** 2)) / 2 for x, d in zip(w, decay) if d)
        losses.append(float(loss) + (WD * l2 if mode == "l2_loss" else 0.0))
        for i, g in enumerate(grads):
            if mode == "l2_loss" and decay[i]:   # d/dw of wd * sum(w^2) / 2
                g = g + WD * w[i]
            if mode == "decoupled" and decay[i]:  # keras: w -= lr * wd * w, then the SGD update
                w[i] = w[i] - lr * WD * w[i]
            vel[i] = MOMENTUM * vel[i] - lr * g
            w[i] = w[i] + (MOMENTUM * vel[i] - lr * g if nesterov else vel[i])
        for v, x in zip(variables, w):
            v.assign(x.astype("float32"))
        out.append([x.copy() for x in w])
    return out, losses


def _max_rel_err(actual, expected):
    """max over the weight tensors of max|a - e| / max(max|e|, 1e-2) (float32 round-off: ~1e-6)."""
    return max(float(np.max(np.abs(a - e)) / max(float(np.max(np.abs(e))), 1e-2))
               for a, e in zip(actual, expected))


@pytest.mark.parametrize("mode,nesterov,jit", [("l2_loss", False, False), ("decoupled", False, False),
                                               ("l2_loss", True, False), ("l2_loss", False, True)],
                         ids=["l2_loss", "decoupled", "nesterov", "jit_compile"])
def test_update_matches_hand_computation(mode, nesterov, jit):
    import keras
    import tensorflow as tf
    from official import train
    from official.train_backends import TFBackend
    cfg = _config(mode, nesterov, jit)
    keras.utils.set_random_seed(3)
    backend = TFBackend(cfg)
    with backend.scope():
        model = _build_net()
        optimizer, _ = train.make_optimizer(cfg, model, STEPS_PER_EPOCH, TOTAL_STEPS)
        optimizer.build(model.trainable_variables)
    step_fn = backend.make_train_step(model, optimizer)
    images, labels = _fixed_batch()
    batches = iter(backend.strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors((images, labels)).repeat()))
    w0 = [np.array(v.numpy()) for v in model.trainable_variables]
    paths = [v.path for v in model.trainable_variables]
    assert any(_is_bn(p) for p in paths) and any(not _is_bn(p) for p in paths)
    actual, logged = [], []
    for i in range(len(LRS)):
        logged.append(step_fn(batches, i)["loss"])
        actual.append([np.array(v.numpy(), "float64") for v in model.trainable_variables])

    reference = _build_net()
    expected, losses = _reference_trajectory(reference, w0, images, labels, mode, nesterov)
    # the logged loss: mean CE over the batch (+ wd * sum(w^2)/2 over non-BN weights for l2_loss)
    np.testing.assert_allclose(logged, losses, rtol=1e-5)
    for i in range(len(LRS)):
        err = _max_rel_err(actual[i], expected[i])
        assert err < TOL, f"step {i} (lr {LRS[i]}): trainer vs documented update, max rel. error {err:.2e}"
    # warm-up starts from 0: step 0 leaves the weights; after it the LR is not 0
    assert all(np.array_equal(a, w.astype("float64")) for a, w in zip(actual[0], w0))
    moved = _max_rel_err(actual[1], [w.astype("float64") for w in w0])
    assert moved > 1e-3, f"the weights hardly moved at LR {LRS[1]} ({moved:.1e})"

    # the flag changes the update: the other choice's reference is far from what the trainer did
    other_mode = "decoupled" if mode == "l2_loss" else "l2_loss"
    others = [(other_mode, nesterov), (mode, not nesterov)]
    for o_mode, o_nesterov in others:
        alt, _ = _reference_trajectory(reference, w0, images, labels, o_mode, o_nesterov)
        err = _max_rel_err(actual[2], alt[2])
        assert err > 30 * TOL, f"{mode}/nesterov={nesterov} is indistinguishable from " \
                                f"{o_mode}/nesterov={o_nesterov} ({err:.1e})"

    # --jit_compile: the replica step is XLA-compiled (a call with _XlaMustCompile in the step's
    # graph; TensorFlow then compiles it or fails), and only then
    dist_step = inspect.getclosurevars(step_fn).nonlocals["dist_step"]
    graph = dist_step.get_concrete_function(batches, tf.constant(0, tf.int64)).graph
    must_compile = [op.name for op in graph.get_operations()
                    if "_XlaMustCompile" in op.node_def.attr and op.node_def.attr["_XlaMustCompile"].b]
    assert bool(must_compile) == jit, must_compile


# ----------------------------------------------------------------------------- learning
# Measured 2026-12-04 (docs/results/learning_floor_2026-12-04_cpu.json; 2-core AMD EPYC VM,
# TF 2.21, load ~6-8 from other jobs): this test's command with --seed=--data_seed=0, 1, 2
# reached eval top-1 40.1 %, 42.0 %, 39.1 % (top-5 86.5 / 86.5 / 86.0 %); mean loss of the
# first 20 steps 2.567 / 2.567 / 2.572, of the last 20 steps 1.962 / 1.989 / 1.993 (drops
# 0.60 / 0.58 / 0.58); 65-76 s per run under that load.
LEARN_EPOCHS = 4
TOP1_FLOOR = 0.29          # worst measured 0.391 minus 10 points; chance is 0.10
LOSS_DROP = 0.3            # about half the measured drop of the 20-step mean loss
WINDOW = 20


def _scalars(event_dir, tag):
    import tensorflow as tf
    values = {}
    for path in sorted(pathlib.Path(event_dir).glob("events*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                if v.tag == tag:
                    values[event.step] = float(tf.make_ndarray(v.tensor))
    return [values[k] for k in sorted(values)], sorted(values)


def test_smoke_recipe_learns_on_real_images(tmp_path):
    """The smoke recipe through the real entry point, scaled to 4 epochs (312 steps of 32
    images at 64 px) on imagenette2-224's 2,500 training images, evaluated on its 1,000 val
    images: eval top-1 >= TOP1_FLOOR (chance 0.10), and the training loss logged at every step
    falls (mean of the last 20 steps below the mean of the first 20 by LOSS_DROP, and below
    ln(10), the loss of a uniform prediction). A learning rate stuck at 0, or a loss summed
    over the batch (32x the step), does not get there."""
    data = require_data("imagenette2-224")
    run = tmp_path / "smoke"
    cmd = [sys.executable, "-m", "official.train", "--flagfile=smoke", f"--data={data}",
           f"--model_dir={run}", f"--epochs={LEARN_EPOCHS}", "--seed=0", "--data_seed=0",
           "--log_every_steps=1", "--progress_bar=false"]
    r = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    results = json.loads((run / "results.json").read_text())
    assert results["finished"] and results["step"] == LEARN_EPOCHS * (2500 // 32)
    losses, steps = _scalars(run / "train", "loss")
    assert steps == list(range(1, results["step"] + 1))  # one logged loss per step
    first, last = np.mean(losses[:WINDOW]), np.mean(losses[-WINDOW:])
    assert last < first - LOSS_DROP and last < math.log(10) - 0.1, (first, last)
    assert results["eval_top1"] >= TOP1_FLOOR, results
