"""Time per image of each ImageNet-C corruption (``data.corruptions.corrupt``) at 224 px.

    python benchmarks/corruption_cost.py [--data DIR] [--images 3] [--severities 1,3,5]

What decides between corrupting on the fly (``data.corruptions.tf_corrupt`` in ``tf.data``,
Python per image under a lock) and writing the corrupted set once
(``python -m data.make_corruptions``): the seconds one image costs per corruption.

Method: ``--images`` validation JPEGs of ``imagenette2-224`` (``val.zip``), each loaded as
``data.make_corruptions`` does with ``--image_size 224`` (resize the shorter side to 256,
centre crop 224 x 224). In one process, for every corruption of ``CORRUPTIONS_19`` in order:
the first call's wall time (what a fresh process pays once: imports, texture loading, and
for ``glass_blur`` the Numba JIT compilation), then every image at every severity, wall and
process CPU time per call; the minimum and the median over the images are printed per
severity, and the median over all images and severities (a median, because a call can pay a
one-off cost: Numba compiling ``glass_blur`` again for a new severity, a frost texture read
from disk the first time).
Reference, measured in the same run: the rest of ``make_corruptions``'s per-image work
(``load_image`` + ``encode_image`` JPEG q85 of the same images), so each corruption is also
given as a multiple of it.
"""
from __future__ import annotations

import argparse
import statistics
import os
import pathlib
import resource
import sys
import time
import zipfile

_REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO))

from data import corruptions, make_corruptions  # noqa: E402


def _cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn):
    w, c = time.perf_counter(), _cpu_seconds()
    out = fn()
    return out, time.perf_counter() - w, _cpu_seconds() - c


def main(argv=None):
    default = pathlib.Path(os.environ.get(
        "ASSEMBLE_DATA_DIR", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(default / "imagenette2-224"),
                   help="directory with val.zip (JPEGs)")
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--severities", default="1,3,5")
    p.add_argument("--corruptions", default=",".join(corruptions.CORRUPTIONS_19))
    a = p.parse_args(argv)
    severities = [int(s) for s in a.severities.split(",")]
    with zipfile.ZipFile(pathlib.Path(a.data) / "val.zip") as z:
        names = sorted(m for m in z.namelist() if m.lower().endswith((".jpg", ".jpeg")))
        step = len(names) // a.images
        blobs = [z.read(names[i * step]) for i in range(a.images)]

    # Reference: make_corruptions' own per-image work (load + resize/crop, encode JPEG q85).
    make_corruptions.encode_image(make_corruptions.load_image(blobs[0], 224), "jpeg")  # warm
    ref_wall, ref_cpu = [], []
    for _ in range(5):
        for b in blobs:
            _, w, c = _timed(lambda b=b: make_corruptions.encode_image(
                make_corruptions.load_image(b, 224), "jpeg"))
            ref_wall.append(w)
            ref_cpu.append(c)
    ref = statistics.median(ref_wall)
    images = [make_corruptions.load_image(b, 224) for b in blobs]
    print(f"{len(images)} images {images[0].shape} from {a.data}/val.zip; load average (1 min) "
          f"{os.getloadavg()[0]:.1f}")
    print(f"reference: load_image(224) + encode_image(jpeg q85): {ref * 1e3:.2f} ms wall "
          f"(median), {statistics.median(ref_cpu) * 1e3:.2f} ms CPU per image")
    print(f"\n{'corruption':18s} {'first call s':>12s} "
          + " ".join(f"{'sev ' + str(s) + ' wall ms min/med':>24s}" for s in severities)
          + f" {'wall ms med':>11s} {'CPU ms med':>10s} {'x ref':>7s}")
    t0 = time.time()
    load = [os.getloadavg()[0]]
    rows = []
    for name in a.corruptions.split(","):
        _, first, _ = _timed(lambda name=name: corruptions.corrupt(images[0], name, severities[0],
                                                                    seed=0, index=0))
        cells, cpu_all, wall_all = [], [], []
        for s in severities:
            walls = []
            for i, im in enumerate(images):
                _, w, c = _timed(lambda im=im, i=i, s=s: corruptions.corrupt(
                    im, name, s, seed=0, index=i + 1))
                walls.append(w)
                wall_all.append(w)
                cpu_all.append(c)
            cells.append(f"{min(walls) * 1e3:10.1f} / {statistics.median(walls) * 1e3:10.1f}")
        med_wall = statistics.median(wall_all)
        rows.append((name, med_wall))
        print(f"{name:18s} {first:12.2f} " + " ".join(f"{c:>24s}" for c in cells)
              + f" {med_wall * 1e3:11.1f} {statistics.median(cpu_all) * 1e3:10.1f}"
              f" {med_wall / ref:7.1f}", flush=True)
        load.append(os.getloadavg()[0])
    rows.sort(key=lambda r: r[1])
    print(f"\nmedian wall per image over the images and severities: fastest {rows[0][0]} "
          f"{rows[0][1] * 1e3:.1f} ms, slowest {rows[-1][0]} {rows[-1][1] * 1e3:.1f} ms; "
          f"all {len(rows)} corruptions x severities {a.severities}: "
          f"{sum(r[1] for r in rows) * len(severities):.1f} s per image")
    print(f"total {time.time() - t0:.0f} s; load average (1 min) {min(load):.1f}-{max(load):.1f}")


if __name__ == "__main__":
    main()
