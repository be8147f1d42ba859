"""Prepare a data set: split it into the training set S and the target examples.

The prepared data set is one ``.npz`` file (no pickled objects) plus a JSON
fingerprint, so later stages never re-download or re-split.
Optionally, near-duplicates of test targets are planted in the training set
(``data.plant_duplicates``), as known answers for the train-test leakage application.

Data sets (``data.name``): ``digits`` (scikit-learn's bundled 8x8 digits, split
at random); ``mnist``, ``fashion_mnist``, ``cifar10`` and ``cifar2`` (CIFAR-10's
cats and dogs, relabelled 0 and 1) through torchvision, whose official training
split is the pool S is drawn from and whose official test split gives the test
targets; ``file``, the user's own ``.npz`` or Parquet file (``data.path``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
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
    ``planted_target[j]`` and ``planted_train[j]`` are the planted near-duplicate
    pairs (target index, training position); empty unless duplicates were planted.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_targets: np.ndarray
    y_targets: np.ndarray
    target_train_index: np.ndarray
    image_shape: tuple[int, ...]
    planted_target: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    planted_train: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_targets(self) -> int:
        return int(self.x_targets.shape[0])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_targets.max())) + 1

    @property
    def n_planted(self) -> int:
        return int(len(self.planted_target))


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """scikit-learn's bundled 8x8 digits, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64), (8, 8)


@dataclass(frozen=True)
class Source:
    """A data set before the split: examples ``x`` (one flattened row each) with labels ``y``.

    Without ``x_test`` the split into S and test examples is random (digits, a
    file without a split); with it, ``x`` is the pool S is drawn from and
    ``x_test`` the test examples.
    """

    x: np.ndarray
    y: np.ndarray
    image_shape: tuple[int, ...]
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


class DataUnavailableError(FileNotFoundError):
    """A torchvision data set is neither on disk nor downloadable; the message says where to put it."""


TORCHVISION = {
    # data.name: (torchvision.datasets class, image shape)
    "mnist": ("MNIST", (28, 28)),
    "fashion_mnist": ("FashionMNIST", (28, 28)),
    "cifar10": ("CIFAR10", (3, 32, 32)),
    "cifar2": ("CIFAR10", (3, 32, 32)),
}
CIFAR2_CLASSES = (3, 5)
"""CIFAR-10's cat and dog, relabelled 0 and 1 in cifar2."""
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
               "batches.meta")


def data_folder(name: str) -> Path:
    """The folder, relative to ``data.root``, where torchvision reads the named data set's files."""
    class_name = TORCHVISION[name][0]
    return Path("cifar-10-batches-py") if class_name == "CIFAR10" else Path(class_name) / "raw"


def expected_files(name: str) -> str:
    """The files torchvision reads for the named data set, and where they come from, in words."""
    if TORCHVISION[name][0] == "CIFAR10":
        return (f"{', '.join(CIFAR_FILES)}: cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
                f"unpacked")
    return (f"{', '.join(MNIST_FILES)}: the unpacked .gz files; with data.download: true the original .gz files "
            f"there are verified and unpacked offline")


def _unavailable(name: str, root: str | Path, download: bool, error: Exception) -> DataUnavailableError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    attempt = "and the download failed" if download else "and data.download is false"
    folder = data_folder(name)
    return DataUnavailableError(
        f"data.name {name!r}: no copy of the data set under data.root = '{root}', {attempt} ({reason}). "
        f"Put the files in {Path(root) / folder}/ ({expected_files(name)}), or, offline, set data.download: false "
        f"and data.root to the folder that contains {folder}/ in an existing copy."
    )


def _torchvision_split(name: str, root: str | Path, download: bool, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """One official split as (flattened float32 images in [0, 1], channels first; int64 labels)."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, TORCHVISION[name][0])
    try:
        dataset = dataset_class(root=str(root), train=train, download=download)
    except (RuntimeError, OSError) as error:
        raise _unavailable(name, root, download, error) from error
    images = np.asarray(dataset.data)
    if images.ndim == 4:  # CIFAR's [N, H, W, C]
        images = images.transpose(0, 3, 1, 2)
    x = (images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0))
    return x, np.asarray(dataset.targets, dtype=np.int64)


def _cifar2(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cats (0) and dogs (1) of CIFAR-10 arrays, in their original order."""
    keep = np.isin(y, CIFAR2_CLASSES)
    return x[keep], (y[keep] == CIFAR2_CLASSES[1]).astype(np.int64)


def load_torchvision(name: str, root: str | Path = "resources", download: bool = True) -> Source:
    """The official training split (the pool) and test split of a torchvision data set."""
    if name not in TORCHVISION:
        raise ValueError(f"{name!r} is not one of the torchvision data sets {sorted(TORCHVISION)}")
    x, y = _torchvision_split(name, root, download, train=True)
    x_test, y_test = _torchvision_split(name, root, download, train=False)
    if name == "cifar2":
        (x, y), (x_test, y_test) = _cifar2(x, y), _cifar2(x_test, y_test)
    return Source(x, y, TORCHVISION[name][1], x_test, y_test)


FILE_SUFFIXES = (".npz", ".parquet", ".pq")
SPLIT_VALUES = {"train": 0, "test": 1}


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays x, y and (when present) split of an .npz file, never unpickling."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            names = list(arrays.files)
            for required in ("x", "y"):
                if required not in names:
                    raise ValueError(f"data.path = '{path}': the .npz file has no array {required!r} "
                                     f"(it has {names or 'none'}); it needs x (features or images) and y (labels)")
            return {key: arrays[key] for key in ("x", "y", "split") if key in names}
    except ValueError as error:
        if "pickle" in str(error):
            raise ValueError(f"data.path = '{path}': an array holds Python objects; store plain numeric arrays "
                             f"(np.savez with numbers only)") from None
        raise


def _list_column(column, path: Path) -> np.ndarray:
    """A Parquet list column of equal-length numeric lists as a 2-D array."""
    import pyarrow as pa

    column = column.combine_chunks()
    if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type) \
            and not pa.types.is_fixed_size_list(column.type):
        raise ValueError(f"data.path = '{path}': column 'x' must be a list column (one list of numbers per row)")
    lengths = np.asarray(column.value_lengths())
    if len(lengths) and (lengths != lengths[0]).any():
        raise ValueError(f"data.path = '{path}': the lists of column 'x' have different lengths")
    values = np.asarray(column.flatten().to_numpy(zero_copy_only=False))
    return values.reshape(len(column), int(lengths[0]) if len(lengths) else 0)


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    """x, y and (when present) split of a Parquet file: a ``label`` column, a list column ``x`` or feature columns."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = table.column_names
    if "label" not in names:
        raise ValueError(f"data.path = '{path}': the Parquet file has no column 'label' (it has {names})")
    arrays = {"y": table.column("label").to_numpy()}
    if "split" in names:
        arrays["split"] = table.column("split").to_numpy()
    if "x" in names:
        arrays["x"] = _list_column(table.column("x"), path)
    else:
        features = [name for name in names if name not in ("label", "split")]
        if not features:
            raise ValueError(f"data.path = '{path}': the Parquet file has no feature columns (or list column 'x') "
                             f"besides 'label'")
        try:
            arrays["x"] = np.column_stack([table.column(name).to_numpy().astype(np.float32) for name in features])
        except (TypeError, ValueError) as error:
            raise ValueError(f"data.path = '{path}': feature columns must be numeric ({error})") from None
    return arrays


def _checked_labels(y: np.ndarray, n: int, path: Path) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"data.path = '{path}': labels have shape {y.shape}, expected ({n},), one per example")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise ValueError(f"data.path = '{path}': labels must be non-negative integers (class 0, 1, ...), "
                         f"got {y.dtype}")
    return y.astype(np.int64)


def _image_shape(x: np.ndarray, image_shape: Sequence[int] | None, path: Path) -> tuple[int, ...]:
    """The configured shape of one example, else x's own (a flat row is a 1-D example)."""
    if image_shape is None:
        return tuple(int(s) for s in x.shape[1:])
    shape = tuple(int(s) for s in image_shape)
    if int(np.prod(shape)) != int(np.prod(x.shape[1:])):
        raise ValueError(f"data.image_shape = {list(shape)} does not hold the {int(np.prod(x.shape[1:]))} values of "
                         f"each example in data.path = '{path}'")
    return shape


def load_file(path: str | Path, image_shape: Sequence[int] | None = None) -> Source:
    """The user's own data: an .npz (x, y, optional split) or Parquet file (label, x or features, optional split).

    ``split`` is 0 for the pool S is drawn from and 1 for test examples;
    without it the split is random, as for digits.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.path = '{path}': no such file")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise ValueError(f"data.path = '{path}': expected a file ending in {' or '.join(FILE_SUFFIXES)}")
    arrays = _read_npz(path) if suffix == ".npz" else _read_parquet(path)
    x = np.asarray(arrays["x"])
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"data.path = '{path}': x must be a numeric array of shape (examples, ...), got {x.dtype} "
                         f"{x.shape}")
    shape = _image_shape(x, image_shape, path)
    with np.errstate(over="ignore"):  # an overflow to infinity is refused below
        x = x.reshape(len(x), -1).astype(np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise ValueError(f"data.path = '{path}': row {int(np.argmin(finite))} has a non-finite feature (NaN or "
                         f"infinite, also after conversion to float32); {int((~finite).sum())} of {len(x)} rows do")
    y = _checked_labels(np.asarray(arrays["y"]), len(x), path)
    if "split" not in arrays:
        return Source(x, y, shape)
    split = np.asarray(arrays["split"])
    if split.shape != (len(x),) or not np.isin(split, list(SPLIT_VALUES.values())).all():
        raise ValueError(f"data.path = '{path}': split must hold one 0 (training pool) or 1 (test) per example")
    pool, test = split == SPLIT_VALUES["train"], split == SPLIT_VALUES["test"]
    return Source(x[pool], y[pool], shape, x[test], y[test])


def _file_labels(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The labels and (None without one) the split column of a data file, without reading x."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            if "y" not in arrays.files:
                raise ValueError(f"the .npz file has no array 'y' (it has {arrays.files})")
            return arrays["y"], arrays["split"] if "split" in arrays.files else None
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    if "label" not in schema.names:
        raise ValueError(f"the Parquet file has no column 'label' (it has {schema.names})")
    columns = ["label", "split"] if "split" in schema.names else ["label"]
    table = pq.read_table(path, columns=columns)
    split = table.column("split").to_numpy() if "split" in columns else None
    return table.column("label").to_numpy(), split


def file_split_sizes(path: str | Path) -> tuple[int, int | None]:
    """(examples in the pool, test examples or None without a split column) of a data file, without reading x."""
    y, split = _file_labels(path)
    if split is None:
        return len(y), None
    n_test = int((np.asarray(split) == SPLIT_VALUES["test"]).sum())
    return len(y) - n_test, n_test


def file_pool_labels(path: str | Path) -> np.ndarray:
    """The labels of the pool S is drawn from (split 0, or every example without a split column), without reading x."""
    y, split = _file_labels(path)
    return np.asarray(y) if split is None else np.asarray(y)[np.asarray(split) == SPLIT_VALUES["train"]]


LOADERS = {"digits": load_digits_arrays}
NAMES = ("digits", *TORCHVISION, "file")


def load_source(name: str, root: str | Path = "resources", download: bool = True, path: str | Path | None = None,
                image_shape: Sequence[int] | None = None) -> Source:
    """The named data set before the split (``root`` and ``download`` for torchvision, ``path`` for file)."""
    if name in LOADERS:
        return Source(*LOADERS[name]())
    if name in TORCHVISION:
        return load_torchvision(name, root, download)
    if name == "file":
        if path is None:
            raise ValueError("data.name 'file' needs data.path (an .npz or Parquet file)")
        return load_file(path, image_shape)
    raise ValueError(f"data.name {name!r} is not one of {list(NAMES)}")


def _assemble(x: np.ndarray, y: np.ndarray, train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              test: np.ndarray, image_shape: Sequence[int], targets: str) -> Dataset:
    """The Dataset of training examples ``x[train]`` and test examples ``x_test[test]``; targets: test first."""
    x_parts, y_parts, index_parts = [], [], []
    if targets in ("test", "both"):
        x_parts.append(x_test[test]); y_parts.append(y_test[test]); index_parts.append(np.full(len(test), -1))
    if targets in ("train", "both"):
        x_parts.append(x[train]); y_parts.append(y[train]); index_parts.append(np.arange(len(train)))
    return Dataset(
        x_train=x[train], y_train=y[train],
        x_targets=np.concatenate(x_parts), y_targets=np.concatenate(y_parts),
        target_train_index=np.concatenate(index_parts).astype(np.int64),
        image_shape=tuple(image_shape),
    )


def _check_targets(targets: str) -> None:
    if targets not in TARGET_KINDS:
        raise ValueError(f"data.targets must be one of {TARGET_KINDS}, got {targets!r}")


def split_dataset(x: np.ndarray, y: np.ndarray, image_shape: tuple[int, ...], n_train: int,
                  targets: str, seed: int, n_test: int | None = None) -> Dataset:
    """Randomly split (x, y) into n_train training examples and the rest as test.

    ``targets`` picks the target examples: the test examples (the first
    ``n_test`` of them, or all), the training examples themselves, or both
    (test first).
    """
    _check_targets(targets)
    if not 0 < n_train < len(x):
        raise ValueError(f"data.n_train must be between 1 and {len(x) - 1} for this data set, got {n_train}")
    order = rng(seed, Stream.DATA_SPLIT).permutation(len(x))
    train, test = order[:n_train], order[n_train:]
    if n_test is not None:
        test = test[:n_test]
    return _assemble(x, y, train, x, y, test, image_shape, targets)


def split_pool(source: Source, n_train: int, targets: str, seed: int, n_test: int | None = None,
               name: str = "the data set") -> Dataset:
    """Draw n_train training examples at random from the pool, and test targets from the test split.

    The test targets are the first ``n_test`` (or all) of the test split in a
    seeded random order.
    """
    _check_targets(targets)
    if not 0 < n_train <= len(source.x):
        raise ValueError(f"data.n_train = {n_train} must be between 1 and the {len(source.x)} examples of the "
                         f"training split of {name}")
    if targets != "train" and len(source.x_test) == 0:
        raise ValueError(f"data.targets = {targets!r} needs test examples, but {name} has none")
    generator = rng(seed, Stream.DATA_SPLIT)
    train = generator.permutation(len(source.x))[:n_train]
    test = generator.permutation(len(source.x_test))[:n_test]
    return _assemble(source.x, source.y, train, source.x_test, source.y_test, test, source.image_shape, targets)


def plant_duplicates(dataset: Dataset, n: int, noise: float, seed: int) -> Dataset:
    """Replace ``n`` training examples by noisy copies of ``n`` distinct test targets (with their labels).

    Targets and training positions are drawn from ``seeding.rng(seed, DATA_PLANT)``;
    the copy is the target plus Gaussian noise of standard deviation ``noise``
    times the data's value range, clipped to that range. Targets that are
    themselves training examples follow their replaced example. |S| is unchanged.
    """
    if n < 0 or noise < 0:
        raise ValueError(f"data.plant_duplicates: n = {n} and noise = {noise} must not be negative")
    empty = np.zeros(0, dtype=np.int64)
    if n == 0:
        return replace(dataset, planted_target=empty, planted_train=empty.copy())
    test_targets = np.flatnonzero(dataset.target_train_index < 0)
    if len(test_targets) == 0:
        raise ValueError(f"data.plant_duplicates.n = {n} needs test targets, but data.targets gives none")
    if n > min(len(test_targets), dataset.n_train):
        raise ValueError(f"data.plant_duplicates.n = {n} is more than the {len(test_targets)} test targets "
                         f"or the {dataset.n_train} training examples")
    generator = rng(seed, Stream.DATA_PLANT)
    planted_target = generator.choice(test_targets, size=n, replace=False).astype(np.int64)
    planted_train = generator.choice(dataset.n_train, size=n, replace=False).astype(np.int64)
    low = float(min(dataset.x_train.min(), dataset.x_targets.min()))
    high = float(max(dataset.x_train.max(), dataset.x_targets.max()))
    copies = dataset.x_targets[planted_target].astype(np.float64)
    copies += generator.normal(scale=noise * (high - low), size=copies.shape)
    x_train, y_train = dataset.x_train.copy(), dataset.y_train.copy()
    x_train[planted_train] = np.clip(copies, low, high).astype(x_train.dtype)
    y_train[planted_train] = dataset.y_targets[planted_target]
    x_targets, y_targets = dataset.x_targets.copy(), dataset.y_targets.copy()
    own = dataset.target_train_index >= 0
    x_targets[own] = x_train[dataset.target_train_index[own]]
    y_targets[own] = y_train[dataset.target_train_index[own]]
    return replace(dataset, x_train=x_train, y_train=y_train, x_targets=x_targets, y_targets=y_targets,
                   planted_target=planted_target, planted_train=planted_train)


def prepare(name: str, n_train: int, targets: str, seed: int, n_test: int | None = None,
            n_planted: int = 0, plant_noise: float = 0.05, root: str | Path = "resources", download: bool = True,
            path: str | Path | None = None, image_shape: Sequence[int] | None = None) -> Dataset:
    """Load the named data set, split it, and plant ``n_planted`` near-duplicates of test targets in S.

    ``root`` and ``download`` locate the torchvision data sets; ``path`` and
    ``image_shape`` are those of ``file`` (see :func:`load_file`).
    """
    source = load_source(name, root, download, path, image_shape)
    if source.x_test is None:
        dataset = split_dataset(source.x, source.y, source.image_shape, n_train, targets, seed, n_test)
    else:
        dataset = split_pool(source, n_train, targets, seed, n_test, name=f"data.name {name!r}")
    return plant_duplicates(dataset, n_planted, plant_noise, seed)


PLANTED_FIELDS = ("planted_target", "planted_train")


def fingerprint(dataset: Dataset) -> str:
    """SHA-256 over every array of the data set (bytes, dtype and shape).

    Empty planted-pair arrays are left out, so a data set without planted
    duplicates keeps the fingerprint it had before they existed.
    """
    digest = hashlib.sha256()
    for key, value in sorted(asdict(dataset).items()):
        if key in PLANTED_FIELDS and len(value) == 0:
            continue
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
        "n_planted": dataset.n_planted,
    }
    with atomic_output(info_path) as tmp:
        Path(tmp).write_text(json.dumps(description, indent=2) + "\n")


def load(path: str | Path) -> Dataset:
    """Read a prepared data set (never unpickles); files written before planting existed have no planted pairs."""
    with np.load(path, allow_pickle=False) as arrays:
        fields = {k: arrays[k] for k in arrays.files}
    fields["image_shape"] = tuple(int(s) for s in fields["image_shape"])
    for key in PLANTED_FIELDS:
        fields[key] = fields.get(key, np.zeros(0, dtype=np.int64)).astype(np.int64)
    return Dataset(**fields)
