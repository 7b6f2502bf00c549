"""Weights in: what a weights PATH holds, the metadata that travels with it, and loading it.

``models.build_model(name, ..., weights=PATH)`` and the programs' ``--weights=PATH``
(``official.train`` warm start, ``official.evaluate``, ``official.export``,
``official.predict``) accept the same PATHs, resolved here by :func:`resolve`:

=============================  =====================================================================
PATH                           metadata (architecture, overrides, classes, preprocessing) from
=============================  =====================================================================
run directory                  its ``run_config.json``; weights: the latest complete checkpoint
                               (``checkpoints/ckpt-N`` with ``state.json``, highest N: the rule of
                               ``official.checkpoints.read_index``)
checkpoint directory           ``RUN/checkpoints/ckpt-N`` (holds ``model.weights.h5``): the run's
                               ``run_config.json`` two levels up, when present
``X.weights.h5``               ``X.json`` beside it (written by ``official.convert``), when present
``X.keras``                    ``X.json`` beside it when present, else the saved model's own config
                               (its name and classifier width)
``X.safetensors`` / ``.pth`` /  a timm/torchvision state dict: ``X.json`` beside it, else a timm hub
``.pt`` / ``.bin`` / ``.npz``  ``config.json`` in the same folder (``architecture``,
                               ``pretrained_cfg``), else the file name when it is a timm name
                               (``resnet50d.safetensors``, ``resnet50d.ra2_in1k.pth``), else the
                               ``name`` passed to ``build_model``; preprocessing from
                               :data:`models.timm_weights.PRETRAINED`
timm hub name                  ``resnet50d``, ``resnet50d.ra2_in1k``, ``timm/resnet50d.ra2_in1k``,
                               ``hf-hub:timm/...``: ``model.safetensors`` and ``config.json`` of the
                               hub repository ``timm/<arch>.<tag>`` are downloaded with
                               ``huggingface_hub`` (progress bar; cached in the Hugging Face cache)
=============================  =====================================================================

The metadata (:class:`WeightsInfo`) says which network the weights belong to, how many classes
their head has and which preprocessing they expect (``normalization``: ``mean_std`` for timm /
torchvision weights, the paper's ``mean`` for this project's runs unless the run chose
otherwise; ``image_size`` and ``eval_preprocess``; ``class_names``: the 1000 ImageNet-1k names
for 1000-class timm weights). Programs apply it automatically and refuse a contradiction
(another architecture, another normalization) with an error naming the file.

Layering: this module uses the file formats only (JSON, HDF5 through Keras, NumPy, safetensors,
torch for ``.pth``); it imports neither ``official`` nor ``data``. Deviation from the paper's
code: the original starts fine-tuning from its own TF checkpoints only
(``--pretrained_model_checkpoint_path``); timm weights and hub names are an addition.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import zipfile
from typing import Any, Dict, List, Optional

import models  # the package's registry: pretrained is one of its modules, used at call time
from models import imagenet_classes, timm_weights

STATE_DICT_EXTS = (".safetensors", ".pth", ".pt", ".bin", ".npz")
HUB_FILES = ("model.safetensors", "config.json")
_CKPT_RE = re.compile(r"^ckpt-(\d+)$")
# Config fields that change training, not the weights or the inference function: weights of a
# network that differs only in these fit (e.g. fine-tuning timm resnet50d with another BN
# momentum, DropBlock or dropout).
TRAINING_ONLY_FIELDS = ("dropout_rate", "bn_momentum", "synchronized_bn", "zero_gamma",
                        "drop_block", "drop_block_size", "drop_block_gamma_scales",
                        "drop_block_per_sample")


class WeightsError(ValueError):
    """A weights PATH that cannot be used: missing, unreadable, or contradicting what was asked
    (architecture, classes, normalization). The message names the file and what is wrong."""


@dataclasses.dataclass
class WeightsInfo:
    """What :func:`resolve` found. ``None`` fields: the weights do not say."""
    spec: str                       # the PATH or hub name as given
    kind: str                       # run | checkpoint | keras_weights | keras | state_dict | saved_model
    path: str                       # local file or folder the weights are read from
    arch: Optional[str] = None      # models registry name
    overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)
    num_classes: Optional[int] = None
    image_size: Optional[int] = None
    eval_preprocess: Optional[str] = None
    normalization: Optional[str] = None
    class_names: Optional[List[str]] = None
    metadata_from: str = ""         # the file (or table) the metadata above came from
    source: str = ""                # ours | timm | torchvision
    hub_repo: Optional[str] = None  # timm/<arch>.<tag> when downloaded
    run_config: Optional[Dict[str, Any]] = None  # the run's run_config.json (run/checkpoint)
    state_dict: Any = dataclasses.field(default=None, repr=False)

    def describe(self) -> str:
        bits = [f"{self.kind} {self.path}"]
        if self.arch:
            bits.append(f"{self.arch}{' ' + json.dumps(self.overrides) if self.overrides else ''}")
        if self.num_classes:
            bits.append(f"{self.num_classes} classes")
        if self.normalization:
            bits.append(f"normalization {self.normalization}")
        if self.metadata_from:
            bits.append(f"metadata from {self.metadata_from}")
        return ", ".join(bits)

    def preprocessing(self) -> Dict[str, Any]:
        """``{"normalization", "image_size", "eval_preprocess"}`` (the known ones)."""
        out = {"normalization": self.normalization, "image_size": self.image_size,
               "eval_preprocess": self.eval_preprocess}
        return {k: v for k, v in out.items() if v is not None}


# ----------------------------------------------------------------------------- resolving
def _read_json(path: str, what: str, spec: str) -> Dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"{what} {spec!r}: cannot read its metadata {path}: {e}") from e


def latest_checkpoint_dir(run_dir: str) -> Optional[str]:
    """The run's latest complete checkpoint directory (``state.json`` present), or None."""
    root = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(root):
        return None
    found = [(int(m.group(1)), n) for n in os.listdir(root) for m in [_CKPT_RE.match(n)]
             if m and os.path.exists(os.path.join(root, n, "state.json"))]
    return os.path.join(root, max(found)[1]) if found else None


def _from_run_config(info: WeightsInfo, cfg: Dict[str, Any], path: str) -> None:
    model, data = cfg.get("model", {}), cfg.get("data", {})
    overrides = dict(model.get("overrides") or {})
    if model.get("zero_gamma"):
        overrides["zero_gamma"] = True
    info.arch = model.get("name")
    info.overrides = overrides
    info.num_classes = model.get("num_classes")
    info.image_size = model.get("image_size")
    info.eval_preprocess = data.get("eval_preprocess")
    info.normalization = data.get("normalization")
    info.class_names = data.get("class_names")
    info.metadata_from = path
    info.source = "ours"
    info.run_config = cfg


def _from_sidecar(info: WeightsInfo, meta: Dict[str, Any], path: str) -> None:
    """The JSON beside a weights file (``official.convert`` writes ``model``, ``overrides``,
    ``num_classes``, ``normalization``, ``image_size``, ``eval_preprocess``,
    ``class_names``); any subset is accepted."""
    info.arch = meta.get("model") or meta.get("arch") or info.arch
    info.overrides = dict(meta.get("overrides") or {})
    for key in ("num_classes", "image_size", "eval_preprocess", "normalization",
                "class_names"):
        if meta.get(key) is not None:
            setattr(info, key, meta[key])
    info.source = meta.get("source", info.source or "ours")
    info.metadata_from = path


def _sidecar(path: str) -> Optional[str]:
    for ext in (".weights.h5",) + STATE_DICT_EXTS + (".keras",):
        if path.endswith(ext):
            candidate = path[: -len(ext)] + ".json"
            return candidate if os.path.isfile(candidate) else None
    return None


def _apply_timm(info: WeightsInfo, arch: str, pretrained_cfg: Optional[Dict[str, Any]],
                origin: str) -> None:
    try:
        pre = timm_weights.pretrained_info(arch, pretrained_cfg)
    except ValueError as e:
        raise WeightsError(f"{origin}: {e}") from e
    info.arch = arch
    info.image_size = pre["image_size"]
    info.eval_preprocess = pre["eval_preprocess"]
    info.normalization = pre["normalization"]
    info.source = "timm"
    info.metadata_from = origin


def _state_dict_info(info: WeightsInfo, what: str, name_hint: Optional[str]) -> None:
    path = info.path
    info.num_classes = _safetensors_head_classes(path, what, info.spec)
    if info.num_classes is None:  # .pth / .bin / .npz: read it all now (kept for loading)
        try:
            info.state_dict = timm_weights.load_torch_state_dict(path, what=what)
        except (ValueError, FileNotFoundError, ImportError) as e:
            raise WeightsError(str(e)) from e
        info.num_classes = timm_weights.head_classes(info.state_dict)
    sidecar = _sidecar(path)
    hub_config = os.path.join(os.path.dirname(path), "config.json")
    stem = os.path.basename(path)
    for ext in STATE_DICT_EXTS:
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    if sidecar:
        _from_sidecar(info, _read_json(sidecar, what, info.spec), sidecar)
        if info.arch in timm_weights.PRETRAINED and info.normalization is None:
            _apply_timm(info, info.arch, None, sidecar)
    elif os.path.isfile(hub_config) and "architecture" in _read_json(hub_config, what, info.spec):
        cfg = _read_json(hub_config, what, info.spec)
        arch = cfg["architecture"]
        if arch not in timm_weights.PRETRAINED:
            raise WeightsError(f"{what} {info.spec!r}: {hub_config} says architecture {arch!r}, "
                               f"which has no equivalent here; supported timm architectures: "
                               f"{', '.join(timm_weights.TIMM_ARCHS)}")
        _apply_timm(info, arch, cfg.get("pretrained_cfg"), hub_config)
        names = (cfg.get("pretrained_cfg") or {}).get("label_names") or cfg.get("label_names")
        if names:
            info.class_names = list(names)
    elif timm_weights.parse_timm_name(stem):
        _apply_timm(info, timm_weights.parse_timm_name(stem)[0], None,
                    f"the timm name in the file name {os.path.basename(path)!r}")
    elif name_hint in timm_weights.PRETRAINED:
        _apply_timm(info, name_hint, None, f"the architecture asked for ({name_hint})")
    if info.class_names is None and info.source == "timm" and info.num_classes == 1000:
        info.class_names = list(imagenet_classes.NAMES)


def _safetensors_head_classes(path: str, what: str, spec: str) -> Optional[int]:
    """Rows of ``fc.weight`` from a ``.safetensors`` header alone (no tensor is read); None
    for other formats."""
    if not path.endswith(".safetensors"):
        return None
    try:
        from safetensors import safe_open
    except ImportError as e:
        raise WeightsError(f"{what} {spec!r}: reading .safetensors needs the 'safetensors' "
                           "package: pip install 'assemble-cnn[convert]'") from e
    try:
        with safe_open(path, framework="numpy") as f:
            if "fc.weight" not in f.keys():
                return None
            shape = f.get_slice("fc.weight").get_shape()
    except Exception as e:  # SafetensorError: bad header
        raise WeightsError(f"{what} {spec!r} is not a readable .safetensors file: {e}") from e
    return int(shape[0]) if len(shape) == 2 else None


def _keras_info(info: WeightsInfo, what: str) -> None:
    """Architecture name and classifier width from a ``.keras`` archive's ``config.json``."""
    sidecar = _sidecar(info.path)
    if sidecar:
        _from_sidecar(info, _read_json(sidecar, what, info.spec), sidecar)
        return
    try:
        with zipfile.ZipFile(info.path) as z:
            cfg = json.loads(z.read("config.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise WeightsError(f"{what} {info.spec!r} is not a readable .keras file: {e}") from e
    name = (cfg.get("config") or {}).get("name")
    if name in models.list_models():
        info.arch = name
        info.metadata_from = f"{info.path} (its model config)"
    for layer in (cfg.get("config") or {}).get("layers", []):
        if layer.get("name") == "logits":
            info.num_classes = (layer.get("config") or {}).get("units")


def resolve(spec: str, what: str = "weights=", name_hint: Optional[str] = None,
            download: bool = True) -> WeightsInfo:
    """What ``spec`` holds (see the module docstring); reads metadata, not the network.

    ``what`` names the argument or flag in error messages (``--weights``). ``name_hint``: the
    architecture the caller builds, used for state dicts that carry no name. Timm hub names are
    downloaded (``download=False`` raises instead). Raises :class:`WeightsError` (or
    ``FileNotFoundError`` for a missing path that is no hub name either).
    """
    if not spec or not isinstance(spec, str):
        raise WeightsError(f"{what} must be a path or a timm name, got {spec!r}")
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            return WeightsInfo(spec, "saved_model", path, metadata_from=path)
        if os.path.exists(os.path.join(path, "run_config.json")):
            info = WeightsInfo(spec, "run", path)
            _from_run_config(info, _read_json(os.path.join(path, "run_config.json"), what, spec),
                             os.path.join(path, "run_config.json"))
            ckpt = latest_checkpoint_dir(path)
            if ckpt is None:
                raise WeightsError(f"{what} {spec!r}: the run directory has no complete "
                                   f"checkpoint in {os.path.join(path, 'checkpoints')}")
            info.path = os.path.join(ckpt, "model.weights.h5")
            return info
        if os.path.exists(os.path.join(path, "model.weights.h5")):
            info = WeightsInfo(spec, "checkpoint", os.path.join(path, "model.weights.h5"))
            run_cfg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(path))),
                                   "run_config.json")
            if os.path.exists(run_cfg):
                _from_run_config(info, _read_json(run_cfg, what, spec), run_cfg)
            return info
        for name in ("model.safetensors", "pytorch_model.bin"):  # a hub snapshot folder
            if os.path.isfile(os.path.join(path, name)):
                return resolve(os.path.join(path, name), what, name_hint, download)
        raise WeightsError(f"{what} {spec!r} is a folder but holds no run (run_config.json), "
                           "checkpoint (model.weights.h5), SavedModel (saved_model.pb) or "
                           "model.safetensors")
    if os.path.isfile(path):
        if path.endswith(".weights.h5"):
            info = WeightsInfo(spec, "keras_weights", path)
            sidecar = _sidecar(path)
            if sidecar:
                _from_sidecar(info, _read_json(sidecar, what, spec), sidecar)
            return info
        if path.endswith(".keras"):
            info = WeightsInfo(spec, "keras", path, source="ours")
            _keras_info(info, what)
            return info
        if path.endswith(STATE_DICT_EXTS):
            info = WeightsInfo(spec, "state_dict", path)
            _state_dict_info(info, what, name_hint)
            return info
        raise WeightsError(f"{what} {spec!r}: unknown weights format; use a run or checkpoint "
                           "directory, .weights.h5, .keras, .safetensors, .pth/.pt/.bin, .npz, "
                           "a SavedModel directory or a timm name such as resnet50d")
    parsed = timm_weights.parse_timm_name(spec)
    if parsed is None:
        raise FileNotFoundError(
            f"{what} {spec!r} does not exist and is not a timm name of a supported architecture ("
            + ", ".join(timm_weights.TIMM_ARCHS) + ", optionally with a tag: resnet50d.ra2_in1k)")
    arch, tag = parsed
    repo = f"timm/{arch}.{tag}"
    if not download:
        raise WeightsError(f"{what} {spec!r} is a timm hub name ({repo}); downloading is off")
    files = download_timm(repo, what, spec)
    info = WeightsInfo(spec, "state_dict", files["model.safetensors"], hub_repo=repo)
    _state_dict_info(info, what, arch)
    if info.arch != arch:
        raise WeightsError(f"{what} {spec!r}: the hub's config.json says {info.arch!r}, "
                           f"not {arch!r}")
    return info


def download_timm(repo: str, what: str = "weights=", spec: str = "") -> Dict[str, str]:
    """Downloads ``model.safetensors`` (and ``config.json`` when the repository has one) of the
    hub repository ``repo`` (``timm/<arch>.<tag>``) with ``huggingface_hub`` into its cache
    (progress bars on stderr; a cached file is not downloaded again). Returns local paths.
    Offline or missing ``huggingface_hub``: :class:`WeightsError` saying what to do."""
    how = (f"on a machine with network access run `hf download {repo} model.safetensors "
           f"config.json --local-dir DIR` (huggingface_hub < 1.0: `huggingface-cli download "
           f"...`), copy DIR here and pass DIR/model.safetensors as {what}")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise WeightsError(f"{what} {spec or repo!r} is a timm hub name: downloading it needs "
                           "huggingface_hub: pip install 'assemble-cnn[convert]'; or " + how) from e
    print(f"[weights] {spec or repo}: downloading {repo} (model.safetensors, config.json) from "
          "the Hugging Face hub", file=sys.stderr, flush=True)
    out = {}
    try:
        out["model.safetensors"] = hf_hub_download(repo_id=repo, filename="model.safetensors")
    except Exception as e:  # offline (LocalEntryNotFoundError), HTTP errors, no such repo
        raise WeightsError(
            f"{what} {spec or repo!r}: cannot download {repo}/model.safetensors from the Hugging "
            f"Face hub ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). If this "
            "machine is offline: " + how + " (or set HF_HUB_OFFLINE=1 once the file is in the "
            "Hugging Face cache)") from e
    try:
        out["config.json"] = hf_hub_download(repo_id=repo, filename="config.json")
    except Exception:  # the safetensors file alone is enough: the table has the metadata
        pass
    if "config.json" in out and os.path.dirname(out["config.json"]) != os.path.dirname(
            out["model.safetensors"]):  # pragma: no cover - hub snapshots share one folder
        out.pop("config.json")
    return out


# ----------------------------------------------------------------------------- loading
def _copy_all_but_head(source, target, origin: str, what: str) -> int:
    """Assigns every weight of ``source`` to ``target`` by path, except the ``logits`` head."""
    src = {w.path: w for w in source.weights if not w.path.startswith("logits/")}
    dst = {w.path: w for w in target.weights if not w.path.startswith("logits/")}
    bad = sorted(set(src) ^ set(dst)) + sorted(
        p for p in set(src) & set(dst) if tuple(src[p].shape) != tuple(dst[p].shape))
    if bad:
        raise WeightsError(f"{what} {origin!r} does not fit the network: mismatched variables "
                           f"{bad[:10]}{' ...' if len(bad) > 10 else ''}")
    for p, w in dst.items():
        w.assign(src[p].value)
    return len(dst)


def load_into(model, info: WeightsInfo, load_head: bool = True, what: str = "weights="):
    """Loads the weights ``info`` describes into ``model`` (built for them). ``load_head=False``
    leaves the ``logits`` layer as initialized (another class count: fine-tuning)."""
    if info.kind == "saved_model":
        raise WeightsError(f"{what} {info.spec!r} is a SavedModel (a graph for serving, not "
                           "Keras weights): use it with official.predict, or pass the run "
                           "directory it was exported from")
    if info.kind == "state_dict":
        if info.state_dict is None:
            try:
                info.state_dict = timm_weights.load_torch_state_dict(info.path, what=what)
            except (ValueError, FileNotFoundError, ImportError) as e:
                raise WeightsError(str(e)) from e
        arch = info.arch or model.name
        try:
            cfg = models.get_model_config(arch)
            if abs(cfg.bn_epsilon - timm_weights.TORCH_BN_EPSILON) > 1e-12:
                raise ValueError(f"model {arch!r} has bn_epsilon={cfg.bn_epsilon}, PyTorch "
                                 f"{timm_weights.TORCH_BN_EPSILON}")
            timm_weights.convert_state_dict(info.state_dict, model, arch, load_head=load_head)
        except ValueError as e:
            raise WeightsError(f"{what} {info.spec!r} ({info.path}): {e}") from e
        return model
    if load_head:
        try:
            model.load_weights(info.path)
        except Exception as e:  # keras' loader: another architecture / class count
            raise WeightsError(f"{what} {info.spec!r} ({info.path}) does not fit the "
                               f"{model.name} network built for it: {e}") from e
        return model
    if info.kind == "keras":
        import keras
        source = keras.saving.load_model(info.path, compile=False)
    else:
        source = models.build_model(info.arch or model.name,
                                    num_classes=int(info.num_classes),
                                    input_shape=(None, None, 3), **info.overrides)
        try:
            source.load_weights(info.path)
        except Exception as e:
            raise WeightsError(f"{what} {info.spec!r} ({info.path}) does not fit: {e}") from e
    _copy_all_but_head(source, model, info.spec, what)
    return model


def check_same_network(info: WeightsInfo, name: str, overrides: Dict[str, Any],
                       what: str = "weights=", flag: str = "name") -> None:
    """Raises :class:`WeightsError` when ``info``'s network is not ``name`` with
    ``overrides`` (compared as configs, so a Table 7 alias matches its base network;
    :data:`TRAINING_ONLY_FIELDS` are not compared)."""
    if not info.arch:
        return
    try:
        theirs = models.get_model_config(info.arch, **info.overrides)
    except ValueError as e:
        raise WeightsError(f"{what} {info.spec!r}: its metadata ({info.metadata_from}) names "
                           f"an unknown network: {e}") from e
    ours = models.get_model_config(name, **overrides)
    diff = [f.name for f in dataclasses.fields(ours) if f.name not in TRAINING_ONLY_FIELDS
            and getattr(ours, f.name, None) != getattr(theirs, f.name, None)]
    if type(ours) is not type(theirs) or diff:
        raise WeightsError(
            f"{what} {info.spec!r} holds a {info.arch}"
            + (f" {json.dumps(info.overrides)}" if info.overrides else "")
            + f" network (says {info.metadata_from}), not {flag}={name}"
            + (f" {json.dumps(overrides)}" if overrides else "")
            + f" (they differ in {', '.join(diff)}): use {info.arch} or other weights")


def build_with_weights(name: str, num_classes: Optional[int], input_shape, weights: str,
                       overrides: Dict[str, Any]):
    """``models.build_model(name, num_classes, input_shape, weights=..., **overrides)``."""
    info = resolve(weights, what="weights=", name_hint=name)
    if info.kind == "saved_model":
        load_into(None, info)
    merged = dict(info.overrides) if not overrides else dict(overrides)
    check_same_network(info, name, merged)
    classes = int(num_classes or info.num_classes or 1000)
    load_head = info.num_classes is None or classes == int(info.num_classes)
    model = models.build_from_config(models.get_model_config(name, **merged), classes,
                                     input_shape, name=name)
    return load_into(model, info, load_head=load_head)
