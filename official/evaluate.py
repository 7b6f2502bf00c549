r"""Evaluates a trained run: accuracy, calibration, throughput and corruption robustness.

Usage::

    python -m official.evaluate --model_dir RUN --data SOURCE [--split val] \
        [--which latest|best] [--batch_size 64] [--dtype fp32|bf16|fp16] \
        [--corruptions all|15|19|fog,frost --severities 1,2,3,4,5 --seed 0] \
        [--corruption_dir DIR_FROM_make_corruptions] [--baseline_errors JSON] \
        [--output_dir DIR] [--max_examples N] [--benchmark_steps 10] [--no_progress]

(also installed as ``assemble-evaluate``.) An absl program: flags ``--flag=value`` or
``--flag value``, defined in ``flags/evaluate.py`` (the run-directory flags ``--model_dir``,
``--which`` in ``flags/run_dir.py``); ``--flagfile=FILE`` reads flags from a file and
``--help`` lists them. ``main(argv)`` takes the arguments without the program name and can be
called repeatedly from Python (each call parses into a fresh ``FlagValues``).

The model is rebuilt from the run's saved configuration
(``official.checkpoints.restore_model``): architecture, overrides, class count, input size,
eval preprocessing and normalization all come from ``RUN/run_config.json``; nothing about the
model is given on the command line.

Reported (``RESULT`` below; printed as one JSON object on the last line of stdout, everything
else goes to stderr):

* ``top1``, ``top5``: accuracy fractions; ``ece``: expected calibration error with 10 equal-width
  bins (:mod:`official.metrics`); ``nll``; per-class accuracy; a confusion-matrix PNG;
* ``images_per_second``: forward-pass throughput of the model alone (``model(x,
  training=False)`` in a ``tf.function``) on a fixed batch of ``--batch_size`` images after a
  warm-up call, with the batch size, compute dtype and device in ``details.throughput``.
  ``details.throughput.end_to_end_images_per_second`` is the whole evaluation loop's rate
  (decoding and preprocessing included);
* with ``--corruptions``: the top-1 error per corruption and severity, mCE over the 15
  ImageNet-C corruptions and over all 19 labelled separately (``mCE-15`` / ``mCE-19``),
  relative mCE and unnormalized mean errors (:func:`official.robustness.summarize_corruptions`),
  and a per-corruption PNG. Normalization: AlexNet's published ImageNet-C errors when the model
  has 1000 classes (ImageNet), the ``--baseline_errors`` JSON otherwise (``{corruption:
  [E_1..E_5]}`` fractions, or another run's evaluation JSON; its clean error, if present, gives
  the relative mCE). Without either, or when not all 5 severities are evaluated, only the
  unnormalized errors are reported. Corrupted images come from ``--corruption_dir`` (written by
  ``python -m data.make_corruptions``; ``DIR/<corruption>/<severity>`` is a data source) or are
  made on the fly: the clean evaluation crop (after resize + central crop, as ImageNet-C
  corrupts 224x224 crops) is rounded to uint8, corrupted with
  :func:`data.corruptions.corrupt` (seed derived from ``--seed``, the image's position in the
  split, corruption and severity) and normalized again;
* with ``--retrieval``: Recall@1/2/4/8 (``R@K`` keys) of the split's images retrieving each
  other by cosine (or Euclidean) similarity of their embeddings (the ``embedding`` layer, else
  the pooled features ``pool``), each query excluded from its own ranking
  (:func:`official.retrieval.recall_at_k`); ``--retrieval_zero_shot_classes N`` keeps only
  the classes after the first N (the zero-shot protocol the paper used on CUB-200, Cars196
  and SOP).

Files (atomically written; a failure leaves nothing half-written) go beside the checkpoint,
into the evaluated checkpoint's directory (``RUN/checkpoints/ckpt-N/``) unless
``--output_dir``: ``eval-<split>.json`` (the full result), ``eval-<split>-confusion.png`` and,
with corruptions, ``eval-<split>-corruptions.png``.

Deviations from the paper's code (clovaai/assembled-cnn ``main_classification.py`` eval and
``mce/eval_robustness.py``): ECE and top-k are computed in NumPy from the logits instead of TF1
streaming metrics (same definitions); mCE averages over severities (Hendrycks' definition,
see :mod:`official.robustness`) rather than over all images of a corruption; on-the-fly
corruption works on the evaluation crop at the model's input size, where the official script
reads a pre-generated ImageNet-C directory (also supported with ``--corruption_dir``); the
eval JPEG re-encode that ImageNet-C applies (quality 85) only happens with
``--corruption_dir`` (``make_corruptions`` writes JPEGs), not on the fly.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import platform
import re
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

import data as data_lib
import flags.evaluate as evaluate_flags
from data import constants, sources
from data import corruptions as corruption_lib
from flags import cli
from flags import run_dir as run_dir_flags
from flags.evaluate import DTYPE_POLICIES  # --dtype value -> Keras dtype policy
from official import checkpoints, extras, retrieval, robustness
from official import plots as plot_lib
from official.metrics import ClassificationMetrics, per_class_accuracy

# keras, TensorFlow and data.preprocessing / data.pipeline (TensorFlow) are imported inside the
# functions that use them: the program chooses the host allocator first (main).

logger = logging.getLogger("official.evaluate")


class EvaluationError(ValueError):
    """A bad input (run directory, data set, arguments): a one-line message for the CLI."""


# ----------------------------------------------------------------------------- helpers
def _atomic_write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_plot(fn, path: str, *args, **kwargs) -> str:
    """Runs a plotting function that writes ``path`` into a temp file, then renames it."""
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp-{os.getpid()}{ext or '.png'}"
    try:
        fn(*args, path=tmp, **kwargs)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def parse_severities(text) -> List[int]:
    """``"1,2,3"``, ``"1..5"``, ``"1-5"`` or an int -> sorted list of severities in 1..5."""
    if isinstance(text, (list, tuple)):
        values = [int(v) for v in text]
    else:
        text = str(text).strip()
        m = re.fullmatch(r"(\d)\s*(?:\.\.|-)\s*(\d)", text)
        if m:
            values = list(range(int(m.group(1)), int(m.group(2)) + 1))
        else:
            try:
                values = [int(v) for v in text.split(",") if v.strip()]
            except ValueError:
                raise EvaluationError(f"--severities {text!r}: use e.g. 1,2,3 or 1..5") from None
    if not values or any(v < 1 or v > 5 for v in values):
        raise EvaluationError(f"--severities {text!r}: severities are integers in 1..5")
    return sorted(set(values))


def parse_corruptions(text: Optional[str]) -> List[str]:
    """``all``/``19`` (the 19 ImageNet-C corruptions), ``15`` or a comma separated list."""
    if not text:
        return []
    key = text.strip().lower()
    if key in ("all", "19", "all19"):
        return list(corruption_lib.CORRUPTIONS_19)
    if key in ("15", "all15"):
        return list(corruption_lib.CORRUPTIONS_15)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in corruption_lib.CORRUPTIONS_19]
    if unknown:
        raise EvaluationError(f"--corruptions: unknown {unknown}; use all, 15, 19 or names from "
                              f"{list(corruption_lib.CORRUPTIONS_19)}")
    return list(dict.fromkeys(names))


def device_description() -> Dict[str, str]:
    import tensorflow as tf
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        name = gpus[0].name
        try:
            details = tf.config.experimental.get_device_details(
                tf.config.list_physical_devices("GPU")[0])
            name = details.get("device_name", name)
        except Exception:  # pragma: no cover
            pass
        return {"type": "GPU", "name": str(name), "count": str(len(gpus))}
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover
        pass
    return {"type": "CPU", "name": cpu, "count": str(os.cpu_count() or 1)}


def denormalize(images: np.ndarray, normalization: str) -> np.ndarray:
    """Inverse of :func:`data.preprocessing.normalize`: back to 0..255 floats."""
    if normalization == "mean":
        return images + np.asarray(constants.CHANNEL_MEANS, np.float32)
    if normalization == "mean_std":
        return (images * np.asarray(constants.IMAGENET_STD, np.float32)
                + np.asarray(constants.IMAGENET_MEAN, np.float32))
    raise EvaluationError(f"unknown normalization {normalization!r} in the run config")


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="batch", file=sys.stderr,
                dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 10.0)


def load_baseline_errors(path: str):
    """``(baseline dict or "alexnet", baseline clean error or None)`` from ``--baseline_errors``.

    Accepts ``{corruption: [E_1..E_5] or mean}`` fractions (optionally with ``"clean_error"``)
    or an ``eval-*.json`` written by this program (its ``corruptions.errors`` and clean
    top-1 error are used). The literal ``alexnet`` selects the AlexNet ImageNet-C errors.
    """
    if path.strip().lower() == "alexnet":
        return "alexnet", None
    if not os.path.exists(path):
        raise EvaluationError(f"--baseline_errors {path!r} does not exist")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise EvaluationError(f"--baseline_errors {path!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"--baseline_errors {path!r} must hold a JSON object")
    clean = None
    if "details" in data and isinstance(data["details"], dict) and "corruptions" in data["details"]:
        clean = 1.0 - float(data["top1"]) if data.get("top1") is not None else None
        data = data["details"]["corruptions"]["errors"]
    elif "errors" in data and isinstance(data["errors"], dict):
        clean = data.get("clean_error")
        data = data["errors"]
    else:
        clean = data.pop("clean_error", None)
    return data, (None if clean is None else float(clean))


# ----------------------------------------------------------------------------- evaluation
class _Predictor:
    """``model(x, training=False)`` compiled once per input shape, returning numpy logits."""

    def __init__(self, model):
        import keras
        self.model = model
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf
            self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        else:  # JAX / torch backends: Keras' own compiled inference step
            self._fn = lambda x: model.predict_on_batch(np.asarray(x))

    def __call__(self, images) -> np.ndarray:
        out = self._fn(images)
        return np.asarray(out, dtype=np.float32)


def benchmark(predict: _Predictor, batch: np.ndarray, steps: int, max_seconds: float = 20.0):
    """Steady-state forward throughput on one fixed batch (one warm-up call)."""
    import keras
    x = batch
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        x = tf.constant(batch)  # on the device once: time the model, not the copy
    predict(x)  # warm-up / trace
    done, start = 0, time.perf_counter()
    for _ in range(max(1, int(steps))):
        predict(x)
        done += 1
        if time.perf_counter() - start > max_seconds:
            break
    seconds = time.perf_counter() - start
    return {"images_per_second": done * batch.shape[0] / seconds, "steps": done,
            "seconds": seconds, "batch_size": int(batch.shape[0])}


def _check_run_dir(model_dir: str) -> None:
    if not model_dir:
        raise EvaluationError("--model_dir is required")
    if not os.path.isdir(model_dir):
        raise EvaluationError(f"--model_dir {model_dir!r} does not exist")
    if not os.path.exists(os.path.join(model_dir, checkpoints.RUN_CONFIG)):
        raise EvaluationError(f"--model_dir {model_dir!r} has no {checkpoints.RUN_CONFIG}: not a "
                              "training run directory (the model cannot be rebuilt without its "
                              "saved configuration)")


def weights_output_dir(info) -> str:
    """Where files about weights without a run go by default: beside a local weights file,
    else (a timm hub name, whose file sits in the Hugging Face cache) ``./<name>`` here."""
    if info.kind in ("run", "checkpoint"):
        return os.path.dirname(info.path)
    if info.hub_repo is None and os.path.exists(info.spec):
        return os.path.dirname(os.path.abspath(info.path)) or "."
    return os.path.abspath(re.sub(r"[^A-Za-z0-9_.-]+", "_", info.spec))


def restore(model_dir: Optional[str], which: str, dtype: Optional[str] = None,
            weights: Optional[str] = None):
    """``(model, run_config, checkpoint_dir)``, with clear errors for a bad run directory.

    ``weights`` (``--weights``, instead of ``--model_dir``): any weights PATH of
    :func:`official.checkpoints.restore_weights` (a run or checkpoint directory, a converted
    ``.weights.h5`` with its JSON, ``.keras``, a timm state dict or hub name); the network
    and the evaluation preprocessing come from the metadata that travels with the weights.
    ``checkpoint_dir`` is then the default output folder (:func:`weights_output_dir`)."""
    if model_dir and weights:
        raise EvaluationError(f"give --model_dir ({model_dir!r}) or --weights ({weights!r}), "
                              "not both")
    if not model_dir and not weights:
        raise EvaluationError("--model_dir or --weights is required")
    if model_dir:
        _check_run_dir(model_dir)
    import keras
    ckpt = None
    if model_dir:
        ckpt = checkpoints.checkpoint_path(model_dir, which)
        if ckpt is None:
            raise EvaluationError(f"--model_dir {model_dir!r} has no {which!r} checkpoint "
                                  f"(looked in {os.path.join(model_dir, checkpoints.CKPT_DIR)})")
    if dtype and dtype not in DTYPE_POLICIES:
        raise EvaluationError(f"--dtype {dtype!r}: use one of fp32, bf16, fp16")
    previous_policy = keras.config.dtype_policy()
    try:
        if dtype:  # the model is built under the policy; the caller's global one comes back
            keras.config.set_dtype_policy(DTYPE_POLICIES[dtype])
        if model_dir:
            model, config = checkpoints.restore_model(model_dir, which)
        else:
            model, config, info = checkpoints.restore_weights(weights, which)
            ckpt = (checkpoints.checkpoint_path(weights, which) if info.kind == "run"
                    else weights_output_dir(info))
            logger.info("--weights %s: %s", weights, info.describe())
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise EvaluationError(f"cannot restore {model_dir or weights!r} ({which}): {e}") from e
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return model, config, ckpt


def _num_classes(model) -> int:
    return int(model.outputs[0].shape[-1])


def _check_source(source: str, num_classes: int, label_offset: int, what="--data"):
    """Inspects ``source`` and checks that it has the model's ``num_classes``.

    ``info.num_classes`` and the model's width both count the true classes; ``label_offset``
    only shifts the stored labels (``data.build_dataset``), so it is not part of the check.
    """
    try:
        info = data_lib.inspect_source(source)
    except (ValueError, FileNotFoundError, OSError) as e:
        raise EvaluationError(f"{what} {source!r}: {e}") from e
    if info.num_classes is not None and info.num_classes != num_classes:
        raise EvaluationError(
            f"{what} {source!r} has {info.num_classes} classes"
            + (f" (stored with label_offset {label_offset})" if label_offset else "")
            + f" but the model has {num_classes}: evaluate on the data set the model was "
            "trained for")
    return info


def _label_offset(source, config) -> int:
    """The ``label_offset`` to read ``source`` with. The run's ``--label_offset`` describes its
    training TFRecords; an evaluation source may differ: TFRecords written by
    ``data.build_tfrecords`` record theirs (``summary.json``), and image folders, zips (e.g.
    ``--corruption_dir`` output of ``data.make_corruptions``) and TFDS labels start at 0."""
    info = data_lib.inspect_source(source)
    if info.kind != "tfrecord":
        return 0
    return config.data.label_offset if info.label_offset is None else info.label_offset


def _dataset(source, split, config, batch_size, num_classes, stats=None):
    try:
        return data_lib.build_dataset(
            source, split, config.input_spec(False, batch_size), num_classes=num_classes,
            label_offset=_label_offset(source, config), stats=stats)
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise EvaluationError(f"cannot read split {split!r} of {source!r}: {e}") from e


def _take(ds, max_examples, batch_size):
    if max_examples:
        return ds.take(int(math.ceil(max_examples / batch_size)))
    return ds


def _batches(ds, max_examples):
    """Yields numpy ``(images, labels)``, truncated to ``max_examples`` in total."""
    seen = 0
    for images, labels in ds:
        images, labels = images.numpy(), labels.numpy()
        if max_examples:
            room = int(max_examples) - seen
            if room <= 0:
                return
            images, labels = images[:room], labels[:room]
        seen += labels.shape[0]
        yield images, labels


def _num_batches(n, batch_size, max_examples):
    if n is None:
        return None
    if max_examples:
        n = min(n, int(max_examples))
    return int(math.ceil(n / batch_size))


def evaluate_clean(predict, ds, num_classes, max_examples, total, progress, desc="eval"):
    metrics = ClassificationMetrics(num_classes)
    first_batch = None
    start = time.perf_counter()
    for images, labels in _progress(_batches(ds, max_examples), total, desc, progress):
        if first_batch is None:
            first_batch = images
        metrics.update(predict(images), labels)
    seconds = time.perf_counter() - start
    return metrics, first_batch, seconds


def evaluate_corrupted_on_the_fly(predict, ds, config, num_classes, name, severity, seed,
                                  max_examples, total, progress):
    """Top-1 error on corrupted copies of the evaluation crops (see the module docstring)."""
    import data.preprocessing as pp
    metrics = ClassificationMetrics(num_classes, top_k=(1,))
    index = 0
    for images, labels in _progress(_batches(ds, max_examples), total,
                                    f"{name} s{severity}", progress):
        raw = denormalize(images, config.data.normalization)
        raw = np.clip(np.rint(raw), 0, 255).astype(np.uint8)
        idx = range(index, index + raw.shape[0])
        corrupted = corruption_lib.corrupt_batch(raw, name, severity, seed=seed, indices=idx)
        index += raw.shape[0]
        x = np.asarray(pp.normalize(corrupted.astype(np.float32), config.data.normalization))
        metrics.update(predict(x), labels)
    return metrics.error_rate(), metrics.count


def _first_image_size(source: str, split: str):
    """``(height, width)`` of the first image of ``split`` (header only for JPEGs)."""
    import tensorflow as tf
    from data import preprocessing
    table = sources.record_table(source, split)
    if table.kind == "file":
        with open(table.paths[0], "rb") as f:
            blob = f.read()
    else:
        reader = sources.ByteReader(table.files, member_names=table.paths)
        blob = (reader.read_member(table.file_ids[0], 0) if table.kind == "zipmember" else
                reader.read_range(table.file_ids[0], table.offsets[0], table.lengths[0]))
    if table.tfrecord:
        from data.pipeline import _parse_tfrecord
        blob = _parse_tfrecord(tf.constant(blob))[0]
    h, w = (int(v) for v in preprocessing.image_shape(tf.constant(blob)).numpy())
    return h, w


def _as_stored(config, source: str, split: str):
    """The run's config, with the evaluation preprocessing that reads ``source``'s images as
    they are when they are square crops (ImageNet-C, ``data.make_corruptions --image_size``):
    resize the short side to S and crop S, an identity on S x S images, whatever the run's own
    evaluation size (the network takes any size). The original (``mce/eval_robustness.py``)
    reads the corrupted crops as they are; resizing and cropping them again as clean images
    zoomed them by 1/0.875 = 1.14x. Images that are not square (corrupted full-size
    originals, ``make_corruptions`` without ``--image_size``) get the run's preprocessing."""
    h, w = _first_image_size(source, split)
    if h != w:
        return config
    stored = copy.deepcopy(config)
    stored.model.image_size, stored.data.eval_preprocess = h, str(h)
    return stored


def evaluate_corrupted_from_dir(predict, corruption_dir, split, config, batch_size, num_classes,
                                name, severity, max_examples, progress):
    source = os.path.join(corruption_dir, name, str(severity))
    if not os.path.isdir(source):
        raise EvaluationError(f"--corruption_dir {corruption_dir!r} has no {name}/{severity} "
                              "(write it with python -m data.make_corruptions)")
    info = _check_source(source, num_classes, config.data.label_offset, what="corrupted data")
    if split not in info.split_sizes:
        raise EvaluationError(f"corrupted data {source!r} has no split {split!r} "
                              f"(splits: {sorted(info.split_sizes)})")
    ds = _take(_dataset(source, split, _as_stored(config, source, split), batch_size, num_classes),
               max_examples, batch_size)
    total = _num_batches(info.split_sizes.get(split), batch_size, max_examples)
    metrics = ClassificationMetrics(num_classes, top_k=(1,))
    for images, labels in _progress(_batches(ds, max_examples), total, f"{name} s{severity}",
                                    progress):
        metrics.update(predict(images), labels)
    return metrics.error_rate(), metrics.count


def embedding_layer_name(model) -> str:
    """The layer whose output is the image embedding: ``embedding`` when the model has the
    embedding head, else the global pooling output ``pool`` (models contract)."""
    names = {layer.name for layer in model.layers}
    for name in ("embedding", "pool"):
        if name in names:
            return name
    raise EvaluationError("the model has neither an 'embedding' nor a 'pool' layer to take "
                          "retrieval embeddings from")


def evaluate_retrieval(model, ds, max_examples, total, progress, *, metric="cosine",
                       ks=(1, 2, 4, 8), zero_shot_train_classes=None):
    """Recall@K of the split's images retrieving each other (each query excluded from its own
    ranking), as the paper's retrieval transfer experiments (CUB-200, Cars196, SOP).

    With ``zero_shot_train_classes=n`` only the classes after the first ``n`` (sorted label
    order) take part, the zero-shot protocol of Oh Song et al. (2016): the first ``n`` are the
    classes a retrieval model would be fine-tuned on.
    """
    import keras
    layer = embedding_layer_name(model)
    embed = _Predictor(keras.Model(model.inputs, model.get_layer(layer).output))
    chunks, labels = [], []
    for images, batch_labels in _progress(_batches(ds, max_examples), total, "embed", progress):
        chunks.append(embed(images).reshape(images.shape[0], -1))
        labels.append(batch_labels)
    embeddings, labels = np.concatenate(chunks), np.concatenate(labels)
    if zero_shot_train_classes:
        try:
            _, test_idx = retrieval.zero_shot_split(labels, zero_shot_train_classes)
        except ValueError as e:
            raise EvaluationError(f"--retrieval_zero_shot_classes: {e}") from e
        embeddings, labels = embeddings[test_idx], labels[test_idx]
    recalls = retrieval.recall_at_k(embeddings, labels, ks=ks, metric=metric)
    return {
        "layer": layer,
        "metric": metric,
        "embedding_dim": int(embeddings.shape[1]),
        "num_examples": int(labels.shape[0]),
        "zero_shot_train_classes": zero_shot_train_classes,
        "recall": {f"R@{k}": float(recalls[k]) for k in ks},
    }


def corruption_summary(errors: Dict[str, List[float]], severities: Sequence[int],
                       clean_error: float, num_classes: int, baseline_errors: Optional[str]):
    """Labelled mCE-15 / mCE-19 figures via :func:`official.robustness.summarize_corruptions`."""
    notes = []
    full = list(severities) == [1, 2, 3, 4, 5]
    baseline, baseline_clean = None, None
    if baseline_errors:
        baseline, baseline_clean = load_baseline_errors(baseline_errors)
        normalization = "alexnet" if baseline == "alexnet" else "baseline"
    elif num_classes == 1000:
        baseline, normalization = "alexnet", "alexnet"
    else:
        normalization = "none"
        notes.append("mCE not normalized: the model does not have 1000 (ImageNet) classes and "
                     "no --baseline_errors was given; mean errors only")
    if baseline is not None and not full:
        notes.append(f"mCE not normalized: severities {list(severities)} evaluated, the "
                     "normalization needs all five")
        baseline, normalization = None, "none"
    if baseline is None:
        summary = robustness.summarize_corruptions(errors, clean_error, baseline={})
    else:
        if baseline == "alexnet":
            summary = robustness.summarize_corruptions(errors, clean_error, baseline="alexnet")
        elif baseline_clean is None:
            summary = robustness.summarize_corruptions(errors, None, baseline=baseline)
            notes.append("relative mCE omitted: the baseline has no clean error")
        else:
            summary = robustness.summarize_corruptions(errors, clean_error, baseline=baseline,
                                                       baseline_clean_error=baseline_clean)
    evaluated = {"corruptions": list(errors),
                 "mean_error": robustness.mean_corruption_error(errors)}
    if baseline is not None:
        try:
            evaluated["mCE"] = robustness.mce(errors, baseline, list(errors))
        except ValueError as e:  # a corruption the baseline lacks
            notes.append(f"mCE over the evaluated corruptions not computed: {e}")
    summary["evaluated"] = evaluated
    summary["normalization"] = normalization
    summary["notes"] = notes
    summary["errors"] = errors
    summary["severities"] = list(severities)
    return summary


def evaluate(model_dir: Optional[str], data: str, *, split: Optional[str] = None,
             which: str = "latest", batch_size: Optional[int] = None, dtype: Optional[str] = None,
             corruptions: Optional[str] = None, severities="1..5", seed: int = 0,
             corruption_dir: Optional[str] = None, baseline_errors: Optional[str] = None,
             output_dir: Optional[str] = None, max_examples: Optional[int] = None,
             benchmark_steps: int = 10, progress: bool = True, plots: bool = True,
             retrieval: bool = False, retrieval_metric: str = "cosine",
             retrieval_zero_shot_classes: Optional[int] = None,
             weights: Optional[str] = None) -> Dict[str, Any]:
    """Runs the evaluation and writes its files; returns the result dict (see module doc).
    The keyword arguments are the program's flags of the same names (``progress`` / ``plots``:
    the opposite of ``--no_progress`` / ``--no_plots``). ``weights`` (``--weights``) replaces
    ``model_dir``: see :func:`restore`."""
    if retrieval_metric not in ("cosine", "euclidean"):
        raise EvaluationError(f"--retrieval_metric must be cosine or euclidean, got "
                              f"{retrieval_metric!r}")
    corruption_names = parse_corruptions(corruptions)
    severity_list = parse_severities(severities) if corruption_names else []
    if corruption_dir and not corruption_names:
        raise EvaluationError("--corruption_dir needs --corruptions (which ones to evaluate)")
    if corruption_dir and not os.path.isdir(corruption_dir):
        raise EvaluationError(f"--corruption_dir {corruption_dir!r} does not exist")
    if batch_size is not None and int(batch_size) < 1:
        raise EvaluationError(f"--batch_size must be >= 1, got {batch_size}")
    if max_examples is not None and int(max_examples) < 1:
        raise EvaluationError(f"--max_examples must be >= 1, got {max_examples}")
    if baseline_errors and baseline_errors.strip().lower() != "alexnet":
        load_baseline_errors(baseline_errors)  # fail early, before the long work
    # Optional packages the flags need, checked now rather than when they are first used.
    corrupting = corruption_names and not corruption_dir
    needed = ((["matplotlib"] if plots else [])
              + (["imagecorruptions", "cv2", "skimage", "scipy", "PIL"] if corrupting else []))
    try:
        extras.require(*needed, program="official.evaluate")
    except extras.MissingDependency as e:
        raise EvaluationError(str(e)) from e

    model, config, ckpt_dir = restore(model_dir, which, dtype, weights=weights)
    num_classes = _num_classes(model)
    info = _check_source(data, num_classes, config.data.label_offset)
    if split is None:
        split = config.data.eval_split
    if split is None:
        try:
            split = data_lib.resolve_eval_split(data)
        except ValueError as e:
            raise EvaluationError(str(e)) from e
    if split not in info.split_sizes:
        raise EvaluationError(f"--data {data!r} has no split {split!r} "
                              f"(splits: {sorted(info.split_sizes)})")
    batch_size = int(batch_size or config.data.eval_batch_size or 64)
    out_dir = output_dir or ckpt_dir
    os.makedirs(out_dir, exist_ok=True)

    stats = data_lib.DatasetStats()
    ds = _take(_dataset(data, split, config, batch_size, num_classes, stats), max_examples,
               batch_size)
    total = _num_batches(info.split_sizes.get(split), batch_size, max_examples)
    predict = _Predictor(model)
    logger.info("evaluating %s (%s) on %s/%s", model_dir or weights, os.path.basename(ckpt_dir),
                data, split)
    metrics, first_batch, loop_seconds = evaluate_clean(predict, ds, num_classes, max_examples,
                                                        total, progress)
    if metrics.count == 0:
        raise EvaluationError(f"split {split!r} of {data!r} gave no decodable example")
    clean = metrics.result()

    # Throughput on a full batch (repeat the first batch's images if the split is smaller).
    reps = int(math.ceil(batch_size / first_batch.shape[0]))
    bench_batch = np.concatenate([first_batch] * reps)[:batch_size]
    throughput = benchmark(predict, bench_batch, benchmark_steps)
    throughput.update(dtype=str(model.compute_dtype), variable_dtype=str(model.variable_dtype),
                      device=device_description(),
                      end_to_end_images_per_second=metrics.count / loop_seconds)

    class_names = list(info.class_names) if info.class_names else config.data.class_names
    details: Dict[str, Any] = {
        "model_dir": os.path.abspath(model_dir) if model_dir else None,
        "weights": weights,
        "checkpoint": os.path.abspath(ckpt_dir),
        "which": which,
        "model": config.model.name,
        "model_overrides": config.model_overrides(),
        "num_classes": num_classes,
        "image_size": config.model.image_size,
        "eval_preprocess": config.data.eval_preprocess,
        "normalization": config.data.normalization,
        "data": data,
        "split": split,
        "num_examples": metrics.count,
        "records_skipped": stats.records_skipped,
        "nll": clean["nll"],
        "calibration": clean["calibration"],
        "per_class_accuracy": _per_class(metrics.cm, class_names),
        "confusion_matrix": metrics.cm.tolist(),
        "class_names": class_names,
        "throughput": throughput,
        "max_examples": max_examples,
    }
    prefix = os.path.join(out_dir, f"eval-{split}")
    files = {"json": prefix + ".json"}
    if plots:
        files["confusion_png"] = prefix + "-confusion.png"

    if corruption_names:
        errors: Dict[str, List[float]] = {}
        counts: Dict[str, List[int]] = {}
        for name in corruption_names:
            errors[name], counts[name] = [], []
            for severity in severity_list:
                if corruption_dir:
                    err, n = evaluate_corrupted_from_dir(
                        predict, corruption_dir, split, config, batch_size, num_classes, name,
                        severity, max_examples, progress)
                else:
                    cds = _take(_dataset(data, split, config, batch_size, num_classes),
                                max_examples, batch_size)
                    err, n = evaluate_corrupted_on_the_fly(
                        predict, cds, config, num_classes, name, severity, seed, max_examples,
                        total, progress)
                errors[name].append(float(err))
                counts[name].append(int(n))
                logger.info("%s severity %d: top-1 error %.4f (%d images)", name, severity, err, n)
        summary = corruption_summary(errors, severity_list, 1.0 - clean["top1"], num_classes,
                                     baseline_errors)
        summary["num_examples"] = counts
        summary["source"] = corruption_dir or "on the fly (data.corruptions)"
        summary["seed"] = seed
        details["corruptions"] = summary
        if plots:
            files["corruptions_png"] = prefix + "-corruptions.png"

    if retrieval:
        rds = _take(_dataset(data, split, config, batch_size, num_classes), max_examples,
                    batch_size)
        details["retrieval"] = evaluate_retrieval(
            model, rds, max_examples, total, progress, metric=retrieval_metric,
            zero_shot_train_classes=retrieval_zero_shot_classes)

    result = {
        "top1": clean["top1"],
        "top5": clean["top5"],
        "ece": clean["ece"],
        "images_per_second": throughput["images_per_second"],
    }
    if corruption_names:
        for key in ("mCE-15", "mCE-19", "mean_error-15", "mean_error-19"):
            if key in details["corruptions"]:
                result[key] = details["corruptions"][key]
    if retrieval:
        result.update(details["retrieval"]["recall"])
    details["files"] = files
    result["details"] = details

    # Plots first (temp names), the JSON last: the JSON's presence means all is written.
    if plots:
        title = f"{config.model.name} on {os.path.basename(os.path.normpath(data))}/{split}"
        _atomic_plot(plot_lib.plot_confusion_matrix, files["confusion_png"], metrics.cm,
                     class_names, title=title)
        if corruption_names:
            _atomic_plot(plot_lib.plot_corruption_errors, files["corruptions_png"],
                         {config.model.name: errors}, clean_errors={
                             config.model.name: 1.0 - clean["top1"]}, title=title)
    _atomic_write_json(files["json"], result)
    return result


def _per_class(cm: np.ndarray, class_names) -> Dict[str, Optional[float]]:
    acc = per_class_accuracy(cm)
    names = class_names if class_names and len(class_names) == len(acc) else [
        str(i) for i in range(len(acc))]
    return {str(n): a for n, a in zip(names, acc)}


# ----------------------------------------------------------------------------- CLI
PROG = "python -m official.evaluate"


def parse_args(argv: Optional[List[str]] = None):
    """The flags (``flags/evaluate.py``) parsed from ``argv`` (without the program name;
    default ``sys.argv[1:]``) into a fresh ``absl.flags.FlagValues`` (attributes
    ``.model_dir``, ``.data``, ...). ``--flagfile=FILE`` works; ``--help`` prints the flags
    and exits; bad flags raise :class:`EvaluationError` naming the flag."""
    return cli.parse(evaluate_flags.define, argv, prog=PROG, usage=__doc__,
                     required=evaluate_flags.REQUIRED,
                     alternatives=run_dir_flags.ALTERNATIVES, error=EvaluationError)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Runs the program on ``argv`` (flags only, no program name; default ``sys.argv[1:]``)
    and prints the result JSON as the last line of stdout; callable repeatedly from Python."""
    args = parse_args(argv)
    # Before TensorFlow's first op; quiet when a Python caller already runs TensorFlow.
    data_lib.apply_host_allocator(args.host_allocator, quiet=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    result = evaluate(args.model_dir, args.data, split=args.split, which=args.which,
                      batch_size=args.batch_size, dtype=args.dtype,
                      corruptions=args.corruptions, severities=args.severities, seed=args.seed,
                      corruption_dir=args.corruption_dir, baseline_errors=args.baseline_errors,
                      output_dir=args.output_dir, max_examples=args.max_examples,
                      benchmark_steps=args.benchmark_steps, progress=not args.no_progress,
                      plots=not args.no_plots, retrieval=args.retrieval,
                      retrieval_metric=args.retrieval_metric,
                      retrieval_zero_shot_classes=args.retrieval_zero_shot_classes,
                      weights=args.weights)
    sys.stderr.flush()
    print(json.dumps(result, sort_keys=True, default=_json_default), flush=True)
    return result


def run() -> None:
    """Console script ``assemble-evaluate``: bad inputs exit with status 2 and one message."""
    try:
        main(sys.argv[1:])
    except EvaluationError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
