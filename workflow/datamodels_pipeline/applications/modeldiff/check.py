"""Statistics of ModelDiff's check by retraining: per-seed means, their differences and one algorithm's response.

:func:`algorithm_check` summarises how one algorithm's retrained margins change
when one end of a direction is removed (the group of targets, random targets and
all eligible targets, raw and relative to its full-data margins, with its own
datamodels' prediction); :func:`seed_stats` and :func:`difference` give the means
over seeds and their standard errors.
"""

from __future__ import annotations

import numpy as np


def seed_stats(per_seed: np.ndarray) -> dict:
    """Mean over seeds and its standard error (None with one seed)."""
    per_seed = np.asarray(per_seed, dtype=np.float64)
    se = float(per_seed.std(ddof=1) / np.sqrt(len(per_seed))) if len(per_seed) > 1 else None
    return {"mean": float(per_seed.mean()), "se": se}


def difference(x: dict, y: dict) -> dict:
    """x − y of two independent seed means (standard errors added in quadrature) and the z score."""
    mean = x["mean"] - y["mean"]
    se = None if x["se"] is None or y["se"] is None else float(np.hypot(x["se"], y["se"]))
    return {"mean": mean, "se": se, "z": None if not se else mean / se}


def algorithm_check(change: np.ndarray, reference: np.ndarray, margins: np.ndarray, weight: np.ndarray,
                    removed: np.ndarray, group: np.ndarray, random: np.ndarray, eligible: np.ndarray) -> dict:
    """One algorithm's response to one removal: per-seed group means of the margin change (raw and divided by the
    algorithm's mean full-data margin over the eligible targets), group − random paired by seed, accuracy change
    and the algorithm's datamodel prediction (−Σ removed raw weights)."""
    scale = float(reference[:, eligible].mean())
    per_seed = {name: change[:, members].astype(np.float64).mean(axis=1)
                for name, members in (("group", group), ("random", random), ("all", eligible))}
    correct = (margins > 0).astype(np.float64) - (reference > 0)
    predicted = -weight[removed].astype(np.float64).sum(axis=0)
    out = {"scale_mean_reference_margin": scale}
    for name, members in (("group", group), ("random", random), ("all", eligible)):
        out[name] = {**seed_stats(per_seed[name]), "relative": seed_stats(per_seed[name] / scale),
                     "accuracy_change": float(correct[:, members].mean()),
                     "predicted_change": float(predicted[members].mean())}
    gap = per_seed["group"] - per_seed["random"]
    out["group_minus_random"] = {**seed_stats(gap), "relative": seed_stats(gap / scale),
                                 "predicted": out["group"]["predicted_change"] - out["random"]["predicted_change"]}
    return out
