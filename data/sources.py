"""Data sources: find splits, classes and records, and read record bytes by index.

Kinds (see docs/DATA.md):

* ``"tfrecord"``: a directory of ImageNet-format shards ``<split>-NNNNN-of-NNNNN``
  (``train-*``, ``validation-*``), optionally with ``classes.csv`` (written by
  ``data.build_tfrecords``). Records are indexed once (offset scan, no parsing), so they can be
  read in any order.
* ``"zip"``: one zip file with members ``<split>/<class>/<image>``.
* ``"zipdir"``: a directory holding one zip per split (``train.zip``, ``val.zip``), members
  ``<split>/<class>/<image>`` (or ``<class>/<image>``); this is how ``../shared/data`` is stored.
* ``"dir"``: an image directory ``<split>/<class>/<image>``.
* A **flat class-folder tree** (``layout="flat"``), a directory or a zip: ``<class>/<image>``
  with no split folders (a user's own photos; a zip may wrap it in one folder,
  ``my_photos/<class>/<image>``, as ``zip -r my_photos.zip my_photos`` writes). Its one listed
  split is ``"all"``; :func:`holdout_split_names` names a stratified, seeded train/validation
  split of it (``--val_fraction``, ``--split_seed`` of the trainer), which every reader
  (``record_table``, ``split_sizes``, the pipeline, ``official.evaluate``) resolves.
* ``"tfds"``: ``"tfds:NAME[/CONFIG][:VERSION]"``, read with tensorflow_datasets. A dataset that
  is not prepared in ``$TFDS_DATA_DIR`` (default ``~/tensorflow_datasets``) is downloaded and
  prepared once, with TFDS's progress bars, because the user asked for it by name; when that
  fails (e.g. no network) the error says what to do. Only this kind ever downloads; tests
  mock it.

Class names are the sorted union of the class folders of all splits (ImageFolder order).

Layout rule for directories and zips: a tree whose top-level folders hold image files directly
(``*.jpg``, ``*.jpeg``, ``*.png``, ``*.bmp``, ``*.gif``, ``*.webp``) and none of which is
named ``train``, ``val``, ``validation`` or ``test`` is flat; anything else keeps the split
layout, exactly as before.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import logging
import os
import re
import struct
import threading
import zipfile
from typing import Optional

import numpy as np

logger = logging.getLogger("data.sources")

EVAL_SPLITS = ("validation", "val", "test")
SPLIT_FOLDER_NAMES = ("train", "validation", "val", "test")  # mark the split layout
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
FLAT_SPLIT = "all"  # the one split a flat class-folder tree lists
DEFAULT_VAL_FRACTION = 0.1
_HOLDOUT_RE = re.compile(r"^(?P<part>train|val)\[val_fraction=(?P<f>[^,\]]+),seed=(?P<seed>-?\d+)\]$")
_SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})$")


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """What a source holds. ``split_sizes`` maps split name to number of records.

    ``num_classes`` counts the true classes, the model's output width, whatever
    ``label_offset`` the records are stored with: for image sources the class folders, for TFDS
    the ``label`` feature's names, for TFRecords the rows of ``classes.csv`` (which
    ``data.build_tfrecords`` writes for the class indices before it adds ``--label_offset``;
    None without the file, the labels are not read). ``label_offset`` is the offset a TFRecord
    directory's ``summary.json`` says its labels were written with (None when unknown; 0 for
    every other kind, whose labels start at 0).
    """
    kind: str
    class_names: Optional[tuple]
    num_classes: Optional[int]
    split_sizes: dict
    location: str = ""
    label_offset: Optional[int] = 0
    layout: str = "splits"  # "flat": a class-folder tree without split folders (see module doc)


class SplitSizes(dict):
    """``{split: number of records}``; for a flat tree ``{"all": N}`` plus, on lookup (``in``,
    ``[]``, ``get``), every held-out split name of :func:`holdout_split_names`, computed from
    the listing. Iterating lists only the stored splits."""

    def __init__(self, sizes, classes=None, keys=None, location=""):
        super().__init__(sizes)
        self._flat = None if classes is None else (tuple(classes), tuple(keys))
        self._location = location
        self._derived = {}

    def _resolve(self, split):
        if self._flat is None or not isinstance(split, str):
            return None
        parsed = parse_holdout_split(split)
        if parsed is None:
            return None
        if split not in self._derived:
            part, fraction, seed = parsed
            train, val = holdout_split(*self._flat, fraction, seed, location=self._location)
            self._derived[split] = len(train if part == "train" else val)
        return self._derived[split]

    def __missing__(self, split):
        n = self._resolve(split)
        if n is None:
            raise KeyError(split)
        return n

    def __contains__(self, split):
        return dict.__contains__(self, split) or self._resolve(split) is not None

    def get(self, split, default=None):
        try:
            return self[split]
        except KeyError:
            return default


# ---------------------------------------------------------------------------------------------
# held-out validation split of a flat class-folder tree
def holdout_split_names(val_fraction, seed=0):
    """``(train_name, val_name)`` of the split that holds out ``val_fraction`` of each class
    of a flat tree with ``seed``: ``"train[val_fraction=0.1,seed=0]"``,
    ``"val[val_fraction=0.1,seed=0]"``. These names are what a run records as its
    ``data.train_split`` / ``data.eval_split``; they carry the whole split definition, so
    evaluation, export and a resumed run read the same images from the folder (or its zip)."""
    f = _check_val_fraction(val_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"--split_seed={seed!r}: expected an integer")
    return tuple(f"{part}[val_fraction={f!r},seed={seed}]" for part in ("train", "val"))


def parse_holdout_split(split):
    """``"val[val_fraction=0.1,seed=0]"`` -> ``("val", 0.1, 0)``; None for other names."""
    m = _HOLDOUT_RE.match(split) if isinstance(split, str) else None
    if not m:
        return None
    try:
        f = float(m.group("f"))
    except ValueError:
        return None
    return m.group("part"), f, int(m.group("seed"))


def _check_val_fraction(val_fraction):
    try:
        f = float(val_fraction)
    except (TypeError, ValueError):
        raise ValueError(f"--val_fraction={val_fraction!r}: expected a number in (0, 1)") from None
    if not 0.0 < f < 1.0:
        raise ValueError(f"--val_fraction={val_fraction!r}: must be in (0, 1), the fraction of "
                         "each class folder held out for validation (e.g. 0.1)")
    return f


def _holdout_rank(seed, cls, key):
    return hashlib.sha256(f"{seed}\0{cls}\0{key}".encode("utf-8")).hexdigest()


def holdout_count(n, val_fraction):
    """Validation images of a class of ``n`` images: ``round(n * val_fraction)`` (halves
    up), at least 1 and at most ``n - 1``. Raises ``ValueError`` when ``n < 2``."""
    if n < 2:
        raise ValueError(f"{n} image(s)")
    return min(n - 1, max(1, int(math.floor(n * val_fraction + 0.5))))


def holdout_split(classes, keys, val_fraction, seed=0, location=""):
    """Stratified, seeded train/validation split of a flat tree: ``(train_idx, val_idx)``,
    ascending record indices.

    ``classes[i]`` is record i's class folder and ``keys[i]`` its path inside that folder
    (``"a.jpg"``, ``"2019/b.jpg"``). Each class of n records gives
    :func:`holdout_count` ``(n, val_fraction)`` records to validation: those with the
    smallest ``sha256(f"{seed}\\0{class}\\0{key}")``. So the split depends only on the seed
    and the file list (not on the listing order, the machine or the library versions), a
    folder and its zip split alike, and adding a file to a class moves at most the files of
    that class. A class folder with fewer than 2 images raises ``ValueError`` naming it.
    """
    f = _check_val_fraction(val_fraction)
    by_class = {}
    for i, c in enumerate(classes):
        by_class.setdefault(c, []).append(i)
    if len(by_class) < 2:
        raise ValueError(f"{location or 'the source'}: a flat class-folder tree needs at least 2 "
                         f"class folders, found {len(by_class)} ({sorted(by_class)})")
    val = []
    for c in sorted(by_class):
        idx = by_class[c]
        try:
            k = holdout_count(len(idx), f)
        except ValueError:
            raise ValueError(
                f"{location or 'the source'}: class folder {c!r} has {len(idx)} image(s); "
                f"holding out a validation split (--val_fraction={f!r}) needs at least 2 images "
                "in every class folder (1 to train on, 1 to validate): add images to it or "
                "remove it") from None
        idx = sorted(idx, key=lambda i: _holdout_rank(seed, c, keys[i]))
        val.extend(idx[:k])
    val_idx = np.array(sorted(val), np.int64)
    mask = np.ones(len(classes), bool)
    mask[val_idx] = False
    return np.flatnonzero(mask).astype(np.int64), val_idx


@dataclasses.dataclass
class RecordTable:
    """The records of one split, addressable by index.

    ``paths[i]`` (``kind="file"``) or ``(file_ids[i], offsets[i], lengths[i])`` into ``files``
    (``kind="range"``: stored zip members and TFRecord payloads) or zip member names
    (``kind="zipmember"``, compressed members). ``labels`` is None for TFRecords (parsed).
    """
    kind: str
    names: list
    labels: Optional[np.ndarray]
    files: list = dataclasses.field(default_factory=list)
    file_ids: Optional[np.ndarray] = None
    offsets: Optional[np.ndarray] = None
    lengths: Optional[np.ndarray] = None
    paths: Optional[list] = None
    tfrecord: bool = False
    skipped_at_listing: list = dataclasses.field(default_factory=list)

    def __len__(self):
        return len(self.names)


def parse_tfds_name(source: str):
    """``"tfds:imagenette/320px:1.0.0"`` -> ``("imagenette/320px", "1.0.0")``."""
    if not isinstance(source, str) or not source.startswith("tfds:"):
        raise ValueError(f"not a TFDS source name: {source!r}")
    rest = source[len("tfds:"):].strip()
    version = None
    if ":" in rest:
        rest, version = rest.split(":", 1)
    if not rest or not re.match(r"^[A-Za-z0-9_]+(/[A-Za-z0-9_.\-]+)?$", rest):
        raise ValueError(f"invalid TFDS name in {source!r}: expected 'tfds:NAME[/CONFIG][:VERSION]'")
    return rest, version


def _is_hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def source_kind(source) -> str:
    if isinstance(source, str) and source.startswith("tfds:"):
        return "tfds"
    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data source not found: {path}")
    if os.path.isfile(path):
        if zipfile.is_zipfile(path):
            return "zip"
        raise ValueError(f"data source {path} is a file but not a zip archive")
    entries = os.listdir(path)
    if any(_SHARD_RE.match(e) for e in entries):
        return "tfrecord"
    if any(e.endswith(".zip") and os.path.isfile(os.path.join(path, e)) for e in entries):
        return "zipdir"
    return "dir"


# ---------------------------------------------------------------------------------------------
# listing
def _zip_members(zpath):
    with zipfile.ZipFile(zpath) as z:
        return [info for info in z.infolist() if not info.is_dir()]


def _split_of_member(name: str, default_split: Optional[str]):
    """Returns (split, class, file) or None for members not in a class folder."""
    parts = [p for p in name.split("/") if p]
    if any(_is_hidden(p) for p in parts):
        return "hidden"
    if default_split is not None:
        # zip named after its split: <split>/<class>/<f> or <class>/<f>
        if len(parts) >= 3 and parts[0] == default_split:
            return default_split, parts[1], "/".join(parts[2:])
        if len(parts) == 2:
            return default_split, parts[0], parts[1]
        return None
    if len(parts) >= 3:
        return parts[0], parts[1], "/".join(parts[2:])
    return None


def _zip_index(zpath, default_split=None, infos=None):
    """{split: [(class, member ZipInfo)]}, plus members outside class folders."""
    out, stray = {}, []
    for info in (_zip_members(zpath) if infos is None else infos):
        r = _split_of_member(info.filename, default_split)
        if r == "hidden":
            continue
        if r is None:
            stray.append(info.filename)
            continue
        out.setdefault(r[0], []).append((r[1], info))
    return out, stray


def _class_files(cp):
    """The files under class folder ``cp`` (recursively, sorted, hidden ones skipped)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(cp):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if not _is_hidden(f))
    return out


def _dir_index(root):
    out = {}
    for split in sorted(os.listdir(root)):
        sp = os.path.join(root, split)
        if _is_hidden(split) or not os.path.isdir(sp):
            continue
        items = []
        for cls in sorted(os.listdir(sp)):
            cp = os.path.join(sp, cls)
            if _is_hidden(cls) or not os.path.isdir(cp):
                continue
            items.extend((cls, f) for f in _class_files(cp))
        if items:
            out[split] = items
    return out


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not _is_hidden(name)


def _dir_is_flat(root) -> bool:
    """True for ``<class>/<image>`` (see the module docstring's layout rule)."""
    tops = [e for e in sorted(os.listdir(root))
            if not _is_hidden(e) and os.path.isdir(os.path.join(root, e))]
    if any(t in SPLIT_FOLDER_NAMES for t in tops):
        return False
    for t in tops:
        with os.scandir(os.path.join(root, t)) as it:
            if any(e.is_file() and _is_image_name(e.name) for e in it):
                return True
    return False


def _flat_dir_index(root):
    """``[(class, path, key)]`` of a flat tree (key: the path inside the class folder)."""
    items = []
    for cls in sorted(os.listdir(root)):
        cp = os.path.join(root, cls)
        if _is_hidden(cls) or not os.path.isdir(cp):
            continue
        items.extend((cls, f, os.path.relpath(f, cp).replace(os.sep, "/"))
                     for f in _class_files(cp))
    return items


def _zip_flat_prefix(infos) -> Optional[str]:
    """``""`` for a flat zip ``<class>/<image>``, ``"ROOT/"`` for one wrapped in a folder
    ``ROOT/<class>/<image>``, None for the split layout (module docstring's rule)."""
    parts = [[p for p in i.filename.split("/") if p] for i in infos]
    parts = [p for p in parts if p and not any(_is_hidden(x) for x in p)]
    tops = {p[0] for p in parts if len(p) >= 2}
    if tops & set(SPLIT_FOLDER_NAMES):
        return None
    if len(tops) == 1:   # one folder holds everything: ROOT/<class>/<image> (one class is no tree)
        (root,) = tops
        if root not in SPLIT_FOLDER_NAMES and any(len(p) == 3 and _is_image_name(p[2])
                                                  for p in parts if p[0] == root):
            return root + "/"
        return None
    if any(len(p) == 2 and _is_image_name(p[1]) for p in parts):
        return ""
    return None


def _flat_zip_index(zpath, infos, prefix):
    """``([(zpath, class, ZipInfo, key)], stray member names)`` of a flat zip."""
    items, stray = [], []
    for info in infos:
        name = info.filename
        parts = [p for p in name.split("/") if p]
        if any(_is_hidden(p) for p in parts):
            continue
        rest = name[len(prefix):] if name.startswith(prefix) else None
        rest_parts = [p for p in (rest or "").split("/") if p]
        if len(rest_parts) < 2:
            stray.append(name)
            continue
        items.append((zpath, rest_parts[0], info, "/".join(rest_parts[1:])))
    items.sort(key=lambda t: t[2].filename)
    return items, stray


def _tfrecord_shards(root):
    shards = {}
    for e in sorted(os.listdir(root)):
        m = _SHARD_RE.match(e)
        if m:
            shards.setdefault(m.group("split"), []).append(os.path.join(root, e))
    return shards


def scan_tfrecord(path):
    """Offsets and lengths of the payloads of an uncompressed TFRecord file (no parsing)."""
    offsets, lengths = [], []
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            head = f.read(12)
            if len(head) < 12:
                raise ValueError(f"{path}: truncated TFRecord header at byte {pos}")
            (n,) = struct.unpack("<Q", head[:8])
            if pos + 12 + n + 4 > size:
                raise ValueError(f"{path}: truncated TFRecord (record at byte {pos} needs "
                                 f"{n} bytes); is it GZIP-compressed? Only plain TFRecords "
                                 "are supported")
            offsets.append(pos + 12)
            lengths.append(n)
            pos += 12 + n + 4
            f.seek(pos)
    return offsets, lengths


def _read_classes_csv(path):
    """classes.csv with a header containing ``index`` and a name column."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "index" not in rows[0]:
        return None
    key = next((k for k in ("name", "folder", "wnid", "class") if k in rows[0]), None)
    if key is None:
        return None
    rows.sort(key=lambda r: int(r["index"]))
    return tuple(r[key] for r in rows)


def _written_label_offset(path):
    """``label_offset`` of the ``summary.json`` that ``data.build_tfrecords`` writes, or None."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            value = json.load(f).get("label_offset")
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: not a summary written by data.build_tfrecords ({e})") from None
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{path}: label_offset must be an integer >= 0, got {value!r}")
    return value


_INFO_CACHE: dict = {}
_LOCK = threading.Lock()


def _cache_key(path):
    """Changes when the listing may have changed (for directories: the mtimes of the root, the
    split folders and the class folders, where files are added)."""
    try:
        st = os.stat(path)
        key = [os.path.abspath(path), st.st_mtime_ns, st.st_size]
        if os.path.isdir(path):
            with os.scandir(path) as it:
                for split in sorted(it, key=lambda e: e.name):
                    if split.is_dir():
                        key.append((split.name, split.stat().st_mtime_ns))
                        with os.scandir(split.path) as it2:
                            key.extend((c.name, c.stat().st_mtime_ns) for c in it2 if c.is_dir())
                    else:
                        key.append((split.name, split.stat().st_mtime_ns,
                                    split.stat().st_size))
        return tuple(key)
    except OSError:
        return None


def _tfds_builder(name, version):
    """The TFDS builder of ``name``; downloads and prepares the dataset when it is not prepared.

    The original code reads only TFRecords it built beforehand; here ``tfds:NAME`` is the
    user's explicit request for a TFDS dataset, so a missing one is fetched with
    ``builder.download_and_prepare()`` (TFDS shows download and preparation progress bars) into
    ``$TFDS_DATA_DIR`` (default ``~/tensorflow_datasets``), once. A failed download (an offline
    machine) is a ``FileNotFoundError`` that names the dataset, the error and what to do.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover
        raise ImportError("TFDS sources need tensorflow_datasets installed") from e
    data_dir = os.environ.get("TFDS_DATA_DIR")
    full = name + (f":{version}" if version else "")
    try:
        builder = tfds.builder(full, data_dir=data_dir)
    except Exception as e:  # unknown name / config
        raise ValueError(f"TFDS dataset {full!r} is not known to tensorflow_datasets: {e}") from e
    if not builder.is_prepared():
        logger.warning("TFDS dataset %r is not prepared in %s: downloading and preparing it "
                       "(once; progress below)", full, builder.data_dir)
        try:
            builder.download_and_prepare()
        except Exception as e:
            root = data_dir or "~/tensorflow_datasets"
            raise FileNotFoundError(
                f"TFDS dataset {full!r} is not prepared in {builder.data_dir!r} and downloading "
                f"it failed ({type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''})"
                f". Without network access: prepare it on a machine that has it (`tfds build "
                f"{name}` or `python -c \"import tensorflow_datasets as tfds; tfds.builder("
                f"'{full}').download_and_prepare()\"`) and copy its data folder to {root}, or "
                "set TFDS_DATA_DIR to a folder that holds it prepared, or pass a local image "
                "folder, zip or TFRecord directory instead of the tfds: name.") from e
    return builder


def inspect_source(source) -> SourceInfo:
    """Kind, class names, number of classes and split sizes of a source (cheap: no decoding)."""
    kind = source_kind(source)
    if kind == "tfds":
        name, version = parse_tfds_name(source)
        builder = _tfds_builder(name, version)
        feats = builder.info.features
        label = feats["label"] if "label" in feats.keys() else None
        names = tuple(label.names) if label is not None and hasattr(label, "names") else None
        sizes = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
        return SourceInfo("tfds", names, len(names) if names else None, sizes, source)
    path = os.fspath(source)
    key = _cache_key(path)
    with _LOCK:
        if key in _INFO_CACHE:
            return _INFO_CACHE[key][0]
    tables = _list_all(path, kind)
    offset = 0
    if kind == "tfrecord":
        csv_path = os.path.join(path, "classes.csv")
        names = _read_classes_csv(csv_path) if os.path.exists(csv_path) else None
        offset = _written_label_offset(os.path.join(path, "summary.json"))
    else:
        names = tuple(sorted({c for t in tables.values() for c in t["classes"]}))
    sizes = {s: (sum(len(o) for o, _ in t["scans"]) if "scans" in t else len(t["items"]))
             for s, t in tables.items()}
    flat = tables.get(FLAT_SPLIT, {}).get("keys")
    if flat is not None:
        sizes = SplitSizes(sizes, tables[FLAT_SPLIT]["item_classes"], flat,
                           location=os.path.abspath(path))
    info = SourceInfo(kind, names, len(names) if names else None, sizes, os.path.abspath(path),
                      label_offset=offset, layout="flat" if flat is not None else "splits")
    with _LOCK:
        _INFO_CACHE[key] = (info, tables)
    return info


def _list_all(path, kind):
    """{split: {"classes": set, "items": [...], "stray": [...]}} for file-based kinds."""
    out = {}
    if kind == "zip":
        infos = _zip_members(path)
        prefix = _zip_flat_prefix(infos)
        if prefix is not None:
            items, stray = _flat_zip_index(path, infos, prefix)
            return {FLAT_SPLIT: _flat_entry([(z, c, i) for z, c, i, _ in items],
                                            [c for _, c, _, _ in items],
                                            [k for _, _, _, k in items], stray)}
        idx, stray = _zip_index(path, infos=infos)
        for s, items in idx.items():
            out[s] = {"classes": {c for c, _ in items}, "items": [(path, c, i) for c, i in items],
                      "stray": []}
        for s in idx:
            out[s]["stray"] = [n for n in stray if n.split("/")[0] == s]
    elif kind == "zipdir":
        for e in sorted(os.listdir(path)):
            if e.endswith(".zip") and not _is_hidden(e):
                split = e[:-4]
                zp = os.path.join(path, e)
                idx, stray = _zip_index(zp, default_split=split)
                items = idx.get(split, [])
                out[split] = {"classes": {c for c, _ in items},
                              "items": [(zp, c, i) for c, i in items], "stray": stray}
    elif kind == "dir" and _dir_is_flat(path):
        items = _flat_dir_index(path)
        out[FLAT_SPLIT] = _flat_entry([(c, f) for c, f, _ in items], [c for c, _, _ in items],
                                      [k for _, _, k in items], [])
    elif kind == "dir":
        for s, items in _dir_index(path).items():
            out[s] = {"classes": {c for c, _ in items}, "items": items, "stray": []}
    elif kind == "tfrecord":
        for s, files in _tfrecord_shards(path).items():
            out[s] = {"classes": set(), "items": files, "stray": [],
                      "scans": [scan_tfrecord(f) for f in files]}
    return out


def _flat_entry(items, item_classes, keys, stray):
    return {"classes": set(item_classes), "items": items, "item_classes": item_classes,
            "keys": keys, "stray": stray}


def resolve_eval_split(source) -> str:
    """The first of ``validation``, ``val``, ``test`` that the source has."""
    info = inspect_source(source)
    for s in EVAL_SPLITS:
        if info.split_sizes.get(s):
            return s
    if info.layout == "flat":
        raise ValueError(f"source {source} is a flat class-folder tree (<class>/<image>, no split "
                         "folders): hold out a validation split (the trainer's --val_fraction; "
                         "data.sources.holdout_split_names) or use split 'all'")
    raise ValueError(f"source {source} has no evaluation split (looked for {EVAL_SPLITS}); "
                     f"splits: {sorted(info.split_sizes)}")


def _local_data_offset(f, info: zipfile.ZipInfo) -> int:
    f.seek(info.header_offset)
    head = f.read(30)
    if head[:4] != b"PK\x03\x04":
        raise ValueError(f"bad zip local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    return info.header_offset + 30 + name_len + extra_len


def record_table(source, split: str) -> RecordTable:
    """The records of ``split``; raises before any work if the split is missing or empty."""
    info = inspect_source(source)
    if split not in info.split_sizes:
        raise ValueError(f"split {split!r} not found in {source}; splits: "
                         f"{sorted(info.split_sizes) or 'none'}")
    if info.split_sizes[split] == 0:
        raise ValueError(f"split {split!r} of {source} is empty")
    path = os.fspath(source)
    with _LOCK:
        tables = _INFO_CACHE[_cache_key(path)][1]
    holdout = parse_holdout_split(split) if info.layout == "flat" else None
    entry = tables[FLAT_SPLIT if holdout else split]
    if holdout:  # the held-out part or the rest, in listing order
        part, fraction, seed = holdout
        train, val = holdout_split(entry["item_classes"], entry["keys"], fraction, seed,
                                   location=info.location)
        entry = dict(entry, items=[entry["items"][i] for i in (train if part == "train" else val)])
    if info.kind == "dir":
        cls_index = {c: i for i, c in enumerate(info.class_names)}
        items = entry["items"]
        return RecordTable("file", names=[os.path.relpath(p, path) for _, p in items],
                           labels=np.array([cls_index[c] for c, _ in items], np.int64),
                           paths=[p for _, p in items])
    if info.kind in ("zip", "zipdir"):
        cls_index = {c: i for i, c in enumerate(info.class_names)}
        items = entry["items"]
        files = sorted({zp for zp, _, _ in items})
        fid = {f: i for i, f in enumerate(files)}
        handles = {f: open(f, "rb") for f in files}
        try:
            stored = all(i.compress_type == zipfile.ZIP_STORED for _, _, i in items)
            offsets = ([_local_data_offset(handles[zp], i) for zp, _, i in items]
                       if stored else [0] * len(items))
        finally:
            for h in handles.values():
                h.close()
        names = [(os.path.basename(zp) + ":" + i.filename) if info.kind == "zipdir"
                 else i.filename for zp, _, i in items]
        return RecordTable(
            "range" if stored else "zipmember", names=names,
            labels=np.array([cls_index[c] for _, c, _ in items], np.int64), files=files,
            file_ids=np.array([fid[zp] for zp, _, _ in items], np.int64),
            offsets=np.array(offsets, np.int64),
            lengths=np.array([i.file_size for _, _, i in items], np.int64),
            paths=[i.filename for _, _, i in items],
            skipped_at_listing=[(s, "not inside a <class>/ folder") for s in entry["stray"]])
    if info.kind == "tfrecord":
        files = entry["items"]
        names, fids, offs, lens = [], [], [], []
        for k, (f, (o, n)) in enumerate(zip(files, entry["scans"])):
            base = os.path.basename(f)
            names.extend(f"{base}[{j}]" for j in range(len(o)))
            fids.extend([k] * len(o))
            offs.extend(o)
            lens.extend(n)
        if not names:
            raise ValueError(f"split {split!r} of {source} is empty (no records in {len(files)} "
                             "shards)")
        return RecordTable("range", names=names, labels=None, files=list(files),
                           file_ids=np.array(fids, np.int64), offsets=np.array(offs, np.int64),
                           lengths=np.array(lens, np.int64), tfrecord=True)
    raise ValueError(f"record_table does not handle kind {info.kind!r}")


def _close_fds(fds, _close=os.close):
    # ``_close`` is bound at definition time: at interpreter exit ``os`` may be torn down.
    for fd in fds:
        try:
            _close(fd)
        except (OSError, TypeError):
            pass


class ByteReader:
    """Reads record bytes by (file id, offset, length) with ``os.pread`` (thread-safe).

    Every file must exist when the reader is built (``FileNotFoundError`` naming the first
    missing one); the files are opened on the first read.
    """

    def __init__(self, files, member_names=None):
        self._fds = None  # first, so that __del__ finds it whatever fails below
        self.files = list(files)
        missing = [f for f in self.files if not os.path.isfile(f)]
        if missing:
            raise FileNotFoundError(
                f"ByteReader: {len(missing)} of {len(self.files)} file(s) not found, the "
                f"first: {os.fspath(missing[0])!r}")
        self.member_names = member_names
        self._local = threading.local()

    def _fd(self, i):
        if self._fds is None:
            with _LOCK:
                if self._fds is None:
                    fds = []
                    try:
                        for f in self.files:
                            fds.append(os.open(f, os.O_RDONLY))
                    except BaseException:
                        _close_fds(fds)  # no descriptors leak when one open fails
                        raise
                    self._fds = fds
        return self._fds[i]

    def read_range(self, fid, offset, length):
        data = os.pread(self._fd(int(fid)), int(length), int(offset))
        if len(data) != int(length):
            raise IOError(f"short read from {self.files[int(fid)]} at {int(offset)}")
        return data

    def read_member(self, fid, index):
        zs = getattr(self._local, "zips", None)
        if zs is None:
            zs = self._local.zips = {}
        fid = int(fid)
        if fid not in zs:
            zs[fid] = zipfile.ZipFile(self.files[fid])
        return zs[fid].read(self.member_names[int(index)])

    def __del__(self, _close_fds=_close_fds):
        # getattr: the attribute is missing when __init__ failed before setting it; the
        # default argument keeps the helper reachable at interpreter exit.
        fds = getattr(self, "_fds", None)
        self._fds = None
        if fds:
            _close_fds(fds)
