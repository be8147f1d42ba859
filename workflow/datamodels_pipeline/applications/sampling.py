"""Reproducible target samples and weight rankings shared by the applications (NumPy only, no training)."""

from __future__ import annotations

import numpy as np

from ..seeding import Stream, rng


def target_order(n_targets: int, seed: int, alpha: float, index: int) -> np.ndarray:
    """A reproducible random order of the targets: ``seeding.rng(seed, APPLICATION, alpha, index)``.

    An application samples its targets as a prefix of this order, so a larger
    sample contains the smaller one.
    """
    return rng(seed, Stream.APPLICATION, alpha, index).permutation(n_targets)


def top_by_weight(weight: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest weights, largest first (ties broken by the lower index)."""
    weight = np.asarray(weight)
    if not 0 <= k <= len(weight):
        raise ValueError(f"k={k} is outside [0, {len(weight)}]")
    return np.argsort(-weight, kind="stable")[:k]


def top_examples(weight: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``top`` training indices with the largest positive weights (largest first) and with the most
    negative weights (most negative first); zero weights are never listed."""
    weight = np.asarray(weight)
    positive = top_by_weight(weight, min(top, len(weight)))
    negative = top_by_weight(-weight, min(top, len(weight)))
    return positive[weight[positive] > 0], negative[weight[negative] < 0]
