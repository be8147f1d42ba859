"""The fit stage: one lasso datamodel per target, all targets solved together.

Masks are standardised per training example (Z = (mask - mu) / sigma over all
training models); the bias is unpenalised. Lambda is chosen per target on a
random validation split of the training models, then the datamodel is refit
on all training models at that lambda. A target that is itself a training
example is fit only on models whose subset excludes it (the paper's rule).

The solver (``lasso_path``, on torch) is imported by the functions that fit: reading and writing datamodels and
merging the fit's blocks need neither, so the stages that only read them (evaluate, merge_datamodels) start without
torch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import devices, sizing, statistics, store
from .atomic import atomic_output

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitSettings:
    """Solver and lambda-selection settings (the config's ``fit`` section)."""

    n_lambdas: int = 30
    lambda_eps: float = 1e-3
    val_fraction: float = 0.1
    tol: float = 1e-4
    max_iter: int = 1000
    patience: int = 3
    device: str = "cpu"
    train_targets: str = "exact"  # exact | shared_gram (see _SumsProblem)
    targets_per_job: int | None = None  # the workflow's target blocks; no effect on one fit

    @classmethod
    def from_config(cls, section: dict) -> "FitSettings":
        return cls(**{key: value for key, value in section.items() if key in cls.__dataclass_fields__})


@dataclass
class Datamodels:
    """Fitted datamodels of every target, in raw-mask and standardised units.

    Predict target t for a boolean subset mask m as ``m @ weight[:, t] + bias[t]``
    (raw units) or ``((m - mu) / sigma) @ weight_std[:, t] + bias_std[t]``.
    """

    weight: np.ndarray       # float32 [n_train, n_targets], raw-mask units
    bias: np.ndarray         # float32 [n_targets]
    weight_std: np.ndarray   # float32 [n_train, n_targets], standardised units
    bias_std: np.ndarray     # float32 [n_targets]
    lam: np.ndarray          # float32 [n_targets], chosen lambda
    mu: np.ndarray           # float32 [n_train]
    sigma: np.ndarray        # float32 [n_train]
    n_models: np.ndarray     # int64 [n_targets], models each datamodel was fit on
    converged: np.ndarray    # bool [n_targets]
    target_train_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def predict(mask: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Predicted outputs [n_models, n_targets] from raw masks and raw-unit weights."""
    return mask.astype(np.float32) @ weight.astype(np.float32) + bias.astype(np.float32)


def standardization(xsum: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and standard deviation of 0/1 mask membership over n models (sigma 0 -> 1)."""
    mu = np.asarray(xsum, dtype=np.float64) / n
    sigma = np.sqrt(np.clip(mu * (1 - mu), 0, None))
    return mu.astype(np.float32), np.where(sigma > 0, sigma, 1.0).astype(np.float32)


Rows = tuple[np.ndarray, np.ndarray]  # (bool masks [n, p], outputs [n, T]) of every training model, row order


def fit_targets(stats: statistics.Statistics, settings: FitSettings, rows: Callable[[], Rows] | None = None,
                few_models_on_rows: bool = False) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Fit the datamodels of the targets in ``stats`` (all of a run's, or one block's).

    Test targets, and training-example targets with ``train_targets: shared_gram``, are fit from
    the sums alone. With ``train_targets: exact`` a training-example target is fit on the rows
    that exclude it, which needs ``rows()`` (every model's mask and the block's outputs, in memory).
    ``few_models_on_rows``: when the models are fewer than half the features, every target is fit on the rows
    (the same lasso; a product costs ``2 n p`` instead of ``p^2`` per target, and the rows take less memory than
    the covariance), as the learning curve's small prefixes are.
    Returns per-target arrays (standardised units) and seconds per group.
    """
    from . import lasso_path  # torch: here, not at the top, so that what only reads datamodels starts without it

    device = devices.resolve(settings.device)
    mu, sigma = standardization(stats.all.xsum, stats.all.n)
    index = stats.target_train_index
    n_targets = len(index)
    result = {"w": np.zeros((len(mu), n_targets), np.float32), "b": np.zeros(n_targets, np.float32),
              "lam": np.zeros(n_targets, np.float32), "best_k": np.zeros(n_targets, np.int64),
              "val_mse": np.zeros(n_targets, np.float32), "converged": np.zeros(n_targets, bool),
              "n_models": np.asarray(np.rint(stats.all.n_kept), dtype=np.int64)}
    exact = settings.train_targets == "exact"
    groups = {"test": np.flatnonzero(index < 0) if exact else np.arange(n_targets),
              "train": np.flatnonzero(index >= 0) if exact else np.zeros(0, np.int64)}
    on_rows = few_models_on_rows and rows is not None and 2 * stats.all.n < len(mu)
    timings = {}
    for name, targets in groups.items():
        if len(targets) == 0:
            continue
        start = time.perf_counter()
        if name == "test" and not on_rows:
            part = stats.targets(targets)
            own = part.target_train_index
            group = lasso_path.lambda_path(lambda: lasso_path.SumsProblem(part.fit, own, mu, sigma, device),
                                           lambda: lasso_path.SumsProblem(part.val, own, mu, sigma, device),
                                           lambda: lasso_path.SumsProblem(part.all, own, mu, sigma, device),
                                           settings, device)
        else:
            if rows is None:
                raise ValueError("train_targets: exact needs the training models' rows for training-example targets")
            group = lasso_path.exact_group(rows, stats, targets, mu, sigma, settings, device)
        for key, value in group.items():
            result[key][..., targets] = value.cpu().numpy()
        timings[name] = time.perf_counter() - start
        log.info("%s targets: %d fit in %.1f s", name, len(targets), timings[name])
    return result, timings


def assemble(result: dict[str, np.ndarray], mu: np.ndarray, sigma: np.ndarray, target_train_index: np.ndarray
             ) -> Datamodels:
    """Datamodels in raw and standardised units from :func:`fit_targets`' arrays."""
    w_std = result["w"]
    return Datamodels(
        weight=(w_std / sigma[:, None]).astype(np.float32),
        bias=(result["b"] - (mu / sigma) @ w_std).astype(np.float32),
        weight_std=w_std, bias_std=result["b"], lam=result["lam"], mu=mu, sigma=sigma,
        n_models=result["n_models"], converged=result["converged"],
        target_train_index=np.asarray(target_train_index, dtype=np.int64),
    )


def summary(stats_meta: dict, n_val: int, p: int, settings: FitSettings, result: dict[str, np.ndarray],
            timings: dict[str, float]) -> dict:
    """The fit's record (``fit.json``) from the per-target arrays of every target."""
    nonzero = (result["w"] != 0).sum(axis=0) if "w" in result else result["nonzero"]
    return {
        "n_models": stats_meta["n"], "n_val_models": n_val, "n_features": p, "n_targets": len(result["lam"]),
        "n_lambdas": settings.n_lambdas, "lambda_eps": settings.lambda_eps, "tol": settings.tol,
        "train_targets": settings.train_targets, "device": str(devices.resolve(settings.device)),
        "seconds": timings, "n_not_converged": int((~result["converged"]).sum()),
        "chosen_lambda_index": {"mean": float(result["best_k"].mean()), "min": int(result["best_k"].min()),
                                "max": int(result["best_k"].max())},
        "nonzero_weights": {"mean": float(nonzero.mean()), "min": int(nonzero.min()), "max": int(nonzero.max())},
        "val_mse_mean": float(result["val_mse"].mean()),
    }


def fit(mask: np.ndarray, outputs: np.ndarray, target_train_index: np.ndarray, settings: FitSettings,
        seed: int, alpha: float) -> tuple[Datamodels, dict]:
    """Fit datamodels for every target from in-memory masks [n, p] and outputs [n, T] (the stage's code path)."""
    is_val = statistics.validation_rows(len(mask), settings.val_fraction, seed, alpha)
    meta = {"alpha": alpha, "seed": seed, "val_fraction": settings.val_fraction, "n": len(mask)}
    stats = statistics.from_arrays(mask, outputs, target_train_index, is_val, meta)
    result, timings = fit_targets(stats, settings, rows=lambda: (mask, outputs))
    mu, sigma = standardization(stats.all.xsum, stats.all.n)
    return assemble(result, mu, sigma, target_train_index), summary(meta, stats.val.n, mask.shape[1], settings,
                                                                      result, timings)


def _rows_table(datamodels: Datamodels, targets: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> pa.Table:
    """One row per target (``targets``: their indices in the run), as in ``datamodels.parquet``."""
    p = datamodels.weight.shape[0]
    columns = {
        "target": pa.array(np.asarray(targets, dtype=np.int64)),
        "target_train_index": pa.array(datamodels.target_train_index),
        "lam": pa.array(datamodels.lam), "bias": pa.array(datamodels.bias), "bias_std": pa.array(datamodels.bias_std),
        "n_models": pa.array(datamodels.n_models), "converged": pa.array(datamodels.converged),
        "weight": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(datamodels.weight.T).ravel()), p),
        "weight_std": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(datamodels.weight_std.T).ravel()), p),
    }
    return pa.table(columns | {name: pa.array(values) for name, values in (extra or {}).items()})


DATAMODEL_COLUMNS = ["target", "target_train_index", "lam", "bias", "bias_std", "n_models", "converged", "weight",
                     "weight_std"]


def _write_features(mu: np.ndarray, sigma: np.ndarray, features_path: str | Path) -> None:
    features = pa.table({"train_index": pa.array(np.arange(len(mu), dtype=np.int64)),
                         "mu": pa.array(mu), "sigma": pa.array(sigma)})
    with atomic_output(features_path) as tmp:
        pq.write_table(features, tmp)


def write(datamodels: Datamodels, datamodels_path: str | Path, features_path: str | Path) -> None:
    """Datamodels as Parquet: one row per target, and one row per training example (mu, sigma)."""
    rows = _rows_table(datamodels, np.arange(datamodels.weight.shape[1]))
    with atomic_output(datamodels_path) as tmp:
        pq.write_table(rows, tmp, compression="zstd")
    _write_features(datamodels.mu, datamodels.sigma, features_path)


def read(datamodels_path: str | Path, features_path: str | Path | None = None) -> Datamodels:
    """Read datamodels written by :func:`write` (or :func:`merge`)."""
    rows = pq.read_table(datamodels_path, columns=DATAMODEL_COLUMNS)
    n_targets = rows.num_rows

    def matrix(name: str) -> np.ndarray:
        return rows.column(name).combine_chunks().flatten().to_numpy().reshape(n_targets, -1).T.copy()

    weight = matrix("weight")
    mu = sigma = np.zeros(weight.shape[0], dtype=np.float32)
    if features_path is not None:
        features = pq.read_table(features_path)
        mu, sigma = features.column("mu").to_numpy(), features.column("sigma").to_numpy()
    return Datamodels(weight=weight, bias=rows.column("bias").to_numpy(), weight_std=matrix("weight_std"),
                      bias_std=rows.column("bias_std").to_numpy(), lam=rows.column("lam").to_numpy(), mu=mu,
                      sigma=sigma, n_models=rows.column("n_models").to_numpy(),
                      converged=rows.column("converged").to_numpy(),
                      target_train_index=rows.column("target_train_index").to_numpy())


# ------------------------------------------------------------------ the workflow's target-sharded fit
def n_blocks(n_targets: int, targets_per_job: int | None) -> int:
    """Fit jobs per alpha: one per block of ``targets_per_job`` consecutive targets (null: one job)."""
    return 1 if not targets_per_job else max(1, -(-n_targets // targets_per_job))


def block_targets(n_targets: int, targets_per_job: int | None, block: int) -> np.ndarray:
    """The target indices of one block."""
    size = n_targets if not targets_per_job else targets_per_job
    return np.arange(block * size, min(n_targets, (block + 1) * size))


BLOCK_KEY = b"datamodels_pipeline_fit_block"


def run_block(statistics_path: str, models_path: str, info_path: str, alpha: float, settings: dict, block: int,
              threads: int, output_path: str) -> None:
    """Fit one block of targets from the shared statistics; write its rows (``datamodels.parquet``'s columns).

    Memory: the two [p, p] covariances (``2 * 4 p^2`` bytes) + ``~5 * 8 p b`` for b targets of the block;
    with ``train_targets: exact`` and training-example targets in the block, also every model's dense
    mask and outputs (``n (p + 4 T)`` bytes).
    """
    import torch  # see fit_targets

    torch.set_num_threads(max(1, threads))
    sizing.return_freed_memory()
    settings = FitSettings.from_config(settings)
    info = json.loads(Path(info_path).read_text())
    layout = store.layout_for(info, alpha)
    targets = block_targets(layout.n_targets, settings.targets_per_job, block)
    if len(targets) == 0:
        raise ValueError(f"fit block {block} holds no target of the {layout.n_targets} (fit.targets_per_job="
                         f"{settings.targets_per_job}); the workflow planned more blocks than the data set has")
    stats = statistics.load(Path(statistics_path) / statistics.ALL, targets)

    def rows() -> Rows:
        models = store.read_models(models_path, layout)
        return models.mask, models.margins[:, targets]

    cpu_start = time.process_time()
    result, timings = fit_targets(stats, settings, rows=rows)
    cpu_seconds = time.process_time() - cpu_start
    mu, sigma = standardization(stats.all.xsum, stats.all.n)
    table = _rows_table(assemble(result, mu, sigma, stats.target_train_index), targets,
                        {"lambda_index": result["best_k"], "val_mse": result["val_mse"]})
    record = {"block": block, "seconds": timings, "cpu_seconds": cpu_seconds, "n": stats.all.n, "n_val": stats.val.n}
    table = table.replace_schema_metadata({BLOCK_KEY: json.dumps(record).encode()})
    with atomic_output(output_path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    log.info("alpha=%s block %d: %d targets fit in %.1f s", alpha, block, len(targets), sum(timings.values()))


def merge(block_paths: list[str], statistics_path: str, settings: dict, alpha: float, datamodels_path: str,
          features_path: str, fit_info_path: str) -> None:
    """Concatenate the blocks into ``datamodels.parquet`` (one row group each), write ``features.parquet`` and ``fit.json``."""
    settings = FitSettings.from_config(settings)
    stats = statistics.load(Path(statistics_path) / statistics.ALL, targets=np.zeros(0, np.int64))
    mu, sigma = standardization(stats.all.xsum, stats.all.n)
    parts: dict[str, list[np.ndarray]] = {"best_k": [], "val_mse": [], "converged": [], "nonzero": [], "lam": []}
    timings: dict[str, float] = {}
    cpu_seconds: float | None = 0.0  # the blocks' fit CPU seconds (time.process_time, all threads), summed
    expected = 0
    with atomic_output(datamodels_path) as tmp:
        writer = None
        try:
            for path in block_paths:
                table = pq.read_table(path)
                record = json.loads((table.schema.metadata or {})[BLOCK_KEY])
                targets = table.column("target").to_numpy()
                if len(targets) and targets[0] != expected:
                    raise ValueError(f"{path}: block starts at target {targets[0]}, expected {expected}")
                expected += len(targets)
                for name, seconds in record["seconds"].items():
                    timings[name] = timings.get(name, 0.0) + seconds
                cpu_seconds = None if cpu_seconds is None or "cpu_seconds" not in record else \
                    cpu_seconds + record["cpu_seconds"]
                weight_std = table.column("weight_std").combine_chunks().flatten().to_numpy().reshape(len(targets), -1)
                parts["nonzero"].append((weight_std != 0).sum(axis=1))
                for name, column in (("best_k", "lambda_index"), ("val_mse", "val_mse"), ("converged", "converged"),
                                     ("lam", "lam")):
                    parts[name].append(table.column(column).to_numpy())
                rows = table.select(DATAMODEL_COLUMNS).replace_schema_metadata(None)
                writer = writer or pq.ParquetWriter(tmp, rows.schema, compression="zstd")
                writer.write_table(rows)
        finally:
            if writer is not None:
                writer.close()
    if expected != stats.meta["n_targets"]:
        raise ValueError(f"the {len(block_paths)} blocks hold {expected} targets, the statistics {stats.meta['n_targets']}")
    _write_features(mu, sigma, features_path)
    result = {name: np.concatenate(values) for name, values in parts.items()}
    fit_info = summary({"n": stats.all.n}, stats.val.n, len(mu), settings, result, timings)
    fit_info["n_blocks"] = len(block_paths)
    fit_info["cpu_seconds"] = cpu_seconds
    with atomic_output(fit_info_path) as tmp:
        Path(tmp).write_text(json.dumps({"alpha": alpha, **fit_info}, indent=2) + "\n")
    if fit_info["n_not_converged"]:
        log.warning("%d targets did not reach tol=%g within max_iter=%d", fit_info["n_not_converged"],
                    settings.tol, settings.max_iter)
    log.info("alpha=%s: %d targets from %d blocks", alpha, fit_info["n_targets"], len(block_paths))
