"""Recall@K and zero-shot splits (official.retrieval)."""
import numpy as np
import pytest

from official.retrieval import nearest_neighbors, recall_at_k, zero_shot_split


def _brute_force_recall(emb, labels, ks, metric, queries=None):
    """Reference: full distance matrix, stable argsort, query removed explicitly."""
    emb = np.asarray(emb, np.float64)
    n = emb.shape[0]
    if metric == "cosine":
        unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        dist = -unit @ unit.T
    else:
        dist = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    queries = range(n) if queries is None else queries
    hits = {k: 0 for k in ks}
    count = 0
    for q in queries:
        order = [j for j in np.argsort(dist[q], kind="stable") if j != q]
        for k in ks:
            hits[k] += any(labels[j] == labels[q] for j in order[:k])
        count += 1
    return {k: hits[k] / count for k in ks}


def test_hand_constructed_embeddings():
    # Points on a line: 0.0, 0.1 (class A), 1.0, 1.2 (class B), 5.0 (class C, alone).
    emb = np.array([[0.0], [0.1], [1.0], [1.2], [5.0]])
    labels = np.array([0, 0, 1, 1, 2])
    r = recall_at_k(emb, labels, ks=(1, 2, 4), metric="euclidean")
    # Each of A, A, B, B has its class mate as nearest neighbour; C never finds a mate.
    assert r == {1: pytest.approx(0.8), 2: pytest.approx(0.8), 4: pytest.approx(0.8)}
    # Cosine on 2-D directions: angle clusters 0/5 deg (A) and 90/80 deg (B), 180 deg (A).
    ang = np.deg2rad([0, 5, 90, 80, 180])
    emb2 = np.stack([np.cos(ang), np.sin(ang)], axis=1) * np.array([[1], [3], [2], [0.5], [7]])
    labels2 = np.array([0, 0, 1, 1, 0])
    r2 = recall_at_k(emb2, labels2, ks=(1, 2, 4), metric="cosine")
    # the 180-degree A point's nearest neighbours are B points (90, 80 deg) before A ones:
    # cos(180-90) = 0 > cos(180-80)... ranking: 90 (cos 0), 80 (-0.17), 5 (-0.996), 0 (-1)
    assert r2[1] == pytest.approx(4 / 5) and r2[2] == pytest.approx(4 / 5) and r2[4] == 1.0


def test_query_excluded_from_its_own_ranking():
    emb = np.eye(4)  # all orthogonal; duplicates of nothing
    labels = np.array([0, 1, 2, 3])
    assert recall_at_k(emb, labels, ks=(1, 3))[3] == 0.0  # no class mates anywhere
    dup = np.array([[1.0, 0], [1.0, 0], [0, 1.0]])
    # p0 and p1 coincide but differ in class; p1 must not retrieve itself (else R@1 = 1/3)
    r = recall_at_k(dup, np.array([0, 1, 1]), ks=(1, 2))
    assert r == {1: 0.0, 2: pytest.approx(2 / 3)}


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_matches_brute_force(metric):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 12, size=150)
    centers = rng.normal(size=(12, 16))
    emb = centers[labels] + 0.9 * rng.normal(size=(150, 16))
    ks = (1, 2, 4, 8)
    ours = recall_at_k(emb.astype(np.float32), labels, ks=ks, metric=metric, block_size=37)
    ref = _brute_force_recall(emb.astype(np.float32), labels, ks, metric)
    assert ours == pytest.approx(ref)
    assert 0 < ours[1] < ours[8] <= 1


def test_ties_broken_by_index():
    emb = np.array([[0.0], [1.0], [-1.0], [1.0]])
    nn = nearest_neighbors(emb, 2, metric="euclidean")
    np.testing.assert_array_equal(nn[0], [1, 2])  # 1, 2 and 3 all at distance 1
    np.testing.assert_array_equal(nn[1], [3, 0])


def test_distractors_are_gallery_only():
    emb = np.array([[0.0], [-0.05], [1.0], [1.02]])
    labels = np.array([0, -1, 0, -1])
    r = recall_at_k(emb, labels, ks=(1, 2), metric="euclidean", distractor_label=-1)
    # queries 0 and 2: their nearest neighbours are distractors; the class mate comes second
    assert r == {1: 0.0, 2: 1.0}
    ref = _brute_force_recall(emb, labels, (1, 2), "euclidean", queries=[0, 2])
    assert r == pytest.approx(ref)


def test_bad_inputs():
    emb = np.zeros((5, 3))
    with pytest.raises(ValueError, match="labels must have shape"):
        recall_at_k(emb, np.zeros(4))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        recall_at_k(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="metric"):
        recall_at_k(emb, np.zeros(5), metric="manhattan")
    with pytest.raises(ValueError, match="K=8"):
        recall_at_k(emb, np.zeros(5), ks=(1, 8))
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(np.full((3, 2), np.nan), np.zeros(3), ks=(1,))


def test_zero_shot_split():
    labels = np.array([3, 1, 2, 1, 4, 3, 2])
    train, test = zero_shot_split(labels, 2)
    np.testing.assert_array_equal(train, [1, 2, 3, 6])   # classes 1 and 2
    np.testing.assert_array_equal(test, [0, 4, 5])       # classes 3 and 4
    assert set(labels[train]).isdisjoint(labels[test])
    cub = np.repeat(np.arange(1, 201), 3)
    tr, te = zero_shot_split(cub, 100)
    assert set(cub[tr]) == set(range(1, 101)) and set(cub[te]) == set(range(101, 201))
    for bad in (0, 4, 1.5):
        with pytest.raises(ValueError, match="num_train_classes"):
            zero_shot_split(labels, bad)
