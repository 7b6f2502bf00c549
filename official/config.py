"""Typed configuration of a training run (Model Garden style).

A run is described by one :class:`RunConfig`, made of one dataclass per component
(model, data, optimization, regularization, distribution, runtime). Recipes
(``official/configs/*.cfg``) are absl flag files; the absl flags defined in ``flags/``
override the dataclass defaults (:func:`flags.build_run_config`). The complete config is
written to ``<model_dir>/run_config.json`` so that evaluation, export and fine-tuning can
rebuild the exact model from the run directory alone (``official.checkpoints.load_run``).

Defaults follow the paper's training code (clovaai/assembled-cnn ``nets/hparams_config.py``,
``functions/model_fns.py`` and ``scripts/train_*_from_scratch.sh``): SGD momentum 0.9,
base LR 0.4 for batch 1024 with **no** linear scaling (``batch_denom=batch_size`` in
``model_fns.learning_rate_with_decay``), 5 warm-up epochs then cosine decay to 0, weight
decay 1e-4 added to the loss as ``wd * sum(l2_loss(w))`` over non-batch-norm variables.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Dict, List, Optional, Tuple

SCHEMA_VERSION = 1


@dataclasses.dataclass
class ModelConfig:
    """What ``models.build_model`` gets: ``build_model(name, num_classes, (S, S, 3), **overrides)``."""
    name: str = "resnet50"
    overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)
    num_classes: Optional[int] = None  # None: taken from the data source
    image_size: int = 224
    zero_gamma: bool = False  # passed as the ``zero_gamma`` model override when True


@dataclasses.dataclass
class DataConfig:
    source: str = ""
    train_split: str = "train"
    eval_split: Optional[str] = None  # None: data.resolve_eval_split (validation/val/test)
    num_train_examples: Optional[int] = None  # filled from data.inspect_source
    num_eval_examples: Optional[int] = None
    class_names: Optional[List[str]] = None
    autoaugment: Optional[str] = None
    randaugment: Optional[str] = None
    device_augment: str = "none"  # none | crop_flip (npz input on the JAX path: data.device_augment)
    # host: AutoAugment/RandAugment per image in tf.data | device: batched keras.ops inside the
    # training step (data.device_augment.DeviceAugment; tf.data then only decodes/crops/flips)
    augment_on: str = "host"
    normalization: str = "mean"
    eval_preprocess: str = "imagenet"
    label_offset: int = 0
    seed: Optional[int] = 0
    eval_batch_size: Optional[int] = None  # None: the training batch size
    # Flat class-folder trees (<class>/<image>, no split folders): the held-out fraction of each
    # class and its seed (data.sources.holdout_split); train_split / eval_split then name the
    # split ("train[val_fraction=0.1,seed=0]"). None for sources with split folders.
    val_fraction: Optional[float] = None  # None: data.sources.DEFAULT_VAL_FRACTION for flat trees
    split_seed: int = 0

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
    batch_size: int = 1024  # GLOBAL batch, split over replicas
    epochs: float = 120.0
    train_steps: Optional[int] = None  # overrides epochs when set
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    base_learning_rate: float = 0.4
    lr_scaling: str = "none"  # none (paper) | linear: lr * batch_size / 256
    lr_schedule: str = "cosine"  # cosine | piecewise | exponential | constant
    warmup_epochs: float = 5.0
    piecewise_boundaries: List[float] = dataclasses.field(default_factory=list)  # epochs
    piecewise_rates: List[float] = dataclasses.field(default_factory=list)  # multipliers
    exponential_decay_epochs: float = 2.4
    exponential_decay_rate: float = 0.97
    weight_decay: float = 1e-4
    weight_decay_mode: str = "l2_loss"  # l2_loss (paper: added to the loss) | decoupled (SGD weight_decay)
    ema_decay: float = 0.0  # 0: no weight EMA
    dtype: str = "fp32"  # fp32 | fp16 | bf16 (mixed precision)
    jit_compile: bool = False


@dataclasses.dataclass
class RegularizationConfig:
    label_smoothing: float = 0.0
    mixing: str = "none"  # none | mixup | cutmix
    mixing_alpha: float = 0.2
    mixing_per_sample: bool = True  # data.mixing.mix_batch default (paper's code: per sample)
    mixing_form: str = "reverse"  # reverse (B -> B) | double_batch (paper's mixup_type=1: a step reads 2B images -> B samples)
    drop_block_keep_prob: List[float] = dataclasses.field(default_factory=lambda: [1.0, 0.9])
    distillation: str = "none"  # none | offline (logits in TFRecords) | online (teacher model)
    distillation_weight: float = 1.0
    distillation_temperature: float = 1.0
    teacher: str = ""  # online: SavedModel dir, run dir or weights file


@dataclasses.dataclass
class DistributionConfig:
    strategy: str = "off"  # off | one_device | mirrored | multi_worker_mirrored | tpu
    num_gpus: int = 1
    tpu: str = ""
    sync_bn: bool = False


@dataclasses.dataclass
class RuntimeConfig:
    model_dir: str = ""
    init_checkpoint: str = ""
    checkpoint_every_steps: int = 1000
    keep_checkpoints: int = 3
    eval_every_epochs: float = 1.0
    eval_steps: Optional[int] = None  # None: the whole eval split; 0: no evaluation
    log_every_steps: int = 50
    seed: int = 0
    deterministic: bool = False
    tensorboard: bool = True
    progress_bar: bool = True


@dataclasses.dataclass
class RunConfig:
    recipe: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optimization: OptimizationConfig = dataclasses.field(default_factory=OptimizationConfig)
    regularization: RegularizationConfig = dataclasses.field(default_factory=RegularizationConfig)
    distribution: DistributionConfig = dataclasses.field(default_factory=DistributionConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    backend: str = ""
    schema_version: int = SCHEMA_VERSION

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
        """Returns a copy with ``{"optimization.batch_size": 64, ...}`` applied."""
        d = self.to_dict()
        for key, value in dotted.items():
            section, _, field = key.partition(".")
            if section not in d or not isinstance(d[section], dict) or field not in d[section]:
                raise ValueError(f"unknown config field {key!r}")
            d[section][field] = value
        return self.from_dict(d)


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
