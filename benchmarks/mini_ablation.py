r"""Mini-ablation of the paper's Table 7 (rows E0, E3, E6, E11) on real data, CPU- or GPU-sized.

    python benchmarks/mini_ablation.py --out runs/mini_ablation [--stages prepare,train,eval,report]
        [--rows E0,E3,E6,E11] [--seeds E0=0,1 E11=0,1 '*=0'] [--train_images 5000]
        [--test_images 2000] [--corrupt_images 500] [--severities 1,3,5] [--epochs 7] [--width 8]
        [--batch_size 64] [--plot docs/img/mini_ablation.png] [--tiny]
    KERAS_BACKEND=jax python benchmarks/mini_ablation.py --backend jax ...   # GPU, no TensorFlow

What it does (every stage skips work already done, so a killed run can be restarted):

1. ``prepare`` (needs TensorFlow and ``imagecorruptions``: run it on the CPU machine):
   balanced subsets of CIFAR-10 (``../shared/data/cifar10-jpeg``, JPEG bytes unchanged) written as
   ``OUT/data/{train,test}.zip`` (a ``zipdir`` source for the trainer), and corrupted copies of
   the first ``--corrupt_images`` test images with ``python -m data.make_corruptions`` (15
   ImageNet-C corruptions x ``--severities``, JPEG q85 as ImageNet-C) in ``OUT/corrupt``.
   For ``--backend jax`` also ``OUT/data.npz`` (``x_train, y_train, x_eval, y_eval``, decoded
   with PIL and normalized like ``data.preprocessing.normalize(..., "mean")``): the trainer's
   JAX path reads ``npz:FILE`` (no tf.data, no augmentation).
2. ``train``: the product's trainer, ``python -m official.train`` in a subprocess per run, with
   the row's paper recipe followed by the small-scale overrides
   (``official/configs/ablation/mini_cifar.cfg``; E11 also ``mini_E11.cfg``: reduced-CIFAR
   AutoAugment, online distillation from the E0 run of the same seed; under ``--backend jax``
   also ``mini_jax_gpu.cfg``). Every row gets the same epochs, batch and width.
3. ``eval``: restores each run (``official.checkpoints.restore_model``) and computes top-1 on the
   clean test subset and the top-1 error per corruption and severity on the corrupted images
   (decoded with PIL, normalized from the run's config; no TensorFlow needed).
4. ``report``: CE per corruption normalized by the E0 runs (mean over E0 seeds = 100: ``CE_c =
   sum_s E_s,c / sum_s E_s,c(E0)``, ``mCE = mean over the 15``), per-run and mean +- std per row,
   a Markdown table (``OUT/results.md``), ``OUT/results.json`` and a plot (``--plot``).

``--tiny``: 200 train / 100 test / 20 corrupted images, 1 severity, width 8, 1 epoch, rows E0
and E11 with one seed: an end-to-end check in a few minutes.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import subprocess
import sys
import time
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data.constants import CHANNEL_MEANS, IMAGENET_MEAN, IMAGENET_STD  # noqa: E402 (no TensorFlow)
from data.corruptions import CORRUPTIONS_15  # noqa: E402 (numpy only)

CIFAR = os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar10-jpeg")
ROW_NAMES = {  # models.TABLE7 / official/configs/E<k>.cfg (the reading of Table 7)
    "E0": "ResNet-50 baseline",
    "E3": "+ ResNet-D, label smoothing, mixup",
    "E6": "E3 + SK + DropBlock",
    "E11": "Assemble-ResNet-50: E6 + Big-Little + anti-alias + KD + AutoAugment",
}
CFG_DIR = os.path.join(ROOT, "official", "configs")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- prepare
def _members(zip_path):
    with zipfile.ZipFile(zip_path) as z:
        return sorted(n for n in z.namelist() if not n.endswith("/"))


def _write_subset(src_zip, dst_zip, names):
    tmp = dst_zip + ".tmp"
    with zipfile.ZipFile(src_zip) as z, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as out:
        for n in names:
            info = zipfile.ZipInfo(n, date_time=(1980, 1, 1, 0, 0, 0))
            out.writestr(info, z.read(n))
    os.replace(tmp, dst_zip)


def _balanced(names, per_class, rng=None):
    by_class = collections.defaultdict(list)
    for n in names:
        by_class[n.split("/")[1]].append(n)
    out = []
    for k in sorted(by_class):
        items = by_class[k]
        if rng is not None:
            items = [items[i] for i in rng.permutation(len(items))]
        if len(items) < per_class:
            raise SystemExit(f"class {k} has {len(items)} images < {per_class}")
        out += sorted(items[:per_class])
    return out


def prepare(a):
    data_dir = os.path.join(a.out, "data")
    os.makedirs(data_dir, exist_ok=True)
    train_zip, test_zip = os.path.join(data_dir, "train.zip"), os.path.join(data_dir, "test.zip")
    csv = os.path.join(a.cifar, "classes.csv")
    if not os.path.exists(train_zip):
        names = _balanced(_members(os.path.join(a.cifar, "train.zip")), a.train_images // 10,
                          np.random.default_rng(a.data_seed))
        _write_subset(os.path.join(a.cifar, "train.zip"), train_zip, names)
    if not os.path.exists(test_zip):
        _write_subset(os.path.join(a.cifar, "test.zip"), test_zip,
                      _balanced(_members(os.path.join(a.cifar, "test.zip")), a.test_images // 10))
    if os.path.exists(csv) and not os.path.exists(os.path.join(data_dir, "classes.csv")):
        with open(csv) as f, open(os.path.join(data_dir, "classes.csv"), "w") as g:
            g.write(f.read())
    log(f"data: {a.train_images} train / {a.test_images} test images in {data_dir}")
    # corruption source: the first corrupt_images // 10 test images of each class
    csrc = os.path.join(a.out, "corrupt_src")
    os.makedirs(csrc, exist_ok=True)
    csrc_zip = os.path.join(csrc, "test.zip")
    if not os.path.exists(csrc_zip):
        _write_subset(test_zip, csrc_zip, _balanced(_members(test_zip), a.corrupt_images // 10))
        if os.path.exists(csv):
            with open(csv) as f, open(os.path.join(csrc, "classes.csv"), "w") as g:
                g.write(f.read())
    cdir = os.path.join(a.out, "corrupt")
    done = os.path.join(cdir, ".done")
    if not os.path.exists(done):
        t0 = time.time()
        cmd = [sys.executable, "-m", "data.make_corruptions", "--input", csrc_zip, "--output", cdir,
               "--seed", "0", "--corruptions", "all15", "--severities", *[str(s) for s in a.severities],
               "--image_size", "32", "--format", "zip", "--num_workers", str(a.workers), "--no_progress"]
        log("corruptions: " + " ".join(cmd))
        subprocess.run(cmd, cwd=ROOT, check=True)
        open(done, "w").close()
        log(f"corruptions written in {time.time() - t0:.0f}s")
    if a.backend == "jax":
        npz = os.path.join(a.out, "data.npz")
        if not os.path.exists(npz):
            xtr, ytr, _ = _decode_zip(train_zip)
            xte, yte, _ = _decode_zip(test_zip)
            np.savez(npz + ".tmp.npz", x_train=_normalize(xtr, "mean"), y_train=ytr,
                     x_eval=_normalize(xte, "mean"), y_eval=yte)
            os.replace(npz + ".tmp.npz", npz)
            log(f"wrote {npz}")


# ----------------------------------------------------------------------------- decode
def _decode_zip(path, class_folders=None):
    """uint8 [N, H, W, 3], int32 labels (index of the class folder in sorted order), names."""
    from PIL import Image
    names = _members(path)
    folders = class_folders or sorted({n.split("/")[-2] for n in names})
    xs, ys = [], []
    with zipfile.ZipFile(path) as z:
        for n in names:
            with Image.open(io.BytesIO(z.read(n))) as im:
                xs.append(np.asarray(im.convert("RGB")))
            ys.append(folders.index(n.split("/")[-2]))
    return np.stack(xs), np.asarray(ys, np.int32), names


def _normalize(x, normalization):
    x = x.astype(np.float32)
    if normalization == "mean":
        return x - np.asarray(CHANNEL_MEANS, np.float32)
    if normalization == "mean_std":
        return (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    raise ValueError(f"unknown normalization {normalization!r}")


# ----------------------------------------------------------------------------- train
def run_list(a):
    runs = []
    for row in a.rows:
        for seed in a.seeds.get(row, a.seeds.get("*", [0])):
            runs.append((row, seed))
    # E0 first: E11 distills from the E0 run of the same seed
    runs.sort(key=lambda r: (r[0] != "E0", r[1], int(r[0][1:])))
    return runs


def train_cmd(a, row, seed):
    rd = os.path.join(a.out, "runs", f"{row}_s{seed}")
    cmd = [sys.executable, "-m", "official.train", f"--flagfile={os.path.join(CFG_DIR, row + '.cfg')}",
           f"--flagfile={os.path.join(CFG_DIR, 'ablation', 'mini_cifar.cfg')}"]
    if row == "E11":
        cmd.append(f"--flagfile={os.path.join(CFG_DIR, 'ablation', 'mini_E11.cfg')}")
    if a.backend == "jax":
        cmd.append(f"--flagfile={os.path.join(CFG_DIR, 'ablation', 'mini_jax_gpu.cfg')}")
    cmd += [f"--recipe=mini_{row}", f"--model_dir={rd}", f"--seed={seed}", f"--data_seed={seed}",
            f"--epochs={a.epochs}",
            "--model_overrides=" + json.dumps({"stem": "cifar", "width": a.width, "bn_momentum": 0.9})]
    cmd.append("--data=" + (f"npz:{os.path.join(a.out, 'data.npz')}" if a.backend == "jax"
                            else os.path.join(a.out, "data")))
    if a.batch_size:
        cmd.append(f"--batch_size={a.batch_size}")
    if a.learning_rate:
        cmd.append(f"--base_learning_rate={a.learning_rate}")
    if row == "E11":
        cmd.append(f"--teacher={os.path.join(a.out, 'runs', f'E0_s{seed}')}")
    return rd, cmd + list(a.train_args)


def _finished(rd):
    res = os.path.join(rd, "results.json")
    return os.path.exists(res) and bool(json.load(open(res)).get("finished"))


def _needs(row, seed):
    """Runs that must finish first: E11 distills online from the E0 run of the same seed."""
    return [("E0", seed)] if row == "E11" else []


def train(a):
    """Trains every run, ``--parallel`` at a time (a GPU holds several of these small runs at
    once), starting a run only when the runs it needs (E11: its E0 teacher) have finished."""
    env = dict(os.environ, KERAS_BACKEND="jax" if a.backend == "jax" else "tensorflow",
               TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    todo, running, done = [], {}, set()
    for row, seed in run_list(a):
        rd, _ = train_cmd(a, row, seed)
        if _finished(rd):
            log(f"{row} seed {seed}: already trained")
            done.add((row, seed))
        else:
            todo.append((row, seed))
    planned = set(todo) | done
    while todo or running:
        for key in list(todo):
            if len(running) >= max(1, a.parallel):
                break
            if any(n in planned and n not in done for n in _needs(*key)):
                continue
            rd, cmd = train_cmd(a, *key)
            os.makedirs(rd, exist_ok=True)
            log(f"train {key[0]} seed {key[1]}: " + " ".join(cmd))
            f = open(os.path.join(rd, "train.log"), "a")
            running[key] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT),
                            f, rd, time.time())
            todo.remove(key)
        if not running:
            raise SystemExit(f"cannot start {todo}: the runs they need are not planned")
        time.sleep(0.5)
        for key, (p, f, rd, t0) in list(running.items()):
            if p.poll() is None:
                continue
            f.close()
            del running[key]
            if p.returncode:
                for q, g, _, _ in running.values():
                    q.kill()
                    g.close()
                raise SystemExit(f"training {key[0]} seed {key[1]} failed (exit {p.returncode}); "
                                 f"see {rd}/train.log")
            done.add(key)
            r = json.load(open(os.path.join(rd, "results.json")))
            log(f"  {key[0]} seed {key[1]} done in {time.time() - t0:.0f}s: {r['step']} steps, eval top-1 "
                f"{r['eval_top1']:.4f}, {r.get('images_per_sec', 0):.0f} img/s")


# ----------------------------------------------------------------------------- eval
def _corrupt_sets(a):
    cdir = os.path.join(a.out, "corrupt")
    sets = {}
    for c in CORRUPTIONS_15:
        for s in a.severities:
            p = os.path.join(cdir, c, str(s), "test.zip")
            if not os.path.exists(p):
                p = os.path.join(cdir, c, str(s), "test")
            sets[(c, s)] = p
    return sets


def _load_eval_arrays(a):
    cache = os.path.join(a.out, "eval_arrays.npz")
    if os.path.exists(cache):
        z = np.load(cache)
        return {k: z[k] for k in z.files}
    out = {}
    x, y, _ = _decode_zip(os.path.join(a.out, "data", "test.zip"))
    out["clean_x"], out["clean_y"] = x, y
    for (c, s), p in _corrupt_sets(a).items():
        x, y, _ = _decode_zip(p)
        out[f"{c}/{s}_x"], out[f"{c}/{s}_y"] = x, y
    np.savez(cache + ".tmp.npz", **out)
    os.replace(cache + ".tmp.npz", cache)
    return out


def _eval_parallel(a):
    """One ``--stages eval --runs ROW_sS`` subprocess per run, ``--parallel`` at a time."""
    pending = [f"{r}_s{s}" for r, s in run_list(a)
               if not os.path.exists(os.path.join(a.out, "runs", f"{r}_s{s}", "mini_eval.json"))]
    if not pending:
        return
    t0 = time.time()
    _load_eval_arrays(a)  # decoded once, cached for the subprocesses
    log(f"eval arrays ready ({time.time() - t0:.0f}s); evaluating {pending}, {a.parallel} at a time")
    base = [sys.executable, os.path.abspath(__file__), "--out", a.out, "--stages", "eval",
            "--backend", a.backend, "--severities", ",".join(map(str, a.severities)), "--parallel", "1",
            "--rows", ",".join(a.rows), "--seeds", *[f"{k}={','.join(map(str, v))}" for k, v in a.seeds.items()]]
    running = []
    while pending or running:
        while pending and len(running) < a.parallel:
            run = pending.pop(0)
            running.append((run, subprocess.Popen(base + ["--runs", run], cwd=ROOT)))
        time.sleep(0.5)
        for item in list(running):
            if item[1].poll() is not None:
                running.remove(item)
                if item[1].returncode:
                    raise SystemExit(f"evaluating {item[0]} failed (exit {item[1].returncode})")


def evaluate(a):
    if a.parallel > 1 and not a.runs:
        return _eval_parallel(a)
    import keras
    from official import checkpoints as ckpt_lib
    arrays = None
    for row, seed in run_list(a):
        rd = os.path.join(a.out, "runs", f"{row}_s{seed}")
        out_path = os.path.join(rd, "mini_eval.json")
        if os.path.exists(out_path) or (a.runs and f"{row}_s{seed}" not in a.runs):
            continue
        if arrays is None:
            t0 = time.time()
            arrays = _load_eval_arrays(a)
            log(f"eval arrays: {len(arrays) // 2} sets, decoded in {time.time() - t0:.0f}s")
        t0 = time.time()
        model, cfg = ckpt_lib.restore_model(rd, "latest")
        pred_fn = _predictor(model, keras)
        errors = {}

        def top1(key):
            x = _normalize(arrays[key + "_x"], cfg.data.normalization)
            return float(np.mean(pred_fn(x) == arrays[key + "_y"]))
        clean = top1("clean")
        for c in CORRUPTIONS_15:
            errors[c] = [1.0 - top1(f"{c}/{s}") for s in a.severities]
        res = json.load(open(os.path.join(rd, "results.json")))
        out = dict(row=row, seed=seed, top1=clean, trainer_eval_top1=res.get("eval_top1"),
                   errors=errors, severities=a.severities, wall_s_train=res.get("wall_s"),
                   train_images_per_sec=res.get("images_per_sec"), steps=res.get("step"),
                   eval_wall_s=time.time() - t0)
        with open(out_path, "w") as f:
            json.dump(out, f, indent=1)
        log(f"eval {row} seed {seed}: clean top-1 {clean:.4f} (trainer {res.get('eval_top1')}), "
            f"mean corruption error {np.mean([np.mean(v) for v in errors.values()]):.4f} "
            f"({time.time() - t0:.0f}s)")
        del model
        keras.backend.clear_session()


def _predictor(model, keras):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def fwd(x):
            return jax.numpy.argmax(model.stateless_call(tv, ntv, x, training=False)[0], -1)
    else:
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def fwd(x):
            return tf.argmax(model(x, training=False), -1)

    def predict(x, bs=500):
        return np.concatenate([np.asarray(fwd(x[i:i + bs])) for i in range(0, len(x), bs)])
    return predict


# ----------------------------------------------------------------------------- report
def normalize_by_e0(evals):
    """Adds ``ce`` (per corruption, E0 = 100), ``mce`` and ``mean_corruption_error`` (a
    fraction, unnormalized) to each evaluated run ``{"row", "errors": {corruption: [error per
    severity]}}``: ``CE_c = 100 sum_s E_s,c / sum_s E_s,c(E0)`` with E0 the mean over its runs.
    Also used by benchmarks/imagewoof_ablation.py."""
    base = [e for e in evals if e["row"] == "E0"]
    if not base:
        raise SystemExit("no evaluated E0 run: the mCE baseline is missing")
    base_sum = {c: np.mean([np.sum(e["errors"][c]) for e in base]) for c in CORRUPTIONS_15}
    for e in evals:
        e["ce"] = {c: 100.0 * np.sum(e["errors"][c]) / base_sum[c] for c in CORRUPTIONS_15}
        e["mce"] = float(np.mean(list(e["ce"].values())))
        e["mean_corruption_error"] = float(np.mean([np.mean(v) for v in e["errors"].values()]))


def parse_seeds(items):
    """``["E0=0,1", "*=0"]`` -> ``{"E0": [0, 1], "*": [0]}`` (``*``: the other rows)."""
    seeds = {}
    for item in items:
        k, _, v = item.partition("=")
        seeds[k] = [int(s) for s in v.split(",")]
    return seeds


def report(a):
    evals = []
    for row, seed in run_list(a):
        p = os.path.join(a.out, "runs", f"{row}_s{seed}", "mini_eval.json")
        if os.path.exists(p):
            evals.append(json.load(open(p)))
    normalize_by_e0(evals)
    rows = []
    for row in a.rows:
        es = [e for e in evals if e["row"] == row]
        if not es:
            continue
        t1 = np.array([e["top1"] for e in es]) * 100
        mce = np.array([e["mce"] for e in es])
        merr = np.array([e["mean_corruption_error"] for e in es]) * 100
        rows.append(dict(row=row, n=len(es), seeds=[e["seed"] for e in es], top1=t1.tolist(),
                         top1_mean=float(t1.mean()), top1_std=float(t1.std(ddof=1)) if len(es) > 1 else None,
                         mce=mce.tolist(), mce_mean=float(mce.mean()),
                         mce_std=float(mce.std(ddof=1)) if len(es) > 1 else None,
                         mean_corruption_error=float(merr.mean()),
                         train_s=float(np.mean([e["wall_s_train"] or 0 for e in es])),
                         train_ips=float(np.mean([e["train_images_per_sec"] or 0 for e in es]))))

    def pm(m, s):
        return f"{m:.1f}" + (f" ± {s:.1f}" if s is not None else "")
    lines = ["| row | what | seeds | top-1 % (mean ± sd) | per seed | mCE (E0 = 100) | per seed | "
             "mean corruption error % | train s/run |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['row']} | {ROW_NAMES.get(r['row'], '')} | {r['n']} | "
                     f"{pm(r['top1_mean'], r['top1_std'])} | {', '.join(f'{v:.1f}' for v in r['top1'])} | "
                     f"{pm(r['mce_mean'], r['mce_std'])} | {', '.join(f'{v:.1f}' for v in r['mce'])} | "
                     f"{r['mean_corruption_error']:.1f} | {r['train_s']:.0f} |")
    ce_lines = ["| corruption | " + " | ".join(r["row"] for r in rows) + " |",
                "|---|" + "---|" * len(rows)]
    for c in CORRUPTIONS_15:
        vals = [np.mean([e["ce"][c] for e in evals if e["row"] == r["row"]]) for r in rows]
        ce_lines.append(f"| {c} | " + " | ".join(f"{v:.0f}" for v in vals) + " |")
    md = "\n".join(lines) + "\n\nCE per corruption (mean over seeds, E0 = 100):\n\n" + "\n".join(ce_lines) + "\n"
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(dict(rows=rows, runs=evals, args={k: v for k, v in vars(a).items()
                                                      if isinstance(v, (int, float, str, list, dict))}),
                  f, indent=1)
    print(md)
    if a.plot:
        plot(rows, a.plot, a)


def plot(rows, path, a):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 2.8), dpi=100)
    xs = np.arange(len(rows))
    for ax, key, label in ((axes[0], "top1", "clean top-1 (%)"), (axes[1], "mce", "mCE (E0 = 100)")):
        means = [r[key + "_mean"] for r in rows]
        ax.bar(xs, means, color="#9ecae1", width=0.6)
        for i, r in enumerate(rows):
            ax.plot([i] * len(r[key]), r[key], "o", color="#08519c", ms=4)
        ax.set_xticks(xs, [r["row"] for r in rows])
        ax.set_ylabel(label)
        lo = min(min(r[key]) for r in rows)
        hi = max(max(r[key]) for r in rows)
        ax.set_ylim(max(0, lo - 0.15 * (hi - lo + 1) - 2), hi + 0.15 * (hi - lo + 1) + 1)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Mini-ablation, CIFAR-10 32px: {a.train_images} train imgs, {a.epochs} epochs, "
                 f"width {a.width} (points: seeds)", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    log(f"plot: {path}")


# ----------------------------------------------------------------------------- CLI
def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "mini_ablation"))
    p.add_argument("--cifar", default=CIFAR, help="cifar10-jpeg folder (train.zip, test.zip)")
    p.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow")
    p.add_argument("--stages", default="prepare,train,eval,report")
    p.add_argument("--rows", default="E0,E3,E6,E11")
    p.add_argument("--seeds", nargs="*", default=["E0=0,1", "E11=0,1", "*=0"],
                   help="ROW=s1,s2 (ROW '*' = the other rows)")
    p.add_argument("--train_images", type=int, default=5000)
    p.add_argument("--test_images", type=int, default=2000)
    p.add_argument("--corrupt_images", type=int, default=500)
    p.add_argument("--severities", default="1,3,5")
    p.add_argument("--epochs", type=float, default=7)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=0, help="0: the recipe's (mini_cifar.cfg)")
    p.add_argument("--learning_rate", type=float, default=0.0, help="0: the recipe's")
    p.add_argument("--data_seed", type=int, default=0, help="seed of the training subset")
    p.add_argument("--workers", type=int, default=2, help="make_corruptions processes")
    p.add_argument("--plot", default="")
    p.add_argument("--parallel", type=int, default=1,
                   help="runs trained / evaluated at once (GPU: several small runs share the device)")
    p.add_argument("--runs", default="", help="eval only these runs (ROW_sSEED,...)")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("train_args", nargs="*", help="after --: extra trainer flags for every run")
    a = p.parse_args(argv)
    if a.tiny:
        a.train_images, a.test_images, a.corrupt_images = 200, 100, 20
        a.severities, a.epochs, a.width = "3", 1, 8
        a.rows = "E0,E11"
        a.seeds = ["*=0"]
        a.batch_size = a.batch_size or 32
    a.rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    a.severities = [int(s) for s in str(a.severities).split(",")]
    a.seeds = parse_seeds(a.seeds)
    a.stages = [s.strip() for s in a.stages.split(",")]
    a.runs = [r for r in a.runs.split(",") if r]
    return a


def main(argv=None):
    a = parse(argv)
    os.environ["KERAS_BACKEND"] = a.backend  # this process (eval) and the trainer subprocesses
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    for stage in ("prepare", "train", "eval", "report"):
        if stage in a.stages:
            ts = time.time()
            log(f"stage {stage}")
            {"prepare": prepare, "train": train, "eval": evaluate, "report": report}[stage](a)
            log(f"stage {stage} done in {time.time() - ts:.0f}s")
    log(f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
