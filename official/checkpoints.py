"""Run directories and checkpoints (backend-neutral).

Layout of a run directory (``--model_dir``)::

    run_config.json                    the full official.config.RunConfig (JSON)
    checkpoints/checkpoint.json        index: {"checkpoints": [...], "latest": name,
                                               "best": name, "best_top1": float}
    checkpoints/ckpt-000001000/
        model.weights.h5               keras ``model.save_weights`` (all layer weights,
                                       BN moving statistics and DropBlock keep-prob included)
        optimizer.npz                  ``optimizer.variables`` by position (+ their paths)
        extra.npz                      seed-generator states ("seed/<i>") and, with weight
                                       EMA, the averaged weights ("ema/<i>")
        state.json                     step, epoch, data position, DropBlock keep-prob, eval
                                       top-1, wall time, backend
    train/ eval/                       TensorBoard event files (TensorFlow path)

The format is deliberately plain (HDF5 + NumPy + JSON, no ``tf.train.Checkpoint``) so the
same checkpoint is written and read under the TensorFlow and the JAX backend. Writing is
atomic: everything goes to ``checkpoints/.tmp-*`` and is renamed into place, then the index
is replaced with ``os.replace``; a crash leaves either the old or the new checkpoint, never
a half-written one. The last ``keep`` checkpoints and the best one (by eval top-1) are kept.

Contract (docs/ARCHITECTURE.md, "Runs"): :func:`load_run` and :func:`restore_model`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from typing import Any, Dict, List, Optional, Tuple

import h5py
import numpy as np

import models
from models import pretrained
from models.config import config_from_dict
from official.config import DataConfig, ModelConfig, RunConfig

RUN_CONFIG = "run_config.json"
CKPT_DIR = "checkpoints"
INDEX = "checkpoint.json"
WEIGHTS = "model.weights.h5"
HEAD_LAYERS = ("logits",)
_CKPT_RE = re.compile(r"^ckpt-(\d+)$")


# ----------------------------------------------------------------------------- run config
def _atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_run_config(model_dir: str, config: RunConfig) -> str:
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, RUN_CONFIG)
    _atomic_write_text(path, config.to_json())
    return path


def load_run(model_dir: str) -> RunConfig:
    """Returns the :class:`RunConfig` saved in ``model_dir/run_config.json``."""
    path = os.path.join(model_dir, RUN_CONFIG)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: {model_dir!r} is not a training run directory")
    with open(path) as f:
        return RunConfig.from_json(f.read())


# ----------------------------------------------------------------------------- index
def _ckpt_root(model_dir: str) -> str:
    return os.path.join(model_dir, CKPT_DIR)


def read_index(model_dir: str) -> Dict[str, Any]:
    root = _ckpt_root(model_dir)
    path = os.path.join(root, INDEX)
    index = {"checkpoints": [], "latest": None, "best": None, "best_top1": None}
    if os.path.exists(path):
        with open(path) as f:
            index.update(json.load(f))
    # Trust only complete checkpoint directories (state.json is written last).
    present = []
    if os.path.isdir(root):
        for name in os.listdir(root):
            if _CKPT_RE.match(name) and os.path.exists(os.path.join(root, name, "state.json")):
                present.append(name)
    present.sort(key=lambda n: int(_CKPT_RE.match(n).group(1)))
    index["checkpoints"] = present
    index["latest"] = present[-1] if present else None
    if index.get("best") not in present:
        index["best"], index["best_top1"] = None, None
    return index


def checkpoint_path(model_dir: str, which: str = "latest") -> Optional[str]:
    """Directory of the ``latest`` / ``best`` checkpoint (or a named one); None if none."""
    if os.path.isdir(which) and os.path.exists(os.path.join(which, "state.json")):
        return which
    index = read_index(model_dir)
    if which in ("latest", "best"):
        name = index[which]
        if name is None and which == "best":
            name = index["latest"]
    else:
        name = which if which in index["checkpoints"] else None
    return os.path.join(_ckpt_root(model_dir), name) if name else None


def read_state(ckpt_dir: str) -> Dict[str, Any]:
    with open(os.path.join(ckpt_dir, "state.json")) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- writing
def _np(v) -> np.ndarray:
    import keras
    return np.asarray(keras.ops.convert_to_numpy(v.value if hasattr(v, "value") else v))


def seed_variables(model) -> List[Any]:
    """Seed-generator states inside the model (not part of ``model.weights``)."""
    weight_ids = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weight_ids]


class CheckpointManager:
    """Writes checkpoints atomically and keeps the last ``keep`` plus the best."""

    def __init__(self, model_dir: str, keep: int = 3, is_chief: bool = True):
        self.model_dir = model_dir
        self.root = _ckpt_root(model_dir)
        self.keep = max(1, int(keep))
        self.is_chief = is_chief

    def save(self, step: int, model, optimizer=None, state: Optional[Dict[str, Any]] = None,
             ema_weights: Optional[List[np.ndarray]] = None, top1: Optional[float] = None) -> Optional[str]:
        if not self.is_chief:
            return None
        os.makedirs(self.root, exist_ok=True)
        name = f"ckpt-{int(step):09d}"
        tmp = os.path.join(self.root, f".tmp-{name}-{os.getpid()}")
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        model.save_weights(os.path.join(tmp, WEIGHTS))
        if optimizer is not None:
            ovars = list(optimizer.variables)
            arrays = {f"v{i:05d}": _np(v) for i, v in enumerate(ovars)}
            arrays["paths"] = np.array([getattr(v, "path", str(i)) for i, v in enumerate(ovars)])
            np.savez(os.path.join(tmp, "optimizer.npz"), **arrays)
        extra = {f"seed/{i}": _np(v) for i, v in enumerate(seed_variables(model))}
        if ema_weights is not None:
            extra.update({f"ema/{i}": np.asarray(w) for i, w in enumerate(ema_weights)})
        np.savez(os.path.join(tmp, "extra.npz"), **extra)
        full_state = dict(state or {})
        full_state.update(step=int(step), top1=top1, saved_at=time.time())
        _atomic_write_text(os.path.join(tmp, "state.json"), json.dumps(full_state, indent=2))
        final = os.path.join(self.root, name)
        if os.path.exists(final):  # re-saving the same step (e.g. epoch end == every-N step)
            trash = final + f".old-{os.getpid()}"
            os.rename(final, trash)
            os.rename(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, final)
        self._update_index(name, top1)
        return final

    def _update_index(self, name: str, top1: Optional[float]) -> None:
        index = read_index(self.model_dir)
        if top1 is not None and (index["best_top1"] is None or top1 >= index["best_top1"]):
            index["best"], index["best_top1"] = name, float(top1)
        keep = set(index["checkpoints"][-self.keep:])
        if index["best"]:
            keep.add(index["best"])
        for old in index["checkpoints"]:
            if old not in keep:
                shutil.rmtree(os.path.join(self.root, old), ignore_errors=True)
        index["checkpoints"] = [n for n in index["checkpoints"] if n in keep]
        index["latest"] = index["checkpoints"][-1] if index["checkpoints"] else None
        _atomic_write_text(os.path.join(self.root, INDEX), json.dumps(index, indent=2))


# ----------------------------------------------------------------------------- reading
def restore_training_state(ckpt_dir: str, model, optimizer=None) -> Tuple[Dict[str, Any], Optional[List[np.ndarray]]]:
    """Loads weights, optimizer slots and seed states into built objects; returns (state, ema)."""
    model.load_weights(os.path.join(ckpt_dir, WEIGHTS))
    opt_path = os.path.join(ckpt_dir, "optimizer.npz")
    if optimizer is not None and os.path.exists(opt_path):
        with np.load(opt_path) as z:
            ovars = list(optimizer.variables)
            n = len([k for k in z.files if k.startswith("v")])
            if n != len(ovars):
                raise ValueError(f"optimizer checkpoint {opt_path} has {n} variables, the optimizer has "
                                 f"{len(ovars)}: was the run restarted with a different optimizer/dtype?")
            for i, v in enumerate(ovars):
                value = z[f"v{i:05d}"]
                if tuple(value.shape) != tuple(v.shape):
                    raise ValueError(f"optimizer variable {getattr(v, 'path', i)}: checkpoint shape "
                                     f"{value.shape} != {tuple(v.shape)}")
                v.assign(value)
    ema = None
    extra_path = os.path.join(ckpt_dir, "extra.npz")
    if os.path.exists(extra_path):
        with np.load(extra_path) as z:
            seeds = seed_variables(model)
            for i, v in enumerate(seeds):
                if f"seed/{i}" in z.files:
                    v.assign(z[f"seed/{i}"])
            ema_keys = sorted((k for k in z.files if k.startswith("ema/")), key=lambda k: int(k[4:]))
            if ema_keys:
                ema = [z[k] for k in ema_keys]
    return read_state(ckpt_dir), ema


def build_model_from_config(config: RunConfig, num_classes: Optional[int] = None):
    """The run's network with free spatial input dims (``(None, None, 3)``).

    The same weights serve every input size: a run trains at ``model.image_size`` and
    evaluates at the size its ``eval_preprocess`` gives (E9-E12: train at 224, evaluate at
    256, as the paper's Table 7), and evaluation, restore and export take any size. (A model
    built for ``(224, 224, 3)`` rejected the 256 px evaluation batches.) Built from the
    resolved network config the trainer stored (``model.network``); run directories written
    before it was stored are built from the name and overrides.
    """
    num_classes = num_classes or config.model.num_classes
    if config.model.network:  # the resolved network the trainer stored (run_config.json)
        return models.build_from_config(config_from_dict(config.model.network),
                                        1000 if num_classes is None else num_classes,
                                        (None, None, 3), name=config.model.name)
    return models.build_model(config.model.name, num_classes=num_classes,
                              input_shape=(None, None, 3), **config.model_overrides())


def restore_model(model_dir: str, which: str = "latest", ema: bool = False):
    """Rebuilds the run's model and loads a checkpoint: returns ``(keras.Model, RunConfig)``.

    ``which``: ``"latest"``, ``"best"`` (falls back to latest when no eval was recorded) or a
    checkpoint name/directory. ``ema=True`` loads the EMA weights when the run kept them.
    """
    config = load_run(model_dir)
    path = checkpoint_path(model_dir, which)
    if path is None:
        raise FileNotFoundError(f"no {which!r} checkpoint in {os.path.join(model_dir, CKPT_DIR)}")
    model = build_model_from_config(config)
    model.load_weights(os.path.join(path, WEIGHTS))
    if ema:
        with np.load(os.path.join(path, "extra.npz")) as z:
            keys = sorted((k for k in z.files if k.startswith("ema/")), key=lambda k: int(k[4:]))
            if not keys:
                raise ValueError(f"{path} holds no EMA weights (run trained with ema_decay=0)")
            for w, k in zip(model.trainable_weights, keys):
                w.assign(z[k])
    return model, config


# ----------------------------------------------------------------------------- --weights
def config_from_weights(info, flag: str = "--weights") -> RunConfig:
    """The :class:`RunConfig` of weights without a run (``models.pretrained.WeightsInfo``):
    network, classes and evaluation preprocessing from the metadata that travels with them.
    Raises ``ValueError`` naming ``flag`` and the file when the architecture or the
    normalization is unknown (guessing the normalization would give silently wrong
    predictions)."""
    if info.run_config is not None:
        return RunConfig.from_dict(info.run_config)
    if not info.arch:
        raise ValueError(f"{flag} {info.spec!r} does not say which network it holds: put a JSON "
                         f"beside it ({_sidecar_name(info.path)}: {{\"model\": NAME, "
                         "\"normalization\": \"mean\" or \"mean_std\"}), name a state dict "
                         "after its timm architecture (resnet50d.safetensors), or use the run "
                         "directory it comes from")
    if not info.normalization:
        where = (info.metadata_from if info.metadata_from.endswith(".json")
                 else _sidecar_name(info.path))
        raise ValueError(f"{flag} {info.spec!r} ({info.arch}) does not say which input "
                         "normalization it was trained with: add \"normalization\": \"mean\" "
                         f"(this project's runs) or \"mean_std\" (timm/torchvision) to {where}")
    return RunConfig(
        model=ModelConfig(name=info.arch, overrides=dict(info.overrides),
                          num_classes=info.num_classes, image_size=int(info.image_size or 224)),
        data=DataConfig(normalization=info.normalization,
                        eval_preprocess=info.eval_preprocess or "imagenet",
                        class_names=list(info.class_names) if info.class_names else None))


def _sidecar_name(path: str) -> str:
    for ext in (".weights.h5", ".keras", ".safetensors", ".pth", ".pt", ".bin", ".npz"):
        if path.endswith(ext):
            return path[: -len(ext)] + ".json"
    return path + ".json"


def restore_weights(spec: str, which: str = "latest", flag: str = "--weights"):
    """``(keras.Model, RunConfig, WeightsInfo)`` for any weights PATH (a run directory, a
    checkpoint directory, ``.weights.h5`` + JSON, ``.keras``, a timm state dict or hub name;
    :mod:`models.pretrained`). A run directory is restored by :func:`restore_model` (``which``
    applies); otherwise the network is built with free spatial dims from the weights'
    metadata (:func:`config_from_weights`), whose preprocessing the returned config carries.
    Raises ``ValueError`` / ``FileNotFoundError`` naming ``flag`` and the file."""
    info = pretrained.resolve(spec, what=flag)
    if info.kind == "saved_model":
        raise ValueError(f"{flag} {spec!r} is a SavedModel (a serving graph, not Keras weights): "
                         "evaluate or export the run directory it came from (official.predict "
                         "takes SavedModels)")
    if info.kind == "run":
        model, config = restore_model(spec, which)
        return model, config, info
    if info.kind == "keras":
        import keras
        model = keras.saving.load_model(info.path, compile=False)
        if not info.arch:
            info.arch = model.name if model.name in _model_names() else None
        info.num_classes = info.num_classes or int(model.outputs[0].shape[-1])
        config = config_from_weights(info, flag)
        return model, config, info
    config = config_from_weights(info, flag)
    model = build_model_from_config(config)
    pretrained.load_into(model, info, what=flag)
    if config.model.num_classes is None:
        config.model.num_classes = int(model.outputs[0].shape[-1])
    return model, config, info


def apply_weights_metadata(config: RunConfig, explicit=None, flag: str = "--weights"):
    """Makes a training config agree with the weights it warm-starts from
    (``config.runtime.init_checkpoint``, given as ``--weights`` or ``--init_checkpoint``).

    The weights' metadata (:mod:`models.pretrained`: the converter's JSON, a run's
    ``run_config.json``, timm's pretrained config) is applied to the settings NOT in
    ``explicit`` (the flags given on the command line or in a flag file): ``--model`` and
    ``--model_overrides`` (the network), ``--normalization``, and for timm / torchvision
    weights ``--image_size`` and ``--eval_preprocess`` (their pretraining's; a run's sizes
    were its recipe's choice and are not inherited). A given setting that contradicts the weights raises ``ValueError``
    naming the flag and the file: another network (``--model``), another normalization
    (training timm weights on mean-subtracted inputs would silently lose accuracy). The class
    count may differ (fine-tuning: a fresh head). ``explicit=None`` (Python callers): every
    setting counts as given, so nothing is changed, only checked. Returns ``(config, info)``;
    ``info`` is None without warm start."""
    spec = config.runtime.init_checkpoint
    if not spec:
        return config, None
    given = (lambda name: True) if explicit is None else (lambda name: name in explicit)
    info = pretrained.resolve(spec, what=flag, name_hint=config.model.name)
    if info.kind == "saved_model":
        raise ValueError(f"{flag} {spec!r} is a SavedModel (a serving graph): warm-start from the "
                         "run directory it was exported from, or from a weights file")
    if info.arch and not given("model") and not given("model_overrides"):
        config.model.name = info.arch
        config.model.overrides = dict(info.overrides)
    if info.arch:
        pretrained.check_same_network(info, config.model.name, config.model_overrides(),
                                      what=flag, flag="--model")
    if info.normalization and info.normalization != config.data.normalization:
        if given("normalization"):
            raise ValueError(
                f"--normalization={config.data.normalization} contradicts {flag} {spec!r}: the "
                f"weights expect normalization {info.normalization!r} (says "
                f"{info.metadata_from}); drop --normalization (it is then taken from the "
                f"weights) or pass --normalization={info.normalization}")
        config.data.normalization = info.normalization
    if info.source != "ours":  # a run's sizes were its recipe's choice, not the weights'
        if info.image_size and not given("image_size"):
            config.model.image_size = int(info.image_size)
        if info.eval_preprocess and not given("eval_preprocess"):
            config.data.eval_preprocess = info.eval_preprocess
    return config, info


def _model_names():
    return models.list_models()


# ----------------------------------------------------------------------------- fine-tuning
def _is_head(path: str, head_layers=HEAD_LAYERS) -> bool:
    return path.split("/")[0] in head_layers


def _h5_num_classes(weights_file: str, model) -> Optional[int]:
    """Classes of the head stored in a keras ``.weights.h5`` (``model``: same architecture).

    Keras 3 names the entries of a functional model by class (``layers/dense_1/vars/0``),
    not by layer name, in ``model.layers`` order; the head is found the same way.
    """
    from keras.src.utils import naming
    try:
        head = model.get_layer(HEAD_LAYERS[0])
    except ValueError:
        return None
    same = [l for l in model.layers if l.__class__ is head.__class__]
    base = naming.to_snake_case(head.__class__.__name__)
    idx = same.index(head)
    key = f"layers/{base if idx == 0 else f'{base}_{idx}'}/vars/0"
    with h5py.File(weights_file, "r") as f:
        return int(f[key].shape[-1]) if key in f else None


def _is_plain_ours(path: str) -> bool:
    """A run directory, a checkpoint directory or a ``.weights.h5`` without the converter's
    JSON: the formats :func:`warm_start` reads itself (everything else goes through
    :mod:`models.pretrained`)."""
    if os.path.isdir(path):
        return (os.path.exists(os.path.join(path, RUN_CONFIG))
                or os.path.exists(os.path.join(path, WEIGHTS)))
    return path.endswith(".weights.h5") and not os.path.exists(path[: -len(".weights.h5")] + ".json")


def warm_start(model, init_checkpoint: str, config: Optional[RunConfig] = None,
               head_layers=HEAD_LAYERS, flag: str = "--init_checkpoint") -> List[str]:
    """Copies every non-head weight (BN moving statistics included) from ``init_checkpoint``.

    ``init_checkpoint`` (``--weights`` / ``--init_checkpoint``): a run directory (its latest
    checkpoint), a checkpoint directory or a ``.weights.h5`` file of the same architecture,
    or any weights :mod:`models.pretrained` reads (a converted ``.weights.h5`` with its JSON,
    ``.keras``, a timm ``.safetensors`` / ``.pth`` state dict, a timm hub name such as
    ``resnet50d``). The classifier head (layers named in ``head_layers``) keeps its fresh
    initialization, as in the paper's fine-tuning (``--pretrained_model_checkpoint_path``
    restores everything but the logits layer). Raises ``ValueError`` listing the mismatched
    variables, or naming the weights and ``--model`` when they hold another network.
    Returns the copied paths.
    """
    if os.path.isdir(init_checkpoint) and os.path.exists(os.path.join(init_checkpoint, RUN_CONFIG)):
        source, _ = restore_model(init_checkpoint, "latest")
    elif not _is_plain_ours(init_checkpoint) and config is not None:
        info = pretrained.resolve(init_checkpoint, what=flag, name_hint=config.model.name)
        pretrained.check_same_network(info, config.model.name, config.model_overrides(),
                                      what=flag, flag="--model")
        if info.kind == "keras":
            import keras
            source = keras.saving.load_model(info.path, compile=False)
        else:
            source = build_model_from_config(config, info.num_classes or config.model.num_classes)
            pretrained.load_into(source, info, what=flag)
    else:
        if os.path.isdir(init_checkpoint):
            weights_file = os.path.join(init_checkpoint, WEIGHTS)
            run_dir = os.path.dirname(os.path.dirname(os.path.abspath(init_checkpoint)))
        else:
            weights_file, run_dir = init_checkpoint, None
        if not os.path.exists(weights_file):
            raise FileNotFoundError(f"--init_checkpoint {init_checkpoint!r}: no run directory, "
                                    f"checkpoint directory or weights file there")
        if run_dir and os.path.exists(os.path.join(run_dir, RUN_CONFIG)):
            source = build_model_from_config(load_run(run_dir))
        else:
            if config is None:
                raise ValueError("warm-starting from a bare weights file needs the target RunConfig")
            probe = build_model_from_config(config)
            k = _h5_num_classes(weights_file, probe)
            source = probe if k in (None, config.model.num_classes) else build_model_from_config(config, k)
        try:
            source.load_weights(weights_file)
        except Exception as e:  # architecture mismatch inside keras' loader
            raise ValueError(f"--init_checkpoint {weights_file!r} does not match model "
                             f"{config.model.name if config else '?'}: {e}") from e
    src = {w.path: w for w in source.weights if not _is_head(w.path, head_layers)}
    dst = {w.path: w for w in model.weights if not _is_head(w.path, head_layers)}
    missing = sorted(set(dst) - set(src))
    unexpected = sorted(set(src) - set(dst))
    shape = sorted(p for p in set(src) & set(dst) if tuple(src[p].shape) != tuple(dst[p].shape))
    if missing or unexpected or shape:
        lines = []
        if missing:
            lines.append(f"  in the model, not in the checkpoint ({len(missing)}): {missing[:20]}")
        if unexpected:
            lines.append(f"  in the checkpoint, not in the model ({len(unexpected)}): {unexpected[:20]}")
        if shape:
            lines.append("  shape mismatch: " + ", ".join(
                f"{p} {tuple(src[p].shape)} vs {tuple(dst[p].shape)}" for p in shape[:20]))
        raise ValueError(f"--init_checkpoint {init_checkpoint!r} is another architecture; "
                         "mismatched variables:\n" + "\n".join(lines))
    for p, w in dst.items():
        w.assign(_np(src[p]))
    return sorted(dst)
