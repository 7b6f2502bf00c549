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
overrides, class count, this normalization, the pretrained input size and eval crop
(``models.timm_weights.pretrained_info``) and, for a converted 1000-class head, the ImageNet
class names: the metadata ``--weights OUT.weights.h5`` applies (``models.pretrained``).

Process note: only ``torch.load`` is used here (no torchvision / timm import). Importing
torchvision or timm *after* TensorFlow crashes the process with the CUDA build of torch 2.14.1
(its ``triton`` extension clashes with TensorFlow's; seen with TF 2.21), so code that needs
both imports torch, torchvision and timm first, or runs them in another process, as
``tests/test_convert.py`` does.

Deviation from the paper's code: the official repository converts nothing from PyTorch (it
starts from TF checkpoints); this tool exists so that pretrained ImageNet weights from the
PyTorch ecosystem can initialize fine-tuning (``--weights OUT.weights.h5``; ``--weights``
also reads the ``.safetensors`` / ``.pth`` and timm hub names directly, through
:mod:`models.pretrained`, so converting first is optional).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

import flags.convert as convert_flags
import models
from flags import cli
# The supported architectures live with the flags (their help lists them).
from flags.convert import SOURCES, TIMM_ARCHS, TORCHVISION_ARCHS  # noqa: F401

# The mapping itself lives under models/ (models.build_model(weights=...) needs it and models
# must not import official); these names stay importable from here.
from models import imagenet_classes
from models.timm_weights import (TORCH_BN_EPSILON, _transform, convert_state_dict,  # noqa: F401
                                 head_classes as _head_classes, load_torch_state_dict,
                                 map_key, pretrained_info)


def supported_archs(source: str) -> Tuple[str, ...]:
    if source == "timm":
        return TIMM_ARCHS
    if source == "torchvision":
        return TORCHVISION_ARCHS
    raise ValueError(f"unknown --source {source!r}; use one of {list(SOURCES)}")


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
    # The evaluation preprocessing the weights were made for travels with them (read by
    # models.pretrained for --weights): timm's pretrained config of the arch's default tag;
    # torchvision's ImageNet weights: 224 px, crop 0.875 (resize 256). ImageNet class names
    # when the 1000-class head was converted.
    if source == "timm":
        pre = pretrained_info(arch)
        summary.update(image_size=pre["image_size"], eval_preprocess=pre["eval_preprocess"],
                       interpolation=pre["interpolation"])
    else:
        summary.update(image_size=224, eval_preprocess="imagenet", interpolation="bilinear")
    if load_head and classes == 1000:
        summary["class_names"] = list(imagenet_classes.NAMES)
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
