"""Retrain models on the full training set minus removal sets, with the pipeline's recipe.

Model seed ``s`` (initialisation and minibatch order) is the same for the
full-data reference models and for every removal set (common random numbers),
so the difference "margin without the set minus margin with everything" is not
swamped by seed-to-seed noise. The learners (``learners.train_on``) take subsets of
one size per call, so the removal sets are trained together per removal size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from .. import data, devices, learners
from ..protocol import TrainData
from ..seeding import AppIndex, Stream, int_seed
from .sampling import target_order, top_by_weight  # noqa: F401  (re-exported: the applications' shared helpers)

log = logging.getLogger(__name__)
SEED_INDEX_OFFSET = AppIndex.RETRAIN_MODEL_SEEDS
"""Model seeds use ``Stream.APPLICATION`` indices from here on; lower indices are for sampling."""


def model_seeds(seed: int, n_seeds: int) -> list[int]:
    """Torch seeds of the retrained models, shared by every application and removal set.

    They are keyed on alpha 0: the retrained models never see a random subset,
    so their seeds do not depend on the datamodels' alpha.
    """
    return [int_seed(seed, Stream.APPLICATION, 0.0, SEED_INDEX_OFFSET + s) for s in range(n_seeds)]


def mean_and_se(values: np.ndarray) -> dict:
    """Mean and standard error of independent values, e.g. per retrained seed (se None with fewer than two)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None
    return {"mean": float(values.mean()), "se": se}


def keep_indices(n_train: int, removed: np.ndarray) -> np.ndarray:
    """Sorted training indices left after removing ``removed`` (which must be distinct and in range)."""
    removed = np.asarray(removed, dtype=np.int64)
    if len(np.unique(removed)) != len(removed) or (removed < 0).any() or (removed >= n_train).any():
        raise ValueError(f"removal set must be distinct indices in [0, {n_train})")
    keep = np.ones(n_train, dtype=bool)
    keep[removed] = False
    return np.flatnonzero(keep)


class Retrainer:
    """Trains ``n_seeds`` models per removal set on one prepared data set."""

    def __init__(self, dataset: data.Dataset, recipe: dict, seed: int, n_seeds: int):
        self.dataset = dataset
        self.recipe = recipe
        self.device = devices.resolve(recipe["train"].get("device", "cpu"))
        self.seeds = model_seeds(seed, n_seeds)
        self.n_models_trained = 0

    def reference(self) -> np.ndarray:
        """Margins ``[n_seeds, n_targets]`` of the models trained on the full training set."""
        return self.margins([np.zeros(0, dtype=np.int64)])[0]

    def margins(self, removals: Sequence[np.ndarray]) -> np.ndarray:
        """Margins ``[n_sets, n_seeds, n_targets]`` of the models trained without each removal set."""
        n_seeds, n_train = len(self.seeds), self.dataset.n_train
        out = np.full((len(removals), n_seeds, self.dataset.n_targets), np.nan, dtype=np.float32)
        sizes = np.array([len(r) for r in removals])
        for size in np.unique(sizes):
            sets = np.flatnonzero(sizes == size)
            subsets = np.repeat(np.stack([keep_indices(n_train, removals[i]) for i in sets]), n_seeds, axis=0)
            start = time.perf_counter()
            result = learners.train_on(self.recipe, TrainData.of(self.dataset, self.device), subsets,
                                       self.seeds * len(sets))
            out[sets] = result.margins.reshape(len(sets), n_seeds, -1)
            self.n_models_trained += len(subsets)
            log.info("removal size %d: %d models on %d examples in %.1f s", size, len(subsets), n_train - size,
                     time.perf_counter() - start)
        return out
