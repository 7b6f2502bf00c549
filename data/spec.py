"""What an input pipeline yields: :class:`InputSpec`, without TensorFlow.

``data.build_dataset`` (``data.pipeline``, TensorFlow) reads an :class:`InputSpec`; the run's
config (``official.config.RunConfig.input_spec``) makes one, and on the JAX path, where
TensorFlow may be absent, the same checks run at start-up from here.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from data.constants import NORMALIZATIONS, eval_image_size
from data.policies import check_levels

AUTOAUGMENT_POLICIES = ("imagenet", "v0", "cifar10", "svhn")
DEFAULT_SHUFFLE_BUFFER = 10_000


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What an input pipeline yields, the one description ``data.build_dataset`` reads.

    The trainer (``official.train_backends``) and ``official.evaluate`` fill it from the run's
    config (``official.config.RunConfig``); ``data`` does not import the config (``data`` and
    ``models`` depend on nothing above them, docs/ARCHITECTURE.md). Checked when made: a bad
    value raises ``ValueError`` naming the field.

    - ``training``: random crop, flip and augmentation, endless and shuffled; else the
      evaluation crop (``eval_preprocess``), one pass in order.
    - ``batch_size``: the global batch (``build_dataset`` divides it by the replicas of its
      ``input_context``). ``image_size``: the training size; evaluation yields
      :attr:`output_size`.
    - ``autoaugment`` (a policy of :data:`AUTOAUGMENT_POLICIES`) or ``randaugment``
      (``(num_layers, magnitude)``): per-image augmentation on the host, training only.
      ``posterize_mode``: their Posterize level -> bits, ``"tf"`` (0..4 bits, the TF code)
      or ``"paper"`` (4..8 bits, the AutoAugment paper): ``data.autoaugment``.
      ``randaugment_levels``: RandAugment's level mappings, ``"tf"`` (the TF code's) or
      ``"increasing"`` (magnitude 0 is the identity of every op): ``data.autoaugment``.
    - ``seed``: the stream's seed (None: random for training, 0 for evaluation).
    - ``num_classes``: the true class count (None: the source's ``classes.csv``).
      ``label_offset`` (TFRecords only): the records store ``true label + label_offset`` (1 for
      ImageNet TFRecords with background 0); the labels yielded are the true ones.
    - ``normalization``: one of ``data.constants.NORMALIZATIONS``, or ``"none"`` (pixels in
      0..255, for augmentation on the device).
    - ``teacher_logits``: yield ``(images, {"label", "teacher_logits"})`` from TFRecords
      written by ``data.build_tfrecords --teacher``.
    - ``strict``: a bad record stops the pipeline instead of being skipped and named.
    - ``shuffle_buffer``: TFDS sources only (file sources shuffle the whole index each epoch).
    - ``drop_remainder``: None means ``training``. ``cache``: keep preprocessed evaluation
      images in memory (ignored for training). ``fused_crop=False`` (benchmark only): decode
      whole images, then crop.
    """
    training: bool
    batch_size: int
    image_size: int
    autoaugment: Optional[str] = None
    randaugment: Optional[tuple] = None
    posterize_mode: str = "tf"
    randaugment_levels: str = "tf"
    seed: Optional[int] = None
    num_classes: Optional[int] = None
    label_offset: int = 0
    eval_preprocess: str = "imagenet"
    normalization: str = "mean"
    teacher_logits: bool = False
    strict: bool = False
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER
    drop_remainder: Optional[bool] = None
    cache: bool = False
    fused_crop: bool = True

    def __post_init__(self):
        if int(self.batch_size) <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if int(self.image_size) <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.autoaugment is not None and self.autoaugment not in AUTOAUGMENT_POLICIES:
            raise ValueError(f"unknown AutoAugment policy {self.autoaugment!r}; use one of "
                             f"{AUTOAUGMENT_POLICIES}")
        if self.posterize_mode not in ("tf", "paper"):
            raise ValueError(f"posterize_mode must be 'tf' or 'paper', got {self.posterize_mode!r}")
        check_levels(self.randaugment_levels, "randaugment_levels")
        if self.autoaugment is not None and self.randaugment is not None:
            raise ValueError("use either autoaugment or randaugment, not both")
        if self.randaugment is not None and len(tuple(self.randaugment)) != 2:
            raise ValueError(f"randaugment must be (num_layers, magnitude), got "
                             f"{self.randaugment!r}")
        if self.normalization not in NORMALIZATIONS + ("none",):
            raise ValueError(f"unknown normalization {self.normalization!r}; use one of "
                             f"{NORMALIZATIONS} or 'none' (pixels in 0..255)")
        if self.label_offset < 0:
            raise ValueError(f"label_offset must be >= 0, got {self.label_offset}")
        if not self.training:
            self.output_size  # noqa: B018 -- raises for an unknown eval_preprocess

    @property
    def output_size(self):
        """Side of the images yielded: ``image_size`` for training, the evaluation crop's
        size otherwise (``data.constants.eval_image_size``)."""
        if self.training:
            return int(self.image_size)
        return eval_image_size(int(self.image_size), self.eval_preprocess)
