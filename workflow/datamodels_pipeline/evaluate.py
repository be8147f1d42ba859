"""Evaluation of datamodels on held-out models: LDS and pooled correlations.

LDS follows TRAK's definition: for each target, the Spearman correlation over
held-out models between predicted and actual output, averaged over targets.
A target whose predictions are constant (all weights zero) has no ranking; its
correlation counts as 0 and is reported separately.

Repeated held-out models (``evaluate.seeds_per_mask``, the split ``repeat``) give the
noise ceiling, the LDS against seed-averaged outputs (the paper's protocol) and the
datamodels' fraction of the ceiling: :func:`noise_ceiling`, :func:`repeated_metrics`
and docs/evaluation.md.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.stats import rankdata

from . import data, fit, plots, sizing, statistics, store
from .fit import predict
from .masks import pack, repeat_pairs, unpack
from .atomic import atomic_output

log = logging.getLogger(__name__)


@dataclass
class HeldOut:
    """The held-out models as evaluation needs them: bit-packed masks, outputs, and the pairs to score.

    Memory: ``E (p / 8 + 5 T)`` bytes for E models, p training examples and T targets.
    """

    packed: np.ndarray   # uint8 [E, ceil(p / 8)]
    margins: np.ndarray  # float32 [E, T]
    valid: np.ndarray    # bool [E, T]: a train-set target is scored only on models that exclude it
    target_accuracy: float
    n_train: int
    model_id: np.ndarray | None = None  # int64 [E], ascending (the eval aggregate's order)

    def __len__(self) -> int:
        return len(self.margins)

    @classmethod
    def from_models(cls, models: store.Models, target_train_index: np.ndarray) -> "HeldOut":
        """From decoded models in memory (small sets, tests)."""
        return cls(pack(models.mask), models.margins, valid_pairs(models.mask, target_train_index),
                   float(models.target_accuracy.mean()), models.mask.shape[1], models.model_id)

    def predict(self, weight: np.ndarray, bias: np.ndarray, batch_rows: int = 4096) -> np.ndarray:
        """Predictions [E, T] of a linear model, unpacking the masks in batches."""
        out = np.empty(self.margins.shape, dtype=np.float32)
        for start in range(0, len(self), batch_rows):
            rows = slice(start, start + batch_rows)
            out[rows] = predict(unpack(self.packed[rows], self.n_train), weight, bias)
        return out


def read_held_out(path: str | Path, layout: store.Layout, target_train_index: np.ndarray) -> HeldOut:
    """Stream the held-out models' file into a :class:`HeldOut` (no dense [E, p] mask is kept)."""
    packed, margins, valid, ids, accuracy = [], [], [], [], 0.0
    for models in store.iter_models(path, layout, store.batch_rows_for(layout)):
        ids.append(models.model_id)
        packed.append(pack(models.mask))
        margins.append(models.margins)
        valid.append(valid_pairs(models.mask, target_train_index))
        accuracy += float(models.target_accuracy.astype(np.float64).sum())
    n = sum(len(m) for m in margins)
    return HeldOut(np.concatenate(packed), np.concatenate(margins), np.concatenate(valid), accuracy / n,
                   layout.n_train, np.concatenate(ids))


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


def empirical_influence_from_sums(sums: statistics.RowSums, target_train_index: np.ndarray
                                  ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`empirical_influence` over the training models from their sums (``statistics``), same exclusion rule."""
    n_kept = sums.n_kept
    with_count = np.repeat(np.asarray(sums.xsum, dtype=np.float64)[:, None], len(n_kept), axis=1)  # [p, T]
    own = np.flatnonzero(target_train_index >= 0)
    if len(own):
        with_count[:, own] -= np.asarray(sums.gram[:, target_train_index[own]], dtype=np.float64)
    with_sum = np.asarray(sums.xy, dtype=np.float64).T
    without_count, without_sum = n_kept - with_count, sums.ysum - with_sum
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where((with_count > 0) & (without_count > 0),
                          with_sum / np.maximum(with_count, 1) - without_sum / np.maximum(without_count, 1), 0.0)
    mean_mask = with_count / np.maximum(n_kept, 1)
    bias = sums.ysum / np.maximum(n_kept, 1) - (mean_mask * weight).sum(axis=0)
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


def baseline(statistics_folder: str | Path, target_train_index: np.ndarray, budget_mb: float = 256
             ) -> tuple[np.ndarray, np.ndarray, int]:
    """Empirical influence of every target from a statistics folder, a block of targets at a time.

    Returns (weight [p, T] float32, bias [T], number of training models); memory: the weights plus
    about ``budget_mb`` of float64 temporaries.
    """
    n_targets = len(target_train_index)
    meta = statistics.load(statistics_folder, targets=np.zeros(0, np.int64))
    p = len(meta.all.xsum)
    weight, bias = np.zeros((p, n_targets), np.float32), np.zeros(n_targets, np.float32)
    step = max(1, int(budget_mb * 2**20 // (7 * 8 * p)))
    for start in range(0, n_targets, step):
        block = np.arange(start, min(n_targets, start + step))
        stats = statistics.load(statistics_folder, targets=block)
        weight[:, block], bias[block] = empirical_influence_from_sums(stats.all, target_train_index[block])
    return weight, bias, meta.all.n


def score(weight: np.ndarray, bias: np.ndarray, held_out: HeldOut) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics of linear attributions on held-out models: (summary, per-target, predictions)."""
    predicted = held_out.predict(weight, bias)
    summary, per_target = metrics(predicted, held_out.margins, held_out.valid)
    return summary, per_target, predicted


@dataclass
class Repeated:
    """Held-out masks trained with several seeds each: seed 0 is the ``eval`` model, seeds 1.. the ``repeat`` split.

    Memory: ``K (p / 8 + 4 S T + T)`` bytes for K masks, S seeds, p training examples and T targets (the default's
    200 x 5 x 597: 2.4 MB; 10,000 targets: 40 MB).
    """

    packed: np.ndarray   # uint8 [K, ceil(p / 8)]
    margins: np.ndarray  # float32 [K, S, T]
    valid: np.ndarray    # bool [K, T]
    n_train: int
    n_dropped: int       # masks left out because one of their models diverged

    def predict(self, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """Predictions [K, T] of a linear model on the repeated masks."""
        return predict(unpack(self.packed, self.n_train), weight, bias)


def read_repeated(held_out: HeldOut, repeat_path: str | Path, layout: store.Layout, n_masks: int, seeds: int
                  ) -> Repeated:
    """The first ``n_masks`` held-out masks with ``seeds`` models each, streamed from the ``repeat`` aggregate.

    A mask counts only if all its models are there (diverged models are dropped by aggregation). Every repeat model's
    subset must be its held-out mask's (StoreError otherwise: a file from another configuration).
    """
    margins = np.full((n_masks, seeds, layout.n_targets), np.nan, dtype=np.float32)
    present = np.zeros((n_masks, seeds), dtype=bool)
    packed = np.zeros((n_masks, layout.mask_bytes), dtype=np.uint8)
    ids = np.arange(len(held_out)) if held_out.model_id is None else held_out.model_id
    rows = np.flatnonzero(ids < n_masks)
    masks_at = ids[rows]
    packed[masks_at], margins[masks_at, 0], present[masks_at, 0] = held_out.packed[rows], held_out.margins[rows], True
    valid = np.ones((n_masks, layout.n_targets), dtype=bool)
    valid[masks_at] = held_out.valid[rows]
    for models in store.iter_models(repeat_path, layout, store.batch_rows_for(layout)):
        mask_index, seed_index = repeat_pairs(models.model_id, n_masks)
        if (seed_index >= seeds).any():
            raise store.StoreError(f"{repeat_path}: model ids beyond {n_masks} masks x {seeds} seeds")
        own = pack(models.mask)
        known = present[mask_index, 0]
        if not np.array_equal(own[known], packed[mask_index[known]]):
            raise store.StoreError(f"{repeat_path}: a repeated model's subset is not its held-out mask's "
                                   f"(a file from another configuration?)")
        packed[mask_index[~known]] = own[~known]
        margins[mask_index, seed_index] = models.margins
        present[mask_index, seed_index] = True
    keep = present.all(axis=1) & np.isfinite(margins).all(axis=(1, 2))
    return Repeated(packed[keep], margins[keep], valid[keep], layout.n_train, int((~keep).sum()))


def corrected_ceiling(r_loo: np.ndarray, seeds: int) -> np.ndarray:
    """The noise ceiling from the leave-one-seed-out correlation of ``seeds`` models per mask (per target).

    With outputs y_s = f(mask) + noise (variance sigma^2) and R = var f / (var f + sigma^2) the reliability of one
    seed, the mean of m = seeds - 1 seeds has reliability R_m = m R / (1 + (m - 1) R) (Spearman-Brown), and its
    Pearson correlation with a single seed is r = sqrt(R R_m), below the ceiling sqrt(R) (the correlation of the
    infinite-seed mean f with one seed). Solving r^2 (1 + (m - 1) R) = m R^2 for R gives the corrected ceiling
    sqrt(R); a negative r gives the negative of the correction of |r| (pure-noise targets average to 0), an
    undefined one 0. Applied to Spearman correlations as to Pearson's (close for near-Gaussian outputs).
    """
    m = seeds - 1
    r = np.nan_to_num(np.asarray(r_loo, dtype=np.float64), nan=0.0)
    a = r * r
    reliability = (a * (m - 1) + np.sqrt(a * a * (m - 1) ** 2 + 4 * m * a)) / (2 * m)
    return np.sign(r) * np.sqrt(np.clip(reliability, 0.0, 1.0))


def noise_ceiling(margins: np.ndarray, valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-target noise ceiling of K masks x S seeds of outputs ``margins`` [K, S, T] (S >= 2).

    ``leave_one_out``: Spearman correlation over masks between the mean of the other S - 1 seeds and one seed,
    averaged over which seed is left out (undefined: 0); ``ceiling``: its finite-seed correction
    (:func:`corrected_ceiling`): the LDS the infinite-seed mean reaches against one seed's outputs, what no
    predictor of a model's output from its mask can exceed (in expectation); ``ceiling_seed_averaged``: the same
    against the mean of S seeds (the paper's protocol), sqrt(R_S).
    """
    seeds = margins.shape[1]
    if seeds < 2:
        raise ValueError("the noise ceiling needs at least two seeds per mask")
    total = margins.astype(np.float64).sum(axis=1)
    loo = np.zeros(margins.shape[2])
    for s in range(seeds):
        single = margins[:, s].astype(np.float64)
        loo += np.nan_to_num(spearman_columns((total - single) / (seeds - 1), single, valid), nan=0.0)
    loo /= seeds
    ceiling = corrected_ceiling(loo, seeds)
    reliability = ceiling ** 2                                  # sign kept apart, as in corrected_ceiling
    averaged = np.sign(ceiling) * np.sqrt(seeds * reliability / (1 + (seeds - 1) * reliability))
    return {"leave_one_out": loo, "ceiling": ceiling, "ceiling_seed_averaged": averaged}


def repeated_metrics(weight: np.ndarray, bias: np.ndarray, repeated: Repeated) -> tuple[dict, dict[str, np.ndarray]]:
    """The noise ceiling and the datamodels' LDS on the repeated masks: (metrics, per-target arrays).

    ``lds_seed_averaged``: against the seed-averaged outputs (the paper's protocol); ``lds_single_repeated``: against
    single seeds' outputs on the same masks, averaged over the seeds (like for like with the ceiling);
    ``lds_fraction_of_ceiling``: their ratio to the corrected ceiling.
    """
    predicted = repeated.predict(weight, bias)
    seeds = repeated.margins.shape[1]
    averaged = np.nan_to_num(spearman_columns(predicted, repeated.margins.astype(np.float64).mean(axis=1),
                                              repeated.valid), nan=0.0)
    single = sum(np.nan_to_num(spearman_columns(predicted, repeated.margins[:, s], repeated.valid), nan=0.0)
                 for s in range(seeds)) / seeds
    ceiling = noise_ceiling(repeated.margins, repeated.valid)
    mean = {key: float(value.mean()) for key, value in ceiling.items()}
    lds_averaged, lds_single = float(averaged.mean()), float(single.mean())
    summary = {
        "noise_ceiling": mean["ceiling"], "noise_ceiling_uncorrected": mean["leave_one_out"],
        "noise_ceiling_seed_averaged": mean["ceiling_seed_averaged"],
        "lds_seed_averaged": lds_averaged, "lds_single_repeated": lds_single,
        "lds_fraction_of_ceiling": lds_single / mean["ceiling"] if mean["ceiling"] > 0 else None,
        "lds_seed_averaged_fraction_of_ceiling": (lds_averaged / mean["ceiling_seed_averaged"]
                                                  if mean["ceiling_seed_averaged"] > 0 else None),
        "repeated": {"n_masks": len(repeated.margins), "seeds_per_mask": seeds, "n_masks_dropped": repeated.n_dropped,
                     "estimator": "leave-one-seed-out Spearman, Spearman-Brown corrected per target "
                                  "(docs/evaluation.md)"},
    }
    return summary, {"noise_ceiling": ceiling["ceiling"], "lds_seed_averaged": averaged,
                     "lds_single_repeated": single}


NO_REPEATS = {"noise_ceiling": None, "noise_ceiling_uncorrected": None, "noise_ceiling_seed_averaged": None,
              "lds_seed_averaged": None, "lds_single_repeated": None, "lds_fraction_of_ceiling": None,
              "lds_seed_averaged_fraction_of_ceiling": None, "repeated": None}
"""The repeated-model metrics of a run without repeated held-out models (``evaluate.seeds_per_mask`` 1)."""


def run(datamodels_path: str, statistics_path: str, eval_path: str, info_path: str, data_path: str, alpha: float,
        metrics_path: str, per_target_path: str, scatter_path: str, histogram_path: str,
        repeat_path: str | None = None, repeated_masks: int = 0, seeds_per_mask: int = 1) -> None:
    """Score the datamodels and the empirical-influence baseline; write metrics and plots.

    With ``repeat_path`` (the ``repeat`` aggregate of ``repeated_masks`` masks x ``seeds_per_mask`` - 1 seeds),
    also the noise ceiling and the seed-averaged LDS (:func:`repeated_metrics`)."""
    sizing.return_freed_memory()
    info = json.loads(Path(info_path).read_text())
    layout = store.layout_for(info, alpha)
    index = data.load(data_path).target_train_index
    held_out = read_held_out(eval_path, layout, index)
    datamodels = fit.read(datamodels_path)
    summary, per_target, predicted = score(datamodels.weight, datamodels.bias, held_out)
    start = time.process_time()
    base_weight, base_bias, n_train_models = baseline(Path(statistics_path) / statistics.ALL, index)
    base_seconds = time.process_time() - start
    base_summary, base_per_target, _ = score(base_weight, base_bias, held_out)
    repeat_summary, repeat_per_target = dict(NO_REPEATS), {}
    if repeat_path and repeated_masks and seeds_per_mask > 1:
        repeated = read_repeated(held_out, repeat_path, layout, repeated_masks, seeds_per_mask)
        if len(repeated.margins) > 2:
            repeat_summary, repeat_per_target = repeated_metrics(datamodels.weight, datamodels.bias, repeated)
        else:
            log.warning("only %d of %d repeated held-out masks have all %d models (the others diverged): no noise "
                        "ceiling", len(repeated.margins), repeated_masks, seeds_per_mask)
    result = {
        "alpha": alpha, **summary, "n_train_models": n_train_models, "n_eval_models": len(held_out),
        "n_targets": len(index), "baseline_lds": base_summary["lds"],
        "baseline": {"method": "empirical influence (difference of means)", **base_summary,
                     "cpu_seconds": base_seconds},
        "mean_target_accuracy_eval_models": held_out.target_accuracy,
        "n_not_converged": int((~datamodels.converged).sum()),
        **repeat_summary,
    }
    with atomic_output(metrics_path) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    table = pa.table({"target": np.arange(len(index)), "target_train_index": index, "lds": per_target,
                      "baseline_lds": base_per_target, "lam": datamodels.lam,
                      "nonzero_weights": (datamodels.weight != 0).sum(axis=0), **repeat_per_target})
    with atomic_output(per_target_path) as tmp:
        pq.write_table(table, tmp)
    plots.predicted_vs_actual(predicted, held_out.margins,
                              f"alpha={alpha:g}: LDS {summary['lds']:.3f}, pooled Spearman {summary['pooled_spearman']:.3f}",
                              scatter_path)
    plots.lds_histogram({"datamodels": per_target, "empirical influence": base_per_target}, histogram_path)
