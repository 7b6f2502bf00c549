"""The absl flag CLIs of official.evaluate / export / convert (flags/cli.py): defaults, help,
--flagfile, repeated parsing in one process, errors naming the flag. No TensorFlow needed."""
import os
import subprocess
import sys

import pytest

from flags import cli
from official import convert as C
from official import evaluate as E
from official import export as X

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_and_values_like_the_argparse_versions():
    a = E.parse_args(["--model_dir", "run", "--data=src"])
    assert (a.model_dir, a.data, a.which, a.split, a.batch_size, a.dtype) == (
        "run", "src", "latest", None, None, None)
    assert (a.corruptions, a.severities, a.seed, a.benchmark_steps) == (None, "1..5", 0, 10)
    assert not (a.no_progress or a.no_plots or a.retrieval)
    assert (a.retrieval_metric, a.retrieval_zero_shot_classes) == ("cosine", None)
    a = E.parse_args(["--model_dir", "run", "--data", "src", "--batch_size", "16", "--dtype",
                      "bf16", "--no_progress", "--retrieval", "--retrieval_metric=euclidean"])
    assert a.batch_size == 16 and a.dtype == "bf16" and a.no_progress and a.retrieval
    assert a.retrieval_metric == "euclidean"
    x = X.parse_args(["--model_dir", "run", "--export_dir", "out"])
    assert (x.which, x.max_pixels, x.top_k) == ("latest", X.DEFAULT_MAX_PIXELS, X.DEFAULT_TOP_K)
    assert not (x.tflite or x.overwrite or x.no_verify)
    c = C.parse_args(["--source", "timm", "--arch", "resnet18", "--checkpoint", "c.pth",
                      "--output", "o.weights.h5"])
    assert (c.source, c.arch, c.num_classes, c.image_size) == ("timm", "resnet18", None, 224)


def test_host_allocator_flag(monkeypatch):
    """--host_allocator (trainer and evaluate): 'bfc' by default, 'default' changes nothing, and
    an explicit TF_CPU_ALLOCATOR_USE_BFC=false in the environment wins over the default."""
    import data
    assert E.parse_args(["--model_dir", "r", "--data", "d"]).host_allocator == "bfc"
    assert E.parse_args(["--model_dir", "r", "--data", "d",
                         "--host_allocator=default"]).host_allocator == "default"
    with pytest.raises(E.EvaluationError, match="--host_allocator=pool"):
        E.parse_args(["--model_dir", "r", "--data", "d", "--host_allocator=pool"])
    monkeypatch.delenv("TF_CPU_ALLOCATOR_USE_BFC", raising=False)
    assert data.apply_host_allocator("default") is False
    assert "TF_CPU_ALLOCATOR_USE_BFC" not in os.environ
    monkeypatch.setenv("TF_CPU_ALLOCATOR_USE_BFC", "false")
    assert data.apply_host_allocator("bfc") is False
    assert os.environ["TF_CPU_ALLOCATOR_USE_BFC"] == "false"
    # the trainer: program-only (not stored in the run config)
    import flags as assemble_flags
    assert "host_allocator" in assemble_flags.RUNTIME_ONLY


def test_repeated_parses_start_from_the_defaults():
    """Each call defines into a fresh FlagValues: no duplicate-flag error, no leftovers."""
    first = E.parse_args(["--model_dir", "a", "--data", "d", "--batch_size", "8", "--retrieval"])
    second = E.parse_args(["--model_dir", "b", "--data", "d"])
    assert first.batch_size == 8 and first.retrieval and first.model_dir == "a"
    assert second.batch_size is None and not second.retrieval and second.model_dir == "b"


def test_flagfile(tmp_path):
    ff = tmp_path / "export.cfg"
    ff.write_text("# recipe\n--model_dir=from_file\n--which=best\n--top_k=3\n--overwrite\n")
    x = X.parse_args(["--flagfile", str(ff), "--export_dir", "out", "--top_k=2"])
    assert (x.model_dir, x.which, x.top_k, x.overwrite) == ("from_file", "best", 2, True)


@pytest.mark.parametrize("argv, match", [
    ([], r"--model_dir \(or --weights\), --data are required"),
    (["--data", "d"], r"--model_dir \(or --weights\) is required"),
    (["--data", "d", "--model_dir", "r", "--weights", "w"], "give --model_dir or --weights, not both"),
    (["--model_dir", "r", "--data", "d", "--dtype", "fp8"], "--dtype=fp8"),
    (["--model_dir", "r", "--data", "d", "--batch_size", "x"], "--batch_size=x"),
    (["--model_dir", "r", "--data", "d", "--bogus=1"], "'bogus'"),
    (["--model_dir", "r", "--data", "d", "extra"], r"unexpected arguments \['extra'\]"),
])
def test_evaluate_bad_flags(argv, match):
    with pytest.raises(E.EvaluationError, match=match):
        E.main(argv)


def test_export_and_convert_bad_flags():
    with pytest.raises(X.ExportError, match="--export_dir is required"):
        X.main(["--model_dir", "r"])
    with pytest.raises(cli.UsageError, match="--source=caffe"):
        C.main(["--source", "caffe", "--arch", "a", "--checkpoint", "c", "--output", "o"])
    with pytest.raises(cli.UsageError, match="--arch, --checkpoint, --output are required"):
        C.main(["--source", "timm"])


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as e:
        X.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("--model_dir", "--export_dir", "--which", "--max_pixels", "--tflite",
                 "--flagfile"):
        assert name in out


@pytest.mark.parametrize("module, flags", [
    ("official.evaluate", ("--model_dir", "--data", "--batch_size", "--corruptions",
                           "--retrieval_metric")),
    ("official.convert", ("--source", "--arch", "--checkpoint", "--output", "--image_size")),
    ("official.predict", ("--model_dir", "--weights", "--top_k", "--format", "--batch_size")),
])
def test_module_help_and_usage_error_exit_status(module, flags):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert all(f in proc.stdout for f in flags)
    proc = subprocess.run([sys.executable, "-m", module, "--nonexistent_flag=1"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "nonexistent_flag" in proc.stderr, proc.stderr


@pytest.mark.parametrize("script", ["assemble-train", "assemble-evaluate", "assemble-export",
                                    "assemble-summary"])
def test_console_scripts_run_outside_the_repo(script, tmp_path):
    """setup.py's console scripts, as installed by `make test` (pip install -e): they must import
    the project from any working directory, not only from the repository root."""
    exe = os.path.join(os.path.dirname(sys.executable), script)
    if not os.path.exists(exe):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exe} is not installed (make test installs the project with pip install -e)")
        pytest.skip(f"{script} not installed in this environment (run `make test`)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([exe, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--" in r.stdout + r.stderr and "ModuleNotFoundError" not in r.stderr
