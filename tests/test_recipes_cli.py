"""Every packaged recipe runs as a user runs it (issue 12).

Each file in ``official/configs/`` (E0-E12, the fine-tuning recipe, smoke, and the three
ablation files, composed as ``benchmarks/mini_ablation.py`` composes them) goes through the
real programs, in subprocesses:

1. ``python -m official.train --flagfile=<recipe> ...``: 2 steps and an evaluation at the
   recipe's own evaluation preprocessing (E9-E12: 256 px crops, the others the training size);
   for the recipes in ``RESUMED`` in two invocations, the first with ``--stop_after_steps=1``
   (a checkpoint), the second resuming at step 1,
3. ``python -m official.evaluate`` and ``python -m official.export`` on the run. These two
   read only the network and the evaluation settings of a run (model, its overrides,
   evaluation preprocessing, normalization, size, dtype), so they run once per distinct such
   setting, on the first recipe that has it (13 of the 18 runs); the others (E2, E3 = E1's
   network and evaluation; E7, E8 = E6's; E11 = E10's) share that run's result.
   This keeps the file inside the suite's time budget (issue 12: make test under 20 minutes
   on 2 cores).

The general fine-tuning recipe (``finetune``) runs as a user runs it on their own photos: on a
flat class-folder tree (the same 60 images under folders named after the classes, no split
folders), warm-started from E1's run with ``--weights`` (the same network, ResNet-50-D); its
run holds out 1 image per class (``--val_fraction`` 0.1 of 6, rounded, at least 1), and
``official.evaluate`` reads the run's held-out split from the folder. Checked as well: after its first step (LR 0
at the start of the warm-up) every trainable non-head weight equals E1's.

Offline distillation (E7-E12) reads TFRecords whose teacher logits ``data.build_tfrecords``
wrote from a teacher this test trains and exports itself (the smoke recipe's run). The
online-distillation ablation row uses the ablation E0 run as its teacher, as the ablation
script does, and ``mini_jax_gpu`` runs under ``KERAS_BACKEND=jax`` on ``npz:`` input.

Only the scale is shrunk: 2 steps, batch 4, 64 px (the ablation files keep their 32 px),
width 8, and the depth (one block per stage; Big-Little networks two in stages 1-3, the
fewest they allow). Every tweak, regularizer, schedule, precision and evaluation setting of
the recipe stays as written; the full-depth networks are built, saved and run in
``tests/test_models.py``. Real images: 4 training and 2 validation images per class of
``imagenette2-224``. Two programs run at a time (the CI machine has two cores).

Checked for each recipe: the training invocation(s) and the two programs exit 0; the run
finished (a resumed recipe's second invocation started from the first's checkpoint); every flag the recipe file sets
(other than the shrunk ones) is in the run's ``run_config.json`` with the file's value; the
trainer's evaluation batches had the recipe's evaluation size; a ``double_batch`` recipe read
2B images per step for B samples; distillation recipes have a non-zero distillation term and
the others none; the evaluation program reports top-1, and the export's crop is the recipe's.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from conftest import REPO_ROOT, require_data, write_npz

CONFIGS = REPO_ROOT / "official" / "configs"
PAPER_ROWS = [f"E{i}" for i in range(13)]
IMAGE_SIZE = 64
BATCH = 4
TIMEOUT = 900
# flags this test sets itself (scale, paths, speed of the test): not compared with the recipe
SCALE_FLAGS = {"train_steps", "batch_size", "image_size", "model_overrides", "eval_steps",
               "eval_batch_size", "progress_bar", "log_every_steps", "data", "model_dir",
               "teacher", "init_checkpoint", "weights", "recipe"}


# ----------------------------------------------------------------------------- recipes
def _gpu_visible(recipe):
    """Whether the recipe's TensorFlow run saw a GPU or TPU (then --dtype=fp16 stays fp16)."""
    if recipe.env.get("KERAS_BACKEND") == "jax":
        return True  # the JAX path refuses fp16 outright; nothing is converted there
    import tensorflow as tf
    return bool(tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"))


def _flagfile_values(path):
    """``{flag: text value}`` of a flag file, in file order (later lines win, as absl)."""
    out = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("--") and "=" in line:
            k, v = line[2:].split("=", 1)
            out[k] = v
    return out


def _text_value(text):
    """A flag file value as the type it denotes, parsed here independently of ``flags``."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if text == "":
        return ""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        try:
            return [float(v) for v in text.split(",")]
        except ValueError:
            return text
    return text


def _same(expected, actual):
    if isinstance(expected, (int, float)) and not isinstance(expected, bool) and actual is not None:
        return math.isclose(float(expected), float(actual), rel_tol=1e-9)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(_same(a, b) for a, b in zip(expected, actual))
    if expected == "" and actual is None:   # an empty string flag means "none"
        return True
    return expected == actual


class Recipe:
    def __init__(self, name, flagfiles, big_little, data="subset", deps=(), extra=(), env=None,
                 teacher=None, init_from=None, warm_flag="init_checkpoint"):
        self.name, self.flagfiles, self.big_little = name, flagfiles, big_little
        self.data, self.deps, self.extra, self.env = data, list(deps), list(extra), env or {}
        self.teacher, self.init_from, self.warm_flag = teacher, init_from, warm_flag
        values = {}
        for f in flagfiles:
            values.update(_flagfile_values(f))
        self.values = values

    @property
    def image_size(self):
        return int(self.values["image_size"]) if "image_size" in self.values and \
            int(self.values["image_size"]) < IMAGE_SIZE else IMAGE_SIZE

    def model_overrides(self):
        o = json.loads(self.values.get("model_overrides", "{}"))
        o.update(width=8, layers=[2, 2, 2, 1] if self.big_little else [1, 1, 1, 1])
        return o

    def evaluation_key(self):
        """What official.evaluate / official.export read of a run: the network (as its typed
        config), evaluation preprocessing, normalization, size and dtype."""
        import dataclasses
        import models
        overrides = self.model_overrides()
        if self.values.get("zero_gamma") == "true":
            overrides["zero_gamma"] = True
        net = dataclasses.asdict(models.get_model_config(self.values["model"], **overrides))
        return json.dumps([net, self.values.get("eval_preprocess", "imagenet"),
                           self.values.get("normalization", "mean"), self.image_size,
                           self.values.get("dtype", "fp32")], sort_keys=True, default=str)


def _recipes():
    abl = CONFIGS / "ablation"
    r = []
    for row in PAPER_ROWS:
        k = int(row[1:])
        offline = 7 <= k
        r.append(Recipe(row, [CONFIGS / f"{row}.cfg"], big_little=k >= 9,
                        data="tfrecords" if offline else "subset",
                        deps=["tfrecords"] if offline else []))
    r.append(Recipe("smoke", [CONFIGS / "smoke.cfg"], big_little=False))
    r.append(Recipe("finetune", [CONFIGS / "finetune.cfg"], big_little=False, data="flat",
                    deps=["E1/train2"], init_from="E1", warm_flag="weights"))
    r.append(Recipe("finetune_food101", [CONFIGS / "finetune_food101.cfg"], big_little=True,
                    deps=["E11/train2"], init_from="E11"))
    r.append(Recipe("mini_cifar", [CONFIGS / "E0.cfg", abl / "mini_cifar.cfg"], big_little=False))
    r.append(Recipe("mini_E11", [CONFIGS / "E11.cfg", abl / "mini_cifar.cfg", abl / "mini_E11.cfg"],
                    big_little=True, deps=["mini_cifar/train2"], teacher="mini_cifar"))
    r.append(Recipe("mini_jax_gpu", [CONFIGS / "E11.cfg", abl / "mini_cifar.cfg", abl / "mini_E11.cfg",
                                     abl / "mini_jax_gpu.cfg"],
                    big_little=True, data="npz", deps=["mini_cifar/train2"], teacher="mini_cifar",
                    env={"KERAS_BACKEND": "jax"}))
    # benchmarks/imagewoof_ablation.py composes every row with it; E11 is the demanding one
    # (Big-Little evaluated at the training size, offline KD from TFRecords, AutoAugment).
    r.append(Recipe("imagewoof_cpu", [CONFIGS / "E11.cfg", abl / "imagewoof_cpu.cfg"],
                    big_little=True, data="tfrecords", deps=["tfrecords"]))
    return r


RECIPES = {r.name: r for r in _recipes()}
PRIORITY = ["smoke", "mini_cifar", "mini_jax_gpu", "mini_E11", "E11", "E12", "E9", "E10",
            "finetune_food101", "E1", "finetune"]
FLAT_VAL = 10   # finetune's held-out split: 1 of the 6 images of each of the 10 classes
# Recipes whose run stops after step 1 and resumes in a second invocation: E12 (every
# TensorFlow-path feature that carries state across a resume: mixup's seed, DropBlock's
# keep-prob, offline KD, AutoAugment, Big-Little), mini_jax_gpu (the JAX path), finetune (a
# warm-started run resumes from its own checkpoint, not from the warm-start weights) and E1
# (its step-1 checkpoint is the finetune test's reference). The other recipes train both
# steps in one invocation (a second process each would double the file's time).
RESUMED = {"E1", "E12", "mini_jax_gpu", "finetune"}


def test_every_packaged_recipe_is_covered():
    """A recipe added to official/configs/ must be added here too."""
    files = {p.stem for p in CONFIGS.glob("*.cfg")} | {p.stem for p in (CONFIGS / "ablation").glob("*.cfg")}
    covered = set()
    for r in RECIPES.values():
        covered |= {p.stem for p in r.flagfiles}
    assert files == covered, f"recipes not exercised: {sorted(files - covered)}"


# ----------------------------------------------------------------------------- job runner
class _Jobs:
    """Runs commands as subprocesses, ``workers`` at a time, each after its dependencies."""

    def __init__(self, root, workers):
        self.root, self.workers = root, workers
        self.jobs, self.order = {}, []

    def add(self, name, argv, deps=(), env=None):
        self.jobs[name] = dict(argv=[str(a) for a in argv if str(a)], deps=list(deps), env=env or {},
                               rc=None, log=str(self.root / (name.replace("/", "__") + ".log")))
        self.order.append(name)

    def run(self):
        base_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2",
                        KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1")
        base_env.pop("TF_CONFIG", None)
        pending, running = list(self.order), {}
        while pending or running:
            for name in list(pending):
                if len(running) >= self.workers:
                    break
                job = self.jobs[name]
                dep_rc = [self.jobs[d]["rc"] for d in job["deps"]]
                if any(rc not in (None, 0) for rc in dep_rc):
                    job["rc"] = "dependency failed: " + ", ".join(
                        d for d in job["deps"] if self.jobs[d]["rc"] != 0)
                    pending.remove(name)
                    continue
                if any(rc is None for rc in dep_rc):
                    continue
                log = open(job["log"], "w")
                job["start"] = time.time()
                running[name] = (subprocess.Popen(job["argv"], cwd=REPO_ROOT, stdout=log,
                                                  stderr=subprocess.STDOUT,
                                                  env=dict(base_env, **job["env"])), log)
                pending.remove(name)
            for name, (proc, log) in list(running.items()):
                if proc.poll() is None and time.time() - self.jobs[name]["start"] > TIMEOUT:
                    proc.kill()
                if proc.poll() is not None:
                    log.close()
                    self.jobs[name]["rc"] = proc.returncode
                    self.jobs[name]["seconds"] = time.time() - self.jobs[name]["start"]
                    del running[name]
            time.sleep(0.1)

    def check(self, name):
        job = self.jobs[name]
        if job["rc"] != 0:
            tail = open(job["log"]).read()[-6000:] if os.path.exists(job["log"]) else ""
            pytest.fail(f"{name}: {' '.join(job['argv'][1:])}\nexit {job['rc']}\n{tail}")


def _make_subset(dst):
    """4 training and 2 validation images per class of imagenette2-224, as an image folder."""
    src = require_data("imagenette2-224")
    for split, per in (("train", 4), ("val", 2)):
        with zipfile.ZipFile(src / f"{split}.zip") as z:
            names = sorted(n for n in z.namelist() if not n.endswith("/"))
            counts = {}
            for n in names:
                cls = n.split("/")[1]
                if counts.get(cls, 0) < per:
                    counts[cls] = counts.get(cls, 0) + 1
                    out = dst / n
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(z.read(n))
    shutil.copy(src / "classes.csv", dst / "classes.csv")
    return dst


def _make_flat(subset, dst):
    """The subset's 60 images as a user's folder: ``<class name>/<image>`` (names from
    classes.csv, underscores as spaces), no split folders."""
    import csv
    names = {r["wnid"]: r["name"].replace("_", " ") for r in csv.DictReader(open(subset / "classes.csv"))}
    for split in ("train", "val"):
        for f in sorted((subset / split).glob("*/*")):
            out = dst / names[f.parent.name] / f.name
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, out)
    return dst


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    subset = _make_subset(root / "subset")
    write_npz(subset, root / "mini.npz", n_train=40, n_eval=20)
    sources = {"subset": subset, "tfrecords": root / "tfrecords", "npz": f"npz:{root / 'mini.npz'}",
               "flat": _make_flat(subset, root / "flat")}
    py = sys.executable
    jobs = _Jobs(root, workers=max(2, min(3, os.cpu_count() or 2)))
    evaluated_by = {}   # evaluation key -> the first recipe (file order) that has it
    for r in RECIPES.values():
        r.evaluated_by = evaluated_by.setdefault(r.evaluation_key(), r.name)
    # Start order (the runner starts ready jobs in the order they were added): what unblocks
    # others and the longest chains first (the offline teacher; the ablation E0 run that
    # teaches the JAX and online-KD rows; E11, whose run the fine-tuning recipe starts from).
    for name in PRIORITY + [n for n in RECIPES if n not in PRIORITY]:
        r = RECIPES[name]
        env = dict(r.env)
        if env.get("KERAS_BACKEND") == "jax":  # the second invocation reuses the compiled step
            env.update(JAX_COMPILATION_CACHE_DIR=str(root / "jax_cache"),
                       JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                       JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
                       # XLA's backend optimization off: the same computation, compiled in a
                       # fraction of the time (the optimized E11 step took 5 min to compile)
                       XLA_FLAGS="--xla_backend_optimization_level=0")
        run_dir = root / "runs" / name
        argv = [py, "-m", "official.train"] + [f"--flagfile={f}" for f in r.flagfiles] + [
            f"--data={sources[r.data]}", f"--model_dir={run_dir}", "--train_steps=2",
            f"--batch_size={BATCH}", f"--image_size={r.image_size}",
            f"--model_overrides={json.dumps(r.model_overrides())}", "--eval_steps=1",
            f"--eval_batch_size={BATCH}", "--progress_bar=false", "--log_every_steps=1"]
        if r.teacher:
            argv.append(f"--teacher={root / 'runs' / r.teacher}")
        if r.init_from:
            argv.append(f"--{r.warm_flag}={root / 'runs' / r.init_from}")
        if name in RESUMED:  # stop after step 1, then resume to step 2
            jobs.add(f"{name}/train1", argv + ["--stop_after_steps=1"], deps=r.deps, env=env)
            jobs.add(f"{name}/train2", argv, deps=[f"{name}/train1"], env=env)
        else:               # both steps in one invocation
            jobs.add(f"{name}/train2", argv, deps=r.deps, env=env)
        if r.evaluated_by == name:
            eval_data = subset if r.data == "npz" else sources[r.data]
            jobs.add(f"{name}/evaluate", [py, "-m", "official.evaluate", f"--model_dir={run_dir}",
                                          f"--data={eval_data}", "--split=val" if r.data == "npz" else "",
                                          "" if r.data == "flat" else "--max_examples=8",
                                          f"--batch_size={BATCH}",
                                          "--benchmark_steps=1", "--no_progress", "--no_plots",
                                          f"--output_dir={root / 'eval' / name}"],
                     deps=[f"{name}/train2"])
            jobs.add(f"{name}/export", [py, "-m", "official.export", f"--model_dir={run_dir}",
                                        f"--export_dir={root / 'export' / name}"],
                     deps=[f"{name}/train2"])
        if name == "smoke":  # the offline teacher: TFRecords with logits from the exported smoke run
            jobs.add("tfrecords", [py, "-m", "data.build_tfrecords", f"--input={subset}",
                                   f"--output={sources['tfrecords']}", "--num_shards=1",
                                   f"--teacher={root / 'export' / 'smoke'}", "--no_progress"],
                     deps=["smoke/export"])
    jobs.run()
    timings = {n: round(j.get("seconds", 0.0), 1) for n, j in jobs.jobs.items()}
    print("recipe jobs (s):", json.dumps(timings))
    return root, jobs


def _expected_eval_size(r):
    import models
    if r.name in PAPER_ROWS and models.TABLE7_PAPER[f"table7_{r.name.lower()}"].eval_size == 256:
        return 256   # E9-E12: trained at 224, evaluated on fixed 256 px crops (Table 7)
    return r.image_size


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_runs_end_to_end(runs, name):
    root, jobs = runs
    r = RECIPES[name]
    for job in ([f"{name}/train1"] if name in RESUMED else []) + [
            f"{name}/train2", f"{r.evaluated_by}/evaluate", f"{r.evaluated_by}/export"]:
        jobs.check(job)
    run_dir = root / "runs" / name

    # the run finished step 2; a resumed recipe's second invocation started from step 1's checkpoint
    res = json.load(open(run_dir / "results.json"))
    assert res["step"] == 2 and res["finished"]
    if name in RESUMED:
        assert res["resumed_from"].endswith("ckpt-000000001") and res["start_step"] == 1
    else:
        assert res["resumed_from"] is None and res["start_step"] == 0
    assert res["eval_top1"] is not None

    # every flag the recipe sets reached the run's configuration with the file's value
    from flags import FLAG_TO_FIELD
    cfg = json.load(open(run_dir / "run_config.json"))
    for flag, text in r.values.items():
        if flag in SCALE_FLAGS:
            continue
        assert flag in FLAG_TO_FIELD, f"{name}: --{flag} is not a run configuration flag"
        section, _, field = FLAG_TO_FIELD[flag].partition(".")
        actual = cfg[section][field] if field else cfg[section]
        if flag == "dtype" and text == "fp16" and not _gpu_visible(r):
            text = "fp32"  # the trainer's --fp16_without_gpu=fp32 default (tests/test_train.py)
        assert _same(_text_value(text), actual), f"{name}: --{flag}={text} but run_config has {actual!r}"
    assert cfg["model"]["overrides"] == {k: v for k, v in r.model_overrides().items()}

    # the trainer evaluated at the recipe's own evaluation size
    size = _expected_eval_size(r)
    assert res["eval_image_shape"] == [size, size, 3]
    # double_batch mixing read 2B images per step for B samples
    double = r.values.get("mixing", "none") != "none" and r.values.get("mixing_form") == "double_batch"
    assert res["samples_per_step"] == BATCH and res["images_per_step"] == (2 * BATCH if double else BATCH)
    # distillation (offline from the TFRecord logits, online from the teacher run) is in the loss
    m = res["train_metrics"]
    if r.values.get("distillation", "none") != "none":
        assert m["distillation"] > 0 and math.isfinite(m["distillation"])
    else:
        assert m["distillation"] == 0
    # paper-style weight decay in the loss (every E recipe; smoke too)
    if float(r.values.get("weight_decay", 1e-4)) > 0 and r.values.get("weight_decay_mode", "l2_loss") == "l2_loss":
        assert m["l2_loss"] > 0

    # official.evaluate and official.export on the run (or on the run that shares what they read)
    rep = RECIPES[r.evaluated_by]
    rep_split = json.load(open(root / "runs" / rep.name / "run_config.json"))["data"]["eval_split"]
    split = "val" if rep.data == "npz" else rep_split
    ev = json.load(open(root / "eval" / rep.name / f"eval-{split}.json"))
    assert 0.0 <= ev["top1"] <= 1.0
    assert ev["details"]["num_examples"] == (FLAT_VAL if rep.data == "flat" else 8)
    assert ev["details"]["eval_preprocess"] == cfg["data"]["eval_preprocess"]
    meta = json.load(open(root / "export" / r.evaluated_by / "export_metadata.json"))
    assert meta["crop_size"] == size and meta["eval_preprocess"] == cfg["data"]["eval_preprocess"]
    assert meta["model_overrides"] == {**cfg["model"]["overrides"],
                                       **({"zero_gamma": True} if cfg["model"]["zero_gamma"] else {})}
    if r.init_from:
        assert cfg["runtime"]["init_checkpoint"].endswith(r.init_from)


def test_offline_teacher_logits_come_from_the_exported_teacher(runs):
    """The TFRecords E7-E12 trained on hold, per image, the logits of the exported smoke run."""
    import tensorflow as tf
    root, jobs = runs
    jobs.check("tfrecords")
    shards = sorted((root / "tfrecords").glob("train-*"))
    assert shards
    serving = tf.saved_model.load(str(root / "export" / "smoke")).signatures["serving_default"]
    n = 0
    for raw in tf.data.TFRecordDataset([str(s) for s in shards]).take(3):
        ex = tf.train.Example.FromString(raw.numpy())
        f = ex.features.feature
        logits = np.array(f["image/logit"].float_list.value)
        image = f["image/encoded"].bytes_list.value[0]
        out = serving(image_bytes=tf.constant([image]))
        ref = np.asarray(out["logits"])[0]
        np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-4)
        n += 1
    assert n == 3


def test_finetune_on_a_flat_folder_holds_out_and_warm_starts(runs):
    """``--flagfile=finetune --data=<flat folder> --weights=<E1 run>``: the run
    recorded the held-out split (1 of 6 images per class: 50 to train on, 10 held out; class
    names from the folders), the trainer and ``official.evaluate`` evaluated on those 10
    images, and the first step started from E1's weights: the recipe's warm-up starts at LR 0,
    so after step 1 every trainable variable but the classifier equals E1's latest checkpoint
    exactly (the BN moving statistics took one update; the classifier is new)."""
    import csv
    import keras
    from official import checkpoints
    root, jobs = runs
    for job in ("finetune/train1", "finetune/train2", "finetune/evaluate"):
        jobs.check(job)
    run_dir = root / "runs" / "finetune"
    cfg = json.load(open(run_dir / "run_config.json"))["data"]
    assert (cfg["val_fraction"], cfg["split_seed"]) == (0.1, 0)
    assert (cfg["train_split"], cfg["eval_split"]) == ("train[val_fraction=0.1,seed=0]",
                                                       "val[val_fraction=0.1,seed=0]")
    assert (cfg["num_train_examples"], cfg["num_eval_examples"]) == (60 - FLAT_VAL, FLAT_VAL)
    names = sorted(r["name"].replace("_", " ")
                   for r in csv.DictReader(open(root / "subset" / "classes.csv")))
    assert cfg["class_names"] == names and "English springer" in names
    ev = json.load(open(root / "eval" / "finetune" / f"eval-{cfg['eval_split']}.json"))
    assert ev["details"]["num_examples"] == FLAT_VAL

    state = json.load(open(run_dir / "checkpoints" / "ckpt-000000001" / "state.json"))
    assert state["learning_rate"] > 0.0   # LR after step 1; step 1 itself ran at LR(0) = 0
    source, _ = checkpoints.restore_model(str(root / "runs" / "E1"), "latest")
    tuned, _ = checkpoints.restore_model(str(run_dir), str(run_dir / "checkpoints" / "ckpt-000000001"))
    src = {w.path: keras.ops.convert_to_numpy(w.value) for w in source.weights}
    head = [w.path for w in tuned.weights if w.path.split("/")[0] == "logits"]
    assert head
    compared = 0
    for w in tuned.trainable_weights:
        if w.path in head:
            continue
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w.value), src[w.path], err_msg=w.path)
        compared += 1
    assert compared == len(source.trainable_weights) - len(head)
    # E1's latest weights are not what any run with the same seed starts from: E1's own first
    # step also ran at LR 0, so its ckpt-1 is that initialization, and its step 2 moved it
    first, _ = checkpoints.restore_model(str(root / "runs" / "E1"), str(root / "runs" / "E1" / "checkpoints"
                                                                         / "ckpt-000000001"))
    moved = sum(not np.array_equal(keras.ops.convert_to_numpy(w.value), src[w.path])
                for w in first.trainable_weights if w.path not in head)
    assert moved > compared // 2, (moved, compared)
    kernel = [w for w in tuned.trainable_weights if w.path in head and w.path.endswith("kernel")][0]
    assert not np.array_equal(keras.ops.convert_to_numpy(kernel.value), src[kernel.path])
