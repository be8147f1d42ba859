"""Brittleness / data support: the smallest removal set predicted to flip a prediction, verified by retraining.

For a target t with full-data margin m (the mean over the reference models
retrained on the whole training set), walk down t's datamodel weights in
decreasing order: removing the top k examples is predicted to leave the
margin ``m - cumsum(w_sorted)[k-1]``. The support estimate is the first k at
which this predicted margin drops below 0, using positive weights only; a
target whose margin never crosses 0 within its positive weights is "not
flippable". Each estimate is verified by retraining without the top-k set
(flipped: the majority of the seeds misclassify t, i.e. margin < 0), and again
with k inflated by ``inflation`` (k' = ceil((1 + inflation) k)).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import data, fit
from ..atomic import atomic_output
from ..seeding import AppIndex
from . import figures
from .retrain import Retrainer
from .sampling import target_order, top_by_weight

log = logging.getLogger(__name__)
TARGET_INDEX = AppIndex.BRITTLENESS_TARGETS
"""``Stream.APPLICATION`` index of the target sample."""
NOT_FLIPPABLE = -1


def support_estimate(weight: np.ndarray, margin: float) -> int:
    """Smallest k whose top-k removal is predicted to push ``margin`` below 0; -1 if none (0 if already < 0)."""
    if margin < 0:
        return 0
    w = np.asarray(weight, dtype=np.float64)[top_by_weight(weight, len(weight))]
    predicted = margin - np.cumsum(w[w > 0])
    crossed = np.flatnonzero(predicted < 0)
    return int(crossed[0]) + 1 if len(crossed) else NOT_FLIPPABLE


def inflate(k: int, inflation: float, n_train: int) -> int:
    """k inflated by a fraction, rounded up, at least k + 1 and leaving at least one training example."""
    return min(max(math.ceil(k * (1 + inflation) - 1e-9), k + 1), n_train - 1)


def flipped(margins: np.ndarray) -> bool:
    """Whether the majority of the retrained models misclassify the target (margin < 0)."""
    margins = np.asarray(margins)
    return bool((margins < 0).sum() * 2 > len(margins))


def fraction_at_most(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Fraction of ``values`` (-1 meaning never) that are <= each grid point."""
    values = np.asarray(values)
    finite = np.sort(values[values >= 0])
    return np.searchsorted(finite, grid, side="right") / max(len(values), 1)


def _mean_or_nan(margins: np.ndarray) -> np.ndarray:
    """Row means of ``[n_targets, n_seeds]``, NaN for rows never retrained."""
    out = np.full(len(margins), np.nan)
    done = ~np.isnan(margins).all(axis=1)
    out[done] = margins[done].mean(axis=1)
    return out


def run(datamodels_path: str, data_path: str, alpha: float, settings: dict, recipe: dict, seed: int,
        threads: int, table_path: str, summary_path: str, curve_path: str) -> None:
    """Estimate the support of sampled targets, verify by retraining, write the table, summary and figure."""
    import torch

    torch.set_num_threads(max(1, threads))
    start = time.perf_counter()
    dataset = data.load(data_path)
    weight = fit.read(datamodels_path).weight
    n_seeds, inflation = settings["n_seeds"], settings["inflation"]
    retrainer = Retrainer(dataset, recipe, seed, n_seeds)
    reference = retrainer.reference()
    reference_mean = reference.mean(axis=0)
    # Support is defined for predictions the full-data models get right: sample among those.
    order = target_order(dataset.n_targets, seed, alpha, TARGET_INDEX)
    targets = order[reference_mean[order] > 0][:settings["n_targets"]]
    estimate = np.array([support_estimate(weight[:, t], float(reference_mean[t])) for t in targets], dtype=np.int64)
    flippable = estimate > 0
    inflated = np.array([inflate(int(k), inflation, dataset.n_train) if k > 0 else NOT_FLIPPABLE for k in estimate])
    sets = [top_by_weight(weight[:, t], int(k)) for t, k in zip(targets[flippable], estimate[flippable])]
    sets += [top_by_weight(weight[:, t], int(k)) for t, k in zip(targets[flippable], inflated[flippable])]
    margins = retrainer.margins(sets)
    n_flippable = int(flippable.sum())
    at_estimate = np.full((len(targets), n_seeds), np.nan, np.float32)
    at_inflated = np.full((len(targets), n_seeds), np.nan, np.float32)
    rows, own = np.flatnonzero(flippable), targets[flippable]  # set i (and n_flippable + i): i-th flippable target
    at_estimate[rows] = margins[np.arange(n_flippable), :, own]
    at_inflated[rows] = margins[n_flippable + np.arange(n_flippable), :, own]
    flipped_estimate = np.array([flipped(row) for row in at_estimate], dtype=bool)  # never retrained: NaN, not flipped
    flipped_inflated = np.array([flipped(row) for row in at_inflated], dtype=bool)
    table = pa.table({
        "target": pa.array(targets.astype(np.int64)),
        "target_label": pa.array(dataset.y_targets[targets].astype(np.int64)),
        "target_train_index": pa.array(dataset.target_train_index[targets].astype(np.int64)),
        "reference_margin": pa.array(reference_mean[targets].astype(np.float64)),
        "n_positive_weights": pa.array((weight[:, targets] > 0).sum(axis=0).astype(np.int64)),
        "support_estimate": pa.array(estimate),
        "flippable": pa.array(flippable),
        "margin_at_estimate": pa.array(_mean_or_nan(at_estimate)),
        "flipped_at_estimate": pa.array(flipped_estimate),
        "inflated_k": pa.array(inflated.astype(np.int64)),
        "margin_at_inflated": pa.array(_mean_or_nan(at_inflated)),
        "flipped_at_inflated": pa.array(flipped_inflated),
    })
    with atomic_output(table_path) as tmp:
        pq.write_table(table, tmp)
    grid = np.unique(np.geomspace(1, dataset.n_train, 200).round().astype(np.int64))
    curves = {
        "estimated support ≤ k": fraction_at_most(estimate, grid),
        "confirmed by retraining at the estimate": fraction_at_most(np.where(flipped_estimate, estimate, -1), grid),
        f"confirmed with the estimate +{inflation:.0%}": fraction_at_most(np.where(flipped_inflated, inflated, -1), grid),
    }
    figures.support_curve(grid, curves, alpha, curve_path)
    checkpoints = [k for k in (5, 10, 20, 40, 80, 160, 320, 640) if k < dataset.n_train]
    summary = {
        "alpha": alpha, "n_targets": int(len(targets)), "targets": [int(t) for t in targets], "n_seeds": n_seeds,
        "inflation": inflation,
        "n_flippable": n_flippable,
        "fraction_flippable": n_flippable / max(len(targets), 1),
        "median_support_estimate": float(np.median(estimate[flippable])) if n_flippable else None,
        "fraction_estimated_at_most": {str(k): float(v) for k, v in zip(checkpoints, fraction_at_most(estimate, np.array(checkpoints)))},
        "fraction_confirmed": float(flipped_estimate.sum() / n_flippable) if n_flippable else None,
        "fraction_confirmed_inflated": float(flipped_inflated.sum() / n_flippable) if n_flippable else None,
        "curve": {"k": grid.tolist(), **{label: values.tolist() for label, values in curves.items()}},
        "n_models_trained": retrainer.n_models_trained, "seconds": round(time.perf_counter() - start, 1),
    }
    with atomic_output(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    log.info("brittleness (alpha=%s): %d targets, %d flippable (median support %s); retraining confirms %s, "
             "with +%g%%: %s; %d models in %.0f s", alpha, len(targets), n_flippable,
             summary["median_support_estimate"], summary["fraction_confirmed"], 100 * inflation,
             summary["fraction_confirmed_inflated"], retrainer.n_models_trained, summary["seconds"])
