"""Training subsets: which examples each model trains on.

Model i's subset is a pure function of (seed, alpha, split, i): uniform over
subsets of fixed size round(alpha * n), the paper's distribution. Subsets are
drawn as the n smallest of n i.i.d. uniform keys, which depends only on the
bit generator's stream and not on NumPy's sampling algorithms.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .seeding import Stream, rng

SPLITS = {"train": Stream.TRAIN_MASK, "eval": Stream.EVAL_MASK, "train_set": Stream.TRAIN_SET_MASK,
          "repeat": Stream.EVAL_MASK}
"""``train_set``: the models of the train-set datamodels (applications), apart from the main run's. ``repeat``: the
extra seeds of the first held-out masks (``evaluate.seeds_per_mask``): their subsets are the ``eval`` split's own."""


def repeat_pairs(model_ids: Sequence[int] | np.ndarray, n_masks: int) -> tuple[np.ndarray, np.ndarray]:
    """(held-out mask index, seed index >= 1) of ``repeat`` models, numbered seed-major.

    Repeat model ``j`` trains on held-out mask ``j mod n_masks`` with seed ``1 + j // n_masks`` (seed 0 of a mask is
    the ``eval`` model itself), so raising ``evaluate.seeds_per_mask`` only appends models.
    """
    if n_masks < 1:
        raise ValueError("the repeat split needs at least one repeated mask (evaluate.repeated_masks)")
    ids = np.asarray(model_ids, dtype=np.int64)
    return ids % n_masks, 1 + ids // n_masks


def subset_size(n_train: int, alpha: float) -> int:
    """Number of training examples in every subset of fraction alpha."""
    size = int(round(alpha * n_train))
    if not 0 < size < n_train:
        raise ValueError(f"alpha={alpha} gives subsets of {size} of {n_train} examples; need 0 < size < n")
    return size


def draw_subset(seed: int, split: str, alpha: float, model_id: int, n_train: int) -> np.ndarray:
    """Sorted training indices of one model's subset (``repeat`` models: pass the held-out mask index)."""
    keys = rng(seed, SPLITS[split], alpha, model_id).random(n_train)
    return np.sort(np.argsort(keys, kind="stable")[: subset_size(n_train, alpha)])


def draw_subsets(seed: int, split: str, alpha: float, model_ids: Sequence[int], n_train: int,
                 repeated_masks: int = 0) -> np.ndarray:
    """Subsets of several models, int64 [len(model_ids), subset size].

    ``repeat`` models (``repeated_masks`` held-out masks repeated) get the subset of their held-out mask.
    """
    if split == "repeat":
        model_ids = repeat_pairs(model_ids, repeated_masks)[0]
    return np.stack([draw_subset(seed, split, alpha, int(i), n_train) for i in model_ids]).astype(np.int64)


def to_mask(subsets: np.ndarray, n_train: int) -> np.ndarray:
    """Boolean membership matrix [n_models, n_train] from index rows."""
    mask = np.zeros((len(subsets), n_train), dtype=bool)
    np.put_along_axis(mask, subsets, True, axis=1)
    return mask


def to_subsets(mask: np.ndarray) -> np.ndarray:
    """Index rows from a boolean mask whose rows all have the same count."""
    counts = mask.sum(axis=1)
    if len(mask) and (counts != counts[0]).any():
        raise ValueError("masks have different subset sizes")
    return np.nonzero(mask)[1].reshape(len(mask), -1).astype(np.int64)


def pack(mask: np.ndarray) -> np.ndarray:
    """Bit-pack boolean rows (little bit order) into uint8 [n_models, ceil(n/8)]."""
    return np.packbits(mask, axis=1, bitorder="little")


def unpack(packed: np.ndarray, n_train: int) -> np.ndarray:
    """Inverse of :func:`pack`."""
    return np.unpackbits(packed, axis=1, count=n_train, bitorder="little").astype(bool)
