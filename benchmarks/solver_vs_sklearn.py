"""Time the batched lasso path against scikit-learn's ``lasso_path`` (Gram precomputed).

Both solve the same problem -- every target over the same per-target lambda grid at the
same duality-gap tolerance -- and the objectives are compared at every (lambda, target).
Both get the Gram matrix and ``X^T y`` precomputed outside the timing (ours is reported
as ``ours_moments_s``). Prints one JSON line; ``ratio`` is sklearn time / ours. With
``--sklearn-targets K`` sklearn is timed on K evenly spaced targets and its time scaled
linearly to all of them (``sklearn_extrapolated``); the objective gap is then over those.

``--threads`` (default 1) caps torch and BLAS threads for both; our path uses the cores
through ``--workers`` parallel target chunks instead (default: all cores), which scales
better than intra-op threads and degrades gracefully when another process holds a core.
sklearn's coordinate descent is serial either way. ``loadavg_1m`` tells how busy the
machine was.

Default data: fixed-size alpha=0.5 masks, standardised, and ``y = Z w* + noise`` with
Laplace ``w*`` and noise set so that R^2 is about 0.4 (real datamodels explain ~30-50%).
``--data`` reads a Parquet file with ``mask`` (packbits, little bit order) and
``margins`` columns instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import lasso_path  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from datamodels_pipeline import lasso  # noqa: E402


def synthetic(n_models: int, n_features: int, n_targets: int, r2: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-size half masks ``[n, p]`` (bool) and outputs ``[n, T]`` with R^2 about ``r2``."""
    rng = np.random.default_rng(seed)
    chosen = np.argpartition(rng.random((n_models, n_features)), n_features // 2, axis=1)[:, : n_features // 2]
    mask = np.zeros((n_models, n_features), dtype=bool)
    np.put_along_axis(mask, chosen, True, axis=1)
    z = standardise(mask)
    signal = z @ rng.laplace(size=(n_features, n_targets))
    noise = rng.standard_normal((n_models, n_targets)) * np.sqrt(signal.var(0) * (1 - r2) / r2)
    return mask, signal + noise


def read_parquet(path: str, n_features: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Masks and margins from a Parquet file of packed ``mask`` and ``margins`` columns."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["mask", "margins"])
    packed = table.column("mask").combine_chunks()
    width = packed.type.byte_width
    raw = np.frombuffer(packed.buffers()[1], dtype=np.uint8)[packed.offset * width : (packed.offset + len(packed)) * width]
    mask = np.unpackbits(raw.reshape(len(packed), width), axis=1, bitorder="little")[:, : n_features or width * 8]
    margins = table.column("margins").combine_chunks()
    y = margins.flatten().to_numpy().reshape(len(margins), margins.type.list_size)
    return mask.astype(bool), y.astype(np.float64)


def standardise(mask: np.ndarray) -> np.ndarray:
    """``(mask - mean) / std`` per feature (constant features get std 1)."""
    m = mask.astype(np.float64)
    sd = m.std(0)
    return (m - m.mean(0)) / np.where(sd > 0, sd, 1.0)


def objectives(gram: np.ndarray, xy: np.ndarray, yy: float, coefs: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """``[L]`` lasso objective of each column of ``coefs`` ``[p, L]`` (float64, covariance form)."""
    return 0.5 * np.einsum("pl,pl->l", coefs, gram @ coefs - 2 * xy[:, None]) + 0.5 * yy + lams * np.abs(coefs).sum(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-models", type=int, default=9000)
    parser.add_argument("--n-features", type=int, default=None, help="default 1200; with --data, 8 x the mask bytes")
    parser.add_argument("--n-targets", type=int, default=597)
    parser.add_argument("--n-lambdas", type=int, default=30)
    parser.add_argument("--eps", type=float, default=1e-3)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--sklearn-targets", type=int, default=None, help="time sklearn on this many targets (default: all)")
    parser.add_argument("--data", default=None, help="Parquet file with mask and margins columns")
    parser.add_argument("--r2", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--float64", action="store_true", help="run our solver in float64")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads for both (sklearn's CD is serial anyway)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="our path's parallel target chunks (default: all cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        run(args)


def run(args: argparse.Namespace) -> None:
    """Build the problem, time both solvers and print the JSON line."""
    if args.data:
        mask, y = read_parquet(args.data, args.n_features)
        mask, y = mask[: args.n_models], y[: args.n_models, : args.n_targets]
    else:
        mask, y = synthetic(args.n_models, args.n_features or 1200, args.n_targets, args.r2, args.seed)
    n, p = mask.shape
    n_targets = y.shape[1]
    z64 = standardise(mask)
    dtype = torch.float64 if args.float64 else torch.float32

    # Ours: the whole path for all targets in one run. Like sklearn's Gram and Xy, our
    # moments are computed outside the timed region (their time is reported separately).
    z, yt = torch.from_numpy(z64).to(dtype), torch.from_numpy(y).to(dtype)
    start = time.perf_counter()
    gram, xy, yy = lasso.gram_moments(z, yt)
    moments_s = time.perf_counter() - start
    lambdas = lasso.lambda_grid(lasso.lambda_max(xy), args.n_lambdas, args.eps)
    ours = torch.empty(args.n_lambdas, p, n_targets, dtype=dtype)
    iters, unconverged = 0, 0
    start = time.perf_counter()
    for k, w, info in lasso.path(
        lasso.GramOperator(gram), xy, yy, lambdas, tol=args.tol, max_iter=args.max_iter, workers=args.workers
    ):
        ours[k] = w
        iters = max(iters, int(info.n_iter.max()))
        unconverged += int((~info.converged).sum())
    ours_s = time.perf_counter() - start

    # scikit-learn, float64, one target at a time on the same grid (its Gram precomputed, untimed).
    zc = z64 - z64.mean(0)
    yc = y - y.mean(0)
    g64, xy64, yy64 = zc.T @ zc / n, zc.T @ yc / n, (yc * yc).sum(0) / n
    gram_unscaled = zc.T @ zc
    xy_unscaled = zc.T @ yc
    lam64 = lambdas.double().numpy()
    k_sk = n_targets if args.sklearn_targets is None else min(args.sklearn_targets, n_targets)
    targets = np.unique(np.linspace(0, n_targets - 1, k_sk).round().astype(int)) if k_sk > 0 else np.array([], int)
    worst = -np.inf
    sklearn_time = 0.0
    sk_unconverged = 0
    for t in targets:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            start = time.perf_counter()
            _, coefs, _ = lasso_path(
                zc, yc[:, t], alphas=lam64[:, t], precompute=gram_unscaled, Xy=xy_unscaled[:, t], tol=args.tol, max_iter=args.max_iter
            )
            sklearn_time += time.perf_counter() - start
        sk_unconverged += sum(issubclass(c.category, ConvergenceWarning) for c in caught)
        ref = objectives(g64, xy64[:, t], yy64[t], coefs, lam64[:, t])
        mine = objectives(g64, xy64[:, t], yy64[t], ours[:, :, t].double().numpy().T, lam64[:, t])
        worst = max(worst, float(((mine - ref) / ref).max()))
    sklearn_s = sklearn_time * n_targets / len(targets) if len(targets) else float("nan")

    print(
        json.dumps(
            {
                "ours_s": round(ours_s, 3),
                "ours_moments_s": round(moments_s, 3),
                "sklearn_s": round(sklearn_s, 3),
                "ratio": round(sklearn_s / ours_s, 2),
                "max_rel_objective_gap": worst,
                "n_models": n,
                "n_features": p,
                "n_targets": n_targets,
                "n_lambdas": args.n_lambdas,
                "eps": args.eps,
                "tol": args.tol,
                "sklearn_targets_timed": len(targets),
                "sklearn_extrapolated": len(targets) < n_targets,
                "sklearn_s_per_target": round(sklearn_time / max(len(targets), 1), 4),
                "ours_dtype": str(dtype).removeprefix("torch."),
                "ours_max_iter_per_lambda": iters,
                "ours_unconverged": unconverged,
                "sklearn_unconverged": sk_unconverged,
                "threads": args.threads,
                "workers": args.workers,
                "loadavg_1m": round(os.getloadavg()[0], 2),
                "data": args.data or f"synthetic fixed-size alpha=0.5 masks, Laplace w*, R^2={args.r2}",
            }
        )
    )


if __name__ == "__main__":
    main()
