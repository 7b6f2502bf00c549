"""Training losses (``keras.ops`` only, so they run under every Keras backend).

Follows the paper's code (clovaai/assembled-cnn ``nets/run_loop_classification.py``,
``losses/cls_losses.py``)::

    loss = softmax_cross_entropy(onehot_or_soft_labels, logits)            # label smoothing inside
         + kd_temp**2 * softmax_cross_entropy(softmax(teacher/kd_temp), logits/kd_temp)
         + weight_decay * sum(tf.nn.l2_loss(v) for trainable v if not batch norm)

``tf.nn.l2_loss(v) = sum(v**2) / 2``. Deviations, all documented:

* The KD term has a weight (``distillation_weight``, paper: 1, implicit).
* Cross entropies are returned *per example*; the trainer sums them and divides by the
  GLOBAL batch size so that gradients all-reduced with SUM over replicas equal the
  single-device mean (the paper's Estimator divided by the per-GPU batch and averaged
  towers, which is the same number).
* Batch-norm variables are found by layer type (every ``keras.layers.BatchNormalization``,
  nested ones included), not by the substring ``batch_normalization`` in the name.
"""
from __future__ import annotations

from typing import Iterable, List

import keras
from keras import ops


def smooth_labels(onehot, label_smoothing: float):
    """``tf.losses.softmax_cross_entropy(label_smoothing=ls)``: ``y*(1-ls) + ls/K``."""
    if not label_smoothing:
        return onehot
    k = ops.cast(ops.shape(onehot)[-1], onehot.dtype)
    return onehot * (1.0 - label_smoothing) + label_smoothing / k


def soft_cross_entropy(targets, logits):
    """Per-example cross entropy ``-sum(targets * log_softmax(logits))`` in float32."""
    logits = ops.cast(logits, "float32")
    targets = ops.cast(targets, "float32")
    return -ops.sum(targets * ops.log_softmax(logits, axis=-1), axis=-1)


def distillation_loss(teacher_logits, student_logits, temperature: float = 1.0):
    """Per-example ``T^2 * CE(softmax(teacher/T), student/T)`` (Hinton et al.; paper's ``kd_temp``)."""
    t = float(temperature)
    teacher_probs = ops.softmax(ops.cast(teacher_logits, "float32") / t, axis=-1)
    return (t * t) * soft_cross_entropy(teacher_probs, ops.cast(student_logits, "float32") / t)


def batch_norm_variable_ids(model) -> set:
    ids = set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            ids.update(id(v) for v in layer.weights)
    return ids


def decayed_variables(model) -> List:
    """Trainable variables that get weight decay: every one not owned by a BN layer."""
    bn = batch_norm_variable_ids(model)
    return [v for v in model.trainable_variables if id(v) not in bn]


def l2_loss(variables: Iterable) -> "keras.KerasTensor":
    """``sum_v sum(v**2) / 2`` in float32 (``tf.nn.l2_loss`` summed)."""
    total = 0.0
    for v in variables:
        v = ops.cast(v, "float32")
        total = total + ops.sum(ops.square(v)) / 2.0
    return total


def weight_decay_loss(variables: Iterable, weight_decay: float):
    """Paper-style decay term ``wd * sum(l2_loss(v))``."""
    return weight_decay * l2_loss(variables)


def classification_loss(targets, logits, teacher_logits=None, *, distillation_weight: float = 1.0,
                        temperature: float = 1.0):
    """Per-example ``CE(targets, logits) + w * T^2 * CE(softmax(teacher/T), logits/T)``.

    Returns ``(total, ce, kd)`` per example (``kd`` is zeros without a teacher).
    """
    ce = soft_cross_entropy(targets, logits)
    if teacher_logits is None:
        kd = ops.zeros_like(ce)
    else:
        kd = distillation_loss(teacher_logits, logits, temperature)
    return ce + distillation_weight * kd, ce, kd
