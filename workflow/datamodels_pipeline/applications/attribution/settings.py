"""The attribution application's settings: checks against the run, the random-stream indices, each method's models.

:func:`warn_settings` logs settings that work but are likely not meant (the config is
checked at parse time, ``config.py``); :func:`checkpoint_epochs` gives TracIn's checkpoints; :func:`model_plan` gives
the torch seeds and training rows of a method's models, drawn from the
``Stream.APPLICATION`` indices defined here (60-69).
"""

from __future__ import annotations

import logging

import numpy as np

from ... import masks
from ...seeding import AppIndex, Stream, app_index, rng

log = logging.getLogger(__name__)

NETWORK_METHODS = ("influence_function", "tracin", "trak", "representation_similarity")
SETTINGS_KEY = {"influence_function": "influence", "tracin": "tracin", "trak": "trak",
                "representation_similarity": "representation"}
SEED_INDEX = {m: app_index("attribution_seeds", m) for m in ("influence_function", "tracin", "trak",
                                                               "representation_similarity")}
"""``Stream.APPLICATION`` indices of each method's model seeds; 65-68 draw its subsets (``train_set: subsets``)."""
SUBSET_INDEX = {m: app_index("attribution_subsets", m) for m in SEED_INDEX}
PROJECTION_INDEX = AppIndex.ATTRIBUTION_PROJECTION
"""TRAK's projection seed (69, the retired cost probe's, is not reused: seeding.AppIndex)."""
TRAIN_SETS = ("full", "subsets")


def warn_settings(settings: dict, n_train: int) -> None:
    """Log the settings that work but are likely not meant (the config is checked at parse time, config.py)."""
    dims = settings["trak"]["proj_dim"]
    if settings["trak"]["damping"] == 0 and any(int(d) >= n_train for d in dims):
        log.warning("applications.attribution.trak.proj_dim %s reaches data.n_train = %d: Phi^T Phi is singular and "
                    "is pseudo-inverted (set trak.damping > 0 for a ridge instead)", dims, n_train)


def checkpoint_epochs(settings: dict, epochs: int) -> list[int]:
    """TracIn's checkpoint epochs: the configured list, or (null) ``n_checkpoints`` evenly spaced ending at the last."""
    wanted = settings["checkpoints"]
    if wanted is None:
        n = min(settings["n_checkpoints"], epochs)
        return sorted({int(round(epochs * (k + 1) / n)) for k in range(n)})
    if not wanted or any(not 1 <= int(e) <= epochs for e in wanted):
        raise ValueError(f"applications.attribution.tracin.checkpoints must be epochs in [1, train.epochs={epochs}], "
                         f"got {wanted}")
    return sorted(set(int(e) for e in wanted))


def model_plan(method: str, n_models: int, train_set: str, seed: int, alpha: float, n_train: int
               ) -> tuple[list[int], list[np.ndarray]]:
    """Torch seeds and training rows of a method's models: all of S, or random alpha-subsets (like TRAK)."""
    seeds = [int(s) for s in rng(seed, Stream.APPLICATION, alpha, SEED_INDEX[method]).integers(2**62, size=n_models)]
    if train_set == "full":
        return seeds, [np.arange(n_train, dtype=np.int64)] * n_models
    generator = rng(seed, Stream.APPLICATION, alpha, SUBSET_INDEX[method])
    size = masks.subset_size(n_train, alpha)
    return seeds, [np.sort(generator.permutation(n_train)[:size]).astype(np.int64) for _ in range(n_models)]
