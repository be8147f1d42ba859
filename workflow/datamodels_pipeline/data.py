"""Prepare a data set: split it into the training set S and the target examples.

The prepared data set is one ``.npz`` file (no pickled objects) plus a JSON
fingerprint, so later stages never re-download or re-split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_output
from .seeding import Stream, rng

TARGET_KINDS = ("test", "train", "both")


@dataclass
class Dataset:
    """Arrays of one prepared data set.

    ``target_train_index[t]`` is the position in the training set of target t
    when the target is itself a training example, and -1 for test targets.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_targets: np.ndarray
    y_targets: np.ndarray
    target_train_index: np.ndarray
    image_shape: tuple[int, ...]

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_targets(self) -> int:
        return int(self.x_targets.shape[0])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_targets.max())) + 1


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """scikit-learn's bundled 8x8 digits, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64), (8, 8)


LOADERS = {"digits": load_digits_arrays}


def split_dataset(x: np.ndarray, y: np.ndarray, image_shape: tuple[int, ...], n_train: int,
                  targets: str, seed: int, n_test: int | None = None) -> Dataset:
    """Randomly split (x, y) into n_train training examples and the rest as test.

    ``targets`` picks the target examples: the test examples (the first
    ``n_test`` of them, or all), the training examples themselves, or both
    (test first).
    """
    if targets not in TARGET_KINDS:
        raise ValueError(f"data.targets must be one of {TARGET_KINDS}, got {targets!r}")
    if not 0 < n_train < len(x):
        raise ValueError(f"data.n_train must be between 1 and {len(x) - 1} for this data set, got {n_train}")
    order = rng(seed, Stream.DATA_SPLIT).permutation(len(x))
    train, test = order[:n_train], order[n_train:]
    if n_test is not None:
        test = test[:n_test]
    x_parts, y_parts, index_parts = [], [], []
    if targets in ("test", "both"):
        x_parts.append(x[test]); y_parts.append(y[test]); index_parts.append(np.full(len(test), -1))
    if targets in ("train", "both"):
        x_parts.append(x[train]); y_parts.append(y[train]); index_parts.append(np.arange(n_train))
    return Dataset(
        x_train=x[train], y_train=y[train],
        x_targets=np.concatenate(x_parts), y_targets=np.concatenate(y_parts),
        target_train_index=np.concatenate(index_parts).astype(np.int64),
        image_shape=tuple(image_shape),
    )


def prepare(name: str, n_train: int, targets: str, seed: int, n_test: int | None = None) -> Dataset:
    """Load the named data set and split it."""
    if name not in LOADERS:
        raise ValueError(f"data.name {name!r} is not one of {sorted(LOADERS)}")
    x, y, shape = LOADERS[name]()
    return split_dataset(x, y, shape, n_train, targets, seed, n_test)


def fingerprint(dataset: Dataset) -> str:
    """SHA-256 over every array of the data set (bytes, dtype and shape)."""
    digest = hashlib.sha256()
    for key, value in sorted(asdict(dataset).items()):
        array = np.ascontiguousarray(np.asarray(value))
        digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save(dataset: Dataset, path: str | Path, info_path: str | Path, info: dict) -> None:
    """Write the arrays (.npz) and a JSON description with the fingerprint, atomically."""
    with atomic_output(path, suffix=".npz") as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in asdict(dataset).items()})
    description = {
        **info,
        "fingerprint": fingerprint(dataset),
        "n_train": dataset.n_train,
        "n_targets": dataset.n_targets,
        "n_classes": dataset.n_classes,
        "n_features": int(np.prod(dataset.x_train.shape[1:])),
        "image_shape": list(dataset.image_shape),
        "n_train_targets": int((dataset.target_train_index >= 0).sum()),
    }
    with atomic_output(info_path) as tmp:
        Path(tmp).write_text(json.dumps(description, indent=2) + "\n")


def load(path: str | Path) -> Dataset:
    """Read a prepared data set (never unpickles)."""
    with np.load(path, allow_pickle=False) as arrays:
        fields = {k: arrays[k] for k in arrays.files}
    fields["image_shape"] = tuple(int(s) for s in fields["image_shape"])
    return Dataset(**fields)
