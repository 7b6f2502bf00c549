"""Builds a named model and prints its Keras summary and parameter counts.

    python -m official.summary --model=assemble_resnet50 [--num_classes=1000]
        [--image_size=224] [--model_overrides='{"alpha": 1}' | 'alpha=1,beta=2']
        [--list] [--nosummary]
    assemble-summary --model=resnet50          (console script: official.summary:run)

Parameter counts: "trainable" is what timm / torchvision publish (their parameters);
"total" adds the non-trainable variables (BN moving mean / variance, DropBlock keep_prob).
"""
from __future__ import annotations

import numpy as np
from absl import app, flags

import flags as assemble_flags
import models
from flags import parse_overrides
from official.config import ModelConfig

FLAGS = flags.FLAGS

# The trainer's model flag group (--model, --model_overrides, --num_classes, --image_size, ...)
# plus this program's own two; defaults for the shared flags are applied in main().
assemble_flags.define_sections("model")
if "list" not in FLAGS:
    flags.DEFINE_boolean("list", False, "List the registered model names and exit.")
if "summary" not in FLAGS:
    flags.DEFINE_boolean("summary", True, "Print the layer-by-layer Keras summary.")

# The network this program shows without --model (the paper's final one); the image size and
# class count default as in a training run (official.config.ModelConfig, models.build_model: 1000).
DEFAULT_MODEL = "assemble_resnet50"


def count_params(model):
    """``(trainable, non_trainable)`` parameter counts."""
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    non_trainable = sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    return trainable, non_trainable


def main(argv):
    del argv
    if FLAGS.list:
        for name in models.list_models():
            print(f"{name:24s} {models.describe_model(name)}")
        return 0
    overrides = parse_overrides(FLAGS.model_overrides)
    name = FLAGS.model or DEFAULT_MODEL
    size = FLAGS.image_size or ModelConfig().image_size
    model = models.build_model(name, num_classes=FLAGS.num_classes, input_shape=(size, size, 3),
                               **overrides)
    if FLAGS.summary:
        model.summary(line_length=120)
    trainable, non_trainable = count_params(model)
    print(f"model: {name}  input: {size}x{size}x3  classes: {int(model.outputs[0].shape[-1])}"
          + (f"  overrides: {overrides}" if overrides else ""))
    print(f"trainable parameters: {trainable:,}")
    print(f"non-trainable parameters: {non_trainable:,}")
    print(f"total parameters: {trainable + non_trainable:,}")
    return 0


def _flags_parser(argv):
    assemble_flags.exit_with_help_if_asked(argv, __doc__)
    return FLAGS(argv)


def run():
    app.run(main, flags_parser=_flags_parser)


if __name__ == "__main__":
    run()
