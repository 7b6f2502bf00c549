"""The GPU suite's bookkeeping, which runs only on the GPU machine: the ratio table
(``benchmarks/throughput_table.py``) and the resume filter of ``jax_throughput.py`` /
``timm_throughput.py`` (``--skip_done``, ``throughput_table.measured``). Checked against hand-computed values."""
import json
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import jax_throughput  # noqa: E402
import throughput_table  # noqa: E402


def _row(impl, model, dtype, mode, ips, device="NVIDIA H200", compile=None):
    r = dict(impl=impl, model=model, dtype=dtype, mode=mode, images_per_second=ips, device=device)
    if compile is not None:
        r["compile"] = compile
    return r


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_table_ratios_targets_and_compiled_reference(tmp_path):
    rows = [
        _row("timm", "resnet50", "bfloat16", "infer", 1000.0, compile=False),
        _row("timm", "resnet50", "bfloat16", "infer", 2000.0, compile=True),
        _row("ours", "resnet50", "bfloat16", "infer", 790.0),        # 0.79 of eager: below 0.8
        _row("timm", "skresnet50d", "float32", "train", 400.0, compile=False),
        _row("ours", "assemble_resnet50", "float32", "train", 500.0),  # 1.25 of eager
        _row("ours", "assemble_resnet50[blur=shifts]", "float32", "train", 450.0),
    ]
    text = throughput_table.table(throughput_table.load([_write(tmp_path / "t.jsonl", rows)]))
    lines = text.splitlines()
    r50 = next(l for l in lines if l.startswith("| resnet50 | resnet50 | bfloat16 | infer"))
    assert "| 790.0 | 1000.0 | 0.790 | >= 0.8: NOT met | 2000.0 | 0.395 |" in r50
    asm = next(l for l in lines if l.startswith("| assemble_resnet50 | skresnet50d | float32 | train"))
    assert "| 500.0 | 400.0 | 1.250 | >= 1.0: met | - | - |" in asm
    # the variant against the default build: 450 / 500
    assert "| assemble_resnet50[blur=shifts] | float32 | train | 450.0 | 500.0 | 0.900 |" in text
    # a model without a reference in the file gets no row
    assert "| resnet50d |" not in text


def test_table_refuses_figures_of_two_gpus(tmp_path):
    rows = [_row("timm", "resnet50", "bfloat16", "infer", 1.0, device="NVIDIA H100 80GB HBM3"),
            _row("ours", "resnet50", "bfloat16", "infer", 1.0, device="NVIDIA H200")]
    with pytest.raises(SystemExit, match="different devices"):
        throughput_table.table(rows)


def test_table_names_the_file_and_line_of_a_bad_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_row("ours", "resnet50", "float32", "infer", 1.0)) + "\n{not json\n")
    with pytest.raises(SystemExit, match=r"bad\.jsonl:2: not a JSON line"):
        throughput_table.load([str(path)])


def test_resume_skips_only_builds_measured_in_every_mode(tmp_path):
    path = _write(tmp_path / "prev.jsonl", [
        _row("ours", "resnet50", "bfloat16", "infer", 1.0), _row("ours", "resnet50", "bfloat16", "train", 1.0),
        _row("ours", "assemble_resnet50", "bfloat16", "infer", 1.0),  # cut short before its train step
        _row("timm", "resnet50", "bfloat16", "infer", 1.0, compile=False),
        _row("timm", "resnet50", "bfloat16", "train", 1.0, compile=False),
        _row("timm", "skresnet50d", "bfloat16", "infer", 1.0, compile=True),
        _row("timm", "skresnet50d", "bfloat16", "train", 1.0, compile=True),
    ])
    measured = throughput_table.measured
    assert measured(path, "ours", ["infer", "train"]) == {("resnet50", "bfloat16")}
    assert measured(path, "ours", ["infer"]) == {("resnet50", "bfloat16"), ("assemble_resnet50", "bfloat16")}
    # eager and compiled timm figures do not stand in for each other
    assert measured(path, "timm", ["infer", "train"], False) == {("resnet50", "bfloat16")}
    assert measured(path, "timm", ["infer", "train"], True) == {("skresnet50d", "bfloat16")}
    assert measured(str(tmp_path / "missing.jsonl"), "ours", ["infer"]) == set()


def test_variants_parse_and_reject_unknown_keys():
    assert jax_throughput.parse_variants("a:blur=shifts;b:blur=depthwise") == [
        ("a", {"blur": "shifts"}), ("b", {"blur": "depthwise"})]
    assert jax_throughput.label("a", {"blur": "shifts"}) == "a[blur=shifts]"
    with pytest.raises(SystemExit, match="unknown key 'dtype'"):
        jax_throughput.parse_variants("a:dtype=float16")


def test_imagewoof_effective_robustness_reads_the_documented_runs(tmp_path):
    """The analysis behind docs/ABLATION.md's effective-robustness figures runs on the committed
    raw files: it finds the runs the tables list (E0 and E11 3 seeds at every schedule; the
    120-epoch E0's Imagewoof-C accuracy = 100 - the table's mean corruption error 65.20 %), and
    E11 at 120 epochs sits above E0's line by more than E0's own scatter about it."""
    import imagewoof_effective_robustness as ER
    out = tmp_path / "er.json"
    assert ER.main(["--out", str(out), "--plot", str(tmp_path / "er.png")]) == 0
    result = json.loads(out.read_text())
    rows = {(r["row"], r["epochs"]): r for r in result["rows"]}
    for epochs in (10, 30, 120):
        assert len(rows[("E0", epochs)]["seeds"]) == 3 and len(rows[("E11", epochs)]["seeds"]) == 3
    assert sum(rows[("E0", 120)]["corrupted_accuracy"]) / 3 == pytest.approx(100 - 65.20, abs=0.01)
    assert result["fit"]["baseline_runs"] == 9
    e11 = rows[("E11", 120)]
    assert min(e11["effective_robustness"]) > 2 * result["fit"]["baseline_residual_sd_points"]
    assert (tmp_path / "er.png").read_bytes()[:4] == b"\x89PNG"
