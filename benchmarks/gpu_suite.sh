#!/usr/bin/env bash
# GPU evidence suite (issue 6): throughput of the project's Keras models under JAX against timm
# (PyTorch) in the same run, then the Table 7 mini-ablation on the GPU.
#
# Target machine: one NVIDIA GPU, Python 3.12 with JAX (CUDA), PyTorch + timm, NO TensorFlow,
# no network. Keras and its two pure-Python dependencies are carried as wheels in .whl/
# (the folder is not in git). Fetch them on a machine with network access, from the repo root:
#
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         keras==3.15.1 optree namex -d .whl
#
# (optree has compiled parts: add `--platform manylinux_2_17_x86_64` when the machine that
# downloads is not x86_64 Linux.) The script installs them with
#     python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#     export PYTHONPATH=/tmp/site:$PWD
# Keras 3.15 also imports absl, numpy, rich, h5py, ml_dtypes and packaging; they normally
# come with JAX/PyTorch/timm images -- the script checks and names any that is missing.
#
# The trainer's JAX path cannot use tf.data: it needs a pre-decoded npz input (`--data=npz:FILE`,
# arrays x_train, y_train, x_eval, y_eval, already normalized float32 NHWC; no augmentation:
# see docs/TRAINING.md / official/train_backends.py). The corrupted test images need
# TensorFlow + imagecorruptions (data.make_corruptions), so they are prepared on the CPU
# machine and carried:
#
#     python benchmarks/mini_ablation.py --out runs/mini_gpu --stages prepare --backend jax \
#         --train_images 20000 --test_images 2000 --corrupt_images 500 --workers 2
#     # then carry runs/mini_gpu/data, runs/mini_gpu/corrupt (about 30 MB) and .whl
#     # (data.npz is rebuilt on the GPU machine from the JPEG zips with PIL)
#
# Usage (repo root):
#     bash benchmarks/gpu_suite.sh [--tiny] [--no-throughput] [--no-ablation] [--no-compile]
#         [--resume THROUGHPUT.jsonl]
#         [--out DIR] [--ablation-out runs/mini_gpu] [--ablation-args "..."]
# Env: OUT (default /tmp/gpu_suite, or $OUT given by the device runner), PYTHON (python3),
#   WHEELS (the wheel folder, default .whl).
# --tiny: CPU-sized end-to-end check (batch 4 at 64 px, 2 steps; the tiny mini-ablation), with
#   TensorFlow blocked (a sitecustomize that sets sys.modules["tensorflow"] = None, as a machine
#   without TensorFlow) -- run here on the CPU: KERAS_BACKEND=jax.
# Output: $OUT/throughput.jsonl, $OUT/throughput.md (ratios), $OUT/throughput.png, $OUT/ablation/* (results.md/json,
#   plot), $OUT/suite.log.
#
# Throughput definitions (both sides): images/s at 224 px, batch 256, the input batch created once
# on the device; float32 (XLA / cuDNN default precision: TF32 allowed on Ampere/Hopper on both
# sides) and bfloat16 (Keras mixed_bfloat16 policy / torch.autocast: float32 weights, bf16
# compute); inference = forward in eval mode; training = forward + loss + backward + SGD momentum
# update. Ours: benchmarks/jax_throughput.py (a jitted model.stateless_call, + jax.value_and_grad
# + optimizer.stateless_apply with donated state; programs compiled ahead of time one at a
# time, then timed one after the other), with variants measured in the same run
# (assemble_resnet50 with the `shifts` BlurPool); best of 2 repeats of 15 steps after 2 warm-up
# calls, on both sides. Order of the throughput half: timm eager (TIMM_TIMEOUT), ours (until
# COMPILE_RESERVE seconds before the half's deadline THROUGHPUT_DEADLINE, counted from the
# suite's start), then timm `torch.compile` (default mode) of COMPILE_MODELS (resnet50,
# bfloat16; inference, then training) in the time left, unless --no-compile. Each part
# appends a JSON line per finished measurement, so a time limit keeps what finished;
# --resume FILE (the throughput.jsonl of a call cut short, on the same warm machine) starts from
# its lines and measures only what it lacks. Time limits
# for the ablation half: ABLATION_TIMEOUT. Measured on an H200 on 2026-11-26 (docs/BENCHMARKS.md):
# the mini-ablation (6 runs, 6 at a time) took 319 s of training + 52 s of evaluation; the
# throughput half (timm eager 3 models, ours 4 models + 1 variant x 2 dtypes x 2 modes, timm
# resnet50 under torch.compile) took 466 s in one call (ours 296 s: 2-13 s per inference
# compile, 10-48 s per train-step compile). The two halves do not fit together in one
# 15-minute lease: run them in separate leases (--no-throughput / --no-ablation). A second
# call on the still-warm machine can add torch.compile references:
#     THROUGHPUT_DEADLINE=290 COMPILE_RESERVE=280 COMPILE_MODELS=skresnet50d,resnet50d \
#         bash benchmarks/gpu_suite.sh --no-ablation --resume <first call's throughput.jsonl>
# (skresnet50d took 30 s + 82 s to compile, resnet50d 14 s + 50 s).
# benchmarks/model_throughput.py is NOT used for the GPU figures: it feeds a NumPy batch to
# predict_on_batch/train_on_batch, so every step copies the batch host->device (and syncs the
# weights back to the Keras variables), which is not "input already on the device".
# Targets: assemble_resnet50 >= timm skresnet50d; our resnet50 >= 0.8x timm resnet50.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
TINY=0; THROUGHPUT=1; ABLATION=1; COMPILE=1
ABL_OUT=runs/mini_gpu; ABL_ARGS=""; RESUME=""
OUT=${OUT:-/tmp/gpu_suite}
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) TINY=1 ;;
    --no-throughput) THROUGHPUT=0 ;;
    --no-ablation) ABLATION=0 ;;
    --no-compile) COMPILE=0 ;;
    --compile) COMPILE=1 ;;  # the default; kept for old command lines
    --out) OUT=$2; shift ;;
    --resume) RESUME=$2; shift ;;
    --ablation-out) ABL_OUT=$2; shift ;;
    --ablation-args) ABL_ARGS=$2; shift ;;
    -h|--help) sed -n '2,50p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"
exec > >(tee -a "$OUT/suite.log") 2>&1
echo "== gpu_suite $(date -u +%FT%TZ) tiny=$TINY host=$(hostname) nproc=$(nproc)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm \
    --format=csv,noheader || true

# ---- 1. carried wheels (keras, optree, namex) -------------------------------------------
WHEELS=${WHEELS:-.whl}
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site:$REPO${PYTHONPATH:+:$PYTHONPATH}
else
  echo "no .whl/ folder: using the installed keras"
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
if [ "$TINY" = 1 ]; then
  # a machine without TensorFlow: any `import tensorflow` fails (also in the subprocesses)
  mkdir -p /tmp/gpu_suite_notf
  printf 'import sys\nsys.modules["tensorflow"] = None\n' > /tmp/gpu_suite_notf/sitecustomize.py
  export PYTHONPATH=/tmp/gpu_suite_notf:$PYTHONPATH
fi
"$PYTHON" - <<'EOF'
import importlib, sys
missing = []
for m in ("jax", "keras", "optree", "namex", "absl", "numpy", "h5py", "ml_dtypes", "rich", "packaging",
          "torch", "timm", "PIL", "matplotlib"):
    try:
        importlib.import_module(m)
    except Exception as e:  # noqa: BLE001
        missing.append(f"{m} ({type(e).__name__}: {e})")
import jax, keras
print(f"python {sys.version.split()[0]}, jax {jax.__version__} {jax.devices()}, keras {keras.__version__} "
      f"({keras.backend.backend()}), tensorflow importable: "
      f"{importlib.util.find_spec('tensorflow') is not None and sys.modules.get('tensorflow', 0) is not None}")
if missing:
    print("MISSING modules: " + "; ".join(missing))
    if any(m.split()[0] in ("jax", "keras", "numpy", "absl", "h5py", "ml_dtypes") for m in missing):
        sys.exit(3)
EOF

if [ "$TINY" = 1 ]; then
  BS=4; SIZE=64; STEPS=2; WARM=1; REP=1; DEVICE=cpu
  MODELS=resnet50,assemble_resnet50; TIMM_MODELS=resnet50,skresnet50d; COMPILE_MODELS=resnet50
  VARIANTS="assemble_resnet50:blur=shifts"
  THROUGHPUT_DEADLINE=100000; COMPILE_RESERVE=0; TIMM_TIMEOUT=300; ABLATION_TIMEOUT=1800
else
  BS=256; SIZE=224; STEPS=15; WARM=2; REP=2; DEVICE=cuda
  MODELS=resnet50,assemble_resnet50,skresnet50,resnet50d; TIMM_MODELS=resnet50,skresnet50d,resnet50d
  COMPILE_MODELS=${COMPILE_MODELS:-resnet50}
  VARIANTS="assemble_resnet50:blur=shifts"
  # separate leases: --no-throughput / --no-ablation (see the header)
  # one 10-minute device call: the whole throughput half ends THROUGHPUT_DEADLINE s after the start
  THROUGHPUT_DEADLINE=${THROUGHPUT_DEADLINE:-540}; COMPILE_RESERVE=${COMPILE_RESERVE:-100}
  TIMM_TIMEOUT=${TIMM_TIMEOUT:-120}; ABLATION_TIMEOUT=${ABLATION_TIMEOUT:-420}
fi

# ---- 2. mini-ablation on the GPU (trainer's JAX path, npz input); first: it is all or nothing,
#         while the throughput half keeps partial results
if [ "$ABLATION" = 1 ]; then
  if [ "$TINY" = 1 ]; then
    ABL_OUT=${ABL_OUT_TINY:-/tmp/gpu_suite_tiny_ablation}
    # the tiny prepare needs TensorFlow (corruptions): reuse a CPU-prepared folder when given
    if [ ! -f "$ABL_OUT/corrupt/.done" ]; then
      echo "tiny ablation: prepare $ABL_OUT first with TensorFlow:"
      echo "  python benchmarks/mini_ablation.py --tiny --out $ABL_OUT --stages prepare --backend jax"
      exit 4
    fi
    "$PYTHON" benchmarks/mini_ablation.py --tiny --backend jax --out "$ABL_OUT" --plot "$OUT/ablation.png" \
        --parallel 2 $ABL_ARGS
  else
    if [ ! -f "$ABL_OUT/corrupt/.done" ]; then
      echo "mini-ablation: $ABL_OUT/corrupt is missing: prepare it on the CPU machine (see the header) and carry it"
      exit 4
    fi
    timeout "$ABLATION_TIMEOUT" "$PYTHON" benchmarks/mini_ablation.py --backend jax --out "$ABL_OUT" \
        --plot "$OUT/ablation.png" --parallel 6 --train_images 20000 --epochs 12 --width 32 \
        --seeds E0=0,1 E11=0,1 '*=0' $ABL_ARGS || echo "mini_ablation ended with status $?"
  fi
  cp "$ABL_OUT"/results.md "$ABL_OUT"/results.json "$OUT/" 2>/dev/null || true
  # per-run logs and evaluations, one tarball (the device tool returns at most 8 files)
  tar czf "$OUT/ablation_runs.tgz" -C "$ABL_OUT" --exclude='*.keras' --exclude='*.weights.h5' \
      --exclude='ckpt*' runs 2>/dev/null || true
fi
# ---- 3. throughput: ours (Keras 3 on JAX) and timm (PyTorch), same run ----------------------
if [ "$THROUGHPUT" = 1 ]; then
  rm -f "$OUT/throughput.jsonl"
  if [ -n "$RESUME" ]; then
    cp "$RESUME" "$OUT/throughput.jsonl"
    echo "resuming from $RESUME ($(wc -l < "$RESUME") measurements): only what it lacks is measured"
  fi
  DONE=(--skip_done "$OUT/throughput.jsonl")
  left() { echo $(( THROUGHPUT_DEADLINE - SECONDS )); }
  # timm eager first (about a minute), so ours can use the rest: a time limit keeps each part's
  # finished measurements
  T=$(left); [ "$T" -gt "$TIMM_TIMEOUT" ] && T=$TIMM_TIMEOUT; [ "$T" -lt 1 ] && T=1
  timeout "$T" "$PYTHON" benchmarks/timm_throughput.py --models "$TIMM_MODELS" --batch_size "$BS" --image_size "$SIZE" \
      --dtypes bfloat16,float32 --steps "$STEPS" --warmup "$WARM" --repeats "$REP" --device "$DEVICE" \
      --json "$OUT/throughput.jsonl" "${DONE[@]}" || echo "timm_throughput ended with status $?"
  RESERVE=0; [ "$COMPILE" = 1 ] && RESERVE=$COMPILE_RESERVE
  T=$(( $(left) - RESERVE ))
  # jax_throughput starts no new build after --budget_s; a build takes up to ~1.5 min on the GPU
  if [ "$TINY" = 1 ]; then B=0; else B=$(( T > 91 ? T - 90 : 1 )); fi  # 0: no budget
  if [ "$T" -gt 0 ]; then
    timeout "$T" "$PYTHON" benchmarks/jax_throughput.py --models "$MODELS" --variants "$VARIANTS" \
        --batch_size "$BS" --image_size "$SIZE" --steps "$STEPS" --warmup "$WARM" --repeats "$REP" \
        --budget_s "$B" --json "$OUT/throughput.jsonl" "${DONE[@]}" || echo "jax_throughput ended with status $?"
  else
    echo "no time left for ours before the torch.compile reserve (COMPILE_RESERVE=$COMPILE_RESERVE)"
  fi
  if [ "$COMPILE" = 1 ]; then
    T=$(( $(left) - 5 ))
    if [ "$T" -gt 20 ]; then
      timeout "$T" "$PYTHON" benchmarks/timm_throughput.py --models "$COMPILE_MODELS" --batch_size "$BS" \
          --image_size "$SIZE" --dtypes bfloat16 --steps "$STEPS" --warmup "$WARM" --repeats "$REP" \
          --device "$DEVICE" --compile --json "$OUT/throughput.jsonl" "${DONE[@]}" || echo "timm_throughput --compile ended with status $?"
    else
      echo "no time left for timm with torch.compile"
    fi
  fi
  "$PYTHON" benchmarks/throughput_table.py "$OUT/throughput.jsonl" --out "$OUT/throughput.md" \
      --plot "$OUT/throughput.png" || echo "throughput_table ended with status $?"
fi

echo "== gpu_suite done $(date -u +%FT%TZ)"
