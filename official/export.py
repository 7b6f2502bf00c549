r"""Exports a trained run as a self-contained SavedModel (and TFLite) for serving.

Usage::

    python -m official.export --model_dir RUN --export_dir OUT [--which latest|best] \
        [--max_pixels 50000000] [--top_k 5] [--tflite] [--overwrite]
    python -m official.export --weights resnet50d.weights.h5 --export_dir OUT   # no run

(also installed as ``assemble-export``.) An absl program: flags in ``flags/export.py`` (the
run-directory flags ``--model_dir``, ``--which`` in ``flags/run_dir.py``); ``--flagfile=FILE``
works and ``--help`` lists them; ``main(argv)`` takes the arguments without the program name.

The model is rebuilt from the run's saved configuration
(``official.checkpoints.restore_model``); the SavedModel holds the graph and
weights only, so ``tf.saved_model.load(OUT)`` works in a process that has TensorFlow but not
this project (no custom Python objects are needed to load or run it).

Signatures (``loaded.signatures[...]``; the same functions are attributes of the loaded
object):

``serving_default`` -- input ``image_bytes``: ``tf.string [None]``, a batch of encoded JPEG or
  PNG files of any size. Inside the graph, for each image: the file header is checked
  (JPEG/PNG magic bytes, end marker present: :func:`data.preprocessing.check_image_bytes`),
  the pixel count is read from the header alone (``tf.image.extract_jpeg_shape`` for JPEG,
  the IHDR chunk for PNG) and an image above ``max_pixels`` is rejected *before* it is
  decoded, then the run's own evaluation preprocessing
  (:func:`data.preprocessing.preprocess_for_eval` with the run's ``image_size`` and
  ``eval_preprocess``: short-side resize + central crop) and normalization
  (:func:`data.preprocessing.normalize`) are applied. Bad requests fail with
  ``InvalidArgumentError`` whose message says what is wrong: ``empty request``, ``not a JPEG
  or PNG image`` / ``truncated image`` (with the index of the offending item), ``image of H x
  W pixels exceeds the limit``. A corrupt body behind a valid header fails in the decoder
  (``Invalid JPEG data`` / ``Invalid PNG data``).
``serving_float`` -- input ``images``: ``float32 [None, None, None, 3]``, already preprocessed
  (resized/cropped and normalized exactly like ``data.build_dataset``'s evaluation
  batches). The network is rebuilt with free spatial dimensions for this signature, so any
  size the architecture accepts works (at least the total stride; Big-Little networks need
  multiples of 32).

Outputs of both: ``logits`` float32 ``[B, K]``, ``probabilities`` (softmax) ``[B, K]``,
``class_ids`` int32 ``[B]`` (argmax), ``top_k_values`` float32 ``[B, k]`` and
``top_k_indices`` int32 ``[B, k]`` (probabilities; ``k = min(--top_k, K)``), the class names
as strings, ``class_name`` ``[B]`` (of ``class_ids``) and ``top_k_class_names`` ``[B, k]``
(the run's ``class_names``, or ``"0" .. "K-1"`` when it recorded none; a server needs no side
file), and ``embedding`` ``[B, D]`` when the model has an ``embedding`` layer.

Agreement with Keras (checked after writing, in this process, and by
``tests/test_export.py`` in a fresh process): ``max |logits_savedmodel - logits_keras| <=
1e-4 * max(1, max |logits_keras|)`` and probabilities within 1e-5 on the same float batch;
the export fails (and leaves nothing behind) if the reloaded SavedModel misses this.

``--tflite`` also writes ``OUT/tflite/model_float.tflite`` and
``OUT/tflite/model_dynamic_range.tflite`` (weights int8, activations float) for the float
input ``[1, S, S, 3]`` (``S`` the evaluation crop size; the batch dimension can be resized),
outputs ``logits`` and ``probabilities``. Meant for the MobileNet variants (``mobilenet_v1``,
``se_mobilenet_v1``; the paper's mobile ablation); other models convert too. Float TFLite
matches Keras within the tolerance above; the dynamic-range model is an approximation (the
tests only require the same top-1 class on most images and probabilities within 0.1).

Writing is atomic: everything goes to a hidden temporary directory next to ``OUT`` and is
renamed to ``OUT`` at the end; an existing ``OUT`` is refused unless ``--overwrite`` (it is
then replaced in one rename). ``OUT/export_metadata.json`` records the run, checkpoint,
preprocessing, signatures and the measured agreement.

Deviations from the paper's code (clovaai/assembled-cnn ``functions/export`` path,
``export_savedmodel`` with a ``serving_input_receiver_fn`` that decodes JPEGs): TF2/Keras 3
``keras.export.ExportArchive`` instead of the TF1 Estimator export; PNG accepted too; an
explicit pixel limit and request validation; a float signature of free spatial size; TFLite
outputs (the paper reports MobileNet accuracy only, no TFLite).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

import numpy as np

import flags.export as export_flags
from flags import cli
from flags import run_dir as run_dir_flags
from flags.export import DEFAULT_MAX_PIXELS, DEFAULT_TOP_K
from official import checkpoints

LOGITS_TOLERANCE = 1e-4  # relative to max(1, max |logits|)
PROB_TOLERANCE = 1e-5
METADATA = "export_metadata.json"


def _log(message: str) -> None:
    """Progress lines on stderr (stdout carries only the final JSON)."""
    print(f"[export] {message}", file=sys.stderr, flush=True)


class ExportError(ValueError):
    """A bad input (run directory, export directory, arguments): a one-line CLI message."""


# ----------------------------------------------------------------------------- models
def float_model(model, config):
    """The run's network with free spatial input dims (``[None, None, None, 3]``), same
    weights; falls back to ``model`` itself if the architecture cannot be built that way.
    Returns ``(keras.Model with outputs {"logits", ["embedding"]}, free_spatial: bool)``."""
    import keras
    free = True
    try:
        net = checkpoints.build_model_from_config(config,
                                                  num_classes=int(model.outputs[0].shape[-1]))
        net.set_weights(model.get_weights())
    except Exception:  # pragma: no cover - architectures that need a static size
        net, free = model, False
    outputs = {"logits": net.outputs[0]}
    try:
        outputs["embedding"] = net.get_layer("embedding").output
    except ValueError:
        pass
    return keras.Model(net.input, outputs, name=f"{net.name}_serving"), free


def class_name_list(config, num_classes: int) -> List[str]:
    """The run's class names (``data.class_names``), or ``"0" .. "K-1"`` when it has none (or
    a list of another length), for the string outputs."""
    names = config.data.class_names
    if names and len(names) == num_classes:
        return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


def _head(outputs, top_k, class_names):
    import tensorflow as tf
    logits = tf.cast(outputs["logits"], tf.float32)
    probs = tf.nn.softmax(logits, axis=-1)
    values, indices = tf.math.top_k(probs, k=top_k)
    class_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
    names = tf.constant(class_names, tf.string)
    result = {
        "logits": logits,
        "probabilities": probs,
        "class_ids": class_ids,
        "top_k_values": values,
        "top_k_indices": indices,
        "class_name": tf.gather(names, class_ids),
        "top_k_class_names": tf.gather(names, indices),
    }
    if "embedding" in outputs:
        result["embedding"] = tf.cast(outputs["embedding"], tf.float32)
    return result


# ----------------------------------------------------------------------------- decoding
def _png_hw(image_bytes):
    """(height, width) int64 from a PNG's IHDR chunk (bytes 16..23, big-endian)."""
    import tensorflow as tf
    raw = tf.io.decode_raw(tf.strings.substr(image_bytes + b"\0" * 24, 16, 8), tf.uint8)
    raw = tf.cast(raw, tf.int64)
    width = raw[0] * 16777216 + raw[1] * 65536 + raw[2] * 256 + raw[3]
    height = raw[4] * 16777216 + raw[5] * 65536 + raw[6] * 256 + raw[7]
    return height, width


def make_decode_fn(image_size: int, eval_preprocess: str, normalization: str, max_pixels: int):
    """``image_bytes [None] -> normalized float32 [B, S, S, 3]`` with request validation."""
    import tensorflow as tf
    from data import preprocessing as pp

    crop = pp.eval_image_size(image_size, eval_preprocess)
    reasons = tf.constant([pp.REASONS[k] for k in sorted(pp.REASONS)])
    max_pixels_t = tf.constant(int(max_pixels), tf.int64)

    def one(args):
        index, image_bytes = args
        reason = pp.check_image_bytes(image_bytes)
        is_jpeg = tf.strings.substr(image_bytes, 0, 3) == b"\xff\xd8\xff"
        is_png = tf.strings.substr(image_bytes, 0, 8) == b"\x89PNG\r\n\x1a\n"
        ok = tf.debugging.Assert(
            tf.logical_and(tf.equal(reason, 0), tf.logical_or(is_jpeg, is_png)),
            ["invalid request: item", index, "is not a readable JPEG or PNG image:",
             tf.where(tf.equal(reason, 0), tf.constant("not JPEG or PNG"),
                      tf.gather(reasons, tf.clip_by_value(reason, 0, len(pp.REASONS) - 1)))],
            name="check_image_format")
        with tf.control_dependencies([ok]):
            hw = tf.cond(
                is_jpeg,
                lambda: tf.cast(tf.image.extract_jpeg_shape(image_bytes)[:2], tf.int64),
                lambda: tf.stack(_png_hw(image_bytes)))
        pixels = hw[0] * hw[1]
        size_ok = tf.debugging.Assert(
            tf.logical_and(pixels <= max_pixels_t, pixels > 0),
            ["invalid request: item", index, "is an image of", hw[0], "x", hw[1], "=", pixels,
             "pixels, which exceeds the limit of", max_pixels_t,
             "pixels (export --max_pixels) or is empty"], name="check_image_pixels")
        with tf.control_dependencies([size_ok]):
            image = pp.preprocess_for_eval(tf.identity(image_bytes), image_size, eval_preprocess)
        return tf.ensure_shape(image, [crop, crop, 3])

    def decode(image_bytes):
        image_bytes = tf.reshape(image_bytes, [-1])
        n = tf.size(image_bytes)
        not_empty = tf.debugging.Assert(
            n > 0, ["invalid request: empty request (serving_default needs at least one "
                    "encoded JPEG or PNG image)"], name="check_not_empty")
        with tf.control_dependencies([not_empty]):
            indices = tf.range(n)
        images = tf.map_fn(one, (indices, image_bytes),
                           fn_output_signature=tf.TensorSpec([crop, crop, 3], tf.float32))
        return pp.normalize(images, normalization)

    return decode, crop


# ----------------------------------------------------------------------------- export
def _build_archive(model, config, max_pixels: int, top_k: int):
    import keras
    import tensorflow as tf

    serving, free = float_model(model, config)
    num_classes = int(model.outputs[0].shape[-1])
    k = max(1, min(int(top_k), num_classes))
    decode, crop = make_decode_fn(config.model.image_size, config.data.eval_preprocess,
                                  config.data.normalization, max_pixels)

    archive = keras.export.ExportArchive()
    archive.track(serving)
    names = class_name_list(config, num_classes)

    def from_floats(images):
        return _head(serving(images, training=False), k, names)

    def from_bytes(image_bytes):
        return from_floats(decode(image_bytes))

    float_shape = [None, None, None, 3] if free else [None, crop, crop, 3]
    archive.add_endpoint("serving_default", from_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.add_endpoint("serving_float", from_floats,
                         input_signature=[tf.TensorSpec(float_shape, tf.float32, name="images")])
    info = {"num_classes": num_classes, "top_k": k, "crop_size": crop,
            "float_input_shape": float_shape, "has_embedding": "embedding" in serving.output,
            "free_spatial_dims": free}
    return archive, serving, info


def _compare(loaded, model, crop: int, seed: int = 0) -> Dict[str, float]:
    """Runs the reloaded ``serving_float`` and the Keras model on one random batch."""
    import tensorflow as tf
    x = np.random.RandomState(seed).normal(0, 50, size=(2, crop, crop, 3)).astype(np.float32)
    ref = np.asarray(model(x, training=False), dtype=np.float32)
    out = loaded.signatures["serving_float"](images=tf.constant(x))
    logits = out["logits"].numpy()
    scale = max(1.0, float(np.abs(ref).max()))
    ref_p = _softmax(ref)
    return {"max_abs_logits_diff": float(np.abs(logits - ref).max()),
            "logits_scale": scale,
            "max_abs_probabilities_diff": float(np.abs(out["probabilities"].numpy() - ref_p).max())}


def _softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def export_tflite(serving, crop: int, out_dir: str) -> Dict[str, str]:
    """Float and dynamic-range quantized TFLite models of the float signature, written by
    Keras' own LiteRT export (``model.export(path, format="litert")``, TensorFlow backend).

    Keras converts through an ``ExportArchive`` SavedModel with
    ``tf.lite.TFLiteConverter.from_saved_model`` (converting a tf.function over a Keras 3
    model with ``from_concrete_functions`` gives wrong numbers: its resource variables are not
    frozen correctly, checked with TF 2.21 / Keras 3.15). Keras also allows Select-TF (Flex)
    ops by default; only the TFLite builtins are allowed here, so a model that would need the
    Flex delegate fails to convert instead of silently needing it at run time.
    Dynamic range = ``optimizations=[tf.lite.Optimize.DEFAULT]`` (int8 weights, float
    activations). No ``ai_edge_litert`` is needed to write the files."""
    import keras
    import tensorflow as tf

    images = keras.Input((crop, crop, 3), batch_size=1, name="images")
    logits = keras.ops.cast(serving(images, training=False)["logits"], "float32")
    head = keras.Model(images, {"logits": logits,
                                "probabilities": keras.ops.softmax(logits, axis=-1)})
    signature = [tf.TensorSpec([1, crop, crop, 3], tf.float32, name="images")]
    builtins_only = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name, extra in (("float", {}),
                        ("dynamic_range", {"optimizations": [tf.lite.Optimize.DEFAULT]})):
        path = os.path.join(out_dir, f"model_{name}.tflite")
        head.export(path, format="litert", verbose=False, input_signature=signature,
                    target_spec=builtins_only, **extra)
        paths[name] = path
    return paths


def _check_run_dir(model_dir: str) -> None:
    if not model_dir or not os.path.isdir(model_dir):
        raise ExportError(f"--model_dir {model_dir!r} does not exist")
    if not os.path.exists(os.path.join(model_dir, checkpoints.RUN_CONFIG)):
        raise ExportError(f"--model_dir {model_dir!r} has no {checkpoints.RUN_CONFIG}: not a "
                          "training run directory (the model cannot be rebuilt without its saved "
                          "configuration)")


def export(model_dir: Optional[str], export_dir: str, which: str = "latest",
           max_pixels: int = DEFAULT_MAX_PIXELS, top_k: int = DEFAULT_TOP_K,
           tflite: bool = False, overwrite: bool = False, verify: bool = True,
           weights: Optional[str] = None) -> Dict[str, Any]:
    """Writes the SavedModel (and TFLite files) to ``export_dir`` atomically; returns the
    metadata written to ``export_dir/export_metadata.json``. ``weights`` (``--weights``)
    replaces ``model_dir``: any weights PATH (a converted ``.weights.h5`` with its JSON, a timm
    state dict or hub name, ...; ``official.checkpoints.restore_weights``), exported with the
    preprocessing and class names that travel with them."""
    if int(max_pixels) < 1:
        raise ExportError(f"--max_pixels must be >= 1, got {max_pixels}")
    if int(top_k) < 1:
        raise ExportError(f"--top_k must be >= 1, got {top_k}")
    if model_dir and weights:
        raise ExportError(f"give --model_dir ({model_dir!r}) or --weights ({weights!r}), not both")
    if not model_dir and not weights:
        raise ExportError("--model_dir or --weights is required")
    if model_dir:
        _check_run_dir(model_dir)
    import keras
    if keras.backend.backend() != "tensorflow":
        raise ExportError("SavedModel export needs the TensorFlow backend "
                          f"(KERAS_BACKEND={keras.backend.backend()}); run with "
                          "KERAS_BACKEND=tensorflow")
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and not overwrite:
        if not os.path.isdir(export_dir) or os.listdir(export_dir):
            raise ExportError(f"--export_dir {export_dir!r} exists; pass --overwrite to replace it")
    if model_dir:
        ckpt = checkpoints.checkpoint_path(model_dir, which)
        if ckpt is None:
            raise ExportError(f"--model_dir {model_dir!r} has no {which!r} checkpoint")
        _log(f"restoring {ckpt}")
        try:
            model, config = checkpoints.restore_model(model_dir, which)
        except (ValueError, FileNotFoundError) as e:
            raise ExportError(f"cannot restore {model_dir!r} ({which}): {e}") from e
    else:
        _log(f"loading --weights {weights}")
        try:
            model, config, info = checkpoints.restore_weights(weights, which)
        except (ValueError, FileNotFoundError, ImportError) as e:
            raise ExportError(f"cannot load --weights {weights!r}: {e}") from e
        ckpt = info.path
        _log(info.describe())

    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}.tmp-", dir=parent)
    try:
        start = time.time()
        archive, serving, info = _build_archive(model, config, int(max_pixels), int(top_k))
        _log(f"writing the SavedModel to {tmp}")
        archive.write_out(tmp, verbose=False)
        metadata: Dict[str, Any] = {
            "model_dir": os.path.abspath(model_dir) if model_dir else None,
            "weights": weights,
            "checkpoint": os.path.abspath(ckpt),
            "which": which,
            "model": config.model.name,
            "model_overrides": config.model_overrides(),
            "image_size": config.model.image_size,
            "eval_preprocess": config.data.eval_preprocess,
            "normalization": config.data.normalization,
            "class_names": config.data.class_names,
            "max_pixels": int(max_pixels),
            "signatures": {
                "serving_default": {"inputs": {"image_bytes": "string [None] (JPEG or PNG)"}},
                "serving_float": {"inputs": {"images": f"float32 {info['float_input_shape']}"}},
                "outputs": ["logits", "probabilities", "class_ids", "top_k_values",
                            "top_k_indices", "class_name", "top_k_class_names"]
                           + (["embedding"] if info["has_embedding"] else []),
            },
            "tolerance": {"logits": f"{LOGITS_TOLERANCE} * max(1, max|logits|)",
                          "probabilities": PROB_TOLERANCE},
            **info,
        }
        if verify:
            import tensorflow as tf
            _log("reloading the SavedModel and comparing it with the Keras model")
            loaded = tf.saved_model.load(tmp)
            check = _compare(loaded, model, info["crop_size"])
            metadata["verification"] = check
            if (check["max_abs_logits_diff"] > LOGITS_TOLERANCE * check["logits_scale"]
                    or check["max_abs_probabilities_diff"] > PROB_TOLERANCE):
                raise RuntimeError(f"the exported SavedModel does not match the Keras model: "
                                   f"{check}")
        if tflite:
            _log("converting to TFLite (float and dynamic-range quantized)")
            metadata["tflite"] = {k: os.path.relpath(v, tmp) for k, v in export_tflite(
                serving, info["crop_size"], os.path.join(tmp, "tflite")).items()}
        metadata["export_seconds"] = time.time() - start
        with open(os.path.join(tmp, METADATA), "w") as f:
            json.dump(metadata, f, indent=2, sort_keys=True, default=str)
        os.chmod(tmp, 0o755)
        if os.path.exists(export_dir):
            trash = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}.old-", dir=parent)
            os.rmdir(trash)
            os.rename(export_dir, trash)
            os.rename(tmp, export_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, export_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    metadata["export_dir"] = export_dir
    _log(f"done: {export_dir}")
    return metadata


# ----------------------------------------------------------------------------- CLI
PROG = "python -m official.export"


def parse_args(argv: Optional[List[str]] = None):
    """The flags (``flags/export.py``) parsed from ``argv`` (without the program name;
    default ``sys.argv[1:]``) into a fresh ``absl.flags.FlagValues``. ``--flagfile=FILE``
    works; ``--help`` prints the flags and exits; bad flags raise :class:`ExportError`
    naming the flag."""
    return cli.parse(export_flags.define, argv, prog=PROG, usage=__doc__,
                     required=export_flags.REQUIRED,
                     alternatives=run_dir_flags.ALTERNATIVES, error=ExportError)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Runs the program on ``argv`` (flags only, no program name; default ``sys.argv[1:]``)
    and prints the metadata JSON as the last line of stdout; callable repeatedly."""
    args = parse_args(argv)
    metadata = export(args.model_dir, args.export_dir, which=args.which,
                      max_pixels=args.max_pixels, top_k=args.top_k, tflite=args.tflite,
                      overwrite=args.overwrite, verify=not args.no_verify,
                      weights=args.weights)
    print(json.dumps(metadata, sort_keys=True, default=str), flush=True)
    return metadata


def run() -> None:
    """Console script ``assemble-export``: bad inputs exit with status 2 and one message."""
    try:
        main(sys.argv[1:])
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
