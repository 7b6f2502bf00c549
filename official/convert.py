"""Converts timm / torchvision ResNet state dicts into this project's Keras models.

Usage::

    python -m official.convert --source timm --arch resnet50d \\
        --checkpoint resnet50d.pth --output resnet50d.weights.h5 [--num_classes 1000]

An absl program: flags in ``flags/convert.py`` (``--flagfile=FILE`` works, ``--help`` lists
them); ``main(argv)`` takes the arguments without the program name. Bad flags exit with
status 2, a failed conversion with status 1, each with one ``error:`` line.

Supported architectures (``models`` registry name == timm name):

====================  ===========================  ================================
arch                  timm                         torchvision
====================  ===========================  ================================
resnet18/34/50/101/152  ``resnet*``                ``torchvision.models.resnet*``
resnet50d/101d/152d   ``resnet*d`` (deep stem,      --
                      avg-pool shortcut)
seresnet50            ``seresnet50`` (SE r=16,      --
                      with biases)
resnetblur50          ``resnetblur50`` (BlurPool    --
                      after strided 3x3 + stem)
====================  ===========================  ================================

What is converted:

* convolutions: ``weight`` OIHW -> Keras HWIO (``transpose(2, 3, 1, 0)``), biases as they are
  (only the SE 1x1 convs have biases);
* batch norm: ``weight/bias/running_mean/running_var`` -> ``gamma/beta/moving_mean/
  moving_variance``; ``num_batches_tracked`` is dropped;
* the classifier ``fc``: ``weight`` ``[K, C]`` transposed to the Dense kernel ``[C, K]``.

The key mapping is by name only: every torch key maps to a Keras variable path
(``stage2_block1_conv2/kernel``, ``stage1_block1_se/se_reduce/bias``, ...), which relies on
the stable layer names of :mod:`models.resnet`. A state dict of another architecture (or
another variant: resnet50 vs resnet50d) raises ``ValueError`` listing the torch keys that
have no place in the model, the model variables that the state dict does not fill, and the
shape mismatches. Nothing is written then.

Numerical equivalence (checked by ``tests/test_convert.py`` against timm with random weights,
in eval mode, float32 on the CPU: max abs difference of the logits < 1e-4 relative to their
scale): it holds because the model code pads strided convolutions and the stem max-pool
symmetrically like PyTorch, the ResNet-D shortcut pool excludes padding like timm's
``AvgPool2d(count_include_pad=False)``, BlurPool pads by reflection like timm's
``BlurPool2d``, and the batch-norm epsilon is 1e-5 in both (``ResNetConfig.bn_epsilon``). The
converter refuses a model config with another epsilon, since the outputs would differ.

Inputs: timm / torchvision networks expect ``(x / 255 - mean) / std`` with the ImageNet mean
and std, i.e. this project's ``normalization="mean_std"`` (RGB, 0..255 inputs). The paper's
runs use ``"mean"`` (mean subtraction only); fine-tuning converted weights should use
``mean_std``. The converter writes ``OUT.json`` beside the weights with the model name,
overrides, class count and this normalization so a run can be configured to match.

Process note: only ``torch.load`` is used here (no torchvision / timm import). Importing
torchvision or timm *after* TensorFlow crashes the process with the CUDA build of torch 2.14.1
(its ``triton`` extension clashes with TensorFlow's; seen with TF 2.21), so code that needs
both imports torch, torchvision and timm first, or runs them in another process, as
``tests/test_convert.py`` does.

Deviation from the paper's code: the official repository converts nothing from PyTorch (it
starts from TF checkpoints); this tool exists so that pretrained ImageNet weights from the
PyTorch ecosystem can initialize fine-tuning (``--init_checkpoint OUT.weights.h5``).
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

import flags.convert as convert_flags
from flags import cli
# The supported architectures live with the flags (their help lists them).
from flags.convert import SOURCES, TIMM_ARCHS, TORCHVISION_ARCHS  # noqa: F401

TORCH_BN_EPSILON = 1e-5

_BN_FIELDS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
              "running_var": "moving_variance"}
_DEEP_STEM = {"0": ("stem_conv1", "conv"), "1": ("stem_bn1", "bn"),
              "3": ("stem_conv2", "conv"), "4": ("stem_bn2", "bn"),
              "6": ("stem_conv3", "conv")}
_BLOCK_RE = re.compile(r"^layer(\d+)\.(\d+)\.(.+)$")


def supported_archs(source: str) -> Tuple[str, ...]:
    if source == "timm":
        return TIMM_ARCHS
    if source == "torchvision":
        return TORCHVISION_ARCHS
    raise ValueError(f"unknown --source {source!r}; use one of {list(SOURCES)}")


# ----------------------------------------------------------------------------- key mapping
def _param(prefix: str, kind: str, field: str) -> Optional[Tuple[str, str]]:
    """(keras variable path, transform) of one torch parameter of a conv / bn / linear."""
    if kind == "conv":
        if field == "weight":
            return f"{prefix}/kernel", "conv"
        if field == "bias":
            return f"{prefix}/bias", "copy"
        return None
    if kind == "bn":
        if field in _BN_FIELDS:
            return f"{prefix}/{_BN_FIELDS[field]}", "copy"
        return None
    if kind == "linear":
        if field == "weight":
            return f"{prefix}/kernel", "linear"
        if field == "bias":
            return f"{prefix}/bias", "copy"
    return None


def map_key(key: str, deep_stem: bool, avg_down: bool) -> Optional[Tuple[str, str]]:
    """Maps a timm / torchvision ResNet key to ``(keras path, transform)``; None: unknown.

    ``transform``: ``conv`` (OIHW -> HWIO), ``linear`` (transpose), ``copy``.
    """
    field = key.rsplit(".", 1)[-1]
    module = key[: -len(field) - 1]
    if module == "conv1":
        return _param("stem_conv1", "conv", field)
    if module == "bn1":
        return _param("stem_bn3" if deep_stem else "stem_bn1", "bn", field)
    if module.startswith("conv1.") and deep_stem:
        idx = module.split(".", 1)[1]
        if idx in _DEEP_STEM:
            name, kind = _DEEP_STEM[idx]
            return _param(name, kind, field)
        return None
    if module == "fc":
        return _param("logits", "linear", field)
    m = _BLOCK_RE.match(key)
    if not m:
        return None
    stage, block, rest = int(m.group(1)), int(m.group(2)), m.group(3)
    p = f"stage{stage}_block{block + 1}"
    sub = rest[: -len(field) - 1]
    if re.fullmatch(r"conv\d", sub):
        return _param(f"{p}_{sub}", "conv", field)
    if re.fullmatch(r"bn\d", sub):
        return _param(f"{p}_{sub}", "bn", field)
    if sub == "se.fc1":
        return _param(f"{p}_se/se_reduce", "conv", field)
    if sub == "se.fc2":
        return _param(f"{p}_se/se_expand", "conv", field)
    if sub.startswith("downsample."):
        idx = sub.split(".", 1)[1]
        conv_idx, bn_idx = ("1", "2") if avg_down else ("0", "1")
        if idx == conv_idx:
            return _param(f"{p}_down_conv", "conv", field)
        if idx == bn_idx:
            return _param(f"{p}_down_bn", "bn", field)
    return None


def _transform(value: np.ndarray, how: str) -> np.ndarray:
    if how == "conv":
        if value.ndim != 4:
            raise ValueError(f"expected a 4-D conv weight, got shape {value.shape}")
        return np.transpose(value, (2, 3, 1, 0))
    if how == "linear":
        if value.ndim != 2:
            raise ValueError(f"expected a 2-D linear weight, got shape {value.shape}")
        return value.T
    return value


def _variable_paths(model) -> Dict[str, object]:
    """Keras variable path -> variable, for every weight of ``model`` (nested layers too)."""
    out = {}
    for w in model.weights:
        path = w.path
        # Functional models prefix nothing; keep the path relative to the model.
        if model.name and path.startswith(model.name + "/"):
            path = path[len(model.name) + 1:]
        out[path] = w
    return out


def _weightless_ok(path: str) -> bool:
    """Model variables that a torch state dict never holds (none for the supported archs)."""
    return False


def convert_state_dict(state_dict: Mapping[str, np.ndarray], model, arch: str,
                       load_head: bool = True) -> Dict[str, List[str]]:
    """Assigns ``state_dict`` (numpy arrays) to ``model`` (built for ``arch``).

    Checks everything before assigning anything: raises ``ValueError`` listing the torch
    keys without a place in the model (unexpected), the model variables not filled
    (missing) and the shape mismatches. ``load_head=False`` skips ``fc.*`` and leaves the
    ``logits`` layer as initialized (fine-tuning to another class count).
    Returns ``{"assigned": [...], "skipped": [...]}`` (keras paths / torch keys).
    """
    import models
    cfg = models.get_model_config(arch)
    deep_stem = getattr(cfg, "stem", "") == "deep"
    avg_down = getattr(cfg, "shortcut", "") in ("avg2", "avg3")
    targets = _variable_paths(model)

    assignments: Dict[str, np.ndarray] = {}
    unexpected: List[str] = []
    shape_errors: List[str] = []
    skipped: List[str] = []
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            skipped.append(key)
            continue
        if not load_head and key.startswith("fc."):
            skipped.append(key)
            continue
        mapped = map_key(key, deep_stem, avg_down)
        if mapped is None or mapped[0] not in targets:
            unexpected.append(key if mapped is None else f"{key} (-> {mapped[0]})")
            continue
        path, how = mapped
        try:
            array = _transform(np.asarray(value, dtype=np.float32), how)
        except ValueError as e:
            shape_errors.append(f"{key}: {e}")
            continue
        want = tuple(targets[path].shape)
        if tuple(array.shape) != want:
            shape_errors.append(f"{key} {tuple(np.shape(value))} -> {path} {want}")
            continue
        assignments[path] = array
    missing = sorted(p for p in targets
                     if p not in assignments and not _weightless_ok(p)
                     and not (not load_head and p.startswith("logits/")))
    if unexpected or missing or shape_errors:
        lines = [f"the state dict does not match model {arch!r} "
                 f"({len(state_dict)} tensors in the state dict, {len(targets)} model variables):"]
        if unexpected:
            lines.append(f"  state-dict keys with no place in the model ({len(unexpected)}): "
                         + ", ".join(unexpected[:25]) + (" ..." if len(unexpected) > 25 else ""))
        if missing:
            lines.append(f"  model variables the state dict does not fill ({len(missing)}): "
                         + ", ".join(missing[:25]) + (" ..." if len(missing) > 25 else ""))
        if shape_errors:
            lines.append(f"  shape mismatches ({len(shape_errors)}): "
                         + "; ".join(shape_errors[:25]) + (" ..." if len(shape_errors) > 25 else ""))
        lines.append("  is --arch right (e.g. resnet50 vs resnet50d) and is this a "
                     f"{arch} checkpoint?")
        raise ValueError("\n".join(lines))
    for path, array in assignments.items():
        targets[path].assign(array)
    return {"assigned": sorted(assignments), "skipped": skipped}


# ----------------------------------------------------------------------------- loading
def load_torch_state_dict(path: str) -> Dict[str, np.ndarray]:
    """Reads a ``.pth`` / ``.pt`` (torch.save) or ``.safetensors`` / ``.npz`` state dict.

    Unwraps ``{"state_dict": ...}``, ``{"model": ...}`` / ``{"model_state": ...}`` wrappers
    and the ``module.`` prefix of ``DataParallel`` checkpoints. Tensors come back as float32
    numpy arrays (integer buffers unchanged).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"--checkpoint {path!r} does not exist")
    if path.endswith(".npz"):
        with np.load(path) as z:
            raw = {k: z[k] for k in z.files}
    elif path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as e:  # pragma: no cover
            raise ImportError("reading .safetensors needs the 'safetensors' package") from e
        raw = load_file(path)
    else:
        try:
            import torch
        except ImportError as e:
            raise ImportError("reading a PyTorch checkpoint needs torch: pip install "
                              "'assemble-cnn[convert]' (see docs/EVALUATION.md)") from e
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"--checkpoint {path!r} is not a readable PyTorch state dict: {e}") from e
    for wrapper in ("state_dict", "model", "model_state", "model_state_dict"):
        if isinstance(raw, Mapping) and wrapper in raw and isinstance(raw[wrapper], Mapping):
            raw = raw[wrapper]
            break
    if not isinstance(raw, Mapping):
        raise ValueError(f"--checkpoint {path!r} holds a {type(raw).__name__}, not a state dict "
                         "(save model.state_dict(), not the model)")
    out = {}
    for key, value in raw.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if hasattr(value, "detach"):
            value = value.detach().cpu()
            if value.is_floating_point():
                value = value.float()
            value = value.numpy()
        out[key] = np.asarray(value)
    return out


def _head_classes(state_dict: Mapping[str, np.ndarray]) -> Optional[int]:
    w = state_dict.get("fc.weight")
    return int(w.shape[0]) if w is not None and np.ndim(w) == 2 else None


def convert(source: str, arch: str, checkpoint: str, output: str,
            num_classes: Optional[int] = None, image_size: int = 224) -> Dict[str, object]:
    """Loads ``checkpoint`` into ``models.build_model(arch)`` and saves ``output``.

    ``num_classes``: default the checkpoint's ``fc`` size. A different value keeps the
    converted backbone and leaves a freshly initialized ``logits`` layer (the ``fc`` weights
    are skipped and reported). Writes ``output`` (``*.weights.h5``) and ``output`` with
    ``.json`` instead of ``.weights.h5`` atomically; returns the summary written there.
    """
    if arch not in supported_archs(source):
        raise ValueError(f"--arch {arch!r} is not supported for --source {source}; "
                         f"supported: {list(supported_archs(source))}")
    if not output.endswith(".weights.h5"):
        raise ValueError(f"--output must end with .weights.h5 (Keras weights file), got {output!r}")
    # Read the checkpoint (imports torch) before TensorFlow is imported through ``models``:
    # importing torch's triton after TensorFlow crashes the process (see the module doc).
    state_dict = load_torch_state_dict(checkpoint)
    import models
    cfg = models.get_model_config(arch)
    if abs(cfg.bn_epsilon - TORCH_BN_EPSILON) > 1e-12:
        raise ValueError(f"model {arch!r} has bn_epsilon={cfg.bn_epsilon}; PyTorch's batch norm "
                         f"uses {TORCH_BN_EPSILON}, so the converted network would differ")
    ckpt_classes = _head_classes(state_dict)
    if ckpt_classes is None:
        raise ValueError(f"--checkpoint {checkpoint!r} has no fc.weight: not a {source} "
                         f"{arch} classifier state dict (keys: {list(state_dict)[:10]} ...)")
    classes = int(num_classes or ckpt_classes)
    load_head = classes == ckpt_classes
    model = models.build_model(arch, num_classes=classes, input_shape=(image_size, image_size, 3))
    result = convert_state_dict(state_dict, model, arch, load_head=load_head)

    out_dir = os.path.dirname(os.path.abspath(output)) or "."
    os.makedirs(out_dir, exist_ok=True)
    summary = {
        "source": source,
        "arch": arch,
        "checkpoint": os.path.abspath(checkpoint),
        "model": arch,
        "overrides": {},
        "num_classes": classes,
        "head_converted": load_head,
        "checkpoint_num_classes": ckpt_classes,
        "normalization": "mean_std",
        "bn_epsilon": cfg.bn_epsilon,
        "num_variables": len(result["assigned"]),
    }
    meta_path = output[: -len(".weights.h5")] + ".json"
    fd, tmp_weights = tempfile.mkstemp(prefix=".tmp-convert-", suffix=".weights.h5", dir=out_dir)
    os.close(fd)
    try:
        model.save_weights(tmp_weights, overwrite=True)
        tmp_meta = meta_path + f".tmp-{os.getpid()}"
        with open(tmp_meta, "w") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
        os.replace(tmp_weights, output)
        os.replace(tmp_meta, meta_path)
    finally:
        for p in (tmp_weights, meta_path + f".tmp-{os.getpid()}"):
            if os.path.exists(p):
                os.remove(p)
    summary["output"] = os.path.abspath(output)
    return summary


# ----------------------------------------------------------------------------- CLI
PROG = "python -m official.convert"


def parse_args(argv: Optional[List[str]] = None):
    """The flags (``flags/convert.py``) parsed from ``argv`` (without the program name;
    default ``sys.argv[1:]``) into a fresh ``absl.flags.FlagValues``. ``--flagfile=FILE``
    works; ``--help`` prints the flags and exits; bad flags raise
    ``flags.cli.UsageError`` (a ``ValueError``) naming the flag."""
    return cli.parse(convert_flags.define, argv, prog=PROG, usage=__doc__,
                     required=convert_flags.REQUIRED)


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    """Runs the program on ``argv`` (flags only, no program name; default ``sys.argv[1:]``)
    and prints the summary JSON on stdout; callable repeatedly from Python."""
    args = parse_args(argv)
    summary = convert(args.source, args.arch, args.checkpoint, args.output,
                      num_classes=args.num_classes, image_size=args.image_size)
    print(json.dumps(summary, sort_keys=True))
    return summary


def run() -> None:
    """Console-script entry point: clear one-line errors; exit status 2 for bad flags (as
    before with argparse), 1 for a failed conversion."""
    try:
        main(sys.argv[1:])
    except cli.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
