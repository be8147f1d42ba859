"""Counterfactual prediction: remove the top-k positive-weight training examples of a target and retrain.

For each sampled target t and removal size k the datamodel predicts the change
of t's margin when a set R is removed from the full training set as
``-sum(weight[R, t])`` (raw units). The actual change is the mean margin over
``n_seeds`` models retrained without R minus the mean margin of ``n_seeds``
models trained on everything (same seeds, same recipe). Two baselines remove k
random training examples and the k nearest neighbours of t in input space.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.stats import pearsonr, spearmanr

from .. import data, fit
from ..atomic import atomic_output
from ..seeding import AppIndex, Stream, rng
from . import figures
from .retrain import Retrainer
from .sampling import target_order, top_by_weight

log = logging.getLogger(__name__)
STRATEGIES = ("datamodel", "random", "nearest")
TARGET_INDEX, RANDOM_INDEX = AppIndex.COUNTERFACTUALS_TARGETS, AppIndex.COUNTERFACTUALS_RANDOM
"""``Stream.APPLICATION`` indices of the target sample and of the random removals."""


def predicted_change(weight: np.ndarray, removed: np.ndarray) -> float:
    """Datamodel prediction of the margin change when ``removed`` leaves the training set."""
    return 0.0 - float(np.asarray(weight, dtype=np.float64)[np.asarray(removed, dtype=np.int64)].sum())


def nearest_neighbours(x_train: np.ndarray, x_target: np.ndarray, k: int) -> np.ndarray:
    """The k training examples closest to ``x_target`` (Euclidean on the flattened inputs), closest first."""
    distance = ((x_train.reshape(len(x_train), -1).astype(np.float64) - x_target.reshape(-1)) ** 2).sum(axis=1)
    return np.argsort(distance, kind="stable")[:k]


def removal_sets(weight: np.ndarray, x_train: np.ndarray, x_targets: np.ndarray, targets: np.ndarray,
                 ks: list[int], generator: np.random.Generator) -> list[dict]:
    """One record per (target, k, strategy) with the removed training indices, in a fixed order."""
    records = []
    for t in targets:
        nearest = nearest_neighbours(x_train, x_targets[t], len(x_train))  # one sort per target; a prefix per k
        for k in ks:
            sets = {
                "datamodel": top_by_weight(weight[:, t], k),
                "random": np.sort(generator.choice(len(x_train), size=k, replace=False)),
                "nearest": nearest[:k],
            }
            records += [{"target": int(t), "k": int(k), "strategy": s, "removed": sets[s].astype(np.int64)}
                        for s in STRATEGIES]
    return records


def correlations(predicted: np.ndarray, actual: np.ndarray) -> dict:
    """Spearman and Pearson correlation (None when fewer than 3 points or a constant series)."""
    if len(predicted) < 3 or np.ptp(predicted) == 0 or np.ptp(actual) == 0:
        return {"spearman": None, "pearson": None, "n": int(len(predicted))}
    return {"spearman": float(spearmanr(predicted, actual).statistic),
            "pearson": float(pearsonr(predicted, actual).statistic), "n": int(len(predicted))}


def summarise(rows: dict, ks: list[int]) -> dict:
    """Correlations of predicted and actual change (datamodel removals) and mean changes per strategy and k."""
    strategy, k = np.asarray(rows["strategy"]), np.asarray(rows["k"])
    predicted, actual = np.asarray(rows["predicted_change"]), np.asarray(rows["actual_change"])
    dm = strategy == "datamodel"
    return {
        "datamodel_removals": correlations(predicted[dm], actual[dm]),
        "all_removals": correlations(predicted, actual),
        "per_k": {str(size): correlations(predicted[dm & (k == size)], actual[dm & (k == size)]) for size in ks},
        "mean_actual_change": {s: {str(size): float(actual[(strategy == s) & (k == size)].mean()) for size in ks}
                               for s in STRATEGIES},
        "mean_predicted_change": {s: {str(size): float(predicted[(strategy == s) & (k == size)].mean()) for size in ks}
                                  for s in STRATEGIES},
    }


def run(datamodels_path: str, data_path: str, alpha: float, settings: dict, recipe: dict, seed: int,
        threads: int, table_path: str, summary_path: str, scatter_path: str, curve_path: str) -> None:
    """Sample targets, build the removal sets, retrain, and write the table, summary and figures."""
    import torch

    torch.set_num_threads(max(1, threads))
    start = time.perf_counter()
    dataset = data.load(data_path)
    weight = fit.read(datamodels_path).weight
    ks = sorted(int(k) for k in settings["k"])
    if ks[-1] >= dataset.n_train:
        raise ValueError(f"removal size {ks[-1]} leaves no training examples (|S| = {dataset.n_train})")
    targets = target_order(dataset.n_targets, seed, alpha, TARGET_INDEX)[:settings["n_targets"]]
    records = removal_sets(weight, dataset.x_train, dataset.x_targets, targets, ks,
                           rng(seed, Stream.APPLICATION, alpha, RANDOM_INDEX))
    retrainer = Retrainer(dataset, recipe, seed, settings["n_seeds"])
    reference = retrainer.reference()                                    # [n_seeds, n_targets]
    removed = retrainer.margins([r["removed"] for r in records])         # [n_sets, n_seeds, n_targets]
    reference_mean = reference.mean(axis=0)
    rows: dict[str, list] = {name: [] for name in (
        "target", "target_label", "target_train_index", "k", "strategy", "predicted_change", "actual_change",
        "actual_change_sem", "reference_margin", "margin_without", "removed")}
    for i, record in enumerate(records):
        t = record["target"]
        paired = removed[i, :, t] - reference[:, t]
        rows["target"].append(t)
        rows["target_label"].append(int(dataset.y_targets[t]))
        rows["target_train_index"].append(int(dataset.target_train_index[t]))
        rows["k"].append(record["k"])
        rows["strategy"].append(record["strategy"])
        rows["predicted_change"].append(predicted_change(weight[:, t], record["removed"]))
        rows["actual_change"].append(float(removed[i, :, t].mean() - reference_mean[t]))
        rows["actual_change_sem"].append(float(paired.std(ddof=1) / np.sqrt(len(paired))) if len(paired) > 1 else float("nan"))
        rows["reference_margin"].append(float(reference_mean[t]))
        rows["margin_without"].append(float(removed[i, :, t].mean()))
        rows["removed"].append(record["removed"].tolist())
    table = pa.table({name: pa.array(values, type=pa.list_(pa.int64()) if name == "removed" else None)
                      for name, values in rows.items()})
    with atomic_output(table_path) as tmp:
        pq.write_table(table, tmp)
    summary = {
        "alpha": alpha, "n_targets": int(len(targets)), "targets": [int(t) for t in targets], "k": ks,
        "n_seeds": settings["n_seeds"], "strategies": list(STRATEGIES), **summarise(rows, ks),
        "n_models_trained": retrainer.n_models_trained, "seconds": round(time.perf_counter() - start, 1),
    }
    with atomic_output(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    dm = np.asarray(rows["strategy"]) == "datamodel"
    figures.counterfactual_scatter(np.asarray(rows["predicted_change"])[dm], np.asarray(rows["actual_change"])[dm],
                                   np.asarray(rows["k"])[dm], summary["datamodel_removals"], alpha, scatter_path)
    figures.margin_drop_vs_k(ks, summary["mean_actual_change"], rows, alpha, curve_path)
    log.info("counterfactuals (alpha=%s): %d targets x %d k x %d strategies, %d models retrained in %.0f s; "
             "Spearman %s, Pearson %s", alpha, len(targets), len(ks), len(STRATEGIES), retrainer.n_models_trained,
             summary["seconds"], summary["datamodel_removals"]["spearman"], summary["datamodel_removals"]["pearson"])
