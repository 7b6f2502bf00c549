"""Trainer: ``python -m official.train --flagfile=official/configs/<recipe>.cfg [--flag=value ...]``.

Reimplements the training of clovaai/assembled-cnn (``main_classification.py`` ->
``nets/run_loop_classification.py``, an Estimator ``model_fn``) as a custom loop:

* loss = CE(soft targets, logits) [+ w * T^2 * CE(softmax(teacher/T), logits/T)]
  [+ wd * sum(l2_loss(non-BN weights))] -- ``official.losses``;
* SGD momentum 0.9, warm-up + cosine to 0 (or piecewise / exponential) -- ``official.schedules``;
* mixup / CutMix and label smoothing inside the step (``data.mixing.mix_batch``), DropBlock
  keep-prob decayed linearly 1.0 -> 0.9 over the run, zero-gamma via the model override,
  offline KD from TFRecord logits or online KD from a teacher on the same augmented view;
* fp32 / mixed fp16 (dynamic loss scaling) / mixed bf16, optional XLA and weight EMA;
* atomic checkpoints every N steps and at every epoch end (last K + best by eval top-1),
  exact resumption (step, optimizer slots, schedules, seed states, data position), SIGTERM
  -> checkpoint + clean exit, a non-finite loss stops the run keeping the last good one.

Backend-specific code lives in ``official.train_backends`` (TensorFlow: ``strategy.run`` in
``tf.function`` under any ``tf.distribute`` strategy; JAX: a jitted stateless step, on one
device or data-parallel over a device mesh with ``--distribution_strategy=mirrored``).

Deviations from the paper's code, on purpose:
* Keras' SGD keeps ``v = m*v - lr*g; w += v`` (learning rate inside the velocity), where
  ``tf.train.MomentumOptimizer`` used ``v = m*v + g; w -= lr*v``: identical for a constant
  LR, slightly different while the LR changes (warm-up / cosine). Not worth a custom optimizer.
* Batch norm is per replica by default (as the paper's multi-GPU Estimator); ``--sync_bn``
  synchronizes it. Under JAX with several devices it is always synchronized (global batch).
* The eval top-1 used for the "best" checkpoint comes from the eval split of ``--data``
  (ImageNet recipes: the validation set, as the paper reports).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import signal
import sys
import tempfile
import time
from typing import Any, Dict, Optional

from absl import app
from absl import flags as absl_flags
from absl import logging as absl_logging

import numpy as np

import data
import flags as assemble_flags
import models  # lazy: keras is imported by the builders
from data import policies, sources  # no TensorFlow
from data.constants import eval_image_size
from data.spec import AUTOAUGMENT_POLICIES
from models.timm_weights import parse_timm_name
from official import checkpoints as ckpt_lib
from official import summaries
from official.config import RunConfig

# keras, the backends and TensorFlow are imported inside the functions that use them:
# importing keras starts its backend (TensorFlow by default), and the program first chooses the
# host allocator (--host_allocator) and the backend (KERAS_BACKEND=jax runs without TensorFlow).

RECIPE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
FLAGS = absl_flags.FLAGS
log = absl_logging


class ConfigError(ValueError):
    """A bad flag combination, detected before any work is done."""


class NonFiniteLoss(RuntimeError):
    pass


# ------------------------------------------------------------------------------ recipes
def list_recipes():
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(RECIPE_DIR, "*.cfg")))


def resolve_recipe(name_or_path: str) -> str:
    """A recipe path, or the name of a packaged recipe (``E12`` / ``E12.cfg``)."""
    if os.path.exists(name_or_path):
        return name_or_path
    base = os.path.basename(name_or_path)
    candidate = os.path.join(RECIPE_DIR, base if base.endswith(".cfg") else base + ".cfg")
    if os.path.exists(candidate):
        return candidate
    raise ConfigError(f"unknown recipe {name_or_path!r}: no such file, and not one of the packaged "
                      f"recipes {list_recipes()} (in {RECIPE_DIR})")


def preprocess_argv(argv):
    """Resolves ``--flagfile=NAME`` to packaged recipes and records the recipe name."""
    out, recipe = [], None
    for a in argv:
        if a.startswith("--flagfile="):
            path = resolve_recipe(a.split("=", 1)[1])
            recipe = os.path.splitext(os.path.basename(path))[0]
            a = "--flagfile=" + path
        out.append(a)
    if recipe and not any(a.startswith("--recipe=") for a in out):
        out.insert(1, f"--recipe={recipe}")
    return out


# ------------------------------------------------------------------------------ validation
def _source_info(source: str):
    try:
        return data.inspect_source(source)
    except Exception as e:
        raise ConfigError(f"--data={source!r} cannot be read: {e}") from e


def _info_get(info, *names, default=None):
    for n in names:
        v = info.get(n) if isinstance(info, dict) else getattr(info, n, None)
        if v is not None:
            return v
    return default


def _split_size(info, split):
    sizes = _info_get(info, "split_sizes", "splits", "num_examples", default={}) or {}
    if isinstance(sizes, dict):
        return sizes.get(split)
    return None


def _hold_out_validation(cfg: RunConfig, info) -> None:
    """A flat class-folder tree (``<class>/<image>``, no split folders) gets a stratified,
    seeded validation split: ``--val_fraction`` (default
    ``data.sources.DEFAULT_VAL_FRACTION``) of each class, chosen by ``--split_seed``
    (``data.sources.holdout_split``). The split's names, which define it, become the run's
    ``data.train_split`` / ``data.eval_split`` (recorded in run_config.json with the fraction
    and seed), so evaluation, export and a resumed run read the same images. A source with
    split folders refuses ``--val_fraction`` / ``--split_seed``."""
    d = cfg.data
    if getattr(info, "layout", "splits") != "flat":
        if d.val_fraction is not None or d.split_seed:
            raise ConfigError(f"--val_fraction/--split_seed hold out a validation split from a flat "
                              f"class-folder tree (<class>/<image>); --data={d.source!r} has split "
                              f"folders ({sorted(info.split_sizes)}): choose the evaluation split "
                              "with --eval_split instead")
        return
    if d.val_fraction is None:
        d.val_fraction = sources.DEFAULT_VAL_FRACTION
    try:
        train_name, val_name = sources.holdout_split_names(d.val_fraction, d.split_seed)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if d.train_split not in ("train", train_name) or d.eval_split not in (None, val_name):
        raise ConfigError(f"--data={d.source!r} is a flat class-folder tree (no split folders): its "
                          f"splits are held out by --val_fraction/--split_seed; drop --train_split="
                          f"{d.train_split!r} / --eval_split={d.eval_split!r}")
    try:
        n_train, n_val = info.split_sizes[train_name], info.split_sizes[val_name]
    except ValueError as e:  # a class folder with too few images, a single class
        raise ConfigError(f"--data={d.source!r}: {e}") from None
    d.train_split, d.eval_split = train_name, val_name
    log.info("--data=%s: flat class-folder tree, %d classes; held out %d of %d images for "
             "validation (--val_fraction=%r, --split_seed=%d, stratified per class)", d.source,
             info.num_classes or 0, n_val, n_train + n_val, d.val_fraction, d.split_seed)


def check_model_dir(model_dir: str, is_chief: bool = True) -> None:
    if not model_dir:
        raise ConfigError("--model_dir is required")
    if not is_chief:
        return
    try:
        os.makedirs(model_dir, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=".write-test-", dir=model_dir)
        os.close(fd)
        os.remove(path)
    except OSError as e:
        raise ConfigError(f"--model_dir={model_dir!r} is not writable: {e}") from e


def _resolve_network(cfg: RunConfig):
    """The run's network config (``models.get_model_config``), after checking that the
    training size and the evaluation size suit it (``models.input_size_error``: Big-Little
    needs multiples of 32) at start-up instead of a shape error inside the first evaluation."""
    try:
        mcfg = models.get_model_config(cfg.model.name, **cfg.model_overrides())
        eval_size = eval_image_size(cfg.model.image_size, cfg.data.eval_preprocess)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--model={cfg.model.name} / --model_overrides / --eval_preprocess: "
                          f"{e}") from e
    stride = mcfg.total_stride()
    for flag, size in (("--image_size", cfg.model.image_size),
                       (f"--eval_preprocess={cfg.data.eval_preprocess}", eval_size)):
        reason = models.input_size_error(mcfg, size)
        if reason:
            raise ConfigError(f"{flag} gives {size} px, but {cfg.model.name}: {reason}; a "
                              f"multiple of {stride} works, use e.g. "
                              f"{max(stride, size // stride * stride)}")
    return mcfg


def _config_errors(cfg: RunConfig, backend: str) -> list:
    """Every problem of the settings themselves (no data read, nothing changed), each
    naming its flag."""
    o, r, d, dist = cfg.optimization, cfg.regularization, cfg.data, cfg.distribution
    errors = cfg.choice_errors()  # enum fields set in Python or by --set
    if not d.source:
        errors.append("--data is required")
    if dist.strategy == "tpu" and not dist.tpu:
        errors.append("--distribution_strategy=tpu needs --tpu=<name or grpc address>")
    if backend != "tensorflow":
        if dist.strategy not in ("off", "one_device", "mirrored"):
            errors.append(f"--distribution_strategy={dist.strategy} needs the TensorFlow backend "
                          f"(KERAS_BACKEND={backend}: off, one_device or mirrored over the local devices)")
        if backend == "jax" and dist.strategy == "mirrored":
            from official.train_backends import jax_devices
            try:
                n = len(jax_devices(dist))
            except ValueError as e:
                errors.append(str(e))
            else:
                if o.batch_size > 0 and o.batch_size % n:
                    errors.append(f"--batch_size={o.batch_size} (global) is not divisible by the {n} JAX "
                                  f"devices of --distribution_strategy=mirrored; use a multiple of {n}")
        if o.dtype == "fp16":
            errors.append("--dtype=fp16 (dynamic loss scaling) is implemented on the TensorFlow path; use bf16")
        if r.distillation == "online" and r.teacher and os.path.exists(os.path.join(r.teacher, "saved_model.pb")):
            errors.append(f"--teacher={r.teacher!r} is a SavedModel, which needs TensorFlow; under "
                          f"KERAS_BACKEND={backend} give a run directory or a .keras file")
    try:
        d.randaugment_spec()
    except ValueError as e:
        errors.append(str(e))
    if d.autoaugment_policy() and d.randaugment:
        errors.append("use either --autoaugment or --randaugment, not both")
    if d.randaugment_levels != "tf" and not d.randaugment:
        errors.append(f"--randaugment_levels={d.randaugment_levels} changes RandAugment's magnitude "
                      f"mappings and needs --randaugment=N,M (AutoAugment's policies keep the mappings "
                      f"they were searched with)")
    if d.source.startswith("npz:") and (d.autoaugment or d.randaugment) and d.augment_on != "device":
        errors.append(f"--autoaugment/--randaugment run per image in tf.data; --data={d.source!r} is "
                      f"pre-decoded npz input: add --augment_on=device (batched in the training step, "
                      f"data.device_augment; --device_augment=crop_flip adds the crop and flip)")
    if d.device_augment != "none" and not d.source.startswith("npz:"):
        errors.append(f"--device_augment={d.device_augment} is for pre-decoded npz:FILE input; "
                      f"--data={d.source!r} is augmented per image by the tf.data pipeline")
    if r.distillation == "online" and not r.teacher:
        errors.append("--distillation=online needs --teacher (a run dir, a .keras file or a SavedModel)")
    if r.distillation == "online" and r.teacher and not os.path.exists(r.teacher):
        errors.append(f"--teacher={r.teacher!r} does not exist")
    if r.teacher and r.distillation != "online":
        errors.append(f"--teacher is given but --distillation={r.distillation} (use --distillation=online)")
    if r.distillation_temperature <= 0:
        errors.append("--distillation_temperature must be > 0")
    if len(r.drop_block_keep_prob) != 2 or not all(0 < p <= 1 for p in r.drop_block_keep_prob):
        errors.append("--drop_block_keep_prob must be 'start,end' with values in (0, 1]")
    if o.lr_schedule == "piecewise" and len(o.piecewise_rates) != len(o.piecewise_boundaries) + 1:
        errors.append("--piecewise_rates needs exactly one more entry than --piecewise_boundaries")
    if o.batch_size <= 0:
        errors.append("--batch_size must be positive")
    if cfg.runtime.init_checkpoint and not os.path.exists(cfg.runtime.init_checkpoint):
        if parse_timm_name(cfg.runtime.init_checkpoint) is None:  # else: a timm hub name
            errors.append(f"--weights/--init_checkpoint={cfg.runtime.init_checkpoint!r} does not "
                          "exist and is not a timm name (e.g. resnet50d)")
    return errors


def prepare_config(cfg: RunConfig, backend: Optional[str] = None) -> RunConfig:
    """Validates ``cfg`` (:func:`_config_errors`, the warm-start weights, the network and its
    input sizes), then fills what follows from it (``model.network``) and from the data source
    (:func:`_fill_from_source`). Raises ``ConfigError``."""
    import keras
    backend = backend or keras.backend.backend()
    errors = _config_errors(cfg, backend)
    if errors:
        raise ConfigError("invalid training configuration:\n  " + "\n  ".join(errors))
    if backend == "jax" and cfg.distribution.strategy == "mirrored":
        # One jitted step on global arrays sharded over a device mesh: BN statistics are over
        # the global batch, i.e. synchronized BN (per-replica BN is not available under JAX).
        cfg.distribution.sync_bn = True
    try:  # the warm-start weights' network and normalization must be this run's (checked only)
        ckpt_lib.apply_weights_metadata(cfg, None)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from e
    names = models.list_models()
    if cfg.model.name not in names:
        raise ConfigError(f"unknown model {cfg.model.name!r}; valid names: {names}")
    # The resolved network, stored in run_config.json: evaluation, export and fine-tuning
    # rebuild exactly this network (official.checkpoints.build_model_from_config).
    cfg.model.network = json.loads(json.dumps(dataclasses.asdict(_resolve_network(cfg))))
    _fill_from_source(cfg)
    _fp16_without_gpu(cfg, backend)
    cfg.backend = backend
    return cfg


def _fp16_without_gpu(cfg: RunConfig, backend: str) -> None:
    """The recipes' ``--dtype=fp16`` (the paper trains in fp16 on GPUs) becomes fp32 where no
    GPU or TPU is visible, unless ``--fp16_without_gpu=fp16``: float16 convolutions on a CPU run
    without fast kernels (measured: one E11 step 318 s in fp16, 30 s in fp32). The change is
    logged and recorded in run_config.json."""
    o = cfg.optimization
    if (backend != "tensorflow" or o.dtype != "fp16" or o.fp16_without_gpu == "fp16"
            or cfg.distribution.strategy == "tpu"):  # TPUs are listed only once connected
        return
    import tensorflow as tf
    if tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"):
        return
    log.warning("--dtype=fp16 with no GPU or TPU visible: training in fp32 (float16 has no "
                "fast CPU kernels); --fp16_without_gpu=fp16 keeps fp16")
    o.dtype = "fp32"


def _fill_from_source(cfg: RunConfig) -> None:
    """Example counts, class count and names, the evaluation split (and the held-out split of
    a flat folder tree) from the data source; checks what only the data can tell (offline KD
    logits present, enough images for one step). Raises ``ConfigError``."""
    o, r, d = cfg.optimization, cfg.regularization, cfg.data
    if d.source.startswith("npz:"):
        path = d.source[4:]
        if not os.path.exists(path):
            raise ConfigError(f"--data={d.source!r}: {path} not found")
        with np.load(path) as z:
            d.num_train_examples = d.num_train_examples or int(z["y_train"].shape[0])
            d.num_eval_examples = int(z["y_eval"].shape[0])
            cfg.model.num_classes = cfg.model.num_classes or int(z["y_train"].max()) + 1
        d.eval_split = d.eval_split or "eval"
        if d.autoaugment_policy() and d.augment_on == "device":
            if d.autoaugment_policy().lower() not in policies.POLICIES:
                raise ConfigError(f"--autoaugment={d.autoaugment!r}: unknown policy; use one of "
                                  f"{sorted(policies.POLICIES)}")
    else:
        if d.autoaugment_policy() and d.autoaugment_policy() not in AUTOAUGMENT_POLICIES:
            raise ConfigError(f"--autoaugment={d.autoaugment!r}: unknown policy; use one of "
                              f"{list(AUTOAUGMENT_POLICIES)}")
        info = _source_info(d.source)
        _hold_out_validation(cfg, info)
        if d.eval_split is None:
            try:
                d.eval_split = data.resolve_eval_split(d.source)
            except Exception as e:
                raise ConfigError(f"--data={d.source!r} has no validation/val/test split: {e}") from e
        d.num_train_examples = d.num_train_examples or _split_size(info, d.train_split)
        d.num_eval_examples = _split_size(info, d.eval_split)
        if not d.num_train_examples:
            raise ConfigError(f"--data={d.source!r}: split {d.train_split!r} is missing or empty")
        k = _info_get(info, "num_classes")
        if cfg.model.num_classes is None:
            cfg.model.num_classes = int(k) if k else None  # true classes, without label_offset
        names = _info_get(info, "class_names")
        if names is not None:
            d.class_names = list(names)
        if r.distillation == "offline":
            has = _info_get(info, "has_teacher_logits", "teacher_logits")
            kind = str(_info_get(info, "kind", default=""))
            if not has and "tfrecord" not in kind.lower():
                raise ConfigError(f"--distillation=offline needs teacher logits in the data, but --data="
                                  f"{d.source!r} ({kind or 'unknown kind'}) has none; build TFRecords with "
                                  "teacher logits (data.build_tfrecords) or use --distillation=online")
    if not cfg.model.num_classes:
        raise ConfigError("cannot infer the number of classes from --data; give --num_classes")
    if d.num_train_examples and cfg.images_per_step() > d.num_train_examples:
        raise ConfigError(f"--data={d.source!r}: split {d.train_split!r} has {d.num_train_examples} "
                          f"images, fewer than one step reads ({cfg.images_per_step()}"
                          + (" = 2 x --batch_size for --mixing_form=double_batch" if
                             cfg.images_per_step() != o.batch_size else " = --batch_size") + ")")


def _check_resume_compatible(cfg: RunConfig) -> None:
    path = os.path.join(cfg.runtime.model_dir, ckpt_lib.RUN_CONFIG)
    if not os.path.exists(path) or ckpt_lib.checkpoint_path(cfg.runtime.model_dir, "latest") is None:
        return
    old = ckpt_lib.load_run(cfg.runtime.model_dir)
    if (old.model.name, old.model_overrides(), old.model.num_classes, old.model.image_size) != (
            cfg.model.name, cfg.model_overrides(), cfg.model.num_classes, cfg.model.image_size):
        raise ConfigError(f"--model_dir={cfg.runtime.model_dir!r} holds checkpoints of another model "
                          f"({old.model.name} {old.model_overrides()}, {old.model.num_classes} classes, "
                          f"{old.model.image_size}px); use a new --model_dir to start a new run")
    if (old.data.val_fraction, old.data.split_seed) != (cfg.data.val_fraction, cfg.data.split_seed):
        raise ConfigError(f"--model_dir={cfg.runtime.model_dir!r} was trained with --val_fraction="
                          f"{old.data.val_fraction} --split_seed={old.data.split_seed}; resuming with "
                          f"{cfg.data.val_fraction} / {cfg.data.split_seed} would change its held-out "
                          "split: give the run's values or a new --model_dir")


# ------------------------------------------------------------------------------ building
def make_optimizer(cfg: RunConfig, model, steps_per_epoch: int, total_steps: int):
    import keras
    from official import losses as losses_lib
    from official import schedules
    o = cfg.optimization
    lr = schedules.build_learning_rate(o, steps_per_epoch, total_steps)
    kwargs = {}
    if o.weight_decay_mode == "decoupled" and o.weight_decay:
        kwargs["weight_decay"] = o.weight_decay
    if o.optimizer != "sgd":
        raise ConfigError(f"unknown optimizer {o.optimizer!r} (sgd)")
    opt = keras.optimizers.SGD(learning_rate=lr, momentum=o.momentum, nesterov=o.nesterov, **kwargs)
    if kwargs:
        decayed = {id(v) for v in losses_lib.decayed_variables(model)}
        opt.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if id(v) not in decayed])
    if o.dtype == "fp16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt, lr


def load_teacher(path: str):
    """Online-KD teacher: a run dir (best checkpoint), a ``.keras`` file or a SavedModel dir."""
    import keras
    if os.path.exists(os.path.join(path, ckpt_lib.RUN_CONFIG)):
        teacher, _ = ckpt_lib.restore_model(path, "best")
    elif path.endswith(".keras"):
        teacher = keras.saving.load_model(path, compile=False)
    elif os.path.exists(os.path.join(path, "saved_model.pb")):
        import tensorflow as tf
        loaded = tf.saved_model.load(path)

        class _SavedModelTeacher:
            def __init__(self, obj):
                self.obj = obj

            def __call__(self, images, training=False):
                return self.obj(images)
        return _SavedModelTeacher(loaded)
    else:
        raise ConfigError(f"--teacher={path!r}: expected a run directory, a .keras file or a SavedModel")
    teacher.trainable = False
    return teacher


def _set_policy(dtype: str):
    import keras
    keras.config.set_dtype_policy({"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}[dtype])


# ------------------------------------------------------------------------------ training
def train(cfg: RunConfig, *, stop_after_steps: Optional[int] = None,
          dump_final_weights: Optional[str] = None) -> Dict[str, Any]:
    """Trains ``cfg`` (resuming from ``cfg.runtime.model_dir`` when it holds checkpoints).

    The run sets Keras' global dtype policy from ``--dtype`` and puts the caller's back when
    it returns or fails, so later models built in the same process are not affected.
    """
    import keras
    previous_policy = keras.config.dtype_policy()
    try:
        return _train(cfg, stop_after_steps=stop_after_steps,
                      dump_final_weights=dump_final_weights)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _build_training_state(cfg: RunConfig, backend, steps_per_epoch: int, total_steps: int):
    """The model, optimizer (+ schedule), EMA copy, online teacher and mixing seed of a run,
    restored from its latest checkpoint (resume) or warm-started (``--weights``); returns them
    with the step to start from and the checkpoint resumed (or None)."""
    import keras
    backend_name, model_dir = keras.backend.backend(), cfg.runtime.model_dir
    with backend.scope():
        model = ckpt_lib.build_model_from_config(cfg)
        if cfg.distribution.sync_bn and backend_name == "tensorflow":
            # (JAX: BN in the step sharded over the mesh is already over the global batch)
            for layer in model._flatten_layers(include_self=False, recursive=True):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        optimizer, lr_schedule = make_optimizer(cfg, model, steps_per_epoch, total_steps)
        optimizer.build(model.trainable_variables)
        ema_vars = None
        if cfg.optimization.ema_decay > 0:
            # A copy of the weights (numpy): initializing from ``v.value`` made the TF backend's
            # EMA variables alias the weights, so the "average" was the raw weights.
            ema_vars = [keras.Variable(np.array(keras.ops.convert_to_numpy(v.value)), trainable=False,
                                       aggregation="mean", name=f"ema_{i}")
                        for i, v in enumerate(model.trainable_variables)]
        teacher = load_teacher(cfg.regularization.teacher) if cfg.regularization.distillation == "online" else None
        # in-step randomness (mixup/CutMix): a seed generator whose state is checkpointed
        mix_seed = (keras.random.SeedGenerator(cfg.runtime.seed + 1)
                    if cfg.regularization.mixing != "none" else None)
        latest = ckpt_lib.checkpoint_path(model_dir, "latest")
        step, resumed_from = 0, None
        if latest:
            state, ema_values = ckpt_lib.restore_training_state(latest, model, optimizer)
            step, resumed_from = int(state["step"]), latest
            if mix_seed is not None and state.get("mix_seed_state") is not None:
                mix_seed.state.assign(np.asarray(state["mix_seed_state"], dtype=mix_seed.state.dtype))
            if ema_vars is not None and ema_values is not None:
                for v, x in zip(ema_vars, ema_values):
                    v.assign(x)
            log.info("resumed from %s at step %d", latest, step)
        elif cfg.runtime.init_checkpoint:
            copied = ckpt_lib.warm_start(model, cfg.runtime.init_checkpoint, cfg)
            if ema_vars is not None:  # the average starts from the warm-started weights
                for e, v in zip(ema_vars, model.trainable_variables):
                    e.assign(keras.ops.convert_to_numpy(v.value))
            log.info("warm-started %d variables (all but the head) from %s", len(copied),
                     cfg.runtime.init_checkpoint)
    return (model, optimizer, lr_schedule, ema_vars, teacher, mix_seed, step, resumed_from,
            latest)


def _train(cfg: RunConfig, *, stop_after_steps: Optional[int] = None,
           dump_final_weights: Optional[str] = None) -> Dict[str, Any]:
    import keras
    from official import schedules
    from official.train_backends import make_backend

    cfg = prepare_config(cfg)
    backend_name = keras.backend.backend()
    if backend_name == "tensorflow":
        import tensorflow as tf
        if cfg.runtime.deterministic:
            tf.config.experimental.enable_op_determinism()
    check_model_dir(cfg.runtime.model_dir, is_chief=True)
    _check_resume_compatible(cfg)
    keras.utils.set_random_seed(cfg.runtime.seed)
    _set_policy(cfg.optimization.dtype)
    backend = make_backend(cfg)
    if cfg.optimization.batch_size % backend.num_replicas:
        raise ConfigError(f"--batch_size={cfg.optimization.batch_size} (global) is not divisible by "
                          f"the {backend.num_replicas} replicas")
    model_dir = cfg.runtime.model_dir
    is_chief = backend.is_chief
    manager = ckpt_lib.CheckpointManager(model_dir, cfg.runtime.keep_checkpoints, is_chief=is_chief)
    steps_per_epoch = cfg.steps_per_epoch() if cfg.data.num_train_examples else cfg.total_steps()
    total_steps = cfg.total_steps()

    (model, optimizer, lr_schedule, ema_vars, teacher, mix_seed, step, resumed_from,
     latest) = _build_training_state(cfg, backend, steps_per_epoch, total_steps)
    if is_chief:
        ckpt_lib.save_run_config(model_dir, cfg)

    drop_blocks = models.drop_block_layers(model)
    kp_start, kp_end = cfg.regularization.drop_block_keep_prob
    step_fn = backend.make_train_step(model, optimizer, teacher, ema_vars, mix_seed)
    batches = backend.train_batches(step)

    stop = {"sigterm": False}

    def _on_sigterm(signum, frame):
        stop["sigterm"] = True
    old_handler = None
    try:
        old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        pass

    progbar = None
    # TensorBoard scalars (official.summaries: the same event files on both backends)
    writers = {kind: summaries.ScalarWriter(os.path.join(model_dir, kind),
                                            enabled=is_chief and cfg.runtime.tensorboard)
               for kind in ("train", "eval")}
    if is_chief and cfg.runtime.progress_bar:
        progbar = keras.utils.Progbar(total_steps, stateful_metrics=["loss", "lr", "top1", "img/s"])
        progbar.update(step)

    def state_dict(kp, top1=None):
        return dict(epoch=step / steps_per_epoch, data_position=step, drop_block_keep_prob=kp,
                    learning_rate=float(lr_schedule(step)), backend=backend_name, total_steps=total_steps,
                    recipe=cfg.recipe, eval_top1=top1,
                    mix_seed_state=(np.asarray(keras.ops.convert_to_numpy(mix_seed.state.value)).tolist()
                                    if mix_seed is not None else None))

    def save(kp, top1=None):
        backend.sync_to_variables()
        bad = [w.path for w in model.trainable_weights
               if not np.isfinite(keras.ops.convert_to_numpy(w.value)).all()]
        if bad:
            msg = (f"non-finite weights at step {step} ({bad[:3]}...): stopping without saving; the last "
                   f"good checkpoint {ckpt_lib.checkpoint_path(model_dir, 'latest') or '(none)'} is kept")
            log.error(msg)
            raise NonFiniteLoss(msg)
        ema_values = [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in ema_vars] if ema_vars else None
        return manager.save(step, model, optimizer, state_dict(kp, top1), ema_values, top1)

    start_step, t_start = step, time.time()
    t_log, n_log = time.time(), 0
    kp = schedules.drop_block_keep_prob(step, total_steps, kp_start, kp_end)
    eval_every = max(1, int(round(cfg.runtime.eval_every_epochs))) if cfg.runtime.eval_every_epochs > 0 else 0
    results: Dict[str, Any] = {"resumed_from": resumed_from, "start_step": start_step,
                               "images_per_step": cfg.images_per_step()}
    top1 = top5 = None
    last_saved = latest
    while step < total_steps:
        if drop_blocks:
            kp = schedules.drop_block_keep_prob(step, total_steps, kp_start, kp_end)
            backend.set_drop_block(model, kp)
        try:
            m = step_fn(batches, step)
        except (StopIteration, OutOfRangeErrors()) as e:
            raise RuntimeError(f"the training input ended at step {step}; training datasets must repeat") from e
        step += 1
        n_log += 1
        if not math.isfinite(m["loss"]):
            msg = (f"non-finite loss ({m['loss']}) at step {step}: stopping. The last good checkpoint is "
                   f"{ckpt_lib.checkpoint_path(model_dir, 'latest') or '(none)'} and was kept; lower the "
                   f"learning rate or use --dtype=fp32/bf16.")
            log.error(msg)
            raise NonFiniteLoss(msg)
        if progbar is not None:
            progbar.update(step, [("loss", m["loss"]), ("lr", float(lr_schedule(step)))])
        if step % max(1, cfg.runtime.log_every_steps) == 0 or step == total_steps:
            dt = max(time.time() - t_log, 1e-9)
            ips = n_log * cfg.optimization.batch_size / dt
            train_metrics = dict(loss=m["loss"], cross_entropy=m["ce"], distillation=m["kd"],
                                 l2_loss=m["l2"], top1=m["top1"])
            writers["train"].scalars(dict(train_metrics, learning_rate=float(lr_schedule(step)),
                                          drop_block_keep_prob=kp, images_per_sec=ips), step)
            t_log, n_log = time.time(), 0
            results.update(images_per_sec=ips, train_metrics=train_metrics, train_loss=m["loss"],
                           samples_per_step=int(m["samples"]))
        epoch_end = step % steps_per_epoch == 0
        epoch = step // steps_per_epoch
        this_top1 = None
        if cfg.runtime.eval_steps != 0 and ((epoch_end and eval_every and epoch % eval_every == 0)
                                            or step == total_steps):
            backend.sync_to_variables()
            top1, top5, n = backend.evaluate(model)
            top1, top5 = float(top1), float(top5)
            this_top1 = top1
            results["eval_image_shape"] = getattr(backend, "eval_image_shape", None)
            writers["eval"].scalars(dict(top1=top1, top5=top5), step)
            log.info("step %d (epoch %.2f): eval top-1 %.4f top-5 %.4f on %d images", step,
                     step / steps_per_epoch, top1, top5, n)
        this_run = step - start_step
        stopping = stop["sigterm"] or (stop_after_steps is not None and this_run >= stop_after_steps)
        if (epoch_end or step % max(1, cfg.runtime.checkpoint_every_steps) == 0 or step == total_steps
                or stopping):
            last_saved = save(kp, this_top1)
        if stopping:
            log.warning("stopping at step %d (%s); checkpoint %s", step,
                        "SIGTERM" if stop["sigterm"] else "--stop_after_steps", last_saved)
            break
    if old_handler is not None:
        signal.signal(signal.SIGTERM, old_handler)
    backend.sync_to_variables()
    for w in writers.values():
        w.close()
    wall = time.time() - t_start
    results.update(step=step, total_steps=total_steps, eval_top1=top1, eval_top5=top5, wall_s=wall,
                   finished=step >= total_steps, sigterm=stop["sigterm"], last_checkpoint=last_saved,
                   backend=backend_name, num_replicas=backend.num_replicas, task=backend.task)
    if is_chief:
        with open(os.path.join(model_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    if dump_final_weights:
        np.savez(dump_final_weights, **{f"{i:04d}:{w.path}": np.asarray(keras.ops.convert_to_numpy(w.value))
                                        for i, w in enumerate(model.weights)})
    return results


def OutOfRangeErrors():
    try:
        import tensorflow as tf
        return tf.errors.OutOfRangeError
    except ImportError:  # JAX machine without TensorFlow
        return StopIteration


# ------------------------------------------------------------------------------ CLI
def _flags_parser(argv):
    assemble_flags.define_all()
    assemble_flags.exit_with_help_if_asked(argv, __doc__)
    try:
        argv = preprocess_argv(argv)
    except ConfigError as e:
        sys.stderr.write(f"FATAL: {e}\n")
        sys.exit(2)
    try:
        return FLAGS(argv)
    except absl_flags.Error as e:
        sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
        sys.exit(2)


# Settings the warm-start weights' metadata fills when not given (--weights).
WEIGHTS_METADATA_FLAGS = ("model", "model_overrides", "normalization", "image_size",
                          "eval_preprocess")


def config_from_flags() -> RunConfig:
    """The run config from the flags; with ``--weights`` / ``--init_checkpoint``, the weights'
    network, normalization, image size and eval preprocessing where no flag (command line or
    flag file) gave them (``official.checkpoints.apply_weights_metadata``)."""
    w, ic = FLAGS["weights"].value, FLAGS["init_checkpoint"].value
    if w and ic and w != ic:
        raise ConfigError(f"--weights={w!r} and --init_checkpoint={ic!r} are the same setting "
                          "(warm start); give one")
    try:
        cfg = assemble_flags.build_run_config(FLAGS)
    except ValueError as e:  # a bad --set
        raise ConfigError(str(e)) from e
    if w or ic:
        explicit = {n for n in WEIGHTS_METADATA_FLAGS if FLAGS[n].present}
        try:
            cfg, info = ckpt_lib.apply_weights_metadata(cfg, explicit,
                                                        "--weights" if w else "--init_checkpoint")
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(str(e)) from e
        if info is not None and info.source != "ours":  # theirs: image size/eval crop too
            log.info("--weights %s: %s", w or ic, info.describe())
    return cfg


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    data.apply_host_allocator(FLAGS.host_allocator)  # before TensorFlow's first op
    try:
        cfg = config_from_flags()
        results = train(cfg, stop_after_steps=FLAGS.stop_after_steps,
                        dump_final_weights=FLAGS.dump_final_weights)
    except ConfigError as e:
        sys.stderr.write(f"FATAL: {e}\n")
        sys.exit(2)
    except NonFiniteLoss as e:
        sys.stderr.write(f"FATAL: {e}\n")
        sys.exit(3)
    log.info("done: %s", results)


def run():
    """Console script ``assemble-train``."""
    app.run(main, flags_parser=_flags_parser)


if __name__ == "__main__":
    run()
