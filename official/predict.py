r"""Predicts the top classes of images with a trained run, weights or a SavedModel.

Usage::

    python -m official.predict --model_dir RUN IMAGE [IMAGE ...]
    python -m official.predict --weights resnet50d.weights.h5 photos/ more.zip 'shots/*.jpg'
    python -m official.predict --weights EXPORTED_SAVEDMODEL --format=json --top_k=3 a.jpg

(also installed as ``assemble-predict``.) An absl program: flags in ``flags/predict.py``
(``--model_dir`` / ``--weights`` / ``--which`` from ``flags/run_dir.py``, ``--top_k``,
``--format``, ``--batch_size``); the images are the positional arguments; ``--flagfile=FILE``
works and ``--help`` lists the flags. From Python: :func:`predict`.

The model:

* ``--model_dir RUN``: a training run directory (``--which`` latest / best / a checkpoint);
* ``--weights PATH``: anything :func:`official.checkpoints.restore_weights` reads (a run or
  checkpoint directory, a ``.weights.h5`` with the JSON ``official.convert`` writes, ``.keras``,
  a timm ``.safetensors`` / ``.pth`` state dict, a timm name such as ``resnet50d``), or a
  SavedModel directory written by ``official.export``.

Images: files, folders (searched recursively for ``.jpg .jpeg .png .gif .bmp .webp``, any
case), ``.zip`` files (their image members, read in place) and glob patterns (``'*.jpg'``,
``'photos/**/*.png'``; quote them or let the shell expand them). JPEG, PNG, GIF, BMP and
WebP are decoded (a SavedModel accepts JPEG and PNG only).

Preprocessing is exactly the evaluation's: :func:`data.preprocessing.preprocess_for_eval`
(short-side resize + central crop) with the run's ``image_size`` and ``eval_preprocess``, then
:func:`data.preprocessing.normalize` with its ``normalization`` (the functions
``data.build_dataset`` applies to evaluation batches and the SavedModel's serving graph runs);
for weights without a run, the values that travel with the weights (timm: ``mean_std`` and
the pretrained crop).

Output: ``--format=table`` (default) prints, per image, the top-k classes with their index,
name (the run's or the weights' class names; the index when there are none) and softmax
probability; ``--format=json`` prints one JSON object per image per line: ``{"image": NAME,
"top_k": [{"rank", "class_id", "class_name", "probability"}, ...]}``. Zip members are named
``ZIP:MEMBER``.

Bad inputs: a missing path, a folder or zip without images, a pattern that matches nothing, a
file that is not an image, a truncated or corrupt image are each named on stderr (``skipped
NAME: reason``) and skipped; the other images are still predicted. Exit status: 0 when at
least one image was predicted, 1 when none could be (every input bad, or no image found), 2
for bad flags or a model that cannot be loaded. (Choice: a batch job that hits one bad file
still succeeds and says so on stderr; a run that predicted nothing fails.)

Deviation from the paper's code: the original has no prediction program (its
``main_classification.py`` evaluates labelled TFRecords only).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
import zipfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import flags.predict as predict_flags
from flags import cli
from flags import run_dir as run_dir_flags
from official import checkpoints
from official.evaluate import _Predictor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
PROG = "python -m official.predict"


class PredictionError(ValueError):
    """Bad flags or a model that cannot be loaded: a one-line message for the CLI."""


# ----------------------------------------------------------------------------- inputs
@dataclasses.dataclass
class ImageInput:
    """One image to predict: its display ``name`` and how to read its bytes."""
    name: str
    read: Callable[[], bytes]


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _file_reader(path: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(path, "rb") as f:
            return f.read()
    return read


def _zip_inputs(path: str) -> Tuple[List[ImageInput], Optional[str]]:
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        return [], f"not a readable zip file ({e})"
    members = sorted(n for n in z.namelist() if not n.endswith("/") and _is_image_name(n))
    if not members:
        return [], f"the zip file has no image members ({', '.join(IMAGE_EXTENSIONS)})"

    def reader(member):
        return lambda: zipfile.ZipFile(path).read(member)
    return [ImageInput(f"{path}:{m}", reader(m)) for m in members], None


def _path_inputs(path: str) -> Tuple[List[ImageInput], Optional[str]]:
    if os.path.isdir(path):
        found = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            found += [os.path.join(root, f) for f in sorted(files) if _is_image_name(f)]
        if not found:
            return [], f"the folder has no image files ({', '.join(IMAGE_EXTENSIONS)})"
        return [ImageInput(p, _file_reader(p)) for p in found], None
    if path.lower().endswith(".zip"):
        return _zip_inputs(path)
    return [ImageInput(path, _file_reader(path))], None


def collect_images(specs: Sequence[str]) -> Tuple[List[ImageInput], List[Tuple[str, str]]]:
    """Expands files, folders, zips and glob patterns into images, in the given order (each
    image once). Returns ``(inputs, problems)``, ``problems`` as ``(spec, reason)``."""
    inputs: List[ImageInput] = []
    problems: List[Tuple[str, str]] = []
    seen = set()
    for spec in specs:
        if os.path.exists(spec):
            paths = [spec]
        elif glob.has_magic(spec):
            paths = sorted(glob.glob(spec, recursive=True))
            if not paths:
                problems.append((spec, "no file matches this pattern"))
                continue
        else:
            problems.append((spec, "no such file or directory"))
            continue
        for path in paths:
            found, problem = _path_inputs(path)
            if problem:
                problems.append((path, problem))
            for item in found:
                if item.name not in seen:
                    seen.add(item.name)
                    inputs.append(item)
    return inputs, problems


def _read(item: ImageInput) -> Tuple[Optional[bytes], Optional[str]]:
    """The image's bytes, or a reason it cannot be an image (read error, empty, not an image,
    truncated: :func:`data.preprocessing.check_image_bytes_py`)."""
    from data import preprocessing as pp
    try:
        raw = item.read()
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        return None, f"cannot read it ({e})"
    reason = pp.check_image_bytes_py(raw)
    if reason != pp.REASON_OK:
        return None, pp.REASONS[reason]
    return raw, None


def _decode_error(e: Exception) -> str:
    message = getattr(e, "message", None) or str(e)
    return "cannot decode it (" + message.strip().splitlines()[0][:200] + ")"


# ----------------------------------------------------------------------------- models
class _KerasModel:
    """A Keras network with the run's evaluation preprocessing (``data.preprocessing``)."""

    def __init__(self, model, config):
        from data import preprocessing as pp
        self.model, self.config = model, config
        self.forward = _Predictor(model)
        self.num_classes = int(model.outputs[0].shape[-1])
        names = config.data.class_names
        self.class_names = [str(n) for n in names] if names and len(names) == self.num_classes \
            else None
        self.crop = pp.eval_image_size(config.model.image_size, config.data.eval_preprocess)
        self.description = {"model": config.model.name, "image_size": config.model.image_size,
                            "eval_preprocess": config.data.eval_preprocess,
                            "normalization": config.data.normalization}

    def preprocess(self, raw: bytes) -> np.ndarray:
        import tensorflow as tf
        from data import preprocessing as pp
        image = pp.preprocess_for_eval(tf.constant(raw), self.config.model.image_size,
                                       self.config.data.eval_preprocess)
        return pp.normalize(image, self.config.data.normalization).numpy()

    def probabilities(self, items: List[Tuple[str, bytes]]):
        """``(probs [n, K] for the decodable items, their names, [(name, error)])``."""
        import tensorflow as tf
        images, names, errors = [], [], []
        for name, raw in items:
            try:
                images.append(self.preprocess(raw))
                names.append(name)
            except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, ValueError) as e:
                errors.append((name, _decode_error(e)))
        if not images:
            return np.zeros((0, self.num_classes), np.float32), names, errors
        logits = self.forward(np.stack(images))
        return _softmax(logits), names, errors

    def names_for(self, ids, row) -> List[str]:
        return [self.class_names[i] if self.class_names else str(i) for i in ids]


class _SavedModel:
    """A SavedModel from ``official.export``: its ``serving_default`` (encoded bytes in,
    decoding and the run's preprocessing inside the graph) gives the probabilities and the
    class names (``top_k_class_names``; older exports without it: ``export_metadata.json``)."""

    def __init__(self, path: str):
        import tensorflow as tf
        self.path = path
        try:
            self.loaded = tf.saved_model.load(path)
            self.serve = self.loaded.signatures["serving_default"]
        except Exception as e:
            raise PredictionError(f"--weights {path!r}: cannot load the SavedModel: {e}") from e
        meta_path = os.path.join(path, "export_metadata.json")
        self.metadata = {}
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                self.metadata = json.load(f)
        names = self.metadata.get("class_names")
        self.num_classes = int(self.metadata.get("num_classes") or 0) or None
        self.class_names = [str(n) for n in names] if names else None
        self.description = {k: self.metadata.get(k) for k in (
            "model", "image_size", "eval_preprocess", "normalization")}
        self._graph_names: Dict[int, str] = {}

    def _run(self, raws: List[bytes]):
        import tensorflow as tf
        out = self.serve(image_bytes=tf.constant(raws, tf.string))
        if "top_k_class_names" in out:
            ids = out["top_k_indices"].numpy()
            names = out["top_k_class_names"].numpy()
            for i, n in zip(ids.reshape(-1), names.reshape(-1)):
                self._graph_names[int(i)] = n.decode("utf-8")
        return out["probabilities"].numpy()

    def probabilities(self, items: List[Tuple[str, bytes]]):
        import tensorflow as tf
        if not items:
            return np.zeros((0, self.num_classes or 1), np.float32), [], []
        try:
            return self._run([raw for _, raw in items]), [n for n, _ in items], []
        except tf.errors.InvalidArgumentError:  # one bad image fails the request: find it
            probs, names, errors = [], [], []
            for name, raw in items:
                try:
                    probs.append(self._run([raw])[0])
                    names.append(name)
                except tf.errors.InvalidArgumentError as e:
                    errors.append((name, _decode_error(e)))
            return (np.stack(probs) if probs else np.zeros((0, self.num_classes or 1))), \
                names, errors

    def names_for(self, ids, row) -> List[str]:
        out = []
        for i in ids:
            if i in self._graph_names:
                out.append(self._graph_names[i])
            elif self.class_names and i < len(self.class_names):
                out.append(self.class_names[i])
            else:
                out.append(str(i))
        return out


def _softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def load_predictor(source: Optional[str] = None, which: str = "latest",
                   model_dir: Optional[str] = None):
    """The model behind ``source`` (``--weights``: weights, a run or a SavedModel directory)
    or ``model_dir`` (``--model_dir``), ready to predict. Raises :class:`PredictionError`."""
    if source and model_dir:
        raise PredictionError(f"give --model_dir ({model_dir!r}) or --weights ({source!r}), "
                              "not both")
    if not source and not model_dir:
        raise PredictionError("--model_dir or --weights is required")
    if model_dir:
        if not os.path.exists(os.path.join(model_dir, checkpoints.RUN_CONFIG)):
            raise PredictionError(f"--model_dir {model_dir!r} is not a training run directory "
                                  f"(no {checkpoints.RUN_CONFIG}); for weights files or "
                                  "SavedModels use --weights")
        try:
            model, config = checkpoints.restore_model(model_dir, which)
        except (ValueError, FileNotFoundError) as e:
            raise PredictionError(f"cannot restore --model_dir {model_dir!r} ({which}): {e}") \
                from e
        return _KerasModel(model, config)
    if os.path.isdir(source) and os.path.exists(os.path.join(source, "saved_model.pb")):
        return _SavedModel(source)
    try:
        model, config, _ = checkpoints.restore_weights(source, which)
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise PredictionError(f"cannot load --weights {source!r}: {e}") from e
    return _KerasModel(model, config)


# ----------------------------------------------------------------------------- predicting
def predict(source, images: Sequence[str], top_k: int = 5, batch_size: int = 16,
            which: str = "latest", model_dir: Optional[str] = None,
            on_record: Optional[Callable[[Dict[str, Any]], None]] = None) -> List[Dict[str, Any]]:
    """Top-``top_k`` classes of every image in ``images`` (files, folders, zips, globs).

    ``source``: a run directory, any weights PATH (``.weights.h5`` + JSON, ``.keras``, timm
    ``.safetensors`` / ``.pth``, a timm name) or a SavedModel directory (or an already
    loaded predictor from :func:`load_predictor`); ``model_dir`` instead of ``source``
    restores a run with ``which``. Returns one record per input: first the arguments that
    gave no image (missing, a pattern matching nothing, a folder or zip without images), then
    every image in input order:
    ``{"image": NAME, "top_k": [{"rank", "class_id", "class_name", "probability"}, ...]}``,
    or ``{"image": NAME, "error": REASON}`` for an input that could not be predicted (missing,
    not an image, corrupt, a folder without images). ``on_record`` is called with each record
    as soon as it is ready (the CLI prints them as they come).
    """
    if int(top_k) < 1:
        raise PredictionError(f"--top_k must be >= 1, got {top_k}")
    if int(batch_size) < 1:
        raise PredictionError(f"--batch_size must be >= 1, got {batch_size}")
    predictor = source if hasattr(source, "probabilities") else load_predictor(
        source, which, model_dir)
    inputs, problems = collect_images(list(images))
    records: List[Dict[str, Any]] = []

    def emit(record):
        records.append(record)
        if on_record is not None:
            on_record(record)
    for spec, reason in problems:
        emit({"image": spec, "error": reason})
    for start in range(0, len(inputs), int(batch_size)):
        chunk = inputs[start:start + int(batch_size)]
        readable, errors = [], {}
        for item in chunk:
            raw, reason = _read(item)
            if reason:
                errors[item.name] = reason
            else:
                readable.append((item.name, raw))
        probs, names, decode_errors = predictor.probabilities(readable)
        errors.update(dict(decode_errors))
        rows = dict(zip(names, range(len(names))))
        for item in chunk:  # input order
            if item.name in errors:
                emit({"image": item.name, "error": errors[item.name]})
                continue
            p = probs[rows[item.name]]
            k = min(int(top_k), p.shape[-1])
            ids = [int(i) for i in np.argsort(-p, kind="stable")[:k]]
            labels = predictor.names_for(ids, p)
            emit({"image": item.name, "top_k": [
                {"rank": r + 1, "class_id": i, "class_name": n, "probability": float(p[i])}
                for r, (i, n) in enumerate(zip(ids, labels))]})
    return records


def format_table(record: Dict[str, Any]) -> str:
    """The text-table lines of one prediction record."""
    lines = []
    for entry in record["top_k"]:
        lines.append(f"{record['image'] if entry['rank'] == 1 else '':<40s} {entry['rank']:>4d} "
                     f"{entry['probability']:>11.4f}  {entry['class_id']:>8d}  "
                     f"{entry['class_name']}")
    return "\n".join(lines)


TABLE_HEADER = f"{'image':<40s} {'rank':>4s} {'probability':>11s}  {'class_id':>8s}  class_name"


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: Optional[List[str]] = None):
    """``(flags, images)`` from ``argv`` (without the program name; default
    ``sys.argv[1:]``): the flags of ``flags/predict.py``, the images positional. Bad flags
    raise :class:`PredictionError` naming the flag; ``--help`` prints them and exits."""
    return cli.parse(predict_flags.define, argv, prog=PROG, usage=__doc__,
                     required=predict_flags.REQUIRED, alternatives=run_dir_flags.ALTERNATIVES,
                     error=PredictionError, positional=True)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the program on ``argv`` (flags and images, no program name); prints the table or
    JSON lines on stdout and the skipped inputs on stderr. Returns the exit status (0: at
    least one image predicted, 1: none)."""
    args, images = parse_args(argv)
    if not images:
        raise PredictionError(f"no images given: {PROG} --model_dir RUN (or --weights PATH) "
                              "IMAGE_OR_FOLDER_OR_ZIP_OR_GLOB ...")
    predictor = load_predictor(args.weights, args.which, args.model_dir)
    counts = {"predicted": 0, "skipped": 0}
    if args.format == "table":
        print(TABLE_HEADER, flush=True)

    def show(record):
        if "error" in record:
            counts["skipped"] += 1
            print(f"skipped {record['image']}: {record['error']}", file=sys.stderr, flush=True)
            return
        counts["predicted"] += 1
        print(json.dumps(record) if args.format == "json" else format_table(record), flush=True)

    predict(predictor, images, top_k=args.top_k, batch_size=args.batch_size, on_record=show)
    print(f"[predict] {counts['predicted']} image(s) predicted, {counts['skipped']} skipped",
          file=sys.stderr, flush=True)
    return 0 if counts["predicted"] else 1


def run() -> None:
    """Console script ``assemble-predict``: exit status 0 (something predicted), 1 (nothing
    could be predicted), 2 (bad flags or a model that cannot be loaded, one ``error:``
    line)."""
    try:
        status = main(sys.argv[1:])
    except PredictionError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(status)


if __name__ == "__main__":
    run()
