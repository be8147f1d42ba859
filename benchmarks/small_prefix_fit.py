"""Time the learning curve's small-prefix fits: every target on the rows against the covariance form.

With fewer models than half the features, ``fit.fit_targets(..., few_models_on_rows=True)`` fits every target
on the rows (a product costs ``2 n p`` per target) instead of the ``[p, p]`` covariance (``p^2``); both solve the
same lasso path with the same validation rows. For each number of models, prints one JSON line: the CPU seconds
of each form, ``ratio`` (covariance / rows) and the largest weight difference. The default config's fit settings,
one thread, synthetic fixed-size alpha = 0.5 masks over ``--features`` examples with outputs ``y = Z w* + noise``
(R^2 about 0.4, as real datamodels).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from datamodels_pipeline import fit, masks, statistics  # noqa: E402

DEFAULT_FIT = {"n_lambdas": 30, "lambda_eps": 0.001, "val_fraction": 0.1, "tol": 0.0001, "max_iter": 1000,
               "patience": 3, "device": "cpu"}  # config/config.yaml's fit section


def problem(n_models: int, n_features: int, n_targets: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    mask = masks.to_mask(masks.draw_subsets(seed, "train", 0.5, range(n_models), n_features), n_features)
    rng = np.random.default_rng(seed)
    z = (mask - 0.5) / 0.5
    signal = z @ (rng.laplace(size=(n_features, n_targets)) * (rng.random((n_features, n_targets)) < 0.05))
    noise = rng.standard_normal(signal.shape) * np.sqrt(signal.var(0) * 1.5)
    return mask, (signal + noise).astype(np.float32)


def cpu_seconds(call) -> tuple[float, dict]:
    start = time.process_time()
    result = call()
    return time.process_time() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[112, 225, 450])
    parser.add_argument("--features", type=int, default=1200)
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = fit.FitSettings.from_config(DEFAULT_FIT)
    with threadpool_limits(1):
        for n in args.models:
            mask, y = problem(n, args.features, args.targets, args.seed)
            index = np.full(args.targets, -1, dtype=np.int64)
            is_val = statistics.validation_rows(n, settings.val_fraction, args.seed, 0.5)
            stats = statistics.from_arrays(mask, y, index, is_val, {"alpha": 0.5, "seed": args.seed,
                                                                    "val_fraction": settings.val_fraction, "n": n})
            rows_s, on_rows = cpu_seconds(lambda: fit.fit_targets(stats, settings, rows=lambda: (mask, y),
                                                                  few_models_on_rows=True)[0])
            sums_s, on_sums = cpu_seconds(lambda: fit.fit_targets(stats, settings, rows=lambda: (mask, y))[0])
            print(json.dumps({"benchmark": "small_prefix_fit", "n_models": n, "n_features": args.features,
                              "n_targets": args.targets, "rows_cpu_s": round(rows_s, 2),
                              "covariance_cpu_s": round(sums_s, 2), "ratio": round(sums_s / rows_s, 2),
                              "max_weight_difference": float(np.abs(on_rows["w"] - on_sums["w"]).max()),
                              "same_lambda_choice": bool((on_rows["best_k"] == on_sums["best_k"]).all()),
                              "loadavg_1m": os.getloadavg()[0]}), flush=True)


if __name__ == "__main__":
    main()
