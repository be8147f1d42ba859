"""Derive every random stream from the config seed and an index.

A model's subset, initialisation and minibatch order must not depend on how
many models or chunks a run has, so each stream is keyed by
``(seed, stream, alpha, index)`` and nothing else.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


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
