"""The batched lasso against scikit-learn on small problems."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso, lasso_path

from datamodels_pipeline import lasso


def _problem(n: int = 300, p: int = 40, n_targets: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random half masks, standardised features ``z`` and outputs with a sparse signal plus noise."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n, p)) < 0.5
    z = (mask - mask.mean(0)) / mask.std(0)
    w = np.zeros((p, n_targets))
    for t in range(n_targets):
        w[rng.choice(p, 5, replace=False), t] = rng.normal(size=5)
    y = z @ w + rng.normal(size=(n, n_targets)) + 3.0
    return mask, z, y


def _sk_objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> float:
    return 0.5 * np.mean((y - x @ w) ** 2) + alpha * np.abs(w).sum()


def test_path_matches_sklearn_lasso_path() -> None:
    _, z, y = _problem()
    gram, xy, yy = lasso.gram_moments(torch.from_numpy(z), torch.from_numpy(y))
    lambdas = lasso.lambda_grid(lasso.lambda_max(xy), 10, 1e-3)
    ours = {k: (w, info) for k, w, info in lasso.path(lasso.GramOperator(gram), xy, yy, lambdas, tol=1e-10)}
    assert sorted(ours) == list(range(10))
    assert all(bool(info.converged.all()) for _, info in ours.values())

    zc, yc = z - z.mean(0), y - y.mean(0)
    for t in range(y.shape[1]):
        alphas = lambdas[:, t].numpy()
        _, coefs, _ = lasso_path(zc, yc[:, t], alphas=alphas, tol=1e-12, max_iter=100_000)
        mine = np.stack([ours[k][0][:, t].numpy() for k in range(10)], axis=1)
        np.testing.assert_allclose(mine, coefs, atol=1e-4)
        for k, alpha in enumerate(alphas):
            ref = _sk_objective(zc, yc[:, t], coefs[:, k], alpha)
            assert _sk_objective(zc, yc[:, t], mine[:, k], alpha) <= ref * (1 + 1e-8)
    # Covariance-form objective agrees with the data-form one.
    k = 5
    obj = lasso.objective(lasso.GramOperator(gram), xy, yy, ours[k][0], lambdas[k])
    ref = [_sk_objective(zc, yc[:, t], ours[k][0][:, t].numpy(), lambdas[k, t].item()) for t in range(y.shape[1])]
    np.testing.assert_allclose(obj.numpy(), ref, rtol=1e-10)


def test_shared_intercept_matches_sklearn() -> None:
    _, z, y = _problem(n_targets=2)
    zt, yt = torch.from_numpy(z), torch.from_numpy(y)
    gram, xy, yy = lasso.gram_moments(zt, yt)
    lam = 0.2 * lasso.lambda_max(xy)
    w, info = lasso.solve(lasso.GramOperator(gram), xy, yy, lam, tol=1e-10)
    assert bool(info.converged.all())
    bias = lasso.intercept(zt, yt, w)
    for t in range(2):
        ref = Lasso(alpha=lam[t].item(), tol=1e-12, max_iter=100_000).fit(z, y[:, t])
        np.testing.assert_allclose(w[:, t].numpy(), ref.coef_, atol=1e-5)
        assert bias[t].item() == pytest.approx(ref.intercept_, abs=1e-5)


def test_masked_rows_matches_sklearn_on_own_rows() -> None:
    mask, z, y = _problem(n=300, p=30, n_targets=4, seed=1)
    keep = ~mask[:, :4]  # target t only sees models whose subset excluded feature t
    zt, yt = torch.from_numpy(z), torch.from_numpy(y)
    op = lasso.MaskedRowsOperator(zt, torch.from_numpy(keep))
    xy, yy = op.moments(yt)
    lam = 0.3 * lasso.lambda_max(xy)
    w, info = lasso.solve(op, xy, yy, lam, tol=1e-10)
    assert bool(info.converged.all())
    bias = op.intercept(yt, w)
    for t in range(4):
        rows = keep[:, t]
        ref = Lasso(alpha=lam[t].item(), tol=1e-12, max_iter=100_000).fit(z[rows], y[rows, t])
        np.testing.assert_allclose(w[:, t].numpy(), ref.coef_, atol=1e-5)
        assert bias[t].item() == pytest.approx(ref.intercept_, abs=1e-5)


def test_lambda_max_is_the_first_zero_solution() -> None:
    _, z, y = _problem()
    gram, xy, yy = lasso.gram_moments(torch.from_numpy(z).float(), torch.from_numpy(y).float())
    op, lam_max = lasso.GramOperator(gram), lasso.lambda_max(xy)
    w, info = lasso.solve(op, xy, yy, lam_max)
    assert w.dtype == torch.float32
    assert bool((w == 0).all()) and bool((info.n_iter == 0).all()) and bool(info.converged.all())
    # Just below, w = 0 is within the default tolerance (gap 5e-5 yy), so ask for more.
    w, info = lasso.solve(op, xy, yy, 0.99 * lam_max, tol=1e-8)
    assert bool(((w != 0).sum(0) >= 1).all()) and bool(info.converged.all())


def test_lambda_grid_is_geometric() -> None:
    lam_max = torch.tensor([2.0, 0.5], dtype=torch.float64)
    grid = lasso.lambda_grid(lam_max, 4, 1e-3)
    assert grid.shape == (4, 2)
    np.testing.assert_allclose(grid.numpy(), np.geomspace(lam_max.numpy(), 1e-3 * lam_max.numpy(), 4))


def test_max_iter_flags_non_convergence() -> None:
    _, z, y = _problem()
    gram, xy, yy = lasso.gram_moments(torch.from_numpy(z), torch.from_numpy(y))
    op, lam = lasso.GramOperator(gram), 1e-3 * lasso.lambda_max(xy)
    w, info = lasso.solve(op, xy, yy, lam, tol=1e-12, max_iter=1)
    assert not bool(info.converged.any())
    assert bool((info.n_iter == 1).all()) and bool((info.gap > 1e-12 * yy).all())
    # The returned iterate is the best seen: better than the zero start.
    assert bool((lasso.objective(op, xy, yy, w, lam) < 0.5 * yy).all())
    # Warm-starting from it finishes the job.
    w, info = lasso.solve(op, xy, yy, lam, w0=w, tol=1e-8)
    assert bool(info.converged.all())


def test_workers_match_serial_path() -> None:
    mask, z, y = _problem(n=200, p=20, n_targets=5, seed=2)
    op = lasso.MaskedRowsOperator(torch.from_numpy(z), torch.from_numpy(~mask[:, :5]))
    xy, yy = op.moments(torch.from_numpy(y))
    lambdas = lasso.lambda_grid(lasso.lambda_max(xy), 6, 1e-2)
    serial = list(lasso.path(op, xy, yy, lambdas, tol=1e-10))
    parallel = list(lasso.path(op, xy, yy, lambdas, tol=1e-10, workers=2))
    assert [k for k, _, _ in parallel] == list(range(6))
    for (_, w1, i1), (_, w2, i2) in zip(serial, parallel, strict=True):
        np.testing.assert_allclose(w2.numpy(), w1.numpy(), atol=1e-6)
        assert bool(i2.converged.all()) and i2.n_iter.shape == i1.n_iter.shape == (5,)
