r"""Table 7 rows on the complete Imagewoof training split, CPU-sized (issue 13, "Evidence").

    python benchmarks/imagewoof_ablation.py --out runs/imagewoof_ablation \
        [--rows E0,E11,E3,E6] [--seeds E0=0,1,2 E11=0,1,2 '*=0,1'] [--lrs 0.1,0.2] \
        [--corrupt_per_class 100] [--tiny]

One command, resumable (every stage skips work already done; kill it and start it again), run
in the background (``nohup ... &``). Everything goes through the product's own programs:
``python -m official.train`` (each row's recipe ``official/configs/E<k>.cfg`` followed by the
scale-only ``official/configs/ablation/imagewoof_cpu.cfg``), ``python -m data.make_corruptions``,
``python -m data.build_tfrecords`` and ``python -m official.evaluate``.

Stages, in this order:

1. ``prepare``: ``OUT/data/train_flat.zip`` (the training images as ``<class>/<image>``, a flat
   tree from which the trainer carves a stratified dev split, ``--val_fraction=0.1``), and
   Imagewoof-C: ``--corrupt_per_class`` (50) validation images per class (the first ones by name),
   15 ImageNet-C corruptions x severities 1-5, seed 0, at the training size (64 px crops, as
   ImageNet-C is made at the 224 px crop), in ``OUT/corrupt``.
2. ``dev``: E0 on the flat training tree for each ``--lrs`` value, evaluated on the dev split
   after every epoch (the learning curves). The learning rate with the best final dev top-1 is
   the one every final run uses (``OUT/dev_choice.json``). The validation split is not read.
3. ``final``: each row and seed trained on the whole training split, evaluated once on the
   validation split (the trainer's end-of-run evaluation), then ``official.evaluate`` on the
   3,629 validation images and on Imagewoof-C. E0 runs first: E11 distills offline (as the
   paper does) from logits of a teacher this project trains, the ensemble of the E0 runs (mean
   logits of all E0 seeds, eval preprocessing), written into TFRecords by
   ``data.build_tfrecords --teacher_logits``.
4. ``report``: mCE normalized by E0 (mean over E0 seeds = 100), the unnormalized mean corruption
   error, top-1 mean +- sd and every seed, images/s, as ``OUT/results.{md,json}``; plots of the
   dev learning curves and of CE per corruption (``--plot_dir``).

``--tiny``: a few minutes end to end (2 classes' worth of steps, 1 epoch, 5 images per class
corrupted, severities 1 and 5): checks the pipeline, not the method.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import time
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mini_ablation import (CORRUPTIONS_15, _members, _write_subset, log,  # noqa: E402
                           normalize_by_e0, parse_seeds)

DATA_DIR = os.environ.get("ASSEMBLE_DATA_DIR", os.path.join(os.path.dirname(ROOT), "shared", "data"))
WOOF = os.path.join(DATA_DIR, "imagewoof2-128")
CFG_DIR = os.path.join(ROOT, "official", "configs")
SCALE_CFG = os.path.join(CFG_DIR, "ablation", "imagewoof_cpu.cfg")
ROW_NAMES = {
    "E0": "ResNet-50 baseline",
    "E3": "+ ResNet-D, label smoothing, mixup",
    "E6": "E3 + SK + DropBlock",
    "E7": "E6 + offline KD",
    "E8": "E7 at 600 epochs (Table 7; same recipe here at equal epochs)",
    "E9": "E8 + Big-Little",
    "E10": "E9 + anti-alias",
    "E11": "E6 + Big-Little + anti-alias + offline KD + AutoAugment (Assemble-ResNet-50)",
}


def _env():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run(cmd, log_path=None):
    log(" ".join(cmd))
    t0 = time.time()
    if log_path:
        with open(log_path, "a") as f:
            p = subprocess.run(cmd, cwd=ROOT, env=_env(), stdout=f, stderr=subprocess.STDOUT)
    else:
        p = subprocess.run(cmd, cwd=ROOT, env=_env())
    if p.returncode:
        raise SystemExit(f"failed (exit {p.returncode}): {' '.join(cmd)}"
                         + (f"; see {log_path}" if log_path else ""))
    return time.time() - t0


def _finished(rd):
    res = os.path.join(rd, "results.json")
    return os.path.exists(res) and bool(json.load(open(res)).get("finished"))


# ----------------------------------------------------------------------------- prepare
def prepare(a):
    data = os.path.join(a.out, "data")
    os.makedirs(data, exist_ok=True)
    flat = os.path.join(data, "train_flat.zip")
    if not os.path.exists(flat):
        tmp = flat + ".tmp"
        with zipfile.ZipFile(os.path.join(a.woof, "train.zip")) as z, \
                zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as out:
            for n in _members(os.path.join(a.woof, "train.zip")):
                info = zipfile.ZipInfo(n.split("/", 1)[1], date_time=(1980, 1, 1, 0, 0, 0))
                out.writestr(info, z.read(n))
        os.replace(tmp, flat)
        log(f"wrote {flat}")
    csrc = os.path.join(data, "corrupt_src")
    os.makedirs(csrc, exist_ok=True)
    csrc_zip = os.path.join(csrc, "val.zip")
    if not os.path.exists(csrc_zip):
        by_class = {}
        for n in _members(os.path.join(a.woof, "val.zip")):
            by_class.setdefault(n.split("/")[1], []).append(n)
        names = [n for k in sorted(by_class) for n in sorted(by_class[k])[:a.corrupt_per_class]]
        _write_subset(os.path.join(a.woof, "val.zip"), csrc_zip, names)
        with open(os.path.join(a.woof, "classes.csv")) as f, \
                open(os.path.join(csrc, "classes.csv"), "w") as g:
            g.write(f.read())
    cdir = os.path.join(a.out, "corrupt")
    if not os.path.exists(os.path.join(cdir, ".done")):
        t = _run([sys.executable, "-m", "data.make_corruptions", "--input", csrc_zip,
                  "--output", cdir, "--seed", "0", "--corruptions", "all15",
                  "--severities", *map(str, a.severities), "--image_size", str(a.image_size),
                  "--format", "zip", "--num_workers", "2", "--no_progress"])
        open(os.path.join(cdir, ".done"), "w").close()
        log(f"Imagewoof-C written in {t:.0f}s")


# ----------------------------------------------------------------------------- train
def _train_cmd(a, row, rd, data, extra):
    cmd = [sys.executable, "-m", "official.train", f"--flagfile={os.path.join(CFG_DIR, row + '.cfg')}",
           f"--flagfile={SCALE_CFG}", f"--model_dir={rd}", f"--data={data}", f"--recipe=woof_{row}"]
    if a.tiny:
        cmd += ["--epochs=1", "--batch_size=16", "--warmup_epochs=0"]
    return cmd + list(extra) + list(a.train_args)


def _distills(a, row):
    """Whether the run distills offline (E7-E12, unless the extra trainer flags after `--` set
    another --distillation; the last one wins, as in absl): it then reads the teacher TFRecords."""
    with open(os.path.join(CFG_DIR, row + ".cfg")) as f:
        flags = [line.strip() for line in f] + list(a.train_args)
    chosen = [f for f in flags if f.startswith("--distillation=")]
    return bool(chosen) and chosen[-1] == "--distillation=offline"


def dev(a):
    """E0 on the flat training tree (dev split = 10 % per class), one run per learning rate,
    evaluated every epoch. Returns the chosen learning rate."""
    choice_path = os.path.join(a.out, "dev_choice.json")
    if os.path.exists(choice_path):
        return json.load(open(choice_path))["learning_rate"]
    results = {}
    for lr in a.lrs:
        rd = os.path.join(a.out, "dev", f"E0_lr{lr:g}")
        if not _finished(rd):
            os.makedirs(rd, exist_ok=True)
            _run(_train_cmd(a, "E0", rd, os.path.join(a.out, "data", "train_flat.zip"),
                            [f"--base_learning_rate={lr}", "--val_fraction=0.1", "--split_seed=0",
                             "--seed=0", "--data_seed=0", "--eval_every_epochs=1"]),
                 os.path.join(rd, "train.log"))
        r = json.load(open(os.path.join(rd, "results.json")))
        results[lr] = dict(final_dev_top1=r["eval_top1"], curve=curve(rd), run=rd)
        log(f"dev E0 lr {lr:g}: final dev top-1 {r['eval_top1']:.4f}")
    best = max(results, key=lambda lr: results[lr]["final_dev_top1"])
    with open(choice_path, "w") as f:
        json.dump(dict(learning_rate=best, candidates={f"{k:g}": v for k, v in results.items()},
                       rule="best final top-1 on the dev split (10 % of each class of the "
                            "training images, --split_seed=0)"), f, indent=1)
    log(f"chosen learning rate {best:g}")
    return best


def curve(rd):
    """[(epoch, eval top-1)] from the run's TensorBoard eval events (read with TensorFlow's
    own event reader; no tensorboard package)."""
    import tensorflow as tf
    cfg = json.load(open(os.path.join(rd, "run_config.json")))
    total = json.load(open(os.path.join(rd, "results.json")))["total_steps"]
    steps_per_epoch = total / cfg["optimization"]["epochs"] if cfg["optimization"]["epochs"] else None
    points = {}
    for path in sorted(glob.glob(os.path.join(rd, "eval", "events.*"))):
        for ev in tf.compat.v1.train.summary_iterator(path):
            for v in ev.summary.value:
                if v.tag in ("top1", "eval/top1", "eval_top1"):
                    points[int(ev.step)] = float(tf.make_ndarray(v.tensor))
    return [[s / steps_per_epoch if steps_per_epoch else s, t] for s, t in sorted(points.items())]


def runs(a):
    out = []
    for row in a.rows:
        for seed in a.seeds.get(row, a.seeds.get("*", [0])):
            out.append((row, seed))
    # E0 first (the E11 teacher is the E0 ensemble), then E11, then the other rows seed by seed,
    # so a run stopped early has the headline comparison first.
    out.sort(key=lambda r: (r[0] != "E0", r[0] != "E11", r[1], a.rows.index(r[0])))
    return out


def teacher_tfrecords(a):
    """TFRecords of the training and validation images with the E0 ensemble's logits."""
    out = os.path.join(a.out, "data", "tfrecords_kd")
    if os.path.exists(os.path.join(out, "summary.json")):
        return out
    e0 = [os.path.join(a.out, "runs", f"E0_s{s}") for s in a.seeds.get("E0", [])]
    missing = [rd for rd in e0 if not _finished(rd)]
    if not e0 or missing:
        raise SystemExit(f"the E11 teacher needs the E0 runs {missing or 'E0'} first")
    csv_path = os.path.join(a.out, "data", "teacher_logits.csv")
    os.makedirs(os.path.dirname(csv_path), exist_ok=True)  # --stages final without prepare
    if not os.path.exists(csv_path):
        t0 = time.time()
        import keras
        import tensorflow as tf
        from data import preprocessing
        from official import checkpoints as ckpt_lib
        names, images = [], {}
        for split in ("train", "val"):
            with zipfile.ZipFile(os.path.join(a.woof, f"{split}.zip")) as z:
                for n in _members(os.path.join(a.woof, f"{split}.zip")):
                    names.append(n)
                    images[n] = z.read(n)
        total = None
        for rd in e0:
            model, cfg = ckpt_lib.restore_model(rd, "latest")

            @tf.function(reduce_retracing=True)
            def fwd(x):
                return model(x, training=False)

            def prep(b):
                img = preprocessing.preprocess_for_eval(b, cfg.model.image_size,
                                                        cfg.data.eval_preprocess)
                return preprocessing.normalize(img, cfg.data.normalization)
            ds = tf.data.Dataset.from_tensor_slices([images[n] for n in names]).map(
                prep, num_parallel_calls=2).batch(256)
            logits = np.concatenate([fwd(x).numpy() for x in ds])
            total = logits if total is None else total + logits
            del model
            keras.backend.clear_session()
        mean = total / len(e0)
        with open(csv_path + ".tmp", "w", newline="") as f:
            w = csv.writer(f)
            for n, row in zip(names, mean):
                w.writerow([n] + [f"{v:.6g}" for v in row])
        os.replace(csv_path + ".tmp", csv_path)
        train_acc = np.mean([np.argmax(r) == sorted({m.split('/')[1] for m in names}).index(n.split('/')[1])
                             for n, r in zip(names, mean) if n.startswith("train/")])
        log(f"teacher logits (E0 ensemble of {len(e0)}) in {time.time() - t0:.0f}s; "
            f"teacher top-1 on the training images {train_acc:.4f}")
    _run([sys.executable, "-m", "data.build_tfrecords", "--input", a.woof, "--output", out + ".tmp",
          "--num_shards", "4", "--teacher_logits", csv_path, "--no_progress"])
    os.replace(out + ".tmp", out)
    return out


def final(a, lr):
    for row, seed in runs(a):
        rd = os.path.join(a.out, "runs", f"{row}_s{seed}")
        if not _finished(rd):
            data = teacher_tfrecords(a) if _distills(a, row) else a.woof
            os.makedirs(rd, exist_ok=True)
            t = _run(_train_cmd(a, row, rd, data, [f"--base_learning_rate={lr}", f"--seed={seed}",
                                                    f"--data_seed={seed}"]),
                     os.path.join(rd, "train.log"))
            r = json.load(open(os.path.join(rd, "results.json")))
            log(f"{row} seed {seed}: trained in {t:.0f}s, val top-1 {r['eval_top1']:.4f}, "
                f"{r.get('images_per_sec', 0):.0f} img/s")
        evaluate(a, rd)


def evaluate(a, rd):
    out = os.path.join(rd, "woof_eval")
    if os.path.exists(os.path.join(out, "eval-val.json")):
        return
    sev = ",".join(map(str, a.severities))
    _run([sys.executable, "-m", "official.evaluate", f"--model_dir={rd}", f"--data={a.woof}",
          "--split=val", f"--corruption_dir={os.path.join(a.out, 'corrupt')}", "--corruptions=15",
          f"--severities={sev}", "--no_plots", "--no_progress", f"--output_dir={out}"],
         os.path.join(rd, "evaluate.log"))
    r = json.load(open(os.path.join(out, "eval-val.json")))
    log(f"evaluated {rd}: top-1 {r['top1']:.4f}")


# ----------------------------------------------------------------------------- report
def report(a):
    evals = []
    for row, seed in runs(a):
        rd = os.path.join(a.out, "runs", f"{row}_s{seed}")
        p = os.path.join(rd, "woof_eval", "eval-val.json")
        if not os.path.exists(p):
            continue
        top = json.load(open(p))
        e = dict(top["details"], top1=top["top1"], images_per_second=top.get("images_per_second"))
        res = json.load(open(os.path.join(rd, "results.json")))
        evals.append(dict(row=row, seed=seed, top1=e["top1"], trainer_val_top1=res["eval_top1"],
                          errors=e["corruptions"]["errors"], num_corrupted=e["corruptions"]["num_examples"],
                          num_val=e["num_examples"], train_images_per_sec=res.get("images_per_sec"),
                          train_wall_s=res.get("wall_s"), steps=res.get("step"),
                          inference_images_per_sec=e.get("images_per_second")))
    normalize_by_e0(evals)
    for e in evals:
        e["mean_corruption_error"] *= 100.0  # percent in this report
    rows = []
    for row in a.rows:
        es = [e for e in evals if e["row"] == row]
        if not es:
            continue

        def stats(key, scale=1.0):
            v = np.array([e[key] for e in es], float) * scale
            return v.tolist(), float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)
        t1, t1m, t1s = stats("top1", 100)
        mce, mcem, mces = stats("mce")
        mer, merm, mers = stats("mean_corruption_error")
        rows.append(dict(row=row, what=ROW_NAMES.get(row, ""), seeds=[e["seed"] for e in es],
                         top1=t1, top1_mean=t1m, top1_sd=t1s, mce=mce, mce_mean=mcem, mce_sd=mces,
                         mean_corruption_error=mer, mean_corruption_error_mean=merm,
                         mean_corruption_error_sd=mers,
                         train_images_per_sec=float(np.mean([e["train_images_per_sec"] or 0 for e in es])),
                         inference_images_per_sec=float(np.mean([e["inference_images_per_sec"] or 0
                                                                 for e in es]))))

    def pm(m, s):
        return f"{m:.1f}" + (f" ± {s:.1f}" if s is not None else "")
    lines = ["| row | what | seeds | top-1 % | per seed | mCE (E0 = 100) | per seed | "
             "mean corruption error % | train img/s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['what']} | {len(r['seeds'])} | {pm(r['top1_mean'], r['top1_sd'])} | "
                     f"{', '.join(f'{v:.1f}' for v in r['top1'])} | {pm(r['mce_mean'], r['mce_sd'])} | "
                     f"{', '.join(f'{v:.1f}' for v in r['mce'])} | "
                     f"{pm(r['mean_corruption_error_mean'], r['mean_corruption_error_sd'])} | "
                     f"{r['train_images_per_sec']:.0f} |")
    ce_lines = ["| corruption | " + " | ".join(r["row"] for r in rows) + " |", "|---|" + "---|" * len(rows)]
    for c in CORRUPTIONS_15:
        vals = [np.mean([e["ce"][c] for e in evals if e["row"] == r["row"]]) for r in rows]
        ce_lines.append(f"| {c} | " + " | ".join(f"{v:.0f}" for v in vals) + " |")
    dev_choice = json.load(open(os.path.join(a.out, "dev_choice.json")))
    md = ("\n".join(lines) + "\n\nCE per corruption (mean over seeds, E0 = 100):\n\n"
          + "\n".join(ce_lines) + "\n\nLearning rate chosen on the dev split: "
          f"{dev_choice['learning_rate']:g} (" + ", ".join(
              f"{k}: {v['final_dev_top1']:.4f}" for k, v in dev_choice["candidates"].items()) + ")\n")
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(dict(rows=rows, runs=evals, dev=dev_choice,
                       args={k: v for k, v in vars(a).items()
                             if isinstance(v, (int, float, str, list, dict, bool))}), f, indent=1)
    print(md)
    if a.plot_dir:
        plot(a, rows, evals, dev_choice)


def plot(a, rows, evals, dev_choice):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(a.plot_dir, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 3), dpi=100)
    for k, v in dev_choice["candidates"].items():
        c = np.array(v["curve"])
        if len(c):
            ax.plot(c[:, 0], 100 * c[:, 1], "o-", ms=3, label=f"E0, lr {k}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev-split top-1 (%)")
    ax.set_title("E0 on Imagewoof 64 px: dev learning curves", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(a.plot_dir, "imagewoof_dev_curves.png"))
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    width = 0.8 / max(1, len(rows))
    xs = np.arange(len(CORRUPTIONS_15))
    for i, r in enumerate(rows):
        vals = [np.mean([e["ce"][c] for e in evals if e["row"] == r["row"]]) for c in CORRUPTIONS_15]
        ax.bar(xs + i * width, vals, width, label=f"{r['row']} (mCE {r['mce_mean']:.1f})")
    ax.axhline(100, color="k", lw=0.6)
    ax.set_xticks(xs + 0.4 - width / 2, CORRUPTIONS_15, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("CE (E0 = 100)")
    ax.legend(fontsize=7)
    ax.set_title("Imagewoof-C: corruption error per corruption, normalized by E0", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(a.plot_dir, "imagewoof_corruptions.png"))
    log(f"plots in {a.plot_dir}")


# ----------------------------------------------------------------------------- CLI
def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "imagewoof_ablation"))
    p.add_argument("--woof", default=WOOF, help="imagewoof2-128 folder (train.zip, val.zip)")
    p.add_argument("--stages", default="prepare,dev,final,report")
    p.add_argument("--rows", default="E0,E11,E3,E6")
    p.add_argument("--seeds", nargs="*", default=["E0=0,1,2", "E11=0,1,2", "*=0,1"])
    p.add_argument("--lrs", default="0.1,0.2", help="learning rates tried on the dev split")
    p.add_argument("--image_size", type=int, default=64, help="must match imagewoof_cpu.cfg")
    p.add_argument("--corrupt_per_class", type=int, default=50)
    p.add_argument("--severities", default="1,2,3,4,5")
    p.add_argument("--plot_dir", default="")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("train_args", nargs="*", help="after --: extra trainer flags for every run")
    a = p.parse_args(argv)
    if a.tiny:
        a.corrupt_per_class, a.severities, a.lrs = 3, "1,5", "0.2"
        a.seeds = ["E0=0", "*=0"]
        a.rows = "E0,E11"
        a.train_args = ["--train_steps=6", "--eval_steps=2"] + list(a.train_args)
    a.rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    a.severities = [int(s) for s in str(a.severities).split(",")]
    a.lrs = [float(x) for x in a.lrs.split(",")]
    a.seeds = parse_seeds(a.seeds)
    a.stages = [s.strip() for s in a.stages.split(",")]
    return a


def main(argv=None):
    a = parse(argv)
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    if "prepare" in a.stages:
        prepare(a)
    lr = dev(a) if "dev" in a.stages or "final" in a.stages else None
    if "final" in a.stages:
        final(a, lr)
    if "report" in a.stages:
        report(a)
    log(f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
