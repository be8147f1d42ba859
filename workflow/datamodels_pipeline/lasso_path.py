"""The lambda path of many targets at once, on torch: the fit stage's solver side (``fit`` imports it when it fits).

A problem is the lasso of a set of targets over one set of rows, in one of two forms: from the rows' sums
(``SumsProblem``: the covariance form, every test target) or on the rows themselves (``RowsProblem``: each target on
the rows that it may see). ``lambda_path`` runs the path on the fit rows, selects lambda on the validation rows and
refits on all rows; ``lasso`` solves each step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import lasso, statistics

if TYPE_CHECKING:
    from .fit import FitSettings


MIN_LAMBDAS_BEFORE_STOP = 10  # as in the paper's solver: never stop a target before 10 lambdas


class SumsProblem:
    """Covariance-form lasso of some targets over one row set, from its sums (``statistics.RowSums``).

    Standardised units ``z = (x - mu) / sigma``, centred over each target's kept rows. The
    feature covariance is that of every row of the set: exact for a test target; for a
    training-example target (``shared_gram``) an approximation of the covariance over the rows
    that exclude it (its output moments and means stay exact; its own feature is fixed at 0).
    """

    def __init__(self, sums: statistics.RowSums, own: np.ndarray, mu: np.ndarray, sigma: np.ndarray,
                 device: torch.device):
        n_kept = np.maximum(sums.n_kept, 1)[:, None]
        xbar = np.repeat((sums.xsum / max(sums.n, 1))[None, :], len(own), axis=0)  # [T, p]
        trains = np.flatnonzero(own >= 0)
        if len(trains):  # the kept rows exclude example j: sum of x over them = xsum - gram[:, j]
            xbar[trains] = (sums.xsum[None, :] - sums.gram[:, own[trains]].T) / n_kept[trains]
        ybar = sums.ysum / n_kept[:, 0]
        to = dict(device=device, dtype=torch.float32)
        self.xy = torch.as_tensor((sums.xy / n_kept - xbar * ybar[:, None]) / sigma, **to).T.contiguous()  # [p, T]
        self.yy = torch.as_tensor(sums.yy / n_kept[:, 0] - ybar ** 2, **to).clamp_min(0)
        self.zbar = torch.as_tensor((xbar - mu) / sigma, **to)  # [T, p]
        self.ybar = torch.as_tensor(ybar, **to)
        self.op = lasso.GramOperator(covariance(sums.gram, sums.xsum, sums.n, sigma, device))
        self.own = torch.as_tensor(own, device=device)

    def solve(self, targets: torch.Tensor, lam: torch.Tensor, w0: torch.Tensor, settings: FitSettings
              ) -> tuple[torch.Tensor, torch.Tensor, lasso.SolveInfo]:
        w, info = lasso.solve(self.op, self.xy[:, targets], self.yy[targets], lam, w0=w0, tol=settings.tol,
                              max_iter=settings.max_iter)
        own = self.own[targets]
        trains = torch.nonzero(own >= 0).squeeze(1)
        w[own[trains], trains] = 0.0  # the target's own example never varies over its rows
        return w, self.ybar[targets] - (self.zbar[targets] * w.T).sum(1), info

    def mse(self, targets: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the rows: w^T C w - 2 w.xy + yy + (mean residual)^2."""
        quadratic = (self.op.matmul(w) * w).sum(0) - 2 * (self.xy[:, targets] * w).sum(0) + self.yy[targets]
        residual = (self.zbar[targets] * w.T).sum(1) + b - self.ybar[targets]
        return quadratic.clamp_min(0) + residual ** 2


def covariance(gram: np.ndarray, xsum: np.ndarray, n: int, sigma: np.ndarray, device: torch.device
               ) -> torch.Tensor:
    """Standardised feature covariance ``(gram / n - xbar xbar^T) / (sigma sigma^T)``, float32, built in row
    blocks of about 32 MB of float64 temporaries."""
    xbar = np.asarray(xsum, dtype=np.float64) / max(n, 1)
    block = max(1, 2**22 // gram.shape[0])
    out = torch.empty(gram.shape, dtype=torch.float32, device=device)
    for start in range(0, gram.shape[0], block):
        rows = slice(start, start + block)
        part = (np.asarray(gram[rows], dtype=np.float64) / max(n, 1) - np.outer(xbar[rows], xbar))
        out[rows] = torch.as_tensor(part / np.outer(sigma[rows], sigma), dtype=torch.float32)
    return out


class RowsProblem:
    """The exact train-target form: target t is fit only on the rows where ``keep[:, t]`` (its example left out)."""

    def __init__(self, z: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, solved: bool = True):
        """``solved=False``: only scored (the validation rows), which may leave a target without rows."""
        self.z, self.y, self.keep = z, y, keep
        if solved:
            self.op = lasso.MaskedRowsOperator(z, keep)
            self.xy, self.yy = self.op.moments(y)
        else:
            self.yy = torch.zeros(y.shape[1], dtype=y.dtype, device=y.device)

    def solve(self, targets: torch.Tensor, lam: torch.Tensor, w0: torch.Tensor, settings: FitSettings
              ) -> tuple[torch.Tensor, torch.Tensor, lasso.SolveInfo]:
        op = self.op.select(targets)
        w, info = lasso.solve(op, self.xy[:, targets], self.yy[targets], lam, w0=w0, tol=settings.tol,
                              max_iter=settings.max_iter)
        return w, op.intercept(self.y[:, targets], w), info

    def mse(self, targets: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        weight = self.keep[:, targets].to(self.y.dtype)
        error = (self.z @ w + b - self.y[:, targets]) ** 2
        return (weight * error).sum(0) / weight.sum(0).clamp(min=1)


def lambda_path(make_fit, make_val, make_all, settings: FitSettings, device: torch.device
                ) -> dict[str, torch.Tensor]:
    """Lambda path on the fit rows, selection on the validation rows, refit on all rows at the chosen lambda.

    A target leaves the path once its validation MSE has not improved for
    ``settings.patience`` lambdas (after at least 10): the rest of its path
    would only overfit, and it is where the solver converges slowest. The three problems are
    built by the ``make_*`` callables, the refit's only after the other two are freed (each may
    hold a [p, p] covariance).
    """
    fit_rows, val_rows = make_fit(), make_val()
    n_targets = fit_rows.yy.shape[0]
    p = fit_rows.xy.shape[0]
    lambdas = lasso.lambda_grid(lasso.lambda_max(fit_rows.xy), settings.n_lambdas, settings.lambda_eps)
    best_mse = torch.full((n_targets,), float("inf"), device=device)
    best_w = torch.zeros(p, n_targets, device=device)
    best_k = torch.zeros(n_targets, dtype=torch.long, device=device)
    since_best = torch.zeros(n_targets, dtype=torch.long, device=device)
    w_path = torch.zeros_like(best_w)
    active = torch.arange(n_targets, device=device)
    for k in range(lambdas.shape[0]):
        w, b, _ = fit_rows.solve(active, lambdas[k, active], w_path[:, active], settings)
        w_path[:, active] = w
        mse = val_rows.mse(active, w, b)
        better = mse < best_mse[active]
        improved = active[better]
        best_mse[improved], best_k[improved], best_w[:, improved] = mse[better], k, w[:, better]
        since_best[active] = torch.where(better, 0, since_best[active] + 1)
        if settings.patience and k + 1 >= MIN_LAMBDAS_BEFORE_STOP:
            active = active[since_best[active] < settings.patience]
        if active.numel() == 0:
            break
    del fit_rows, val_rows
    lam = lambdas.gather(0, best_k[None, :])[0]
    full = make_all()
    w, b, info = full.solve(torch.arange(n_targets, device=device), lam, best_w, settings)
    return {"w": w, "b": b, "lam": lam, "best_k": best_k, "val_mse": best_mse, "converged": info.converged}


def exact_group(rows: Callable[[], tuple[np.ndarray, np.ndarray]], stats: statistics.Statistics, targets: np.ndarray,
                mu: np.ndarray, sigma: np.ndarray, settings: FitSettings, device: torch.device
                ) -> dict[str, torch.Tensor]:
    """Targets on their rows (a training example's: those that exclude it; a test target's: all); memory
    ``4 n (p + T)`` bytes for n models (dense)."""
    mask, outputs = rows()
    n_total = stats.meta.get("n_models_total", len(mask))  # a prefix's validation rows: the full run's, cut
    is_val = statistics.validation_rows(n_total, stats.meta["val_fraction"], stats.meta["seed"],
                                        stats.meta["alpha"])[: len(mask)]
    z = torch.from_numpy((mask - mu) / sigma).to(device=device, dtype=torch.float32)
    y = torch.as_tensor(np.asarray(outputs[:, targets], dtype=np.float32), device=device)
    own = stats.target_train_index[targets]
    keep = torch.ones((len(mask), len(targets)), dtype=torch.bool, device=device)
    trains = np.flatnonzero(own >= 0)
    keep[:, trains] = ~torch.from_numpy(mask[:, own[trains]]).to(device)
    fit_rows = torch.from_numpy(np.flatnonzero(~is_val)).to(device)
    val_rows = torch.from_numpy(np.flatnonzero(is_val)).to(device)
    return lambda_path(lambda: RowsProblem(z[fit_rows], y[fit_rows], keep[fit_rows]),
                       lambda: RowsProblem(z[val_rows], y[val_rows], keep[val_rows], solved=False),
                       lambda: RowsProblem(z, y, keep), settings, device)
