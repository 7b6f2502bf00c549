"""Typed configuration of a training run (Model Garden style).

A run is described by one :class:`RunConfig`, made of one dataclass per component
(model, data, optimization, regularization, distribution, runtime). This module is the only
place a setting is defined: each field is declared with :func:`setting` (default, help, flag
name, choices) and ``flags`` generates the trainer's absl flags from these declarations.
Recipes (``official/configs/*.cfg``) are absl flag files; the flags given override the
dataclass defaults (:func:`flags.build_run_config`), ``--set section.field=value`` reaches any
field (:meth:`RunConfig.override`). The complete config, with the resolved network
(``model.network``), is written to ``<model_dir>/run_config.json`` so that evaluation, export
and fine-tuning can rebuild the exact model from the run directory alone
(``official.checkpoints.load_run``).

Defaults follow the paper's training code (clovaai/assembled-cnn ``nets/hparams_config.py``,
``functions/model_fns.py`` and ``scripts/train_*_from_scratch.sh``): SGD momentum 0.9,
base LR 0.4 for batch 1024 with **no** linear scaling (``batch_denom=batch_size`` in
``model_fns.learning_rate_with_decay``), 5 warm-up epochs then cosine decay to 0, weight
decay 1e-4 added to the loss as ``wd * sum(l2_loss(w))`` over non-batch-norm variables.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import typing
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from data.policies import LEVEL_MAPPINGS
from data.spec import InputSpec

SCHEMA_VERSION = 1


def setting(default=None, help: str = "", *, flag: Optional[str] = None,
            choices: Optional[Sequence[str]] = None, factory=None, cli: bool = True):
    """A config field and its command-line flag in one place.

    ``flag``: the absl flag name (default: the field name); ``cli=False``: no flag (filled by
    the trainer, e.g. ``num_train_examples``); ``choices``: the allowed values (an enum flag,
    and :meth:`RunConfig.choice_errors` checks values set in Python or by ``--set``); ``help``:
    the flag's help, to which ``flags`` appends the default.
    """
    metadata = {"help": help, "flag": flag, "choices": tuple(choices) if choices else None,
                "cli": cli}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class ModelConfig:
    """What ``models.build_model`` gets: ``build_model(name, num_classes, (S, S, 3), **overrides)``."""
    name: str = setting("resnet50", "Network name (python -m official.summary --list shows them).",
                        flag="model")
    overrides: Dict[str, Any] = setting(
        help="Builder overrides, JSON ('{\"width\": 0.5}') or 'k=v,k=v'; merged over the "
             "recipe's.", flag="model_overrides", factory=dict)
    num_classes: Optional[int] = setting(None, "Classes of the head; unset: from the data source.")
    image_size: int = setting(224, "Training input size S (S x S x 3); the evaluation size follows "
                                   "from it and --eval_preprocess.")
    zero_gamma: bool = setting(False, "Zero-init the last BN gamma of every residual block (the "
                                      "builder's zero_gamma override).")
    # The network the run builds: ``dataclasses.asdict(models.get_model_config(name, **overrides))``,
    # filled by the trainer at start-up and stored in run_config.json, so evaluation, export and
    # fine-tuning rebuild that network even if a variant's defaults change later.
    network: Optional[Dict[str, Any]] = setting(None, cli=False)


_AUGMENT_ON_HELP = (
    "Where --autoaugment/--randaugment run: host = per image in tf.data (the faster choice on a "
    "CPU, docs/BENCHMARKS.md), device = batched keras.ops inside the training step "
    "(data.device_augment.DeviceAugment), on either backend: tf.data then only decodes, crops "
    "and flips; with npz:FILE input (JAX path) the crop/flip is --device_augment=crop_flip.")


@dataclasses.dataclass
class DataConfig:
    source: str = setting("", "Any source data.build_dataset accepts (zip/image folder, TFRecords, "
                              "tfds:NAME); under the JAX backend without TensorFlow: npz:FILE.",
                          flag="data")
    train_split: str = setting("train", "Training split.")
    eval_split: Optional[str] = setting(
        None, "Evaluation split; unset (or 'auto'): the first of validation/val/test.")
    num_train_examples: Optional[int] = setting(None, cli=False)  # filled from data.inspect_source
    num_eval_examples: Optional[int] = setting(None, cli=False)
    class_names: Optional[List[str]] = setting(None, cli=False)
    autoaugment: Optional[str] = setting(None, "AutoAugment policy name (e.g. 'imagenet'); unset: none.")
    randaugment: Optional[str] = setting(
        None, "RandAugment 'N,M' (N ops per image, magnitude M on the 0..10 scale; Cubuk et al. "
              "2020), e.g. 2,9; unset: none.")
    augment_posterize: str = setting(
        "tf", "Posterize's level -> bits in --autoaugment/--randaugment: tf = the TF code the "
              "paper's repository uses (int(level/10*4) bits kept: 0..4, so the ImageNet "
              "policy's levels 5-8 keep 2-3 bits), paper = the AutoAugment paper's 4..8 bits "
              "(8 - that). docs/AUGMENTATION.md.", choices=("tf", "paper"))
    randaugment_levels: str = setting(
        "tf", "RandAugment's level -> argument mappings: tf = the TF code's (a low M is not mild: "
              "M=2 posterizes to 0 bits, solarizes above 51 and blends toward gray with factor "
              "0.46), increasing = timm-style, M=0 is the identity of every op and a larger M a "
              "stronger change (Posterize 8..4 bits, Solarize above 256-M/10*256, enhance "
              "factor 1 +- M/10*0.9). docs/AUGMENTATION.md.", choices=LEVEL_MAPPINGS)
    device_augment: str = setting(
        "none", "Random-resized crop + flip on the accelerator for pre-decoded npz:FILE input "
                "(JAX path; tf.data sources crop on the host): crop_flip = the paper's crop and "
                "flip (data.device_augment). With --augment_on=device it is the crop/flip part of "
                "the device augmentation.", choices=("none", "crop_flip"))
    augment_on: str = setting("host", _AUGMENT_ON_HELP, choices=("host", "device"))
    normalization: str = setting("mean", "Image normalization: mean (the paper's RGB means) or "
                                         "mean_std (ImageNet mean and std).",
                                 choices=("mean", "mean_std"))
    eval_preprocess: str = setting(
        "imagenet", "Evaluation preprocessing: imagenet, imagenet_224_256(a), imagenet_NNN(a), a "
                    "crop fraction or a short-side size (data.constants.eval_sizes).")
    label_offset: int = setting(
        0, "TFRecords only: their stored labels are class + label_offset (1 for ImageNet TFRecords "
           "with background 0, labels 1..1000); it is subtracted, the model has the true class "
           "count, and teacher logits with num_classes + label_offset values lose their first "
           "label_offset.")
    seed: Optional[int] = setting(0, "Seed of shuffling/augmentation.", flag="data_seed")
    eval_batch_size: Optional[int] = setting(None, "Evaluation batch; unset: the training batch.")
    # Flat class-folder trees (<class>/<image>, no split folders): the held-out fraction of each
    # class and its seed (data.sources.holdout_split); train_split / eval_split then name the
    # split ("train[val_fraction=0.1,seed=0]"). None for sources with split folders.
    val_fraction: Optional[float] = setting(
        None, "Flat class-folder trees only (--data=DIR or ZIP of <class>/<image>, no split "
              "folders): the fraction of each class held out as the evaluation split, "
              "round(n * fraction), at least 1 and at most n - 1 images per class (unset: 0.1). "
              "A source with its own split folders refuses it.")
    split_seed: int = setting(0, "Seed of the --val_fraction split; the split depends only on it "
                                 "and the file names, not on --data_seed.")

    def autoaugment_policy(self) -> Optional[str]:
        """The AutoAugment policy name, or None (``--autoaugment=`` empty means none)."""
        return self.autoaugment or None

    def randaugment_spec(self) -> Optional[Tuple[int, float]]:
        """``--randaugment="N,M"`` (RandAugment, Cubuk et al. 2020: N ops per image, magnitude
        M on the 0..10 scale) as ``(N, M)``; None when empty. Raises ``ValueError`` naming the
        flag for anything else."""
        return parse_randaugment(self.randaugment)


@dataclasses.dataclass
class OptimizationConfig:
    batch_size: int = setting(1024, "GLOBAL batch size (samples a step trains on), split over "
                                    "replicas.")
    epochs: float = setting(120.0, "Training epochs.")
    train_steps: Optional[int] = setting(None, "Total steps; overrides --epochs (schedules follow it).")
    optimizer: str = setting("sgd", "Optimizer (SGD with momentum, as the paper).", cli=False,
                             choices=("sgd",))
    momentum: float = setting(0.9, "SGD momentum.")
    nesterov: bool = setting(False, "Nesterov momentum (the paper: off).")
    base_learning_rate: float = setting(0.4, "Peak learning rate.")
    lr_scaling: str = setting("none", "none (paper): lr = base; linear: lr = base * batch_size / 256.",
                              choices=("none", "linear"))
    lr_schedule: str = setting("cosine", "Decay after warm-up (cosine: to 0 at the last step).",
                               choices=("cosine", "piecewise", "exponential", "constant"))
    warmup_epochs: float = setting(5.0, "Linear warm-up epochs.")
    piecewise_boundaries: List[float] = setting(help="Piecewise: boundary epochs.", factory=list)
    piecewise_rates: List[float] = setting(
        help="Piecewise: LR multipliers (one more than boundaries).", factory=list)
    exponential_decay_epochs: float = setting(2.4, "Exponential: epochs per decay.")
    exponential_decay_rate: float = setting(0.97, "Exponential: factor.")
    weight_decay: float = setting(1e-4, "Weight decay.")
    weight_decay_mode: str = setting(
        "l2_loss", "l2_loss (paper): wd * sum(w^2)/2 over non-BN weights added to the loss; "
                   "decoupled: keras SGD weight_decay (w -= lr*wd*w), BN excluded.",
        choices=("l2_loss", "decoupled"))
    ema_decay: float = setting(0.0, "Weight EMA decay; 0 = off.")
    dtype: str = setting("fp32", "fp32, or mixed precision (fp16 with dynamic loss scaling, bf16).",
                         choices=("fp32", "fp16", "bf16"))
    fp16_without_gpu: str = setting(
        "fp32", "What --dtype=fp16 runs as on the TensorFlow backend when no GPU or TPU is "
        "visible: fp32 (CPUs have no fast float16 kernels: one E11 step took 318 s in fp16 "
        "against 30 s in fp32 on the 2-core CPU machine) or fp16 (as asked, e.g. to test the "
        "loss-scaling path).", choices=("fp32", "fp16"))
    jit_compile: bool = setting(False, "XLA-compile the per-replica train step.")


@dataclasses.dataclass
class RegularizationConfig:
    label_smoothing: float = setting(0.0, "Label smoothing epsilon (paper 0.1).")
    mixing: str = setting("none", "Batch mixing (data.mixing.mix_batch).",
                          choices=("none", "mixup", "cutmix"))
    mixing_alpha: float = setting(0.2, "Beta(alpha, alpha) of mixup/CutMix.")
    mixing_per_sample: bool = setting(True, "One lambda per sample (the paper's code) instead of "
                                            "one per batch.")
    mixing_form: str = setting(
        "reverse", "reverse: B -> B; double_batch: 2B -> B, the paper's mixup_type=1 (a step reads "
                   "2B images; the loss is averaged over the B mixed samples).",
        choices=("reverse", "double_batch"))
    drop_block_keep_prob: List[float] = setting(
        help="DropBlock keep-prob start,end, linear over the run (paper 1.0,0.9).",
        factory=lambda: [1.0, 0.9])
    distillation: str = setting("none", "offline: teacher logits stored in TFRecords; online: run "
                                        "--teacher.", choices=("none", "offline", "online"))
    distillation_weight: float = setting(1.0, "Weight of the KD term (paper 1).")
    distillation_temperature: float = setting(1.0, "KD temperature T (paper kd_temp=1).")
    teacher: str = setting("", "Online KD teacher: a run dir (its best checkpoint), a .keras file "
                               "or a SavedModel dir (taking preprocessed images).")


@dataclasses.dataclass
class DistributionConfig:
    strategy: str = setting(
        "off", "tf.distribute strategy (TensorFlow backend; workers read TF_CONFIG). "
               "KERAS_BACKEND=jax: off, one_device, or mirrored (a device mesh over the local "
               "devices, sync BN).", flag="distribution_strategy",
        choices=("off", "one_device", "mirrored", "multi_worker_mirrored", "tpu"))
    num_gpus: int = setting(1, "GPUs for one_device/mirrored (0 = CPU; JAX mirrored: the first N "
                               "accelerators).")
    tpu: str = setting("", "TPU name/address (required by --distribution_strategy=tpu).")
    sync_bn: bool = setting(False, "Synchronized (cross-replica) batch norm (always on under JAX "
                                   "mirrored).")


@dataclasses.dataclass
class RuntimeConfig:
    model_dir: str = setting("", "Run directory: run_config.json, checkpoints, TensorBoard.")
    init_checkpoint: str = setting(
        "", "Warm start (fine-tuning), all but the head, from: a run or checkpoint dir, "
            ".weights.h5 (+ the JSON official.convert writes), .keras, a timm state dict "
            "(.safetensors/.pth/.bin) or a timm name (resnet50d, timm/resnet50d.ra2_in1k; "
            "downloaded). The weights' network, normalization, image size and eval preprocessing "
            "are used unless given; a contradicting flag is an error. Also --weights.")
    checkpoint_every_steps: int = setting(1000, "Checkpoint period in steps (plus every epoch end).")
    keep_checkpoints: int = setting(3, "Keep the last K checkpoints (plus the best).")
    eval_every_epochs: float = setting(1.0, "Evaluate every N epochs (and at the end); 0 = only at "
                                            "the end.")
    eval_steps: Optional[int] = setting(None, "Evaluation batches; unset: the whole split; 0: no "
                                              "evaluation.")
    log_every_steps: int = setting(50, "TensorBoard/console scalar period.")
    seed: int = setting(0, "Seed of initialization and in-step randomness.")
    deterministic: bool = setting(False, "tf.config.experimental.enable_op_determinism().")
    tensorboard: bool = setting(True, "Write TensorBoard scalars.")
    progress_bar: bool = setting(True, "Console progress bar with ETA.")


@dataclasses.dataclass
class RunConfig:
    recipe: str = setting("", "Recipe name recorded in run_config.json (set by the recipe files).")
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optimization: OptimizationConfig = dataclasses.field(default_factory=OptimizationConfig)
    regularization: RegularizationConfig = dataclasses.field(default_factory=RegularizationConfig)
    distribution: DistributionConfig = dataclasses.field(default_factory=DistributionConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    backend: str = setting("", cli=False)
    schema_version: int = setting(SCHEMA_VERSION, cli=False)

    # ---- helpers ---------------------------------------------------------------------
    @property
    def input_shape(self):
        return (self.model.image_size, self.model.image_size, 3)

    def model_overrides(self) -> Dict[str, Any]:
        """Overrides passed to ``models.build_model`` (``zero_gamma`` folded in)."""
        overrides = dict(self.model.overrides)
        if self.model.zero_gamma:
            overrides["zero_gamma"] = True
        return overrides

    def images_per_step(self) -> int:
        """Source images one training step reads (the GLOBAL input batch).

        ``--batch_size`` B is the number of samples a step trains on. With mixing form
        ``double_batch`` (the paper's ``--mixup_type=1``) a step reads 2B images and mixes them
        into B samples, as the original does (``functions/input_fns.py``: ``batch_size * 2``);
        otherwise it reads B.
        """
        b = self.optimization.batch_size
        r = self.regularization
        return 2 * b if (r.mixing != "none" and r.mixing_form == "double_batch") else b

    def steps_per_epoch(self) -> int:
        """``num_train_examples // batch_size``: an epoch is N samples trained on, as in the
        original (its ``max_steps`` is ``epochs * N / batch_size``). With ``double_batch`` mixing
        a step reads 2B images, so one epoch reads the data twice (600 epochs read it 1,200
        times in the original too: it also doubles its input ``num_epochs``)."""
        n = self.data.num_train_examples
        if not n:
            raise ValueError("data.num_train_examples is unknown; cannot convert epochs to steps")
        return max(1, n // self.optimization.batch_size)

    def input_spec(self, training: bool, batch_size: Optional[int] = None) -> InputSpec:
        """The ``data.InputSpec`` of this run's training or evaluation input (``batch_size``:
        the global batch, default :meth:`images_per_step` for training and ``--eval_batch_size``
        or ``--batch_size`` for evaluation). With ``--augment_on=device`` the host only decodes, crops and flips,
        and yields pixels in 0..255: AutoAugment/RandAugment and the normalization run in the
        training step (``data.device_augment.DeviceAugment``)."""
        d = self.data
        host_aug = training and d.augment_on != "device"
        if batch_size is None:
            batch_size = (self.images_per_step() if training
                          else d.eval_batch_size or self.optimization.batch_size)
        return InputSpec(
            training=bool(training), batch_size=int(batch_size), image_size=self.model.image_size,
            autoaugment=d.autoaugment_policy() if host_aug else None,
            randaugment=d.randaugment_spec() if host_aug else None,
            posterize_mode=d.augment_posterize, randaugment_levels=d.randaugment_levels,
            seed=d.seed,
            num_classes=self.model.num_classes, label_offset=d.label_offset,
            eval_preprocess=d.eval_preprocess,
            normalization=d.normalization if (host_aug or not training) else "none",
            teacher_logits=bool(training and self.regularization.distillation == "offline"))

    def total_steps(self) -> int:
        if self.optimization.train_steps:
            return int(self.optimization.train_steps)
        return max(1, int(round(self.optimization.epochs * self.steps_per_epoch())))

    # ---- serialization ---------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RunConfig":
        return _from_dict(cls, d)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))

    def override(self, dotted: Dict[str, Any]) -> "RunConfig":
        """Returns a copy with ``{"optimization.batch_size": 64, ...}`` applied. Values are
        Python values, or strings parsed by the field's type (``"0.9999"`` for a float, ``"a,b"``
        or ``"[1, 0.9]"`` for a list, ``"none"`` for an optional field). ``model.overrides.KEY``
        sets one builder override. Raises ``ValueError`` naming the key."""
        d = self.to_dict()
        for key, value in dotted.items():
            section, _, name = key.partition(".")
            if section == "model" and name.startswith("overrides."):
                d["model"]["overrides"][name[len("overrides."):]] = (
                    decode_literal(value) if isinstance(value, str) else value)
                continue
            if not name and section in _TOP_LEVEL:
                cls, name, target = RunConfig, section, d
            elif section in _SECTIONS and name in d[section]:
                cls, target = _SECTIONS[section], d[section]
            else:
                raise ValueError(f"unknown config field {key!r}; fields: "
                                 f"{', '.join(dotted_names())}")
            hint = typing.get_type_hints(cls)[name]
            target[name] = parse_value(hint, value, key) if isinstance(value, str) else value
        return self.from_dict(d)

    def choice_errors(self) -> List[str]:
        """Messages for every field whose value is not one of its ``choices``, naming its flag."""
        errors = []
        for flag, dotted, f, _ in iter_settings(cli_only=False):
            choices = f.metadata.get("choices")
            value = self._get(dotted)
            if choices and value not in choices:
                name = f"--{flag}" if flag else dotted
                errors.append(f"{name}={value!r}: use one of {', '.join(choices)}")
        return errors

    def _get(self, dotted: str) -> Any:
        obj = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj


# Section name -> dataclass, and the top-level fields (recipe, backend, schema_version):
# derived from RunConfig after the classes below.
_SECTIONS: Dict[str, type] = {}
_TOP_LEVEL: List[str] = []


def iter_settings(cli_only: bool = True) -> Iterator[Tuple[Optional[str], str, Any, Any]]:
    """``(flag name, dotted field, dataclasses.Field, type hint)`` of every setting of
    :class:`RunConfig`, in schema order; ``cli_only``: only those with a flag (the flag name is
    None for the others)."""
    top = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if f.name in _SECTIONS:
            hints = typing.get_type_hints(_SECTIONS[f.name])
            for sub in dataclasses.fields(_SECTIONS[f.name]):
                cli = sub.metadata.get("cli", True)
                if cli or not cli_only:
                    yield ((sub.metadata.get("flag") or sub.name) if cli else None,
                           f"{f.name}.{sub.name}", sub, hints[sub.name])
        else:
            cli = f.metadata.get("cli", True)
            if cli or not cli_only:
                yield (f.metadata.get("flag") or f.name) if cli else None, f.name, f, top[f.name]


def dotted_names() -> List[str]:
    return [dotted for _, dotted, _, _ in iter_settings(cli_only=False)]


def parse_value(hint, text: str, name: str) -> Any:
    """``text`` as a value of type ``hint`` (``Optional[...]``, bool, int, float, str,
    ``List[float]``, ``List[str]``, ``Dict``); ``ValueError`` naming ``name``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        if text.strip().lower() in ("none", "null"):
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            low = text.strip().lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise ValueError("expected true or false")
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is str:
            return text
        if origin in (list, List):
            item = typing.get_args(hint)[0] if typing.get_args(hint) else str
            text = text.strip()
            values = json.loads(text) if text.startswith("[") else [
                v for v in (p.strip() for p in text.split(",")) if v]
            return [item(v) for v in values]
        if origin in (dict, Dict):
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
    except ValueError as e:
        raise ValueError(f"{name}={text!r}: {e}") from None
    raise ValueError(f"{name}: cannot parse a value of type {hint}")


def decode_literal(text: str) -> Any:
    """A value given as text without a declared type (a builder override): JSON (``true``,
    ``[1, 2]``, ``0.5``), else a Python literal (``True``), else the string itself (``sconv``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_randaugment(spec) -> Optional[Tuple[int, float]]:
    """``"2,9"`` / ``"2, 9.5"`` / ``(2, 9)`` -> ``(2, 9.0)``; ``None`` / ``""`` -> None."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        if len(parts) != 2:
            raise ValueError
        n, m = int(str(parts[0]).strip()), float(str(parts[1]).strip())
    except ValueError:
        raise ValueError(f"--randaugment={spec!r}: expected 'N,M' (N ops per image, an integer >= 0; "
                         f"magnitude M in [0, 10]), e.g. --randaugment=2,9") from None
    if n < 0 or not 0.0 <= m <= 10.0:
        raise ValueError(f"--randaugment={spec!r}: N must be >= 0 and M in [0, 10]")
    return n, m


def _from_dict(cls, d):
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object for {cls.__name__}, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown fields for {cls.__name__}: {unknown}")
    kwargs = {}
    for key, value in d.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            value = _from_dict(hint, value)
        kwargs[key] = value
    return cls(**kwargs)


for _f in dataclasses.fields(RunConfig):
    _hint = typing.get_type_hints(RunConfig)[_f.name]
    if dataclasses.is_dataclass(_hint):
        _SECTIONS[_f.name] = _hint
    else:
        _TOP_LEVEL.append(_f.name)

del _f, _hint
