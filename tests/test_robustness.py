"""mCE / relative mCE / mFR / mT5D (official.robustness) and the plots (official.plots)."""
import numpy as np
import pytest

from official import robustness as R


def _alexnet_table():
    table = {c: list(v) for c, v in R.ALEXNET_ERRORS.items()}
    table.update({c: [R.ALEXNET_CE[c]] * 5 for c in R.CORRUPTIONS_19[15:]})
    return table


# ------------------------------------------------------------------------------ constants
def test_published_constants_consistent():
    assert tuple(R.ALEXNET_ERRORS) == R.CORRUPTIONS_15
    assert tuple(R.ALEXNET_CE) == R.CORRUPTIONS_19
    for c, errs in R.ALEXNET_ERRORS.items():
        # the per-severity rows average to the published 6-digit ImageNet-C means
        assert np.mean(errs) == pytest.approx(R.ALEXNET_CE[c], abs=1e-6), c
    assert set(R.PERTURBATIONS_10 + R.PERTURBATIONS_EXTRA) == set(R.ALEXNET_FP)


def test_alexnet_normalized_by_itself_is_100():
    s = R.summarize_corruptions(_alexnet_table(), clean_error=R.ALEXNET_CLEAN_ERROR)
    for key in ("mCE-15", "mCE-19", "relative_mCE-15", "relative_mCE-19"):
        assert s[key] == pytest.approx(100.0), key
    assert s["mean_error-15"] == pytest.approx(100 * np.mean(list(R.ALEXNET_CE.values())[:15]))
    assert R.mce(_alexnet_table(), corruptions=R.CORRUPTIONS_15) == pytest.approx(100.0)
    assert "mCE 100.00" in R.format_summary(s)


def test_published_resnet50_corruption_errors():
    """torchvision ResNet-50 on ImageNet-C: published top-1 accuracies -> published CE (%)."""
    # (mean top-1 accuracy over severities, published CE) per corruption, torchvision
    # resnet50 (76.13% clean), as printed by ImageNet-C evaluation scripts.
    published = {"brightness": (68.02, 56.64), "contrast": (39.06, 71.43),
                 "defocus_blur": (38.75, 74.71), "elastic_transform": (45.25, 84.75),
                 "fog": (45.83, 66.11), "frost": (38.14, 74.84), "gaussian_noise": (29.29, 79.77),
                 "glass_blur": (26.79, 88.61), "impulse_noise": (23.81, 82.58)}
    errors = {c: [1 - acc / 100.0] * 5 for c, (acc, _) in published.items()}
    ce = R.corruption_errors(errors)
    for c, (_, expected) in published.items():
        assert ce[c] == pytest.approx(expected, abs=0.01), c


def test_hand_computed_custom_baseline():
    errors = {"a": [0.1, 0.2, 0.3, 0.4, 0.5], "b": [0.5, 0.5, 0.5, 0.5, 0.5]}
    base = {"a": [0.2, 0.4, 0.6, 0.8, 1.0], "b": 0.25}
    # CE_a = 1.5 / 3.0 = 50 %, CE_b = 2.5 / 1.25 = 200 % -> mCE 125 %
    assert R.corruption_errors(errors, base) == pytest.approx({"a": 50.0, "b": 200.0})
    assert R.mce(errors, base) == pytest.approx(125.0)
    assert R.mce(errors, base, corruptions=["a"]) == pytest.approx(50.0)
    # relative: (1.5 - 5*0.1) / (3.0 - 5*0.2) = 50 %; (2.5 - 0.5) / (1.25 - 1.0) = 800 %
    rce = R.relative_corruption_errors(errors, 0.1, base, baseline_clean_error=0.2)
    assert rce == pytest.approx({"a": 50.0, "b": 800.0})
    assert R.relative_mce(errors, 0.1, base, 0.2) == pytest.approx(425.0)
    assert R.mean_corruption_error(errors) == pytest.approx(100 * (0.3 + 0.5) / 2)
    # AlexNet baseline, hand computed: gaussian_noise errors all 0.5 -> 2.5 / 4.43214
    assert R.mce({"gaussian_noise": [0.5] * 5}) == pytest.approx(100 * 2.5 / 4.43214)
    # relative with AlexNet: (2.5 - 5*0.2) / (4.43214 - 5*0.43478)
    assert R.relative_mce({"gaussian_noise": [0.5] * 5}, 0.2) == pytest.approx(
        100 * 1.5 / (4.43214 - 5 * 0.43478))


def test_summary_labels_and_other_datasets():
    table = _alexnet_table()
    half = {c: [e / 2 for e in v] for c, v in table.items()}
    s = R.summarize_corruptions(half)
    assert s["mCE-15"] == pytest.approx(50.0) and s["mCE-19"] == pytest.approx(50.0)
    assert "relative_mCE-15" not in s and s["per_corruption"]["fog"]["relative_ce"] is None
    only15 = {c: half[c] for c in R.CORRUPTIONS_15}
    s15 = R.summarize_corruptions(only15)
    assert "mCE-15" in s15 and "mCE-19" not in s15
    other = R.summarize_corruptions({"x": [0.2] * 5, "y": [0.4] * 5}, baseline={"x": 0.4, "y": 0.4})
    assert other["mCE-all"] == pytest.approx(75.0) and "mCE-15" not in other


def test_bad_error_tables():
    with pytest.raises(ValueError, match=r"'fog'.*shape \(5,\).*\(4,\)"):
        R.mce({"gaussian_noise": [0.5] * 5, "fog": [0.5] * 4})
    with pytest.raises(ValueError, match="fractions"):
        R.mce({"fog": [50.0] * 5})
    with pytest.raises(ValueError, match="scalar"):
        R.mce({"fog": 0.5})
    with pytest.raises(ValueError, match="missing"):
        R.mce({"fog": [0.5] * 5}, corruptions=R.CORRUPTIONS_15)
    with pytest.raises(ValueError, match="no published AlexNet"):
        R.mce({"style": [0.5] * 5})
    with pytest.raises(ValueError, match="baseline has no errors"):
        R.mce({"fog": [0.5] * 5}, baseline={"snow": 0.5})
    with pytest.raises(ValueError, match=r"baseline errors for 'fog'.*shape"):
        R.mce({"fog": [0.5] * 5}, baseline={"fog": [0.5] * 3})
    with pytest.raises(ValueError, match="unknown baseline"):
        R.mce({"fog": [0.5] * 5}, baseline="resnet")
    with pytest.raises(ValueError, match="baseline_clean_error"):
        R.relative_mce({"fog": [0.5] * 5}, 0.2, baseline={"fog": 0.6})
    with pytest.raises(ValueError, match="5 severities"):
        R.mce({"fog": [0.5] * 3})


# ------------------------------------------------------------------------------ ImageNet-P
def test_flip_probability_hand_computed():
    preds = np.array([[0, 0, 1, 1, 0],
                      [2, 2, 2, 2, 2]])
    # consecutive: sequence 1 flips at 2 of 4 pairs, sequence 2 never -> (0.5 + 0) / 2
    assert R.flip_probability(preds, noise=False) == pytest.approx(0.25)
    # noise: vs the first frame: frames 1..4 = [0, 1, 1, 0] differ at 2 of 4 -> same 0.25
    assert R.flip_probability(np.array([[0, 1, 1, 0, 0]]), noise=True) == pytest.approx(0.5)
    assert R.flip_probability(np.array([[0, 1, 1, 0, 0]]), noise=False) == pytest.approx(0.5)
    assert R.flip_probability(np.array([[0, 1, 0, 1, 0]]), noise=True) == pytest.approx(0.5)
    assert R.flip_probability(np.array([[0, 1, 0, 1, 0]]), noise=False) == pytest.approx(1.0)
    # difficulty 2: chains [0, 2, 4] and [1, 3]: frames (0,0,0) and (1,1) -> no flips
    assert R.flip_probability(np.array([[0, 1, 0, 1, 0]]), noise=False, difficulty=2) == 0.0
    # sequences of different lengths: per-sequence mean, then mean over sequences
    assert R.flip_probability([np.array([0, 1]), np.array([0, 0, 0, 1, 1])],
                              noise=False) == pytest.approx((1.0 + 0.25) / 2)
    with pytest.raises(ValueError, match="shape"):
        R.flip_probability(np.zeros((2, 3, 4)), noise=False)
    with pytest.raises(ValueError, match="difficulty"):
        R.flip_probability(preds, noise=False, difficulty=0)


def _reference_flip_prob(predictions, noise, difficulty):
    """hendrycks/robustness ImageNet-P/test.py flip_prob, restated."""
    result = 0
    step_size = 1 if noise else difficulty
    for vid_preds in predictions:
        result_for_vid = []
        for i in range(step_size):
            prev_pred = vid_preds[i]
            for pred in vid_preds[i::step_size][1:]:
                result_for_vid.append(int(prev_pred != pred))
                if not noise:
                    prev_pred = pred
        result += np.mean(result_for_vid) / len(predictions)
    return result


def test_flip_probability_matches_reference_loop():
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 3, size=(7, 31))
    for noise in (True, False):
        for difficulty in (1, 2, 3):
            assert R.flip_probability(preds, noise, difficulty) == pytest.approx(
                _reference_flip_prob(preds, noise, difficulty))


def test_top5_distance_hand_computed():
    # frame a ranks classes 0 > 1 > 2 > 3 > 4 > 5 > 6; frame b swaps classes 0 and 1
    a = np.array([7, 6, 5, 4, 3, 2, 1], float)
    b = np.array([6, 7, 5, 4, 3, 2, 1], float)
    assert R.top5_distance(np.stack([a, a])[None], noise=False) == 0.0
    # top-5 of a = classes 0..4 with ranks under b = [2, 1, 3, 4, 5] -> |0-1| + |1-0| = 2
    assert R.top5_distance(np.stack([a, b])[None], noise=False) == pytest.approx(2.0)
    # class 0 falls to the bottom (rank 7 -> capped at 5): ranks [7, 1, 2, 3, 4]
    c = np.array([0, 7, 6, 5, 4, 3, 2], float)
    assert R.top5_distance(np.stack([a, c])[None], noise=False) == pytest.approx(5 + 4 * 1)
    # noise: both later frames compared to the first -> mean(2, 9)
    assert R.top5_distance(np.stack([a, b, c])[None], noise=True) == pytest.approx(5.5)


def test_flip_rate_and_mfr():
    rng = np.random.default_rng(1)
    preds = {p: rng.integers(0, 2, size=(4, 31)) for p in R.PERTURBATIONS_10}
    out = R.flip_rate(preds, perturbations=R.PERTURBATIONS_10)
    for p in R.PERTURBATIONS_10:
        fp = R.flip_probability(preds[p], noise=p in R.NOISE_PERTURBATIONS)
        assert out["flip_probability"][p] == pytest.approx(fp)
        assert out["flip_rate"][p] == pytest.approx(100 * fp / R.ALEXNET_FP[p])
    assert out["mFR"] == pytest.approx(np.mean(list(out["flip_rate"].values())))
    # a model flipping exactly like its baseline has mFR 100
    base = {p: out["flip_probability"][p] for p in preds}
    assert R.flip_rate(preds, baseline=base)["mFR"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="difficulty 1"):
        R.flip_rate(preds, difficulty=2)
    with pytest.raises(ValueError, match="no flip probability"):
        R.flip_rate({"wobble": preds["rotate"]})
    t5 = R.mean_top5_distance({"rotate": rng.normal(size=(2, 31, 10))}, baseline={"rotate": 1.0})
    assert t5["mT5D"] == pytest.approx(100 * t5["top5_distance"]["rotate"])


# ------------------------------------------------------------------------------ plots
def test_plots_write_png(tmp_path):
    pytest.importorskip("matplotlib")
    from official import plots
    table = {c: v for c, v in _alexnet_table().items() if c in R.CORRUPTIONS_19[10:17]}
    better = {c: [e * 0.7 for e in v] for c, v in table.items()}
    path = plots.plot_corruption_errors({"AlexNet": table, "ours": better}, tmp_path / "ce.png",
                                        clean_errors={"AlexNet": 0.43, "ours": 0.2}, title="t",
                                        dpi=50)
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    cm = np.array([[5, 1, 0], [0, 3, 2], [0, 0, 0]])
    path = plots.plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "sub" / "cm.png", dpi=50)
    assert open(path, "rb").read()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(np.zeros((2, 3)), None, tmp_path / "x.png")
    with pytest.raises(ValueError, match="class names"):
        plots.plot_confusion_matrix(cm, ["a"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="fractions"):
        plots.plot_corruption_errors({"m": {"fog": [50, 60]}}, tmp_path / "x.png")


# ------------------------------------------------------------------------------ effective robustness
def test_effective_robustness_against_hand_computed_line():
    """Baselines exactly on logit(y) = 0.5 logit(x) - 1; at clean 0.6 the line gives
    1 / (1 + exp(1 - 0.5 ln 1.5)) = 1 / (1 + 2.219468) = 0.310610 (by hand), so a model at
    0.340610 is 3.0 points above it and one at 0.290610 2.0 below."""
    line = lambda x: 1 / (1 + np.exp(-(0.5 * np.log(x / (1 - x)) - 1)))
    clean = np.array([0.3, 0.45, 0.7, 0.8])
    a, b = R.effective_robustness_fit(clean, line(clean))
    assert (a, b) == (pytest.approx(0.5), pytest.approx(-1.0))
    assert line(0.6) == pytest.approx(0.310610, abs=1e-6)
    assert R.effective_robustness(0.6, 0.340610, (a, b)) == pytest.approx(3.0, abs=1e-3)
    both = R.effective_robustness([0.6, 0.6], [0.340610, 0.290610], (a, b))
    np.testing.assert_allclose(both, [3.0, -2.0], atol=1e-3)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        R.effective_robustness(60.0, 0.34, (a, b))          # a percentage, not a fraction
    with pytest.raises(ValueError, match="different clean accuracies"):
        R.effective_robustness_fit([0.5, 0.5], [0.3, 0.31])
    with pytest.raises(ValueError, match="one pair per baseline"):
        R.effective_robustness_fit([0.5, 0.6], [0.3])
