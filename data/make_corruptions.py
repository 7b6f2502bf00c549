r"""Writes ImageNet-C style corrupted copies of an image-folder data set, once, reproducibly.

Usage::

    python -m data.make_corruptions --input ../shared/data/imagenette2-224/val.zip \
        --output /tmp/imagenette-c --seed 0 [--corruptions fog,frost | --corruptions all19] \
        [--severities 1,2,3] [--splits val] [--image_size 224] [--format dir|zip] \
        [--image_format jpeg|png] [--num_workers 2]

Input: a directory or a zip file holding ``<split>/<class>/<image>`` (the layout of
``data.build_dataset``'s image-folder sources), or a directory of one zip per split
(``train.zip``, ``val.zip``: how ``../shared/data`` is stored); ``--splits`` picks splits
(default: all that are present).

Output, for each corruption and severity, an image-folder data set of its own:

* ``--format dir`` (default): ``OUTPUT/<corruption>/<severity>/<split>/<class>/<stem>.<ext>``
* ``--format zip``: ``OUTPUT/<corruption>/<severity>/<split>.zip`` holding
  ``<split>/<class>/<stem>.<ext>`` (uncompressed, like the shared data zips).

so that ``OUTPUT/<corruption>/<severity>`` can be passed to ``data.build_dataset`` as a data
source directly. A ``classes.csv`` beside the input (or inside the input directory) is copied
into each ``<severity>`` folder so that class indices stay the same as the clean data's, and
``OUTPUT/corruptions.json`` records the arguments.

Images: with ``--image_size S`` every image is first resized (bilinear) so that its shorter
side is ``round(S / 0.875)`` and center-cropped to ``S x S`` (ImageNet-C: 256 -> 224);
without it, images keep their size (at least 32x32). Grayscale images become RGB. The default
``--image_format jpeg`` writes JPEG quality 85 like ImageNet-C and the Assemble-ResNet
generator; ``png`` is lossless.

Reproducibility: image ``i`` gets the seed of ``data.corruptions.derive_seed(seed, key,
corruption, severity)`` where ``key`` is the CRC-32 of its path inside the input
(``<split>/<class>/<file>``), so the same input file always gets the same corruption, however
the data set is subset, ordered or split across workers. Existing output files are kept unless
``--overwrite`` (a killed run can be resumed; zips are always rewritten whole).
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import pathlib
import shutil
import sys
import zipfile
import zlib

import numpy as np
from tqdm import tqdm

from data import corruptions as corruption_lib

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif",
                    ".tiff")


# --------------------------------------------------------------------------- input
class _Input:
    """Lists and reads the images of an image-folder data set as ``<split>/<class>/<file>``.

    Accepted: a directory ``<split>/<class>/<file>``; a zip with those members; or a directory
    of one zip per split (``val.zip`` with members ``val/<class>/<file>`` or
    ``<class>/<file>``, the layout of ``../shared/data``).
    """

    def __init__(self, path: str):
        self.path = pathlib.Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"input {path!r} does not exist")
        self.is_zip = self.path.is_file() and zipfile.is_zipfile(self.path)
        if self.path.is_file() and not self.is_zip:
            raise ValueError(f"input {path!r} is neither a directory nor a zip file")
        self.split_zips = {}
        if self.path.is_dir():
            self.split_zips = {p.name[:-4]: p for p in sorted(self.path.glob("*.zip"))
                               if not p.name.startswith(".") and zipfile.is_zipfile(p)}
        self._zips = {}
        self._where = {}  # member -> (zip path, name inside the zip) for zip inputs

    @staticmethod
    def _is_image(parts) -> bool:
        return (parts[-1].lower().endswith(IMAGE_EXTENSIONS)
                and not any(p.startswith(".") or p == "__MACOSX" for p in parts))

    def members(self) -> list:
        members = []
        if self.is_zip or self.split_zips:
            zips = {None: self.path} if self.is_zip else self.split_zips
            for split, zpath in zips.items():
                with zipfile.ZipFile(zpath) as z:
                    for name in z.namelist():
                        parts = [p for p in name.split("/") if p]
                        if name.endswith("/") or not parts or not self._is_image(parts):
                            continue
                        if len(parts) == 3 and (split is None or parts[0] == split):
                            member = "/".join(parts)
                        elif len(parts) == 2 and split is not None:
                            member = f"{split}/{parts[0]}/{parts[1]}"
                        else:
                            continue
                        self._where[member] = (zpath, name)
                        members.append(member)
        else:
            for p in self.path.rglob("*"):
                parts = p.relative_to(self.path).parts
                if p.is_file() and len(parts) == 3 and self._is_image(parts):
                    members.append("/".join(parts))
        return sorted(members)

    def read(self, member: str) -> bytes:
        if member in self._where:
            zpath, name = self._where[member]
            if zpath not in self._zips:
                self._zips[zpath] = zipfile.ZipFile(zpath)
            return self._zips[zpath].read(name)
        return (self.path / member).read_bytes()

    def classes_csv(self):
        candidates = ([self.path.parent / "classes.csv"] if self.is_zip
                      else [self.path / "classes.csv", self.path.parent / "classes.csv"])
        for c in candidates:
            if c.is_file():
                return c
        return None


# --------------------------------------------------------------------------- work
def load_image(data: bytes, image_size: int | None) -> np.ndarray:
    """Decodes to RGB ``uint8``; with ``image_size``, resize-shorter-side + center crop."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    img = Image.open(io.BytesIO(data)).convert("RGB")
    if image_size:
        resize = int(round(image_size / 0.875))
        w, h = img.size
        if w <= h:
            new_w, new_h = resize, max(resize, int(round(resize * h / w)))
        else:
            new_w, new_h = max(resize, int(round(resize * w / h))), resize
        img = img.resize((new_w, new_h), resample=Image.BILINEAR)
        left, top = (new_w - image_size) // 2, (new_h - image_size) // 2
        img = img.crop((left, top, left + image_size, top + image_size))
    return np.asarray(img)


def encode_image(image: np.ndarray, image_format: str) -> bytes:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    out = io.BytesIO()
    if image_format == "png":
        Image.fromarray(image).save(out, format="PNG")
    else:
        Image.fromarray(image).save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()


def member_key(member: str) -> int:
    """The stable per-image integer used as ``index`` for seeding."""
    return zlib.crc32(member.encode("utf-8"))


def output_member(member: str, image_format: str) -> str:
    stem = member.rsplit(".", 1)[0]
    return stem + (".png" if image_format == "png" else ".jpg")


def _process(task):
    """Worker: ``(member, data, corruptions_and_severities, args) -> [(c, s, bytes)]``."""
    member, data, cells, seed, image_size, image_format = task
    image = load_image(data, image_size)
    results = []
    for name, severity in cells:
        out = corruption_lib.corrupt(image, name, severity, seed=seed, index=member_key(member))
        results.append((name, severity, encode_image(out, image_format)))
    return member, results


# --------------------------------------------------------------------------- CLI
def _parse_list(values, what):
    items = []
    for v in values or []:
        items += [x for x in str(v).replace(",", " ").split() if x]
    return items


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m data.make_corruptions",
        description="Write ImageNet-C style corrupted copies of an image-folder data set.")
    parser.add_argument("--input", required=True,
                        help="directory or zip with <split>/<class>/<image>, or a directory of "
                             "<split>.zip files")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--corruptions", nargs="+", default=["all15"],
                        help="names (space or comma separated), or all15 / all19 / extra "
                             "(default: all15)")
    parser.add_argument("--severities", nargs="+", default=["1", "2", "3", "4", "5"],
                        help="severities 1..5 (default: all)")
    parser.add_argument("--seed", type=int, required=True, help="experiment seed")
    parser.add_argument("--splits", nargs="+", default=None,
                        help="splits to corrupt (default: all present)")
    parser.add_argument("--image_size", type=int, default=None,
                        help="resize shorter side to round(S/0.875), center crop SxS")
    parser.add_argument("--format", choices=("dir", "zip"), default="dir")
    parser.add_argument("--image_format", choices=("jpeg", "png"), default="jpeg")
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no_progress", action="store_true", help="disable the progress bar")
    args = parser.parse_args(argv)

    names = []
    for item in _parse_list(args.corruptions, "corruption"):
        if item == "all15":
            names += corruption_lib.CORRUPTIONS_15
        elif item == "all19":
            names += corruption_lib.CORRUPTIONS_19
        elif item == "extra":
            names += corruption_lib.CORRUPTIONS_EXTRA
        else:
            try:
                names.append(corruption_lib.validate_corruption(item))
            except ValueError as e:
                parser.error(str(e))
    args.corruptions = list(dict.fromkeys(names))
    severities = []
    for item in _parse_list(args.severities, "severity"):
        try:
            severities.append(corruption_lib.validate_severity(item))
        except ValueError as e:
            parser.error(f"{e} (in --severities)")
    args.severities = sorted(set(severities))
    if not args.corruptions or not args.severities:
        parser.error("need at least one corruption and one severity")
    if args.image_size is not None and args.image_size < corruption_lib.MIN_IMAGE_SIZE:
        parser.error(f"--image_size must be at least {corruption_lib.MIN_IMAGE_SIZE}")
    if args.num_workers < 1:
        parser.error("--num_workers must be >= 1")
    args.splits = _parse_list(args.splits, "split") if args.splits else None
    return args


def run(argv=None) -> dict:
    """Runs the CLI; returns ``{"images": n, "written": m, "output": path}``."""
    args = parse_args(argv)
    corruption_lib.require_available("python -m data.make_corruptions")
    source = _Input(args.input)
    members = source.members()
    splits_present = sorted({m.split("/")[0] for m in members})
    if args.splits:
        unknown = [s for s in args.splits if s not in splits_present]
        if unknown:
            raise ValueError(f"splits {unknown} not in input (has {splits_present})")
        members = [m for m in members if m.split("/")[0] in args.splits]
    if not members:
        raise ValueError(f"no images found as <split>/<class>/<image> in {args.input!r}")
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    cells = [(c, s) for c in args.corruptions for s in args.severities]
    classes_csv = source.classes_csv()
    for c, s in cells:
        cell_dir = output / c / str(s)
        cell_dir.mkdir(parents=True, exist_ok=True)
        if classes_csv is not None:
            shutil.copyfile(classes_csv, cell_dir / "classes.csv")
    with open(output / "corruptions.json", "w", encoding="utf-8") as f:
        json.dump({"input": str(args.input), "seed": args.seed, "corruptions": args.corruptions,
                   "severities": args.severities, "splits": sorted({m.split('/')[0] for m in members}),
                   "image_size": args.image_size, "format": args.format,
                   "image_format": args.image_format, "num_images": len(members),
                   "seeding": "data.corruptions.derive_seed(seed, crc32(member), corruption, severity)"},
                  f, indent=2)

    zips = {}
    if args.format == "zip":
        for c, s in cells:
            for split in sorted({m.split("/")[0] for m in members}):
                zips[(c, s, split)] = zipfile.ZipFile(output / c / str(s) / f".{split}.zip.tmp", "w",
                                                      compression=zipfile.ZIP_STORED)

    def todo_cells(member):
        if args.format == "zip" or args.overwrite:
            return cells
        rel = output_member(member, args.image_format)
        return [(c, s) for c, s in cells if not (output / c / str(s) / rel).exists()]

    def tasks():
        for m in members:
            needed = todo_cells(m)
            if needed:
                yield (m, source.read(m), needed, args.seed, args.image_size, args.image_format)

    progress = None
    if not args.no_progress:
        progress = tqdm(total=len(members), unit="img", desc="corrupting", file=sys.stderr)
    written = 0
    pool = None
    ok = False
    try:
        if args.num_workers > 1:
            pool = multiprocessing.get_context("spawn").Pool(args.num_workers)
            results = pool.imap(_process, tasks(), chunksize=4)
        else:
            results = map(_process, tasks())
        done = 0
        for member, outputs in results:
            rel = output_member(member, args.image_format)
            for c, s, data in outputs:
                if args.format == "zip":
                    info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_STORED
                    info.external_attr = 0o644 << 16
                    zips[(c, s, member.split("/")[0])].writestr(info, data)
                else:
                    path = output / c / str(s) / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name("." + path.name + ".tmp")  # hidden: never listed as data
                    tmp.write_bytes(data)
                    os.replace(tmp, path)
                written += 1
            done += 1
            if progress is not None:
                progress.update(1)
        if progress is not None:
            progress.update(len(members) - done)  # members that were already complete
        ok = True
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if progress is not None:
            progress.close()
        for (c, s, split), z in zips.items():
            z.close()
            tmp = output / c / str(s) / f".{split}.zip.tmp"
            if ok:
                os.replace(tmp, output / c / str(s) / f"{split}.zip")
            else:
                tmp.unlink(missing_ok=True)
    return {"images": len(members), "written": written, "output": str(output)}


def main(argv=None) -> int:
    try:
        summary = run(argv)
    except ImportError as e:  # a missing optional package: one line with the pip command
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"corrupted {summary['images']} images, wrote {summary['written']} files under "
          f"{summary['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
