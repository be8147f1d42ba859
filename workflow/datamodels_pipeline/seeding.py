"""Derive every random stream from the config seed and an index.

A model's subset, initialisation and minibatch order must not depend on how
many models or chunks a run has, so each stream is keyed by
``(seed, stream, alpha, index)`` and nothing else.
"""

from __future__ import annotations

from enum import IntEnum, unique

import numpy as np


@unique
class Stream(IntEnum):
    """Independent random streams; the values are part of the on-disk contract."""

    DATA_SPLIT = 1
    TRAIN_MASK = 2
    EVAL_MASK = 3
    TRAIN_MODEL = 4
    EVAL_MODEL = 5
    FIT_VALIDATION = 6
    APPLICATION = 7
    DATA_PLANT = 8
    TRAIN_SET_MASK = 9
    TRAIN_SET_MODEL = 10
    EVAL_REPEAT_MODEL = 11


@unique
class AppIndex(IntEnum):
    """The ``index`` of every ``Stream.APPLICATION`` stream: the one registry the applications draw from.

    The values are part of the on-disk contract (changing one changes that
    application's results). ``@unique`` refuses two names with one value;
    ``RETRAIN_MODEL_SEEDS`` opens a range (``RETRAIN_MODEL_SEEDS + s`` for
    model seed ``s``) above every other index.
    """

    COUNTERFACTUALS_TARGETS = 0
    BRITTLENESS_TARGETS = 1
    SIMILAR_EXAMPLES_TARGETS = 2
    COUNTERFACTUALS_RANDOM = 3
    EMBEDDINGS_CLUSTER = 4
    EMBEDDINGS_RANDOM = 5
    DATA_SELECTION_SPLIT = 20
    DATA_SELECTION_RANDOM = 21
    DATA_SELECTION_MATCHED = 22
    BACKDOOR_POISON = 30
    BACKDOOR_SEARCH = 31
    BACKDOOR_RANDOM = 32
    MODELDIFF_RANDOM_A_MINUS_B = 40
    MODELDIFF_RANDOM_B_MINUS_A = 41
    UNLEARNING_FORGET = 50
    UNLEARNING_RETAIN = 51
    UNLEARNING_SPLIT = 52
    UNLEARNING_ORDER_DMM = 53
    UNLEARNING_ORDER_FINETUNE = 54
    UNLEARNING_ORDER_ORACLE_MATCHING = 55
    ATTRIBUTION_SEEDS_INFLUENCE_FUNCTION = 60
    ATTRIBUTION_SEEDS_TRACIN = 61
    ATTRIBUTION_SEEDS_TRAK = 62
    ATTRIBUTION_SEEDS_REPRESENTATION_SIMILARITY = 63
    ATTRIBUTION_PROJECTION = 64
    ATTRIBUTION_SUBSETS_INFLUENCE_FUNCTION = 65
    ATTRIBUTION_SUBSETS_TRACIN = 66
    ATTRIBUTION_SUBSETS_TRAK = 67
    ATTRIBUTION_SUBSETS_REPRESENTATION_SIMILARITY = 68
    ATTRIBUTION_PROBE = 69  # retired (the attribution cost probe, issue 14): kept registered, never reused
    RETRAIN_MODEL_SEEDS = 1_000_000


def app_index(prefix: str, name: str) -> AppIndex:
    """The registered index ``<PREFIX>_<NAME>``, e.g. ``app_index("unlearning_order", "dmm")``."""
    return AppIndex[f"{prefix}_{name}".upper()]


def alpha_key(alpha: float) -> int:
    """Integer key for a subset fraction (micro-units), exact for config values."""
    return int(round(alpha * 1_000_000))


def seed_sequence(seed: int, stream: Stream, alpha: float = 0.0, index: int = 0) -> np.random.SeedSequence:
    """The SeedSequence of one (seed, stream, alpha, index) tuple."""
    return np.random.SeedSequence([int(seed), int(stream), alpha_key(alpha), int(index)])


def rng(seed: int, stream: Stream, alpha: float = 0.0, index: int = 0) -> np.random.Generator:
    """A NumPy generator for one (seed, stream, alpha, index) tuple."""
    return np.random.default_rng(seed_sequence(seed, stream, alpha, index))


def int_seed(seed: int, stream: Stream, alpha: float = 0.0, index: int = 0) -> int:
    """A 63-bit integer seed (for torch generators) for one tuple."""
    return int(seed_sequence(seed, stream, alpha, index).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
