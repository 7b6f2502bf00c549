"""Learning-rate and DropBlock schedules (``keras.ops`` only; driven by ``optimizer.iterations``).

Paper code: clovaai/assembled-cnn ``functions/model_fns.py``:

* ``learning_rate_with_decay``: ``initial = base_lr * batch_size / batch_denom`` with
  ``batch_denom = batch_size`` (i.e. *no* linear scaling; ``lr_scaling="linear"`` gives
  Goyal et al.'s ``base_lr * batch / 256`` as an option), linear warm-up from 0 over
  ``warmup_epochs``, then ``tf.train.cosine_decay(initial, step - warmup, total - warmup)``
  (to exactly 0), ``piecewise_constant`` or staircase ``exponential_decay``.
* ``keep_prob_decay``: DropBlock keep probability decays linearly from ``dropblock_kp[0]``
  (1.0) to ``dropblock_kp[1]`` (0.9) over the whole run (``polynomial_decay`` power 1).

The cosine phase is Keras' own ``keras.optimizers.schedules.CosineDecay(initial_lr,
total - warmup)`` evaluated at ``step - warmup`` (``alpha=0``: to exactly 0, constant after
``total``). Its float32 operation order is that of the paper's ``tf.train.cosine_decay``
(``min(step, decay)``, ``/ decay``, ``* pi``, ``cos``, ``0.5 * (1 + .)``, ``* lr``), so eager
values are bit-identical to it. The warm-up stays here as the paper writes it,
``lr0 * step / warmup`` for every kind: Keras' built-in warm-up (``warmup_target``/
``warmup_steps``) computes ``lr0 * (step / warmup)``, which is 1 float32 ulp off the paper's
``(lr0 * step) / warmup`` at some steps (e.g. 0.040000003 instead of 0.04 at step 1 of 10,
lr0 = 0.4), and it would not cover the other kinds.

Because the schedules are pure functions of the step, a resumed run continues exactly where
it stopped once ``optimizer.iterations`` is restored. A schedule holds no optimizer
variable (``optimizer.variables`` is the same with any of them) and is never serialized
into a checkpoint; ``WarmupSchedule.get_config`` is unchanged.
"""
from __future__ import annotations

from typing import Sequence

import keras
from keras import ops


def initial_learning_rate(base_lr: float, batch_size: int, lr_scaling: str = "none") -> float:
    if lr_scaling == "none":
        return float(base_lr)
    if lr_scaling == "linear":
        return float(base_lr) * batch_size / 256.0
    raise ValueError(f"lr_scaling must be 'none' or 'linear', got {lr_scaling!r}")


@keras.saving.register_keras_serializable(package="assemble")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``initial_lr`` over ``warmup_steps``, then ``kind`` decay."""

    def __init__(self, kind: str, initial_lr: float, total_steps: int, warmup_steps: int = 0,
                 boundaries: Sequence[int] = (), rates: Sequence[float] = (),
                 decay_steps: int = 1, decay_rate: float = 0.97):
        if kind not in ("cosine", "piecewise", "exponential", "constant"):
            raise ValueError(f"unknown learning-rate schedule {kind!r}: "
                             "cosine | piecewise | exponential | constant")
        if kind == "piecewise" and len(rates) != len(boundaries) + 1:
            raise ValueError(f"piecewise schedule needs len(rates) == len(boundaries) + 1, got "
                             f"{len(rates)} rates and {len(boundaries)} boundaries")
        self.kind = kind
        self.initial_lr = float(initial_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.boundaries = [int(b) for b in boundaries]
        self.rates = [float(r) for r in rates]
        self.decay_steps = max(1, int(decay_steps))
        self.decay_rate = float(decay_rate)
        # Keras' cosine decay over the steps after the warm-up (at least 1: CosineDecay
        # rejects decay_steps <= 0, and the paper would divide by 0 when total == warmup).
        self._cosine = (keras.optimizers.schedules.CosineDecay(
            self.initial_lr, max(1, self.total_steps - self.warmup_steps), alpha=0.0)
            if kind == "cosine" else None)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr0 = self.initial_lr
        w = float(self.warmup_steps)
        if self.kind == "cosine":
            lr = self._cosine(ops.maximum(step - w, 0.0))  # clamps at total - warmup itself
        elif self.kind == "piecewise":
            lr = ops.full((), lr0 * self.rates[0], "float32")
            for b, r in zip(self.boundaries, self.rates[1:]):
                lr = ops.where(step >= float(b), lr0 * r, lr)
        elif self.kind == "exponential":
            k = ops.floor(ops.maximum(step - w, 0.0) / float(self.decay_steps))
            lr = lr0 * ops.power(self.decay_rate, k)
        else:
            lr = ops.full((), lr0, "float32")
        if self.warmup_steps > 0:
            lr = ops.where(step < w, lr0 * step / w, lr)
        return lr

    def get_config(self):
        return dict(kind=self.kind, initial_lr=self.initial_lr, total_steps=self.total_steps,
                    warmup_steps=self.warmup_steps, boundaries=self.boundaries, rates=self.rates,
                    decay_steps=self.decay_steps, decay_rate=self.decay_rate)


def build_learning_rate(opt_cfg, steps_per_epoch: int, total_steps: int) -> WarmupSchedule:
    """The schedule of an ``official.config.OptimizationConfig``."""
    lr0 = initial_learning_rate(opt_cfg.base_learning_rate, opt_cfg.batch_size, opt_cfg.lr_scaling)
    return WarmupSchedule(
        opt_cfg.lr_schedule, lr0, total_steps,
        warmup_steps=int(steps_per_epoch * opt_cfg.warmup_epochs),
        boundaries=[int(steps_per_epoch * e) for e in opt_cfg.piecewise_boundaries],
        rates=opt_cfg.piecewise_rates,
        decay_steps=int(steps_per_epoch * opt_cfg.exponential_decay_epochs),
        decay_rate=opt_cfg.exponential_decay_rate)


def drop_block_keep_prob(step: int, total_steps: int, start: float = 1.0, end: float = 0.9) -> float:
    """Paper's ``keep_prob_decay``: linear from ``start`` to ``end`` over ``total_steps``."""
    frac = min(max(float(step), 0.0), float(total_steps)) / max(1.0, float(total_steps))
    return float(start + (end - start) * frac)
