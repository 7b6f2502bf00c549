"""Oxford Flowers-102 as a user's photo folder (issue 14, item 3: fine-tuning on a flat folder).

    python benchmarks/flowers_flat.py --out=/tmp/flowers

extracts ``$ASSEMBLE_DATA_DIR/oxford-flowers102/train.zip`` (1,020 images, 10 per class) into
``OUT/train_flat/<class name>/<image>`` and ``test.zip`` (204 images, 2 per class) into
``OUT/test_flat/<class name>/<image>``: class folders named after the flowers
(``classes.csv``: folder -> name), no split folders. ``train_flat`` is what
``python -m official.train --flagfile=finetune --data=OUT/train_flat`` splits itself (10 %
held out per class); ``test_flat`` is read with ``official.evaluate --split=all``. The test
images must get the same names as the training ones, since labels are the index of the
class folder among the sorted folder names.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import zipfile


def extract(zip_path, names, out_dir):
    """Writes each member ``<split>/<folder>/<file>`` to ``out_dir/<name>/<file>``; returns the
    number of images per class name."""
    counts = {}
    with zipfile.ZipFile(zip_path) as z:
        for member in sorted(n for n in z.namelist() if not n.endswith("/")):
            parts = member.split("/")
            if len(parts) != 3 or parts[1] not in names:
                raise ValueError(f"{zip_path}: member {member!r} is not <split>/<class folder>/<file> "
                                 "with a folder listed in classes.csv")
            name = names[parts[1]]
            os.makedirs(os.path.join(out_dir, name), exist_ok=True)
            with open(os.path.join(out_dir, name, parts[2]), "wb") as f:
                f.write(z.read(member))
            counts[name] = counts.get(name, 0) + 1
    return counts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(os.environ.get(
        "ASSEMBLE_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")),
        "oxford-flowers102"), help="the oxford-flowers102 folder of the shared data")
    p.add_argument("--out", required=True, help="output folder (must not exist)")
    a = p.parse_args(argv)
    if os.path.exists(a.out):
        p.error(f"--out={a.out!r} exists; give a new folder")
    with open(os.path.join(a.data, "classes.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    names = {r["folder"]: r["name"] for r in rows}
    bad = [n for n in names.values() if not n or "/" in n or n.startswith(".")]
    if bad or len(set(names.values())) != len(names):
        raise ValueError(f"classes.csv names must be distinct folder names; bad: {bad}")
    for split in ("train", "test"):
        counts = extract(os.path.join(a.data, f"{split}.zip"), names, os.path.join(a.out, f"{split}_flat"))
        print(f"{split}_flat: {sum(counts.values())} images in {len(counts)} class folders "
              f"({min(counts.values())}-{max(counts.values())} per class)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
