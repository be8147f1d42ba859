"""Evaluation of datamodels on held-out models: LDS and pooled correlations.

LDS follows TRAK's definition: for each target, the Spearman correlation over
held-out models between predicted and actual output, averaged over targets.
A target whose predictions are constant (all weights zero) has no ranking; its
correlation counts as 0 and is reported separately.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.stats import rankdata

from . import data, fit, plots, store
from .atomic import atomic_output


def predict(mask: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Predicted outputs [n_models, n_targets] from raw masks and raw-unit weights."""
    return mask.astype(np.float32) @ weight.astype(np.float32) + bias.astype(np.float32)


def _pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denominator = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=0) / np.where(denominator > 0, denominator, 1), np.nan)


def spearman_columns(predicted: np.ndarray, actual: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Spearman correlation of each column pair over the valid rows (NaN if undefined)."""
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if valid is None or valid.all():
        return _pearson_columns(rankdata(predicted, axis=0), rankdata(actual, axis=0))
    out = np.full(predicted.shape[1], np.nan)
    for t in range(predicted.shape[1]):
        rows = valid[:, t]
        if rows.sum() > 2:
            out[t] = _pearson_columns(rankdata(predicted[rows, t])[:, None], rankdata(actual[rows, t])[:, None])[0]
    return out


def empirical_influence(mask: np.ndarray, outputs: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Difference of mean output with and without each training example.

    Returns (weight [n_train, n_targets], bias [n_targets]); the bias makes the
    linear prediction unbiased on the models it was computed from. ``keep``
    [n_models, n_targets] restricts each target to some models.
    """
    x = mask.astype(np.float64)
    keep = np.ones(outputs.shape, dtype=bool) if keep is None else keep
    k = keep.astype(np.float64)
    y = np.where(keep, outputs, 0.0)
    with_count, with_sum = x.T @ k, x.T @ y
    without_count, without_sum = k.sum(axis=0) - with_count, y.sum(axis=0) - with_sum
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where((with_count > 0) & (without_count > 0),
                          with_sum / np.maximum(with_count, 1) - without_sum / np.maximum(without_count, 1), 0.0)
    mean_mask = with_count / np.maximum(k.sum(axis=0), 1)
    bias = y.sum(axis=0) / np.maximum(k.sum(axis=0), 1) - (mean_mask * weight).sum(axis=0)
    return weight.astype(np.float32), bias.astype(np.float32)


def metrics(predicted: np.ndarray, actual: np.ndarray, valid: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """Summary metrics and the per-target Spearman correlations.

    ``valid`` [n_models, n_targets] marks the (model, target) pairs to score:
    a train-set target is only scored on models whose subset excludes it.
    """
    valid = np.ones(actual.shape, dtype=bool) if valid is None else valid
    per_target = spearman_columns(predicted, actual, valid)
    undefined = np.isnan(per_target)
    p, a = predicted[valid].astype(np.float64), actual[valid].astype(np.float64)
    summary = {
        "lds": float(np.where(undefined, 0.0, per_target).mean()),
        "lds_median": float(np.median(np.where(undefined, 0.0, per_target))),
        "n_targets_constant_prediction": int(undefined.sum()),
        "pooled_spearman": float(_pearson_columns(rankdata(p)[:, None], rankdata(a)[:, None])[0]),
        "pooled_pearson": float(_pearson_columns(p[:, None], a[:, None])[0]),
        "mse": float(np.mean((p - a) ** 2)),
    }
    return summary, np.where(undefined, 0.0, per_target)


def valid_pairs(eval_mask: np.ndarray, target_train_index: np.ndarray) -> np.ndarray:
    """[n_models, n_targets]: a train-set target is scored only on models that exclude it."""
    valid = np.ones((eval_mask.shape[0], len(target_train_index)), dtype=bool)
    own = target_train_index >= 0
    valid[:, own] = ~eval_mask[:, target_train_index[own]]
    return valid


def score(weight: np.ndarray, bias: np.ndarray, eval_mask: np.ndarray, eval_outputs: np.ndarray,
          target_train_index: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics of linear attributions on held-out models: (summary, per-target, predictions)."""
    predicted = predict(eval_mask, weight, bias)
    summary, per_target = metrics(predicted, eval_outputs, valid_pairs(eval_mask, target_train_index))
    return summary, per_target, predicted


def baseline(train_mask: np.ndarray, train_outputs: np.ndarray, target_train_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical influence from the training models, with the same exclusion rule as the fit."""
    return empirical_influence(train_mask, train_outputs, valid_pairs(train_mask, target_train_index))


def run(datamodels_path: str, train_path: str, eval_path: str, info_path: str, data_path: str, alpha: float,
        metrics_path: str, per_target_path: str, scatter_path: str, histogram_path: str) -> None:
    """Score the datamodels and the empirical-influence baseline; write metrics and plots."""
    info = json.loads(Path(info_path).read_text())
    layout = store.layout_for(info, alpha)
    train, held_out = store.read_models(train_path, layout), store.read_models(eval_path, layout)
    index = data.load(data_path).target_train_index
    datamodels = fit.read(datamodels_path)
    summary, per_target, predicted = score(datamodels.weight, datamodels.bias, held_out.mask, held_out.margins, index)
    base_summary, base_per_target, _ = score(*baseline(train.mask, train.margins, index), held_out.mask,
                                             held_out.margins, index)
    result = {
        "alpha": alpha, **summary, "n_train_models": len(train), "n_eval_models": len(held_out),
        "n_targets": len(index), "baseline_lds": base_summary["lds"],
        "baseline": {"method": "empirical influence (difference of means)", **base_summary},
        "mean_target_accuracy_eval_models": float(held_out.target_accuracy.mean()),
        "n_not_converged": int((~datamodels.converged).sum()),
    }
    with atomic_output(metrics_path) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    table = pa.table({"target": np.arange(len(index)), "target_train_index": index, "lds": per_target,
                      "baseline_lds": base_per_target, "lam": datamodels.lam,
                      "nonzero_weights": (datamodels.weight != 0).sum(axis=0)})
    with atomic_output(per_target_path) as tmp:
        pq.write_table(table, tmp)
    plots.predicted_vs_actual(predicted, held_out.margins,
                              f"alpha={alpha:g}: LDS {summary['lds']:.3f}, pooled Spearman {summary['pooled_spearman']:.3f}",
                              scatter_path)
    plots.lds_histogram({"datamodels": per_target, "empirical influence": base_per_target}, histogram_path)
