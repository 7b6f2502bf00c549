"""Learning check of the trainer: the ``smoke`` recipe on imagenette2-224 (CPU minutes).

    python benchmarks/train_smoke.py [--model_dir=runs/smoke_bench] [extra train flags]

Trains ``official/configs/smoke.cfg`` from scratch in a fresh run directory and prints the
eval top-1/top-5, wall time and training images/s, next to the chance-level reference
(1/num_classes) measured from the same run's data (the ratio is what to compare across
machines). Not a test: it takes minutes. Results are recorded in docs/BENCHMARKS.md.
"""
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv):
    data_root = os.environ.get("ASSEMBLE_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
    data = os.path.join(data_root, "imagenette2-224")
    model_dir = os.path.join(ROOT, "runs", "smoke_bench")
    extra = []
    for a in argv:
        if a.startswith("--model_dir="):
            model_dir = a.split("=", 1)[1]
        else:
            extra.append(a)
    if not os.path.exists(data):
        sys.exit(f"imagenette2-224 not found at {data}; set ASSEMBLE_DATA_DIR")
    shutil.rmtree(model_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "official.train", "--flagfile=official/configs/smoke.cfg",
           f"--data={data}", f"--model_dir={model_dir}", "--progress_bar=false"] + extra
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    wall = time.time() - t0
    with open(os.path.join(model_dir, "results.json")) as f:
        r = json.load(f)
    with open(os.path.join(model_dir, "run_config.json")) as f:
        k = json.load(f)["model"]["num_classes"]
    print(json.dumps(dict(top1=r["eval_top1"], top5=r["eval_top5"], chance=1.0 / k,
                          top1_over_chance=r["eval_top1"] * k, steps=r["step"],
                          train_images_per_sec=r.get("images_per_sec"), wall_s=round(wall, 1)), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
