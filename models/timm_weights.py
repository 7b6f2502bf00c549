"""timm / torchvision ResNet state dicts -> this project's Keras models (pure NumPy mapping).

The key mapping (``map_key``), the tensor layout changes and the loader of ``.pth`` /
``.safetensors`` / ``.npz`` state dicts live here, under ``models/``, so that
``models.build_model(name, weights="x.safetensors")`` can read timm weights without importing
``official`` (the layering rule: ``models`` imports neither ``official`` nor ``data``, and
uses ``keras.ops`` / ``Variable.assign`` only). ``official.convert`` (the converter program)
uses these functions; its docstring explains the mapping, the numerical equivalence and the
torch / TensorFlow import order.

``PRETRAINED`` holds what timm's pretrained configs say about the ImageNet weights of each
architecture both projects share (timm 1.0.31 ``timm/models/resnet.py`` ``default_cfgs``; the
first tag listed there is timm's default, the one ``timm.create_model(arch,
pretrained=True)`` and the hub name ``arch`` download): input size, centre-crop fraction,
interpolation and the ImageNet mean / std. It is hard-coded because the metadata must travel
with weights files that carry none (a bare ``.safetensors``), and because no download is
possible in tests. :func:`pretrained_info` turns it into this project's preprocessing terms:
``normalization="mean_std"``, ``image_size`` and ``eval_preprocess`` (the crop fraction as a
string, e.g. ``"0.95"``: resize the short side to ``int(size / 0.95)``, centre-crop
``size``).

Deviation: timm evaluates most of these weights with bicubic resizing; this project's eval
preprocessing (the paper's) resizes bilinearly, so top-1 of converted ImageNet weights can
differ slightly from timm's published figure (docs/MODELS.md).
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

import models  # the registry (get_model_config), used at call time

# Architectures both projects define with the same layer layout (models registry name == timm
# name). torchvision has the plain ResNets only.
TIMM_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
              "resnet50d", "resnet101d", "resnet152d", "seresnet50", "resnetblur50")
TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
TORCH_BN_EPSILON = 1e-5

# timm's ImageNet mean / std (timm.data.IMAGENET_DEFAULT_MEAN / _STD), fractions of 255.
TIMM_IMAGENET_MEAN = (0.485, 0.456, 0.406)
TIMM_IMAGENET_STD = (0.229, 0.224, 0.225)

# arch -> (default pretrained tag, eval input size, crop_pct, interpolation), timm 1.0.31.
# All ImageNet-1k (1000 classes), mean/std = the ImageNet defaults above.
PRETRAINED: Dict[str, Tuple[str, int, float, str]] = {
    "resnet18": ("a1_in1k", 224, 0.95, "bicubic"),
    "resnet34": ("a1_in1k", 224, 0.95, "bicubic"),
    "resnet50": ("a1_in1k", 224, 0.95, "bicubic"),
    "resnet101": ("a1h_in1k", 224, 0.95, "bicubic"),
    "resnet152": ("a1h_in1k", 224, 0.95, "bicubic"),
    "resnet50d": ("ra2_in1k", 224, 0.875, "bicubic"),
    "resnet101d": ("ra2_in1k", 256, 0.95, "bicubic"),
    "resnet152d": ("ra2_in1k", 256, 0.95, "bicubic"),
    "seresnet50": ("a1_in1k", 224, 0.95, "bicubic"),
    "resnetblur50": ("bt_in1k", 224, 0.875, "bicubic"),
}
assert set(PRETRAINED) == set(TIMM_ARCHS)

_HUB_RE = re.compile(r"^(?:hf[-_]hub:)?(?:timm/)?([a-z0-9_]+?)(?:\.([a-z0-9_]+))?$")


def parse_timm_name(name: str) -> Optional[Tuple[str, str]]:
    """``resnet50d`` / ``resnet50d.ra2_in1k`` / ``timm/resnet50d.ra2_in1k`` /
    ``hf-hub:timm/resnet50d.ra2_in1k`` -> ``(arch, tag)`` (the default tag when none is
    given); None when ``name`` is not a supported timm architecture name."""
    m = _HUB_RE.match(name.strip())
    if not m or m.group(1) not in PRETRAINED:
        return None
    return m.group(1), m.group(2) or PRETRAINED[m.group(1)][0]


def pretrained_info(arch: str, pretrained_cfg: Optional[Mapping] = None) -> Dict[str, object]:
    """This project's preprocessing for timm weights of ``arch``: ``normalization``,
    ``image_size``, ``eval_preprocess``, ``interpolation``. ``pretrained_cfg`` (the
    ``pretrained_cfg`` of a timm hub ``config.json``) wins over the hard-coded table; a mean /
    std other than ImageNet's raises ``ValueError`` (this project normalizes only with those)."""
    _, size, crop, interpolation = PRETRAINED[arch]
    cfg = dict(pretrained_cfg or {})
    if cfg.get("input_size"):
        size = int(cfg["input_size"][-1])
    crop = float(cfg.get("crop_pct", crop))
    interpolation = cfg.get("interpolation", interpolation)
    for key, want in (("mean", TIMM_IMAGENET_MEAN), ("std", TIMM_IMAGENET_STD)):
        if key in cfg and not np.allclose(cfg[key], want, atol=1e-4):
            raise ValueError(f"timm weights of {arch} use {key}={cfg[key]}; this project "
                             f"normalizes with the ImageNet {key} {want} only (mean_std)")
    return {"normalization": "mean_std", "image_size": size,
            "eval_preprocess": "imagenet" if abs(crop - 0.875) < 1e-9 else repr(crop),
            "interpolation": interpolation}


_BN_FIELDS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
              "running_var": "moving_variance"}
_DEEP_STEM = {"0": ("stem_conv1", "conv"), "1": ("stem_bn1", "bn"),
              "3": ("stem_conv2", "conv"), "4": ("stem_bn2", "bn"),
              "6": ("stem_conv3", "conv")}
_BLOCK_RE = re.compile(r"^layer(\d+)\.(\d+)\.(.+)$")


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
def load_torch_state_dict(path: str, what: str = "--checkpoint") -> Dict[str, np.ndarray]:
    """Reads a ``.pth`` / ``.pt`` (torch.save) or ``.safetensors`` / ``.npz`` state dict.

    Unwraps ``{"state_dict": ...}``, ``{"model": ...}`` / ``{"model_state": ...}`` wrappers
    and the ``module.`` prefix of ``DataParallel`` checkpoints. Tensors come back as float32
    numpy arrays (integer buffers unchanged). ``what`` names the flag or argument in the
    error messages (``--checkpoint``, ``--weights``, ``weights=``).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    if path.endswith(".npz"):
        with np.load(path) as z:
            raw = {k: z[k] for k in z.files}
    elif path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as e:  # pragma: no cover
            raise ImportError(f"{what} {path!r}: reading .safetensors needs the 'safetensors' "
                              "package: pip install 'assemble-cnn[convert]'") from e
        try:
            raw = load_file(path)
        except Exception as e:  # safetensors_rust.SafetensorError: header / size mismatch
            raise ValueError(f"{what} {path!r} is not a readable .safetensors file: {e}") from e
    else:
        try:
            import torch
        except ImportError as e:
            raise ImportError(f"{what} {path!r}: reading a PyTorch state dict needs torch: pip "
                              "install 'assemble-cnn[torch]' (or convert it to .safetensors "
                              "elsewhere)") from e
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{what} {path!r} is not a readable PyTorch state dict: {e}") from e
    for wrapper in ("state_dict", "model", "model_state", "model_state_dict"):
        if isinstance(raw, Mapping) and wrapper in raw and isinstance(raw[wrapper], Mapping):
            raw = raw[wrapper]
            break
    if not isinstance(raw, Mapping):
        raise ValueError(f"{what} {path!r} holds a {type(raw).__name__}, not a state dict "
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


def head_classes(state_dict: Mapping[str, np.ndarray]) -> Optional[int]:
    w = state_dict.get("fc.weight")
    return int(w.shape[0]) if w is not None and np.ndim(w) == 2 else None


