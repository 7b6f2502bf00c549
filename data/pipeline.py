"""``build_dataset``: the training / evaluation input pipeline (issue #3).

Design (details in docs/DATA.md):

* Every file-based source is an indexed :class:`data.sources.RecordTable`. A stream of
  ``(c, index)`` pairs is built from integers only: ``c`` counts the elements of this worker's
  stream, ``index`` is the record. Training streams are an endless sequence of epochs; epoch
  ``k`` is a full permutation drawn with the stateless seed ``(seed, k)``, sharded per worker.
  ``start_batch=n`` starts that integer stream at element ``n * batch_size`` (epoch and offset
  computed directly), so skipped images are never read nor decoded.
* The parallel map reads the bytes (``tf.io.read_file`` or ``os.pread`` of a stored zip member or
  TFRecord payload), checks them with string ops (magic bytes, end marker), and preprocesses the
  good ones with per-element stateless seeds ``[seed, c]``. Errors the check cannot see
  (corrupt JPEG data) are dropped by ``ignore_errors`` and found again as gaps in ``c``.
* Host-side accounting (:class:`DatasetStats`) runs once per batch, in stream order, and names
  every skipped record; invalid labels and missing teacher logits raise an error naming the
  record. Results are identical with AUTOTUNE parallelism because the map is ordered.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading

import numpy as np
import tensorflow as tf

from data import preprocessing
from data import sources
from data.spec import InputSpec

logger = logging.getLogger("data.pipeline")

_FAR_FUTURE = 2 ** 40


def use_pooling_cpu_allocator(quiet: bool = False) -> bool:
    """Makes TensorFlow's CPU allocator the pooling BFC allocator (``TF_CPU_ALLOCATOR_USE_BFC``).

    Call it at program start, before TensorFlow runs any op (importing TensorFlow is fine).
    Why: a training batch of 64 float32 224 px images is 38.5 MB, above glibc's largest mmap
    threshold (32 MB), so with the default allocator every batch is a fresh ``mmap`` whose
    ~9,400 pages fault on first write (~147 faults, about 0.4 ms of CPU per image on the 2-core
    machine, a quarter of the pipeline's cost; docs/BENCHMARKS.md). The same happens to the
    large activations of a model on the CPU: a ResNet-50 training step is faster with the
    pooling allocator (docs/results/model_throughput_allocator_2026-12-04_cpu.txt). The BFC
    allocator keeps and reuses that memory (it grows up to ``TF_CPU_BFC_MEM_LIMIT_IN_MB``,
    64 GB by default, and does not give memory back; peak resident memory measured 0-10 %
    higher). It is a process-wide choice, for all of
    TensorFlow's host memory, so it is the program's to make: the trainer and the evaluation
    program make it by default (``--host_allocator``); importing this package does not.

    Returns False, changing nothing, when TensorFlow had already started (too late then; a
    warning says so unless ``quiet``), or when the environment already sets
    ``TF_CPU_ALLOCATOR_USE_BFC`` to a false value (the user's explicit choice wins).
    """
    if os.environ.get("TF_CPU_ALLOCATOR_USE_BFC", "").strip().lower() in ("0", "false", "no"):
        logger.info("use_pooling_cpu_allocator(): TF_CPU_ALLOCATOR_USE_BFC=%s in the "
                    "environment; keeping TensorFlow's default CPU allocator",
                    os.environ["TF_CPU_ALLOCATOR_USE_BFC"])
        return False
    try:
        from tensorflow.python.eager import context
        started = bool(context.context()._initialized)
    except Exception:  # pragma: no cover - private API changed
        started = False
    if started:
        (logger.info if quiet else logger.warning)(
            "use_pooling_cpu_allocator(): TensorFlow already started, so its CPU allocator is "
            "already chosen; call this before running any op")
        return False
    os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    return True


class DatasetStats:
    """Counts of records read, used and skipped, per epoch (or evaluation pass), with names.

    Pass one as ``build_dataset(..., stats=DatasetStats())``; it fills in as the iterator runs
    (thread-safe). ``skipped`` lists ``(epoch, record name, reason)``. For training, an epoch's
    counts are complete once the next epoch has started; for evaluation, at the end of the pass.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.epochs = collections.OrderedDict()   # epoch -> {"read", "used", "skipped"}
        self.skipped = []                          # (epoch, name, reason)

    def _epoch(self, epoch):
        return self.epochs.setdefault(int(epoch), {"read": 0, "used": 0, "skipped": 0})

    def add_used(self, epoch, n=1):
        with self._lock:
            e = self._epoch(epoch)
            e["used"] += n
            e["read"] += n

    def add_skipped(self, epoch, name, reason):
        with self._lock:
            e = self._epoch(epoch)
            e["skipped"] += 1
            e["read"] += 1
            self.skipped.append((int(epoch), name, reason))

    @property
    def records_read(self):
        with self._lock:
            return sum(e["read"] for e in self.epochs.values())

    @property
    def records_used(self):
        with self._lock:
            return sum(e["used"] for e in self.epochs.values())

    @property
    def records_skipped(self):
        with self._lock:
            return sum(e["skipped"] for e in self.epochs.values())

    def summary(self) -> str:
        with self._lock:
            lines = []
            for k, e in self.epochs.items():
                lines.append(f"epoch {k}: read {e['read']}, used {e['used']}, "
                             f"skipped {e['skipped']}")
            total = {key: sum(e[key] for e in self.epochs.values())
                     for key in ("read", "used", "skipped")}
            lines.append(f"total: read {total['read']}, used {total['used']}, "
                         f"skipped {total['skipped']}")
            seen = collections.OrderedDict()
            for _, name, reason in self.skipped:
                seen.setdefault((name, reason), 0)
                seen[(name, reason)] += 1
            for (name, reason), n in seen.items():
                lines.append(f"  skipped {name}: {reason}" + (f" (x{n})" if n > 1 else ""))
            return "\n".join(lines)

    def __repr__(self):
        return (f"DatasetStats(read={self.records_read}, used={self.records_used}, "
                f"skipped={self.records_skipped})")


class _Tracker:
    """Stream-order host-side bookkeeping of one built dataset."""

    def __init__(self, stats, names_of, n_local, start_c, strict, finite, training,
                 num_classes, label_offset, reason_of=None):
        self.stats = stats
        self.names_of = names_of          # c -> record name
        self.reason_of = reason_of        # c -> reason known before the map (or None)
        self.n_local = n_local            # elements per epoch in this worker's stream
        self.start_c = start_c
        self.strict = strict
        self.finite = finite
        self.training = training
        self.num_classes = num_classes
        self.label_offset = label_offset
        self.reasons = {}
        self.last_c = start_c - 1
        self.passes = -1
        self.lock = threading.Lock()

    def _epoch_of(self, c):
        if self.training and self.n_local:
            return c // self.n_local
        return max(self.passes, 0)

    def _skip(self, c, reason):
        name = self.names_of(c)
        message = f"skipped record {name}: {reason}"
        if self.strict:
            raise ValueError(f"strict=True: bad record {name}: {reason}")
        logger.warning(message)
        self.stats.add_skipped(self._epoch_of(c), name, reason)

    def report(self, c, reason):
        """Called (only) for records the byte check rejected, before they are filtered out."""
        c = int(c)
        reason = preprocessing.REASONS.get(int(reason), f"reason {int(reason)}")
        with self.lock:
            self.reasons[c] = reason
            if self.strict:
                raise ValueError(f"strict=True: bad record {self.names_of(c)}: {reason}")
        return False

    def _close_gaps(self, upto):
        for g in range(self.last_c + 1, upto):
            reason = self.reasons.pop(g, None)
            if reason is None and self.reason_of is not None:
                reason = self.reason_of(g)
            self._skip(g, reason or "could not be decoded (corrupt image data)")

    def batch(self, c, labels, logit_ok):
        c = c.numpy()
        labels = labels.numpy()
        logit_ok = logit_ok.numpy()
        with self.lock:
            if len(c) == 0:
                return
            if c[0] <= self.last_c or self.passes < 0:
                # a new iterator over the same dataset (e.g. the next evaluation pass)
                self.passes += 1
                self.last_c = self.start_c - 1
                self.reasons = {k: v for k, v in self.reasons.items() if k >= self.start_c}
            for i, ci in enumerate(c):
                ci = int(ci)
                self._close_gaps(ci)
                name = None
                if self.num_classes is not None and not 0 <= labels[i] < self.num_classes:
                    name = self.names_of(ci)
                    raise ValueError(
                        f"record {name}: label {int(labels[i]) + self.label_offset} - "
                        f"label_offset {self.label_offset} = {int(labels[i])} is outside "
                        f"[0, {self.num_classes})")
                if not logit_ok[i]:
                    name = self.names_of(ci)
                    raise ValueError(f"record {name}: teacher logits missing or of the wrong "
                                     f"length (expected {self.num_classes} or "
                                     f"{self.num_classes + self.label_offset} values)")
                self.stats.add_used(self._epoch_of(ci))
                self.last_c = ci

    def finish(self):
        with self.lock:
            if self.finite:
                self._close_gaps(self.n_local)
                self.reasons = {}


def _augment_fn(spec):
    """``augment(image, seed)``: float image in 0..255 -> augmented float image, as in the
    paper: clip, cast to uint8, augment, back to float.

    With the float entry points of ``data.autoaugment`` this is ``floor(image)`` in, float
    out: the same values with four passes over the image fewer. The result holds integers (no
    cast back needed), and ``floor(image)`` equals the uint8 cast of ``clip(image, 0, 255)``
    because ``image`` is a bilinear resize (``ResizeBilinear``) of a uint8 image (then maybe
    mirrored, which keeps the values), which lies in
    [0, 256): each output is ``top + (bottom - top) * y`` with ``top``, ``bottom`` in [0, 255]
    (``a + (b - a) * x`` of integers, ``x`` in [0, 1), stays between them under float
    rounding) and ``y`` in [0, 1), so ``(bottom - top) * y >= -top`` after rounding and the
    sum is >= 0; above, rounding can reach 255 + 1e-5 at most, which floors to 255 like the
    clip. (tests/test_data_pipeline.py checks the bounds on many crops and scales.)"""
    autoaugment, randaugment = spec.autoaugment, spec.randaugment
    if not spec.training or (autoaugment is None and randaugment is None):
        return None
    from data import autoaugment as aa  # the teammate's module; imported lazily

    if autoaugment is not None:
        float_fn = getattr(aa, "distort_float_with_autoaugment", None)
        uint8_fn = aa.distort_image_with_autoaugment
        args = (autoaugment,)
    else:
        layers, magnitude = randaugment
        float_fn = getattr(aa, "distort_float_with_randaugment", None)
        uint8_fn = aa.distort_image_with_randaugment
        args = (int(layers), magnitude)

    kwargs = dict(posterize_mode=spec.posterize_mode)
    if randaugment is not None:
        kwargs["levels"] = spec.randaugment_levels

    def augment(image, seed):
        if float_fn is not None:
            return float_fn(tf.floor(image), *args, seed, **kwargs)
        image = tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8)
        return tf.cast(uint8_fn(image, *args, seed, **kwargs), tf.float32)

    return augment


def _image_fn(spec, augment, jpeg=None):
    """(bytes, reason, c) -> float image in 0..255. Rejected records (reason != 0) decode
    a tiny placeholder JPEG instead (no branch in the graph); they are filtered out later.
    ``reason=None``: the bytes were checked before the map (only good records arrive).
    ``jpeg=True``: every record is a JPEG (no ``is_jpeg`` branch in the training graph).

    The training crop is sampled on the whole image, never guided by a TFRecord's
    ``image/object/bbox/*``: the original's training parser (``parse_record_sup`` in
    ``utils/data_util.py``, used by ``functions/input_fns.py``) passes no boxes either."""
    placeholder = tf.constant(preprocessing.PLACEHOLDER_JPEG)
    training, image_size, seed = spec.training, int(spec.image_size), int(spec.seed)

    def image(data, reason, c):
        if reason is not None:
            data = tf.where(tf.equal(reason, 0), data, placeholder)
        if not training:
            return preprocessing.preprocess_for_eval(data, image_size, spec.eval_preprocess)
        # Per-element stateless seeds derived from (seed, stream position c).
        base = tf.stack([tf.constant(seed, tf.int64), c])
        image = preprocessing.preprocess_for_train(data, image_size, base,
                                                   fused=spec.fused_crop, jpeg=jpeg)
        if augment is not None:
            # As in the paper: clip, cast to uint8, augment, back to float (_augment_fn).
            image = augment(image, base + tf.constant([0x5A17, 0], tf.int64))
            image = tf.ensure_shape(image, [image_size, image_size, 3])
        return image

    return image


def _parse_tfrecord(serialized):
    """(image bytes, stored label, teacher logits) of a record. Bounding boxes are not read:
    see :func:`_image_fn`."""
    feats = tf.io.parse_single_example(serialized, {
        "image/encoded": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        "image/logit": tf.io.VarLenFeature(tf.float32),
    })
    return feats["image/encoded"], feats["image/class/label"], feats["image/logit"].values


def _fix_logits(logits, num_classes, label_offset):
    """Teacher logits aligned with the true classes: ``num_classes`` values are used as they
    are; ``num_classes + label_offset`` values (a teacher with the offset's extra outputs, e.g.
    1001-wide ImageNet logits with background 0, as the original's ``--num_classes=1001``)
    lose their first ``label_offset`` entries. Returns ``(logits [num_classes], ok)``; any
    other length is not ok (the tracker names the record)."""
    n = tf.size(logits)
    logits = tf.cond(tf.equal(n, num_classes + label_offset) & (label_offset > 0),
                     lambda: logits[label_offset:], lambda: logits)
    ok = tf.equal(tf.size(logits), num_classes)
    padded = tf.pad(logits[:num_classes], [[0, tf.maximum(num_classes - tf.size(logits), 0)]])
    return tf.ensure_shape(padded, [num_classes]), ok


def build_dataset(source, split, spec=None, *, start_batch=0, input_context=None, stats=None,
                  **fields):
    """Builds batches ``(images, labels)`` or ``(images, {"label", "teacher_logits"})`` of
    ``split`` of ``source``, as :class:`InputSpec` ``spec`` describes.

    ``fields`` are :class:`InputSpec` fields, for a call without a spec
    (``build_dataset(src, "train", training=True, batch_size=64, image_size=224)``) or to
    replace some of a spec's. The other arguments are where the stream starts and runs, not
    what it yields: ``start_batch`` (resume: the stream continues at that batch, bit for bit),
    ``input_context`` (a ``tf.distribute.InputContext``: the per-replica batch, and the records
    sharded per input pipeline), ``stats`` (a :class:`DatasetStats` that counts and names the
    records skipped). See docs/ARCHITECTURE.md and docs/DATA.md.
    """
    if spec is None:
        spec = InputSpec(**fields)
    elif fields:
        spec = dataclasses.replace(spec, **fields)
    kind = sources.source_kind(source)  # raises for a missing path
    training, label_offset = bool(spec.training), int(spec.label_offset)
    batch = int(spec.batch_size)
    shard = (1, 0)
    if input_context is not None:
        batch = input_context.get_per_replica_batch_size(batch)
        shard = (input_context.num_input_pipelines, input_context.input_pipeline_id)
    num_shards, shard_index = shard
    stats = stats if stats is not None else DatasetStats()
    info = sources.inspect_source(source)
    # Resolve the defaults that depend on the source or on chance, so everything below reads
    # one complete spec.
    spec = dataclasses.replace(
        spec,
        seed=int(spec.seed) if spec.seed is not None else (
            int.from_bytes(os.urandom(4), "little") if training else 0),
        num_classes=spec.num_classes if spec.num_classes is not None else info.num_classes,
        drop_remainder=training if spec.drop_remainder is None else bool(spec.drop_remainder))
    num_classes, teacher_logits = spec.num_classes, spec.teacher_logits
    if teacher_logits and num_classes is None:
        raise ValueError("teacher_logits=True needs num_classes (the source has no classes.csv)")
    if label_offset and kind != "tfrecord":
        raise ValueError(f"{source}: label_offset={label_offset} applies to TFRecords only (their "
                         f"stored labels are class + label_offset); {kind} sources give class "
                         "indices from 0, use label_offset=0")
    if info.label_offset is not None and info.label_offset != label_offset:
        raise ValueError(f"{source}: its records were written with label_offset "
                         f"{info.label_offset} (summary.json) but label_offset={label_offset} "
                         f"was given; use label_offset={info.label_offset}")
    if kind == "tfds":
        if teacher_logits:
            raise ValueError(f"{source}: TFDS sources carry no teacher logits; build TFRecords "
                             "with `python -m data.build_tfrecords --teacher ...`")
        return _build_tfds(source, split, spec, batch=batch, shard=shard,
                           start_batch=start_batch, stats=stats)

    table = sources.record_table(source, split)
    for name, why in table.skipped_at_listing:
        logger.warning("ignored %s in %s: %s", name, source, why)
    if teacher_logits and not table.tfrecord:
        raise ValueError(f"{source}: teacher_logits=True needs TFRecords with 'image/logit' "
                         "(build them with `python -m data.build_tfrecords --teacher ...`)")
    if table.labels is not None and num_classes is not None:
        labels_np = table.labels - label_offset
        bad = np.flatnonzero((labels_np < 0) | (labels_np >= num_classes))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"record {table.names[i]}: label {int(table.labels[i])} - "
                             f"label_offset {label_offset} is outside [0, {num_classes})")

    n_total = len(table)
    local_idx = np.arange(shard_index, n_total, num_shards, dtype=np.int64)
    n_local = len(local_idx)
    if n_local == 0:
        raise ValueError(f"split {split!r} of {source} has {n_total} records, too few for "
                         f"{num_shards} input pipelines")
    if n_local < batch and spec.drop_remainder:
        raise ValueError(f"split {split!r} has {n_local} records per input pipeline, fewer than "
                         f"one batch of {batch} with drop_remainder=True")

    read, blobs = _make_reader(table)
    # Records held in memory are checked once here (the same check as in the graph), so the
    # map needs no check, no placeholder and no filter: rejected records never enter the
    # stream and show up as gaps in ``c``, which the tracker names with the reason found here.
    reasons, all_jpeg = None, None
    if blobs is not None and not table.tfrecord:
        reasons = np.array([preprocessing.check_image_bytes_py(b) for b in blobs], np.int32)
        all_jpeg = all(preprocessing.is_jpeg_py(b) for b, r in zip(blobs, reasons) if r == 0)
        if training and not np.any(reasons[local_idx] == 0):
            i = int(local_idx[0])
            raise ValueError(f"split {split!r} of {source} has no usable record for this input "
                             f"pipeline (e.g. {table.names[i]}: "
                             f"{preprocessing.REASONS[int(reasons[i])]})")
    del blobs

    seed = spec.seed

    def epoch_order(k):
        """Record indices of this worker's epoch ``k`` (int64 tensor [n_local])."""
        if not training:
            return tf.constant(local_idx)
        keys = tf.random.stateless_uniform([n_total], seed=tf.stack(
            [tf.constant(seed, tf.int64) ^ 0x5EED, tf.cast(k, tf.int64)]), dtype=tf.float32)
        perm = tf.argsort(keys, stable=True)
        return tf.cast(perm[shard_index::num_shards], tf.int64)

    perm_cache = {}

    def index_of(c):
        if training:
            k, j = divmod(int(c), n_local)
            if k not in perm_cache:
                perm_cache.clear()
                perm_cache[k] = epoch_order(k).numpy()
            return int(perm_cache[k][j])
        return int(local_idx[int(c)]) if 0 <= int(c) < n_local else None

    def names_of(c):
        i = index_of(c)
        return table.names[i] if i is not None else f"#{int(c)}"

    reason_of = None
    if reasons is not None:
        def reason_of(c):
            i = index_of(c)
            return (preprocessing.REASONS[int(reasons[i])]
                    if i is not None and reasons[i] != 0 else None)

    start_c = int(start_batch) * batch
    good = tf.constant(reasons == 0) if reasons is not None else None
    if training:
        k0, j0 = divmod(start_c, n_local)

        def epoch(k):
            c = k * n_local + tf.range(n_local, dtype=tf.int64)
            index = epoch_order(k)
            if good is not None:   # drop rejected records, and the part before start_c
                keep = tf.gather(good, index) & (c >= start_c)
                c, index = tf.boolean_mask(c, keep), tf.boolean_mask(index, keep)
            return tf.data.Dataset.from_tensor_slices((c, index))

        stream = tf.data.Dataset.range(k0, _FAR_FUTURE).flat_map(epoch)
        if good is None:
            stream = stream.skip(j0)
    else:
        c_all = np.arange(n_local, dtype=np.int64)
        if reasons is not None:
            keep = (reasons[local_idx] == 0) & (c_all >= start_c)
            stream = tf.data.Dataset.from_tensor_slices(
                (tf.constant(c_all[keep]), tf.constant(local_idx[keep])))
        else:
            stream = tf.data.Dataset.from_tensor_slices(
                (tf.constant(c_all), tf.constant(local_idx))).skip(start_c)

    tracker = _Tracker(stats, names_of, n_local, start_c, spec.strict, finite=not training,
                       training=training, num_classes=num_classes, label_offset=label_offset,
                       reason_of=reason_of)
    labels_const = (tf.constant(table.labels - label_offset, tf.int32)
                    if table.labels is not None else None)
    k_logits = int(num_classes) if teacher_logits else 0

    _image = _image_fn(spec, _augment_fn(spec), jpeg=all_jpeg)

    def load(c, index):
        data = read(index)
        logits, logit_ok = tf.zeros([k_logits]), tf.constant(True)
        if table.tfrecord:
            data, label, raw_logits = _parse_tfrecord(data)
            label = tf.cast(label, tf.int32) - label_offset
            if teacher_logits:
                logits, logit_ok = _fix_logits(raw_logits, k_logits, label_offset)
        else:
            label = tf.gather(labels_const, index)
        reason = preprocessing.check_image_bytes(data) if reasons is None else None
        image = _image(data, reason, c)
        e = {"image": image, "label": label, "logits": logits, "logit_ok": logit_ok, "c": c}
        if reason is not None:
            e["reason"] = reason
        return e

    return _finish(stream, load, tracker, spec, batch)


PRELOAD_LIMIT_BYTES = 256 * 2 ** 20


def _make_reader(table):
    """Returns ``(read, blobs)``: ``read(index)`` gives the record's bytes (a graph function);
    ``blobs`` is the list of all records' bytes when they are held in memory, else None."""
    if table.kind == "range" and int(table.lengths.sum()) <= PRELOAD_LIMIT_BYTES:
        # Small zips / TFRecords: hold the bytes in memory (one sequential read), so the
        # parallel map gathers them without Python (no GIL) or file access per record.
        reader = sources.ByteReader(table.files)
        order = np.lexsort((table.offsets, table.file_ids))
        blobs = [b""] * len(table)
        for i in order:
            blobs[i] = reader.read_range(table.file_ids[i], table.offsets[i], table.lengths[i])
        del reader
        blob_tensor = tf.constant(blobs)
        return (lambda index: tf.gather(blob_tensor, index)), blobs
    if table.kind == "file":
        paths = tf.constant(table.paths)
        return (lambda index: tf.io.read_file(tf.gather(paths, index))), None
    reader = sources.ByteReader(table.files, member_names=table.paths)
    fids = tf.constant(table.file_ids)
    if table.kind == "range":
        offs, lens = tf.constant(table.offsets), tf.constant(table.lengths)

        def read(index):
            out = tf.numpy_function(reader.read_range, [tf.gather(fids, index),
                                                        tf.gather(offs, index),
                                                        tf.gather(lens, index)],
                                    tf.string, stateful=False)
            return tf.ensure_shape(out, [])
        return read, None

    def read_member(index):
        out = tf.numpy_function(reader.read_member, [tf.gather(fids, index), index], tf.string,
                                stateful=False)
        return tf.ensure_shape(out, [])
    return read_member, None


def _finish(stream, load, tracker, spec, batch):
    """The shared tail of both builders: normalize, batch, account for the records, end."""
    normalization, training = spec.normalization, spec.training
    def load_and_normalize(*args):
        e = load(*args)
        if normalization != "none":  # "none": 0..255 pixels (the trainer's --augment_on=device)
            e["image"] = preprocessing.normalize(e["image"], normalization)
        return e

    ds = stream.map(load_and_normalize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if spec.cache and not training:
        ds = ds.cache()
    ds = ds.ignore_errors()  # corrupt data the byte check cannot see; found again as gaps

    def keep(e):
        return tf.cond(tf.equal(e["reason"], 0), lambda: tf.constant(True),
                       lambda: tf.py_function(tracker.report, [e["c"], e["reason"]], tf.bool))

    if "reason" in ds.element_spec:   # else checked before the map (see build_dataset)
        ds = ds.filter(keep)
    ds = ds.batch(batch, drop_remainder=spec.drop_remainder)

    def account(e):
        labels = e["label"]
        dep = tf.py_function(tracker.batch, [e["c"], labels, e["logit_ok"]], [])
        with tf.control_dependencies(dep if isinstance(dep, list) else [dep]):
            labels = tf.identity(labels)
        images = e["image"]
        if spec.teacher_logits:
            return images, {"label": labels, "teacher_logits": e["logits"]}
        return images, labels

    ds = ds.map(account)  # sequential: keeps stream order for the accounting
    if not training:
        spec = ds.element_spec

        def _dummy(s):
            shape = [0 if d is None else d for d in s.shape.as_list()]
            return tf.zeros(shape, s.dtype)

        def _end(_):
            tf.py_function(tracker.finish, [], [])
            return tf.nest.map_structure(_dummy, spec)

        end = tf.data.Dataset.range(1).map(_end).filter(lambda *a: False)
        ds = ds.concatenate(end)
    options = tf.data.Options()
    options.deterministic = True
    options.threading.max_intra_op_parallelism = 1
    ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE)


def _build_tfds(source, split, spec, *, batch, shard, start_batch, stats):
    """:func:`build_dataset` for a ``tfds:NAME`` source: ``spec`` checked and resolved (seed,
    classes, drop_remainder), ``batch`` per input pipeline, ``shard`` its
    ``(num_shards, shard_index)``."""
    import tensorflow_datasets as tfds

    name, version = sources.parse_tfds_name(source)
    builder = sources._tfds_builder(name, version)
    if split not in builder.info.splits:
        raise ValueError(f"split {split!r} not in {source}; splits: "
                         f"{sorted(builder.info.splits)}")
    if builder.info.splits[split].num_examples == 0:
        raise ValueError(f"split {split!r} of {source} is empty")
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={"image": tfds.decode.SkipDecoding()},
                            read_config=tfds.ReadConfig(add_tfds_id=True))
    num_shards, shard_index = shard
    training, label_offset = spec.training, spec.label_offset
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
    n_local = int(builder.info.splits[split].num_examples)
    n_local = len(range(shard_index, n_local, num_shards))
    if training:
        ds = ds.shuffle(spec.shuffle_buffer, seed=spec.seed, reshuffle_each_iteration=True).repeat()
    start_c = int(start_batch) * batch
    ds = ds.enumerate().skip(start_c)
    names = {}

    def names_of(c):
        return names.get(int(c), f"{source}:{split}#{int(c)}")

    tracker = _Tracker(stats, names_of, n_local, start_c, spec.strict, finite=not training,
                       training=training, num_classes=spec.num_classes, label_offset=label_offset)

    def remember(c, tfds_id):
        names[int(c)] = tfds_id.numpy().decode()
        if len(names) > 100_000:
            names.clear()
        return c

    _image = _image_fn(spec, _augment_fn(spec))

    def load(c, ex):
        data = ex["image"]
        label = tf.cast(ex["label"], tf.int32) - label_offset
        reason = preprocessing.check_image_bytes(data)
        c = tf.cond(tf.equal(reason, 0), lambda: c,
                    lambda: tf.py_function(remember, [c, ex["tfds_id"]], tf.int64))
        c = tf.ensure_shape(c, [])
        image = _image(data, reason, c)
        return {"image": image, "label": label, "logits": tf.zeros([0]),
                "logit_ok": tf.constant(True), "c": c, "reason": reason}

    return _finish(ds, load, tracker, spec, batch)
