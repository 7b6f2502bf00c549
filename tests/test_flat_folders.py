"""A user's flat class-folder tree (issue 14 item 3): ``<class>/<image>`` with no split folders,
as a folder, a zip and a zip wrapped in one folder; its stratified, seeded held-out split
(``data.sources.holdout_split``, the trainer's ``--val_fraction`` / ``--split_seed``).

The tree is tiny and synthetic: four class folders of 2, 5, 10 and 15 files (one with a
space in its name, one with a nested subfolder), holding one real Imagenette JPEG under
different names. Expected held-out counts are worked out by hand from the rule
``min(n - 1, max(1, round_half_up(n * fraction)))``:

* fraction 0.1:  n = 2 -> 0.2 -> 1;  5 -> 0.5 -> 1;  10 -> 1.0 -> 1;  15 -> 1.5 -> 2
* fraction 0.25: n = 2 -> 0.5 -> 1;  5 -> 1.25 -> 1; 10 -> 2.5 -> 3;  15 -> 3.75 -> 4
* fraction 0.9:  n = 2 -> 1.8 -> 2, capped at n - 1 = 1; 5 -> 4.5 -> 5 -> 4; 10 -> 9; 15 -> 13.5 -> 14
"""
import json
import zipfile

import numpy as np
import pytest

from conftest import require_data

COUNTS = {"ant": 2, "bee": 5, "big cat": 10, "dog": 15}   # class folder -> number of files
EXPECTED_VAL = {0.1: {"ant": 1, "bee": 1, "big cat": 1, "dog": 2},
                0.25: {"ant": 1, "bee": 1, "big cat": 3, "dog": 4},
                0.9: {"ant": 1, "bee": 4, "big cat": 9, "dog": 14}}


def _files():
    """``[(class, path inside the class folder)]``: ``dog`` keeps 3 files in a subfolder."""
    out = []
    for cls, n in COUNTS.items():
        for i in range(n):
            rel = f"img_{i:02d}.jpg" if not (cls == "dog" and i >= 12) else f"old/img_{i:02d}.JPEG"
            out.append((cls, rel))
    return out


@pytest.fixture(scope="module")
def jpeg():
    with zipfile.ZipFile(require_data("imagenette2-224/val.zip")) as z:
        name = sorted(n for n in z.namelist() if not n.endswith("/"))[0]
        return z.read(name)


@pytest.fixture(scope="module")
def trees(tmp_path_factory, jpeg):
    """The same tree as a folder (plus a README at its top, which is not a class), a zip
    written in reverse order, and a zip wrapped in its folder (``zip -r photos.zip photos``)."""
    root = tmp_path_factory.mktemp("flat")
    folder = root / "photos"
    for cls, rel in _files():
        p = folder / cls / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(jpeg)
    (folder / "README.txt").write_text("my photos\n")
    with zipfile.ZipFile(root / "photos.zip", "w") as z:
        for cls, rel in reversed(_files()):
            z.writestr(f"{cls}/{rel}", jpeg)
    with zipfile.ZipFile(root / "wrapped.zip", "w") as z:
        z.writestr("photos/README.txt", "my photos\n")
        for cls, rel in _files():
            z.writestr(f"photos/{cls}/{rel}", jpeg)
    return {"dir": str(folder), "zip": str(root / "photos.zip"), "wrapped": str(root / "wrapped.zip")}


def _val_members(source, fraction, seed=0):
    """``{class: {path inside the class folder}}`` of the held-out split, read back through
    ``record_table`` (the reader the pipeline uses), with each record's label checked against
    its class folder's position among the sorted folder names."""
    from data import sources
    names = sorted(COUNTS)
    out = {}
    for part, split in zip(("train", "val"), sources.holdout_split_names(fraction, seed)):
        table = sources.record_table(source, split)
        got = {}
        for name, label in zip(table.names, table.labels):
            parts = name.split("/")
            if parts[0] == "photos":   # the wrapped zip
                parts = parts[1:]
            cls, rel = parts[0], "/".join(parts[1:])
            assert names[int(label)] == cls, (name, label)
            got.setdefault(cls, set()).add(rel)
        out[part] = got
    return out


@pytest.mark.parametrize("kind", ["dir", "zip", "wrapped"])
def test_flat_tree_is_found_with_its_classes(trees, kind):
    from data import sources
    info = sources.inspect_source(trees[kind])
    assert info.layout == "flat"
    assert info.class_names == ("ant", "bee", "big cat", "dog")   # sorted folder names
    assert info.num_classes == 4
    assert dict(info.split_sizes) == {"all": 32}                   # 2 + 5 + 10 + 15; README not
    train, val = sources.holdout_split_names(0.1, 0)
    assert (train, val) == ("train[val_fraction=0.1,seed=0]", "val[val_fraction=0.1,seed=0]")
    assert info.split_sizes[val] == 5 and info.split_sizes.get(train) == 27 and val in info.split_sizes
    assert "val" not in info.split_sizes and info.split_sizes.get("validation") is None


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.9])
def test_held_out_split_is_stratified_disjoint_and_complete(trees, fraction):
    split = _val_members(trees["dir"], fraction)
    every = {}
    for cls, rel in _files():
        every.setdefault(cls, set()).add(rel)
    for cls, n in COUNTS.items():
        val, train = split["val"].get(cls, set()), split["train"].get(cls, set())
        assert len(val) == EXPECTED_VAL[fraction][cls], (cls, sorted(val))
        assert len(train) == n - EXPECTED_VAL[fraction][cls]
        assert not (val & train), cls
        assert val | train == every[cls]


def test_held_out_split_depends_only_on_seed_and_file_names(trees):
    """Same seed: the same files, from the folder, the zip written in reverse order and the
    wrapped zip alike, and on a second call; another seed: another choice (fixed by sha256,
    so this is deterministic, not a chance event)."""
    from data import sources
    ref = _val_members(trees["dir"], 0.25, seed=0)
    assert _val_members(trees["zip"], 0.25, seed=0) == ref
    assert _val_members(trees["wrapped"], 0.25, seed=0) == ref
    assert _val_members(trees["dir"], 0.25, seed=0) == ref
    other = _val_members(trees["dir"], 0.25, seed=1)
    assert other["val"] != ref["val"]
    assert {c: len(v) for c, v in other["val"].items()} == EXPECTED_VAL[0.25]
    # the function itself: the listing order does not matter
    classes = [c for c, _ in _files()]
    keys = [k for _, k in _files()]
    _, val = sources.holdout_split(classes, keys, 0.25, 0)
    order = np.random.default_rng(0).permutation(len(keys))
    _, val_perm = sources.holdout_split([classes[i] for i in order], [keys[i] for i in order], 0.25, 0)
    assert sorted(keys[i] + classes[i] for i in val) == sorted(keys[order[i]] + classes[order[i]]
                                                               for i in val_perm)


def test_too_few_images_and_bad_fractions_are_named(tmp_path, jpeg):
    from data import sources
    for cls, n in (("roses", 3), ("lonely tulip", 1)):
        for i in range(n):
            (tmp_path / "f" / cls).mkdir(parents=True, exist_ok=True)
            (tmp_path / "f" / cls / f"{i}.jpg").write_bytes(jpeg)
    info = sources.inspect_source(str(tmp_path / "f"))
    assert info.layout == "flat" and info.split_sizes["all"] == 4
    with pytest.raises(ValueError, match=r"class folder 'lonely tulip' has 1 image.*at least 2"):
        info.split_sizes.get(sources.holdout_split_names(0.1)[1])
    for bad in (0, 1, 1.5, -0.1, "x"):
        with pytest.raises(ValueError, match=r"--val_fraction="):
            sources.holdout_split_names(bad)
    (tmp_path / "one" / "only").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "one" / "only" / f"{i}.jpg").write_bytes(jpeg)
    with pytest.raises(ValueError, match=r"at least 2 class folders, found 1"):
        sources.record_table(str(tmp_path / "one"), sources.holdout_split_names(0.5)[1])


def test_split_layouts_stay_split_layouts(tmp_path, jpeg):
    """Top-level folders named like a split, or holding class folders, keep the split layout."""
    from data import sources
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / "d" / split / cls).mkdir(parents=True)
            (tmp_path / "d" / split / cls / "x.jpg").write_bytes(jpeg)
    info = sources.inspect_source(str(tmp_path / "d"))
    assert info.layout == "splits" and dict(info.split_sizes) == {"train": 2, "val": 2}
    with zipfile.ZipFile(tmp_path / "v.zip", "w") as z:   # a zip holding only val/<class>/...
        z.writestr("val/a/x.jpg", jpeg)
        z.writestr("val/b/y.jpg", jpeg)
    info = sources.inspect_source(str(tmp_path / "v.zip"))
    assert info.layout == "splits" and dict(info.split_sizes) == {"val": 2}
    assert info.split_sizes.get("val[val_fraction=0.1,seed=0]") is None


def test_trainer_records_the_split_and_refuses_bad_requests(trees, tmp_path):
    """``prepare_config`` (what ``python -m official.train`` runs first) on the flat tree: the
    split's names, fraction and seed, counts and class names go into the run's config (and
    through run_config.json); bad flags fail before any work, naming the flag or folder."""
    from official import checkpoints, train
    from official.config import RunConfig

    def config(source, **dotted):
        cfg = RunConfig(recipe="test")
        cfg.model.name, cfg.model.image_size = "resnet18", 32
        cfg.data.source, cfg.optimization.batch_size = source, 4
        cfg.runtime.model_dir = str(tmp_path / "run")
        return cfg.override(dotted) if dotted else cfg

    cfg = train.prepare_config(config(trees["zip"], **{"data.val_fraction": 0.25, "data.split_seed": 3}))
    d = cfg.data
    assert (d.train_split, d.eval_split) == ("train[val_fraction=0.25,seed=3]",
                                             "val[val_fraction=0.25,seed=3]")
    assert (d.num_train_examples, d.num_eval_examples) == (32 - 9, 9)   # 1 + 1 + 3 + 4 held out
    assert d.class_names == ["ant", "bee", "big cat", "dog"] and cfg.model.num_classes == 4
    checkpoints.save_run_config(str(tmp_path / "run"), cfg)
    saved = json.load(open(tmp_path / "run" / checkpoints.RUN_CONFIG))["data"]
    assert (saved["val_fraction"], saved["split_seed"], saved["eval_split"]) == (
        0.25, 3, "val[val_fraction=0.25,seed=3]")
    # the default fraction, 0.1
    d = train.prepare_config(config(trees["dir"])).data
    assert (d.val_fraction, d.num_eval_examples, d.eval_split) == (0.1, 5, "val[val_fraction=0.1,seed=0]")

    (tmp_path / "few" / "lonely").mkdir(parents=True)
    (tmp_path / "few" / "lonely" / "a.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "few" / "many").mkdir()
    for i in range(4):
        (tmp_path / "few" / "many" / f"{i}.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(train.ConfigError, match=r"class folder 'lonely' has 1 image"):
        train.prepare_config(config(str(tmp_path / "few")))
    with pytest.raises(train.ConfigError, match=r"--val_fraction=1\.0: must be in \(0, 1\)"):
        train.prepare_config(config(trees["dir"], **{"data.val_fraction": 1.0}))
    with pytest.raises(train.ConfigError, match=r"drop --train_split='all'"):
        train.prepare_config(config(trees["dir"], **{"data.train_split": "all"}))
    split_source = require_data("imagenette2-224")
    with pytest.raises(train.ConfigError, match=r"--val_fraction/--split_seed .*has split folders"):
        train.prepare_config(config(str(split_source), **{"data.val_fraction": 0.2}))
