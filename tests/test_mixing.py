"""Tests for data/mixing.py (keras.ops batch mixing)."""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from data.mixing import mix_batch, smooth_labels

K = 4


def _batch(n=4, h=4, w=6):
    images = np.stack([np.full((h, w, 3), 10.0 * (i + 1), np.float32) for i in range(n)])
    labels = np.arange(n, dtype=np.int32) % K
    return images, labels


def _np(x):
    return ops.convert_to_numpy(x)


def test_mixup_reverse_hand_computed():
    images, labels = _batch(4)
    lam = np.array([0.7, 0.2, 0.5, 1.0], np.float32)
    x, y, t = mix_batch(images, labels, num_classes=K, method="mixup", lam=lam)
    assert t is None
    # Sample i is mixed with sample 3 - i: values 10, 20, 30, 40.
    expected_vals = [0.7 * 10 + 0.3 * 40, 0.2 * 20 + 0.8 * 30, 0.5 * 30 + 0.5 * 20, 40.0]
    for i, v in enumerate(expected_vals):
        np.testing.assert_allclose(_np(x)[i], v, rtol=1e-6)
    expected_y = np.zeros((4, K), np.float32)
    expected_y[0, 0], expected_y[0, 3] = 0.7, 0.3
    expected_y[1, 1], expected_y[1, 2] = 0.2, 0.8
    expected_y[2, 2], expected_y[2, 1] = 0.5, 0.5
    expected_y[3, 3] = 1.0
    np.testing.assert_allclose(_np(y), expected_y, atol=1e-6)


def test_double_batch_shapes_and_pairing():
    images, labels = _batch(6)
    lam = np.array([0.25, 0.5, 0.9], np.float32)
    teacher = np.arange(6 * K, dtype=np.float32).reshape(6, K)
    x, y, t = mix_batch(images, labels, num_classes=K, form="double_batch", lam=lam,
                        teacher_logits=teacher)
    assert _np(x).shape == (3, 4, 6, 3) and _np(y).shape == (3, K) and _np(t).shape == (3, K)
    for i in range(3):  # first half i with second half 3 + i
        np.testing.assert_allclose(_np(x)[i], lam[i] * images[i] + (1 - lam[i]) * images[3 + i],
                                   rtol=1e-6)
        np.testing.assert_allclose(_np(t)[i], lam[i] * teacher[i] + (1 - lam[i]) * teacher[3 + i],
                                   rtol=1e-6)
        onehot = np.eye(K, dtype=np.float32)[labels]
        np.testing.assert_allclose(_np(y)[i], lam[i] * onehot[i] + (1 - lam[i]) * onehot[3 + i],
                                   atol=1e-6)
    with pytest.raises(ValueError):
        mix_batch(images[:5], labels[:5], num_classes=K, form="double_batch", lam=0.5)


# Labels of 8 samples whose partners differ in both forms (so every case checks the soft
# targets): "reverse" pairs i with 7 - i (labels 0-2, 1-3, 2-0, 3-1, ...), "double_batch"
# pairs i with 4 + i (0-1, 1-0, 2-3, 3-2).
PAIRED_LABELS = np.array([0, 1, 2, 3, 1, 0, 3, 2], np.int32)


@pytest.mark.parametrize("method", ["mixup", "cutmix"])
@pytest.mark.parametrize("form", ["reverse", "double_batch"])
def test_teacher_mixed_with_same_lambda_as_labels(method, form):
    """lam is read off the mixed image (sample j is the constant 10 (j + 1)): mixup gives
    ``lam va + (1 - lam) vb``, CutMix pastes ``vb`` on a ``1 - lam`` fraction. The soft
    target must then be lam at the first image's label and 1 - lam at its partner's (a
    different label), and the teacher logits mixed with the same lam."""
    images, _ = _batch(8, 8, 8)
    labels = PAIRED_LABELS
    teacher = np.random.default_rng(0).normal(size=(8, K)).astype(np.float32)
    x, y, t = mix_batch(images, labels, num_classes=K, method=method, form=form, alpha=1.0,
                        teacher_logits=teacher, seed=3)
    x, y, t = _np(x)[..., 0], _np(y), _np(t)
    if form == "reverse":
        a_idx, b_idx = np.arange(8), np.arange(8)[::-1]
    else:
        a_idx, b_idx = np.arange(4), np.arange(4) + 4
    assert x.shape[0] == len(a_idx)
    assert (labels[a_idx] != labels[b_idx]).all()
    lams = []
    for i, (a, b) in enumerate(zip(a_idx, b_idx)):
        va, vb = 10.0 * (a + 1), 10.0 * (b + 1)
        if method == "mixup":
            lam = (x[i, 0, 0] - vb) / (va - vb)
            np.testing.assert_allclose(x[i], lam * va + (1 - lam) * vb, rtol=1e-5)
        else:
            assert np.isin(x[i], [va, vb]).all()
            lam = 1.0 - (x[i] == vb).mean()
        expected = np.zeros(K, np.float32)
        expected[labels[a]], expected[labels[b]] = lam, 1.0 - lam
        np.testing.assert_allclose(y[i], expected, atol=1e-5)
        np.testing.assert_allclose(t[i], lam * teacher[a] + (1 - lam) * teacher[b], atol=1e-5)
        lams.append(lam)
    assert any(0.05 < lam < 0.95 for lam in lams)   # real mixtures, not all one image


def test_teacher_temperature_mixes_probabilities():
    images, labels = _batch(4)
    teacher = np.random.default_rng(1).normal(size=(4, K)).astype(np.float32)
    lam = np.array([0.3, 0.6, 0.1, 0.8], np.float32)
    temp = 2.0
    _, _, t = mix_batch(images, labels, num_classes=K, lam=lam, teacher_logits=teacher,
                        teacher_temperature=temp)

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p = softmax(teacher / temp)
    expected = lam[:, None] * p + (1 - lam[:, None]) * p[::-1]
    np.testing.assert_allclose(softmax(_np(t) / temp), expected, atol=1e-6)


def test_cutmix_box_area_equals_one_minus_lambda():
    images, labels = _batch(4, 16, 20)
    images = np.stack([np.full((16, 20, 3), float(i), np.float32) for i in range(4)])
    for seed in range(5):
        x, y, _ = mix_batch(images, labels, num_classes=K, method="cutmix", alpha=1.0, seed=seed)
        x, y = _np(x), _np(y)
        onehot = np.eye(K, dtype=np.float32)[labels]
        lam = (y * onehot).sum(1)
        for i in range(4):
            from_partner = (x[i, ..., 0] == float(3 - i)).mean()
            np.testing.assert_allclose(from_partner, 1.0 - lam[i], atol=1e-6)
            # The pasted region is one axis-aligned rectangle.
            rows = np.nonzero((x[i, ..., 0] == 3 - i).any(1))[0]
            cols = np.nonzero((x[i, ..., 0] == 3 - i).any(0))[0]
            if len(rows):
                assert (x[i, rows.min():rows.max() + 1, cols.min():cols.max() + 1, 0] == 3 - i).all()


def test_cutmix_fixed_box_hand_computed():
    images = np.stack([np.zeros((4, 5, 1), np.float32), np.ones((4, 5, 1), np.float32)])
    labels = np.array([0, 1])
    x, y, _ = mix_batch(images, labels, num_classes=2, method="cutmix", form="double_batch",
                        cutmix_box=(1, 3, 2, 5))
    expected = np.zeros((4, 5), np.float32)
    expected[1:3, 2:5] = 1.0
    np.testing.assert_array_equal(_np(x)[0, ..., 0], expected)
    np.testing.assert_allclose(_np(y)[0], [1 - 6 / 20, 6 / 20], atol=1e-6)


def test_label_smoothing_values_and_commutes_with_mixing():
    labels = np.array([3, 7])
    sm = _np(smooth_labels(labels, 10, 0.1))
    np.testing.assert_allclose(sm[0, 3], 0.91, atol=1e-6)
    np.testing.assert_allclose(sm[0, 0], 0.01, atol=1e-6)
    images = np.zeros((2, 2, 2, 3), np.float32)
    _, y, _ = mix_batch(images, labels, num_classes=10, method="none", label_smoothing=0.1)
    np.testing.assert_allclose(_np(y), sm, atol=1e-7)
    # Smooth-then-mix (what mix_batch does) == mix-then-smooth.
    lam = np.array([0.3, 0.8], np.float32)
    _, y, _ = mix_batch(images, labels, num_classes=10, lam=lam, label_smoothing=0.1)
    onehot = np.eye(10, dtype=np.float32)[labels]
    mixed = lam[:, None] * onehot + (1 - lam[:, None]) * onehot[::-1]
    np.testing.assert_allclose(_np(y), mixed * 0.9 + 0.01, atol=1e-6)
    np.testing.assert_allclose(_np(y).sum(1), 1.0, atol=1e-6)


def test_determinism_and_per_batch():
    images, labels = _batch(8)
    a = mix_batch(images, labels, num_classes=K, seed=5)
    b = mix_batch(images, labels, num_classes=K, seed=5)
    c = mix_batch(images, labels, num_classes=K, seed=6)
    np.testing.assert_array_equal(_np(a[0]), _np(b[0]))
    assert not np.array_equal(_np(a[1]), _np(c[1]))
    g1, g2 = keras.random.SeedGenerator(11), keras.random.SeedGenerator(11)
    s1 = [_np(mix_batch(images, labels, num_classes=K, method="cutmix", seed=g1)[0]) for _ in range(2)]
    s2 = [_np(mix_batch(images, labels, num_classes=K, method="cutmix", seed=g2)[0]) for _ in range(2)]
    np.testing.assert_array_equal(s1[0], s2[0])
    np.testing.assert_array_equal(s1[1], s2[1])
    assert not np.array_equal(s1[0], s1[1])  # the generator advances
    # per_sample=False: one coefficient for the whole batch.
    _, y, _ = mix_batch(images, labels, num_classes=K, per_sample=False, seed=1)
    onehot = np.eye(K, dtype=np.float32)[labels]
    lam = (_np(y) * onehot).sum(1)
    np.testing.assert_allclose(lam[:2], lam[0], atol=1e-6)  # pairs 0-7, 1-6 differ in labels


def test_beta_distribution_of_lambda():
    n = 2048
    images = np.zeros((2 * n, 1, 1, 1), np.float32)
    labels = np.concatenate([np.zeros(n, np.int32), np.ones(n, np.int32)])
    _, y, _ = mix_batch(images, labels, num_classes=2, form="double_batch", alpha=0.2, seed=2)
    lam = _np(y)[:, 0]
    assert abs(lam.mean() - 0.5) < 0.05
    # Beta(0.2, 0.2): variance = 1 / (4 (2 alpha + 1)) = 0.1786.
    assert abs(lam.var() - 0.25 / 1.4) < 0.02


def test_runs_under_jax_backend():
    code = textwrap.dedent("""
        import numpy as np, keras
        from data.mixing import mix_batch
        assert keras.backend.backend() == "jax"
        import jax
        images = np.random.default_rng(0).normal(size=(8, 6, 6, 3)).astype("float32")
        labels = np.arange(8) % 4
        teacher = np.random.default_rng(1).normal(size=(8, 4)).astype("float32")
        combos = [(m, f) for m in ("mixup", "cutmix") for f in ("reverse", "double_batch")]

        def all_combos(im, lb, tl):
            return [mix_batch(im, lb, num_classes=4, method=m, form=f, label_smoothing=0.1,
                              teacher_logits=tl, seed=3) for m, f in combos]

        f = jax.jit(all_combos)
        first, second = f(images, labels, teacher), f(images, labels, teacher)
        for (m, form), (x, y, t), (x2, _, _) in zip(combos, first, second):
            n = 8 if form == "reverse" else 4
            assert x.shape == (n, 6, 6, 3) and y.shape == (n, 4) and t.shape == (n, 4)
            np.testing.assert_allclose(np.asarray(y).sum(1), 1.0, atol=1e-5)
            np.testing.assert_array_equal(np.asarray(x), np.asarray(x2))
        g = jax.jit(lambda im, lb: mix_batch(im, lb, num_classes=4,
                                             lam=np.full(8, 0.25, "float32"))[0])
        np.testing.assert_allclose(np.asarray(g(images, labels)),
                                   0.25 * images + 0.75 * images[::-1], atol=1e-6)
        print("JAX_OK")
    """)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "JAX_OK" in proc.stdout, proc.stderr[-3000:]


def test_in_tf_function():
    # Under the TF backend the training step is a tf.function: trace it (graph mode).
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TF backend only")
    import tensorflow as tf
    images, labels = _batch(8)
    gen = keras.random.SeedGenerator(4)

    @tf.function
    def step(x, y):
        return mix_batch(x, y, num_classes=K, method="cutmix", form="double_batch",
                         label_smoothing=0.1, seed=gen)

    x, y, _ = step(images, labels)
    assert x.shape == (4, 4, 6, 3) and y.shape == (4, K)
    x2, _, _ = step(images, labels)
    assert x2.shape == x.shape


def test_invalid_arguments():
    images, labels = _batch(4)
    with pytest.raises(ValueError):
        mix_batch(images, labels, num_classes=K, method="mix")
    with pytest.raises(ValueError):
        mix_batch(images, labels, num_classes=K, form="pairs")
    with pytest.raises(TypeError):
        mix_batch(images, labels, num_classes=K, seed="x")
