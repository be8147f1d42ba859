"""Train-test leakage: rank (test target, training example) pairs by their datamodel weights.

A training example that is a near-duplicate of a test target raises the
target's margin whenever a model sees it, so it gets one of the largest
weights of the target's datamodel (paper section 4: each test image's top
datamodel training images are inspected). Pairs are ranked over all test
targets at once by several statistics of the weights:

- ``datamodel_rank`` (the default, the paper's protocol as one list): the
  pair's rank within its own target's weights (every target's top example
  first), ties between targets broken by ``datamodel_max``;
- ``datamodel``: the raw weight ``weight[i, t]`` (margin units);
- ``datamodel_normalized``: the weight over its target's L2 norm (the
  target's datamodel embedding);
- ``datamodel_max``: the weight over its target's largest |weight|;
- ``datamodel_standardized``: the weight standardised by its target's
  weights (minus their mean, over their standard deviation).

Digits has no known leaks, so ``data.plant_duplicates`` plants some; every
ranking is scored against them (precision and recall at K, average precision,
the planted example's rank among its target's weights), beside nearest
neighbours in input space (score: minus the Euclidean distance) as the
baseline. ``top_pairs.parquet`` lists the default ranking's top pairs.

Only test targets are ranked: a target that is itself a training example has
no train-test pair, and its own training position must never count as a leak.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.spatial.distance import cdist
from sklearn.metrics import average_precision_score

from .. import data, fit
from ..atomic import atomic_output
from . import figures

log = logging.getLogger(__name__)
METHODS = ("datamodel_rank", "datamodel", "datamodel_normalized", "datamodel_max", "datamodel_standardized", "nearest")
DEFAULT = "datamodel_rank"
"""The ranking of ``top_pairs.parquet``: each target's top datamodel examples first, as the paper inspects them."""
TIE_BREAK = 0.49
"""Weight of ``datamodel_max`` (in [-1, 1]) added to minus the within-target rank: it orders pairs of equal rank and
never moves a pair past one of another rank."""
MULTIPLES = (1, 2, 5)
"""Precision and recall are reported at these multiples of the number of planted pairs."""


def ranked_targets(target_train_index: np.ndarray) -> np.ndarray:
    """Indices of the targets that are not training examples, ascending."""
    return np.flatnonzero(np.asarray(target_train_index) < 0)


def input_distances(x_train: np.ndarray, x_targets: np.ndarray) -> np.ndarray:
    """Euclidean distances ``[n_targets, n_train]`` between the flattened inputs."""
    flat = lambda x: np.asarray(x, dtype=np.float64).reshape(len(x), -1)  # noqa: E731
    return cdist(flat(x_targets), flat(x_train))


def pair_scores(weight: np.ndarray, x_train: np.ndarray, x_targets: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Score matrices ``[len(targets), n_train]`` of every method (higher: more likely a duplicate)."""
    raw = np.asarray(weight, dtype=np.float64)[:, targets].T.copy()
    return {**weight_scores(raw), "nearest": -input_distances(x_train, np.asarray(x_targets)[targets])}


def _per_target(raw: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``raw`` divided row-wise by ``scale`` (an all-zero target: left as it is, all zero)."""
    return raw / np.where(scale > 0, scale, 1.0)


def within_target_rank(raw: np.ndarray) -> np.ndarray:
    """Rank (1: largest) of every pair among its own target's weights (row); ties: lower training index first."""
    order = np.argsort(-raw, axis=1, kind="stable")
    rank = np.empty(raw.shape, dtype=np.int64)
    np.put_along_axis(rank, order, np.arange(1, raw.shape[1] + 1)[None, :], axis=1)
    return rank


def weight_scores(raw: np.ndarray) -> dict[str, np.ndarray]:
    """Every datamodel ranking statistic of the weights ``raw`` [n_targets, n_train] (higher: more likely a leak)."""
    largest = _per_target(raw, np.abs(raw).max(axis=1, keepdims=True))
    centred = raw - raw.mean(axis=1, keepdims=True)
    return {
        "datamodel_rank": -within_target_rank(raw) + TIE_BREAK * largest,
        "datamodel": raw,
        "datamodel_normalized": _per_target(raw, np.linalg.norm(raw, axis=1, keepdims=True)),
        "datamodel_max": largest,
        "datamodel_standardized": _per_target(centred, raw.std(axis=1, keepdims=True)),
    }


def planted_matrix(targets: np.ndarray, n_train: int, planted_target: np.ndarray, planted_train: np.ndarray) -> np.ndarray:
    """Boolean ``[len(targets), n_train]``: True at the planted pairs (every planted target must be ranked)."""
    rows = np.searchsorted(targets, planted_target)
    if not (rows < len(targets)).all() or not np.array_equal(targets[rows], planted_target):
        raise ValueError("a planted target is not a test target of this data set")
    truth = np.zeros((len(targets), n_train), dtype=bool)
    truth[rows, planted_train] = True
    return truth


def ranking(scores: np.ndarray) -> np.ndarray:
    """Flat pair indices, highest score first (ties: lower flat index first)."""
    return np.argsort(-scores.ravel(), kind="stable")


def cutoffs(n_planted: int, n_pairs: int) -> list[int]:
    """The K of precision/recall at K: ``MULTIPLES`` times the planted pairs, at most every pair."""
    return sorted({min(m * n_planted, n_pairs) for m in MULTIPLES}) if n_planted else []


def hits_curve(scores: np.ndarray, truth: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Planted pairs among the top K pairs, for K = 1 .. n_pairs (``order``: ``ranking(scores)`` if known)."""
    return np.cumsum(truth.ravel()[ranking(scores) if order is None else order])


def rank_in_target(scores: np.ndarray, row: int, column: int) -> int:
    """Rank (1: highest) of one training example among its target's scores; ties count against it."""
    others = np.delete(scores[row], column)
    return int(1 + (others >= scores[row, column]).sum())


def method_metrics(scores: np.ndarray, truth: np.ndarray, ks: list[int], order: np.ndarray | None = None) -> dict:
    """Precision and recall at each K, R-precision, average precision and the planted examples' ranks."""
    n_planted = int(truth.sum())
    hits = hits_curve(scores, truth, order)
    rows, columns = np.nonzero(truth)
    in_target = np.array([rank_in_target(scores, r, c) for r, c in zip(rows, columns)])
    return {
        "r_precision": float(hits[n_planted - 1] / n_planted),
        "precision_at": {str(k): float(hits[k - 1] / k) for k in ks},
        "recall_at": {str(k): float(hits[k - 1] / n_planted) for k in ks},
        "average_precision": float(average_precision_score(truth.ravel(), scores.ravel())),
        "median_rank_in_target": float(np.median(in_target)),
        "fraction_rank_1_in_target": float(np.mean(in_target == 1)),
    }


def planted_positions(scores: np.ndarray, truth: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Positions (1: top) of the planted pairs in the ranking of all pairs, ascending.

    The j-th (1-based) is where recall reaches j / n_planted, at precision j / position.
    """
    return np.flatnonzero(truth.ravel()[ranking(scores) if order is None else order]) + 1


def planted_rows(scores: dict[str, np.ndarray], distance: np.ndarray, targets: np.ndarray, truth: np.ndarray,
                 weight: np.ndarray, orders: dict[str, np.ndarray]) -> list[dict]:
    """Per planted pair: its weight, input distance, and rank within its target and over all pairs, per method."""
    if not truth.any():
        return []
    pair_rank = {m: np.empty(truth.size, dtype=np.int64) for m in METHODS}
    for m in METHODS:
        pair_rank[m][orders[m]] = np.arange(1, truth.size + 1)
    rows = []
    for r, c in zip(*np.nonzero(truth)):
        t = int(targets[r])
        rows.append({"target": t, "train_index": int(c), "weight": float(weight[c, t]), "distance": float(distance[r, c]),
                     **{f"{m}_rank_in_target": rank_in_target(scores[m], r, c) for m in METHODS},
                     **{f"{m}_pair_rank": int(pair_rank[m][r * truth.shape[1] + c]) for m in METHODS}})
    return rows


def top_pairs_table(scores: np.ndarray, distance: np.ndarray, truth: np.ndarray, targets: np.ndarray,
                    dataset: data.Dataset, top: int, order: np.ndarray) -> pa.Table:
    """The ``top`` first pairs of the ranking ``order`` (the default's) with their raw weight ``scores`` and their
    weight's rank within their target."""
    order = order[:min(top, scores.size)]
    rows, columns = np.unravel_index(order, scores.shape)
    in_target = within_target_rank(scores[np.unique(rows)])
    return pa.table({
        "rank": pa.array(np.arange(1, len(order) + 1, dtype=np.int64)),
        "rank_in_target": pa.array(in_target[np.searchsorted(np.unique(rows), rows), columns].astype(np.int64)),
        "target": pa.array(targets[rows].astype(np.int64)),
        "target_label": pa.array(dataset.y_targets[targets[rows]].astype(np.int64)),
        "train_index": pa.array(columns.astype(np.int64)),
        "train_label": pa.array(dataset.y_train[columns].astype(np.int64)),
        "weight": pa.array(scores[rows, columns]),
        "distance": pa.array(distance[rows, columns]),
        "planted": pa.array(truth[rows, columns]),
    })


def summarise(scores: dict[str, np.ndarray], truth: np.ndarray, orders: dict[str, np.ndarray]) -> dict:
    """Metrics of every method (None when nothing is planted)."""
    n_planted, n_pairs = int(truth.sum()), int(truth.size)
    ks = cutoffs(n_planted, n_pairs)
    return {
        "n_pairs": n_pairs, "n_planted": n_planted, "k": ks, "default_method": DEFAULT,
        "precision_at_random": n_planted / n_pairs if n_pairs else None,
        "methods": {m: method_metrics(scores[m], truth, ks, orders[m]) for m in METHODS} if n_planted else None,
    }


def run(datamodels_path: str, data_path: str, alpha: float, settings: dict, table_path: str, summary_path: str,
        figure_path: str) -> None:
    """Rank every (test target, training example) pair; write the top pairs, the summary and the figure."""
    start = time.perf_counter()
    dataset = data.load(data_path)
    weight = fit.read(datamodels_path).weight
    targets = ranked_targets(dataset.target_train_index)
    scores = pair_scores(weight, dataset.x_train, dataset.x_targets, targets)
    distance = -scores["nearest"]
    truth = planted_matrix(targets, dataset.n_train, dataset.planted_target, dataset.planted_train)
    # Sort each method's pairs once; without planted pairs only the default ranking (the table) is needed.
    orders = {m: ranking(scores[m]) for m in (METHODS if truth.any() else (DEFAULT,))}
    table = top_pairs_table(scores["datamodel"], distance, truth, targets, dataset, settings["top_pairs"],
                            orders[DEFAULT])
    with atomic_output(table_path) as tmp:
        pq.write_table(table, tmp)
    summary = {"alpha": alpha, "n_test_targets": int(len(targets)), "n_train": dataset.n_train,
               "top_pairs": settings["top_pairs"], **summarise(scores, truth, orders),
               "planted_in_top_pairs": int(np.sum(table.column("planted").to_numpy(zero_copy_only=False))),
               "planted": planted_rows(scores, distance, targets, truth, weight, orders),
               "seconds": round(time.perf_counter() - start, 1)}
    with atomic_output(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    figures.leakage_curves({m: planted_positions(scores[m], truth, orders.get(m)) for m in METHODS}, summary["n_pairs"],
                           summary["methods"], table.column("weight").to_numpy(),
                           table.column("planted").to_numpy(zero_copy_only=False), alpha, figure_path)
    methods = summary["methods"] or {}
    log.info("leakage (alpha=%s): %d pairs, %d planted; %s", alpha, summary["n_pairs"], summary["n_planted"],
             "; ".join(f"{m}: R-precision {methods[m]['r_precision']:.3f}, AP {methods[m]['average_precision']:.3f}"
                       for m in methods))
