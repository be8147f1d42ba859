"""The attribution application's settings: checks against the run, the random-stream indices, each method's models.

:func:`check_settings` refuses settings that cannot work with this run (naming the
key); :func:`checkpoint_epochs` gives TracIn's checkpoints; :func:`model_plan` gives
the torch seeds and training rows of a method's models, drawn from the
``Stream.APPLICATION`` indices defined here (60-69).
"""

from __future__ import annotations

import logging

import numpy as np

from ... import masks, protocol
from ...seeding import Stream, rng

log = logging.getLogger(__name__)

NETWORK_METHODS = ("influence_function", "tracin", "trak", "representation_similarity")
SETTINGS_KEY = {"influence_function": "influence", "tracin": "tracin", "trak": "trak",
                "representation_similarity": "representation"}
SEED_INDEX = {"influence_function": 60, "tracin": 61, "trak": 62, "representation_similarity": 63}
"""``Stream.APPLICATION`` indices of each method's model seeds; 65-68 draw its subsets (``train_set: subsets``)."""
SUBSET_INDEX = {name: index + 5 for name, index in SEED_INDEX.items()}
PROJECTION_INDEX, PROBE_INDEX = 64, 69
"""TRAK's projection seed; the cost probe's models (seeds and subsets)."""
TRAIN_SETS = ("full", "subsets")


def check_settings(settings: dict, recipe: dict, n_train: int) -> None:
    """ValueError naming the config key when a setting cannot work with this run."""
    prefix = "applications.attribution"
    for key in ("influence", "tracin", "trak", "representation"):
        train_set = settings[key]["train_set"]
        if train_set not in TRAIN_SETS:
            raise ValueError(f"{prefix}.{key}.train_set must be one of {TRAIN_SETS}, got {train_set!r}")
    for key in ("influence", "tracin", "representation"):
        if settings[key]["n_models"] < 0:
            raise ValueError(f"{prefix}.{key}.n_models must be >= 0 (0 disables the method)")
    if settings["influence"]["damping"] <= 0:
        raise ValueError(f"{prefix}.influence.damping must be > 0, got {settings['influence']['damping']}")
    ensemble = settings["trak"]["ensemble"]
    if any(int(k) < 1 for k in ensemble) or len(set(ensemble)) != len(ensemble):
        raise ValueError(f"{prefix}.trak.ensemble must be distinct sizes >= 1, got {ensemble}")
    dims = settings["trak"]["proj_dim"]
    if not dims or any(int(d) < 1 for d in dims) or len(set(dims)) != len(dims):
        raise ValueError(f"{prefix}.trak.proj_dim must be distinct dimensions >= 1, got {dims}")
    if settings["trak"]["damping"] == 0 and any(int(d) >= n_train for d in dims):
        log.warning("%s.trak.proj_dim %s reaches data.n_train = %d: Phi^T Phi is singular and is pseudo-inverted "
                    "(set trak.damping > 0 for a ridge instead)", prefix, dims, n_train)
    learner = protocol.learner(recipe)
    if protocol.TORCH_MODULE in learner.capabilities and settings["tracin"]["n_models"]:
        checkpoint_epochs(settings["tracin"], learner.epochs)
    if settings["cost_probe_models"] < 1:
        raise ValueError(f"{prefix}.cost_probe_models must be >= 1")


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
