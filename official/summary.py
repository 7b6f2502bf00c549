"""Builds a named model and prints its Keras summary and parameter counts.

    python -m official.summary --model=assemble_resnet50 [--num_classes=1000]
        [--image_size=224] [--model_overrides='{"alpha": 1}' | 'alpha=1,beta=2']
        [--list] [--nosummary]
    assemble-summary --model=resnet50          (console script: official.summary:run)

Parameter counts: "trainable" is what timm / torchvision publish (their parameters);
"total" adds the non-trainable variables (BN moving mean / variance, DropBlock keep_prob).
"""
from __future__ import annotations

import ast
import json

from absl import app, flags

FLAGS = flags.FLAGS


def _define(kind, name, default, help_text):
    if name not in FLAGS:
        getattr(flags, f"DEFINE_{kind}")(name, default, help_text)


_define("string", "model", "assemble_resnet50", "Registered model name (see --list).")
_define("integer", "num_classes", 1000, "Classes of the logits layer.")
_define("integer", "image_size", 224, "Input size S (S x S x 3).")
_define("string", "model_overrides", None,
        "Config overrides: JSON ('{\"alpha\": 1}') or 'k=v,k=v' (values as Python literals).")
_define("boolean", "list", False, "List the registered model names and exit.")
_define("boolean", "summary", True, "Print the layer-by-layer Keras summary.")


def parse_overrides(text):
    """``'{"a": 1}'`` (JSON) or ``'a=1,b=sconv'`` -> dict."""
    if not text:
        return {}
    text = text.strip()
    if text.startswith("{"):
        return json.loads(text)
    out = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"invalid --model_overrides item {item!r}: expected key=value")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def count_params(model):
    """``(trainable, non_trainable)`` parameter counts."""
    import numpy as np
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    non_trainable = sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    return trainable, non_trainable


def main(argv):
    del argv
    import models
    if FLAGS.list:
        for name in models.list_models():
            print(f"{name:24s} {models.describe_model(name)}")
        return 0
    overrides = parse_overrides(FLAGS.model_overrides)
    size = FLAGS.image_size
    model = models.build_model(FLAGS.model, num_classes=FLAGS.num_classes,
                               input_shape=(size, size, 3), **overrides)
    if FLAGS.summary:
        model.summary(line_length=120)
    trainable, non_trainable = count_params(model)
    print(f"model: {FLAGS.model}  input: {size}x{size}x3  classes: {FLAGS.num_classes}"
          + (f"  overrides: {overrides}" if overrides else ""))
    print(f"trainable parameters: {trainable:,}")
    print(f"non-trainable parameters: {non_trainable:,}")
    print(f"total parameters: {trainable + non_trainable:,}")
    return 0


def run():
    app.run(main)


if __name__ == "__main__":
    run()
