"""The fit stage: one lasso datamodel per target, all targets solved together.

Masks are standardised per training example (Z = (mask - mu) / sigma over all
training models); the bias is unpenalised. Lambda is chosen per target on a
random validation split of the training models, then the datamodel is refit
on all training models at that lambda. A target that is itself a training
example is fit only on models whose subset excludes it (the paper's rule).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from . import data, devices, lasso, store
from .atomic import atomic_output
from .seeding import Stream, rng

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


def standardization(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and standard deviation of mask membership (sigma 0 -> 1)."""
    mu = mask.mean(axis=0)
    sigma = mask.std(axis=0)
    return mu.astype(np.float32), np.where(sigma > 0, sigma, 1.0).astype(np.float32)


MIN_LAMBDAS_BEFORE_STOP = 10  # as in the paper's solver: never stop a target before 10 lambdas


class _Problem:
    """Covariance-form lasso problem of one row set: shared rows, or rows kept per target."""

    def __init__(self, z: torch.Tensor, y: torch.Tensor, keep: torch.Tensor | None):
        self.y = y
        if keep is None:
            gram, self.xy, self.yy = lasso.gram_moments(z, y)
            self.op: lasso.GramOperator | lasso.MaskedRowsOperator = lasso.GramOperator(gram)
            self.z_mean = z.mean(dim=0)
        else:
            self.op = lasso.MaskedRowsOperator(z, keep)
            self.xy, self.yy = self.op.moments(y)

    def solve(self, targets: torch.Tensor, lam: torch.Tensor, w0: torch.Tensor, settings: FitSettings
              ) -> tuple[torch.Tensor, torch.Tensor, lasso.SolveInfo]:
        """Weights, bias and solver info of some targets at their lambdas."""
        op = self.op.select(targets)
        w, info = lasso.solve(op, self.xy[:, targets], self.yy[targets], lam, w0=w0, tol=settings.tol,
                              max_iter=settings.max_iter)
        if isinstance(op, lasso.MaskedRowsOperator):
            return w, op.intercept(self.y[:, targets], w), info
        return w, self.y[:, targets].mean(dim=0) - self.z_mean @ w, info


def _fit_group(z: torch.Tensor, y: torch.Tensor, keep: torch.Tensor | None, fit_rows: torch.Tensor,
               val_rows: torch.Tensor, settings: FitSettings) -> dict[str, torch.Tensor]:
    """Lambda path on fit rows, selection on validation rows, refit on all rows.

    A target leaves the path once its validation MSE has not improved for
    ``settings.patience`` lambdas (after at least 10): the rest of its path
    would only overfit, and it is where the solver converges slowest.
    """
    n_targets = y.shape[1]
    fit = _Problem(z[fit_rows], y[fit_rows], None if keep is None else keep[fit_rows])
    lambdas = lasso.lambda_grid(lasso.lambda_max(fit.xy), settings.n_lambdas, settings.lambda_eps)
    z_val, y_val = z[val_rows], y[val_rows]
    val_weight = torch.ones_like(y_val) if keep is None else keep[val_rows].to(y.dtype)
    best_mse = torch.full((n_targets,), float("inf"), dtype=y.dtype, device=y.device)
    best_w = torch.zeros(z.shape[1], n_targets, dtype=y.dtype, device=y.device)
    best_k = torch.zeros(n_targets, dtype=torch.long, device=y.device)
    since_best = torch.zeros(n_targets, dtype=torch.long, device=y.device)
    w_path = torch.zeros_like(best_w)
    active = torch.arange(n_targets, device=y.device)
    for k in range(lambdas.shape[0]):
        w, b, _ = fit.solve(active, lambdas[k, active], w_path[:, active], settings)
        w_path[:, active] = w
        weight = val_weight[:, active]
        mse = (weight * (z_val @ w + b - y_val[:, active]) ** 2).sum(dim=0) / weight.sum(dim=0).clamp(min=1)
        better = mse < best_mse[active]
        improved = active[better]
        best_mse[improved], best_k[improved], best_w[:, improved] = mse[better], k, w[:, better]
        since_best[active] = torch.where(better, 0, since_best[active] + 1)
        if settings.patience and k + 1 >= MIN_LAMBDAS_BEFORE_STOP:
            active = active[since_best[active] < settings.patience]
        if active.numel() == 0:
            break
    lam = lambdas.gather(0, best_k[None, :])[0]
    full = _Problem(z, y, keep)
    w, b, info = full.solve(torch.arange(n_targets, device=y.device), lam, best_w, settings)
    n_models = keep.sum(dim=0) if keep is not None else torch.full_like(best_k, z.shape[0])
    return {"w": w, "b": b, "lam": lam, "best_k": best_k, "val_mse": best_mse, "converged": info.converged,
            "n_models": n_models}


def fit(mask: np.ndarray, outputs: np.ndarray, target_train_index: np.ndarray, settings: FitSettings,
        seed: int, alpha: float) -> tuple[Datamodels, dict]:
    """Fit datamodels for every target from masks [n, p] and outputs [n, T]."""
    device = devices.resolve(settings.device)
    n = mask.shape[0]
    mu, sigma = standardization(mask)
    z = torch.from_numpy((mask - mu) / sigma).to(device=device, dtype=torch.float32)
    y = torch.from_numpy(np.array(outputs, dtype=np.float32)).to(device)
    order = rng(seed, Stream.FIT_VALIDATION, alpha).permutation(n)
    n_val = int(round(settings.val_fraction * n))
    val_rows = torch.from_numpy(np.sort(order[:n_val])).to(device)
    fit_rows = torch.from_numpy(np.sort(order[n_val:])).to(device)
    p, n_targets = mask.shape[1], outputs.shape[1]
    result = {key: np.zeros(shape, dtype) for key, shape, dtype in [
        ("w", (p, n_targets), np.float32), ("b", n_targets, np.float32), ("lam", n_targets, np.float32),
        ("best_k", n_targets, np.int64), ("val_mse", n_targets, np.float32), ("converged", n_targets, bool),
        ("n_models", n_targets, np.int64)]}
    groups = {"test": np.flatnonzero(target_train_index < 0), "train": np.flatnonzero(target_train_index >= 0)}
    timings = {}
    for name, targets in groups.items():
        if len(targets) == 0:
            continue
        start = time.perf_counter()
        keep = None
        if name == "train":
            keep = ~torch.from_numpy(mask[:, target_train_index[targets]]).to(device)
        group = _fit_group(z, y[:, torch.from_numpy(targets).to(device)], keep, fit_rows, val_rows, settings)
        for key, value in group.items():
            result[key][..., targets] = value.cpu().numpy()
        timings[name] = time.perf_counter() - start
        log.info("%s targets: %d fit in %.1f s", name, len(targets), timings[name])
    w_std = result["w"]
    datamodels = Datamodels(
        weight=(w_std / sigma[:, None]).astype(np.float32),
        bias=(result["b"] - (mu / sigma) @ w_std).astype(np.float32),
        weight_std=w_std, bias_std=result["b"], lam=result["lam"], mu=mu, sigma=sigma,
        n_models=result["n_models"], converged=result["converged"],
        target_train_index=target_train_index.astype(np.int64),
    )
    nonzero = (w_std != 0).sum(axis=0)
    info = {
        "n_models": n, "n_val_models": n_val, "n_features": p, "n_targets": n_targets,
        "n_lambdas": settings.n_lambdas, "lambda_eps": settings.lambda_eps, "tol": settings.tol,
        "device": str(device), "seconds": timings, "n_not_converged": int((~result["converged"]).sum()),
        "chosen_lambda_index": {"mean": float(result["best_k"].mean()), "min": int(result["best_k"].min()),
                                "max": int(result["best_k"].max())},
        "nonzero_weights": {"mean": float(nonzero.mean()), "min": int(nonzero.min()), "max": int(nonzero.max())},
        "val_mse_mean": float(result["val_mse"].mean()),
    }
    return datamodels, info


def write(datamodels: Datamodels, datamodels_path: str | Path, features_path: str | Path) -> None:
    """Datamodels as Parquet: one row per target, and one row per training example (mu, sigma)."""
    p, n_targets = datamodels.weight.shape
    rows = pa.table({
        "target": pa.array(np.arange(n_targets, dtype=np.int64)),
        "target_train_index": pa.array(datamodels.target_train_index),
        "lam": pa.array(datamodels.lam), "bias": pa.array(datamodels.bias), "bias_std": pa.array(datamodels.bias_std),
        "n_models": pa.array(datamodels.n_models), "converged": pa.array(datamodels.converged),
        "weight": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(datamodels.weight.T).ravel()), p),
        "weight_std": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(datamodels.weight_std.T).ravel()), p),
    })
    features = pa.table({"train_index": pa.array(np.arange(p, dtype=np.int64)),
                         "mu": pa.array(datamodels.mu), "sigma": pa.array(datamodels.sigma)})
    with atomic_output(datamodels_path) as tmp:
        pq.write_table(rows, tmp, compression="zstd")
    with atomic_output(features_path) as tmp:
        pq.write_table(features, tmp)


def read(datamodels_path: str | Path, features_path: str | Path | None = None) -> Datamodels:
    """Read datamodels written by :func:`write`."""
    rows = pq.read_table(datamodels_path)
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


def run(models_path: str, info_path: str, data_path: str, alpha: float, settings: dict, seed: int,
        threads: int, datamodels_path: str, features_path: str, fit_info_path: str) -> None:
    """Fit the datamodels of one alpha and write them."""
    torch.set_num_threads(max(1, threads))
    info = json.loads(Path(info_path).read_text())
    models = store.read_models(models_path, store.layout_for(info, alpha))
    dataset = data.load(data_path)
    datamodels, fit_info = fit(models.mask, models.margins, dataset.target_train_index, FitSettings(**settings),
                               seed, alpha)
    write(datamodels, datamodels_path, features_path)
    with atomic_output(fit_info_path) as tmp:
        Path(tmp).write_text(json.dumps({"alpha": alpha, **fit_info}, indent=2) + "\n")
    if fit_info["n_not_converged"]:
        log.warning("%d targets did not reach tol=%g within max_iter=%d", fit_info["n_not_converged"],
                    settings["tol"], settings["max_iter"])
