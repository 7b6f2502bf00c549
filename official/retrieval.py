"""Image retrieval metrics: Recall@K over embeddings, and zero-shot class splits.

Assemble-ResNet (Lee et al., 2020, Sec. 4.3 / Table 7) evaluates transfer to image retrieval
on CUB-200-2011, Cars196 and Stanford Online Products (SOP) with Recall@K in the zero-shot
protocol of Oh Song et al. ("Deep Metric Learning via Lifted Structured Feature Embedding",
CVPR 2016): train on the first half of the classes, retrieve among the images of the other
half, every test image serving as a query against all other test images.

``Recall@K`` = fraction of queries whose K nearest neighbours (the query itself excluded)
contain at least one image of the query's class. Ranking is by cosine similarity of
L2-normalized embeddings (the paper's default, ``eval_similarity='cosine'`` in
clovaai/assembled-cnn ``metric/recall_metric.py``) or by Euclidean distance.

Deviations from ``metric/recall_metric.py``: the query is removed from its own ranking by
index (the reference code removes the position equal to the query's index among the
*queries*, which is only the same thing when there are no distractors); ties at equal
distance are broken by gallery index (stable sort) rather than by ``tf.nn.top_k``'s order.
Samples labelled ``distractor_label`` (the reference code uses -1) are in the gallery but are
never queries, as in the reference code.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

__all__ = ["recall_at_k", "nearest_neighbors", "zero_shot_split"]


def _validate(embeddings, labels):
    embeddings = np.asarray(embeddings)
    labels = np.asarray(labels)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must have shape [N, D], got {embeddings.shape}")
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels must have shape [{embeddings.shape[0]}] to match embeddings "
                         f"{embeddings.shape}, got {labels.shape}")
    if embeddings.shape[0] < 2:
        raise ValueError("need at least 2 embeddings to retrieve anything")
    if not np.issubdtype(embeddings.dtype, np.number):
        raise ValueError(f"embeddings must be numeric, got dtype {embeddings.dtype}")
    embeddings = embeddings.astype(np.float64 if embeddings.dtype == np.float64 else np.float32)
    if not np.all(np.isfinite(embeddings)):
        raise ValueError("embeddings contain NaN or inf")
    return embeddings, labels


def _check_metric(metric: str) -> str:
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"unknown metric {metric!r}: use 'cosine' or 'euclidean'")
    return metric


def nearest_neighbors(embeddings, k: int, metric: str = "cosine",
                      queries: Sequence[int] | None = None, block_size: int = 1024) -> np.ndarray:
    """Indices ``[num_queries, k]`` of the ``k`` nearest gallery items of each query.

    The gallery is all of ``embeddings``; each query (an index into it) is excluded from its
    own neighbours. Nearest first; equal distances are ordered by gallery index.
    """
    metric = _check_metric(metric)
    embeddings = np.asarray(embeddings)
    n = embeddings.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in 1..{n - 1} for {n} embeddings, got {k}")
    queries = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    if metric == "cosine":
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        gallery = embeddings / np.maximum(norms, 1e-12)
        sq_norms = None
    else:
        gallery = embeddings
        sq_norms = np.sum(gallery.astype(np.float64) ** 2, axis=1)
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], block_size):
        q_idx = queries[start:start + block_size]
        q = gallery[q_idx]
        if metric == "cosine":
            dist = -(q @ gallery.T).astype(np.float64)
        else:
            dist = (sq_norms[q_idx][:, None] + sq_norms[None, :]
                    - 2.0 * (q.astype(np.float64) @ gallery.T.astype(np.float64)))
        dist[np.arange(q_idx.shape[0]), q_idx] = np.inf
        if k < n - 1:
            part = np.argpartition(dist, k - 1, axis=1)[:, :k]
            kth = np.take_along_axis(dist, part, axis=1).max(axis=1, keepdims=True)
            # Include every item tied with the k-th distance, then sort stably by
            # (distance, index) so that ties are broken by gallery index.
            for row in range(q_idx.shape[0]):
                cand = np.flatnonzero(dist[row] <= kth[row])
                order = np.lexsort((cand, dist[row, cand]))
                out[start + row] = cand[order[:k]]
        else:
            order = np.argsort(dist, axis=1, kind="stable")
            out[start:start + q_idx.shape[0]] = order[:, :k]
    return out


def recall_at_k(embeddings, labels, ks: Iterable[int] = (1, 2, 4, 8), metric: str = "cosine",
                distractor_label=None, block_size: int = 1024) -> dict:
    """Recall@K for every K in ``ks``: ``{K: fraction of queries with a same-class hit}``.

    Args:
      embeddings: ``[N, D]`` float array (e.g. the model's ``embedding`` or ``pool`` output).
      labels: ``[N]`` class labels.
      ks: the K values (paper: 1, 2, 4, 8 for CUB/Cars, 1, 10, 100, 1000 for SOP).
      metric: ``"cosine"`` (L2-normalized dot product) or ``"euclidean"``.
      distractor_label: samples with this label are gallery only, never queries (the paper
        code uses -1); ``None``: every sample is a query.
      block_size: queries per distance block (memory ``block_size * N`` floats).
    """
    embeddings, labels = _validate(embeddings, labels)
    metric = _check_metric(metric)
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    n = embeddings.shape[0]
    if ks[-1] > n - 1:
        raise ValueError(f"K={ks[-1]} is larger than the {n - 1} other embeddings")
    if distractor_label is None:
        queries = np.arange(n)
    else:
        queries = np.flatnonzero(labels != distractor_label)
        if queries.size == 0:
            raise ValueError("every sample is a distractor; no queries left")
    neighbors = nearest_neighbors(embeddings, ks[-1], metric, queries, block_size)
    hits = labels[neighbors] == labels[queries][:, None]
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), ks[-1])
    return {k: float(np.mean(first_hit < k)) for k in ks}


def zero_shot_split(labels, num_train_classes: int):
    """Zero-shot split by class: the first ``num_train_classes`` classes train, the rest test.

    Classes are ordered by sorted label value (CUB-200: classes 1-100 train, 101-200 test;
    Cars196: 98 / 98; SOP: 11,318 / 11,316), as in Oh Song et al. (2016) and the
    ``build_*_zeroshot.py`` scripts of clovaai/assembled-cnn.

    Returns ``(train_indices, test_indices)``, int64 arrays of sample indices in order.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    classes = np.unique(labels)
    if isinstance(num_train_classes, bool) or int(num_train_classes) != num_train_classes:
        raise ValueError(f"num_train_classes must be an integer, got {num_train_classes!r}")
    num_train_classes = int(num_train_classes)
    if not 1 <= num_train_classes <= classes.size - 1:
        raise ValueError(f"num_train_classes must be in 1..{classes.size - 1} for "
                         f"{classes.size} classes, got {num_train_classes}")
    train_classes = classes[:num_train_classes]
    is_train = np.isin(labels, train_classes)
    return np.flatnonzero(is_train), np.flatnonzero(~is_train)
