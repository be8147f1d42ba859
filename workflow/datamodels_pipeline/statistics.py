"""The statistics stage: everything the lasso needs, summed over the training models in one streaming pass.

The covariance-form lasso (``lasso``) needs no row of the data, only sums over rows. For a
set of rows R (models) with 0/1 masks ``x`` [p] and outputs ``y`` [T] they are

* ``n`` (rows), ``xsum = sum x`` [p] and the co-occurrence (Gram) matrix ``gram = sum x x^T`` [p, p];
* per target t, over the rows the target may see (``keep``: every row for a test target; for a
  target that is training example j, the rows whose subset excludes j, the paper's rule):
  ``n_kept``, ``ysum``, ``yy = sum y^2`` [T] and ``xy = sum x y`` [T, p] (target-major).

They are kept for all rows and for the validation rows (lambda selection) separately; the fit
rows' sums are the difference. Masks are read bit-packed in bounded batches; no
[models x |S|] matrix exists anywhere. ``gram`` holds exact integer counts in float32 (exact
below 2^24 models); the output sums are float64 (per-batch products in float32).

Nested prefixes of the rows (the learning curve's fits on fewer models) are snapshots of the same
running sums, written as the pass crosses each prefix size: one pass serves every fraction.

Cost: ``2 M p^2`` flops for the Gram pass (about 1.1 M counting the validation rows), plus
``2 M p T`` for ``xy``. Memory: ``2 * 4 p^2`` (the two Gram matrices) + ``2 * 8 T p`` (the two
``xy``) + one batch (``store.batch_rows_for``) bytes, whatever the number of models.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from . import data, devices, sizing, store
from .atomic import atomic_directory
from .seeding import Stream, rng

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FORMAT = "datamodels-pipeline/statistics/1"


class Difference:
    """``a - b`` of two equal-shape arrays, computed for the indexed part only (``d[rows]``, ``d[:, cols]``)."""

    def __init__(self, a: np.ndarray, b: np.ndarray):
        self.a, self.b, self.shape = a, b, a.shape

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.a[key]) - np.asarray(self.b[key])


@dataclass
class RowSums:
    """Sums over one set of rows; see the module docstring. ``n_kept``/``ysum``/``yy``/``xy`` are per target."""

    n: int
    xsum: np.ndarray    # float64 [p]
    gram: np.ndarray    # float32 [p, p], exact counts
    n_kept: np.ndarray  # float64 [T]
    ysum: np.ndarray    # float64 [T]
    yy: np.ndarray      # float64 [T]
    xy: np.ndarray      # float64 [T, p]

    def __sub__(self, other: "RowSums") -> "RowSums":
        """The sums over the rows of self that are not in other (the Gram matrix as a lazy difference)."""
        return RowSums(self.n - other.n, self.xsum - other.xsum, Difference(self.gram, other.gram),
                       *(getattr(self, name) - getattr(other, name) for name in ("n_kept", "ysum", "yy", "xy")))

    def targets(self, index: np.ndarray) -> "RowSums":
        """The sums of some targets only (the Gram matrix and ``xsum`` are shared)."""
        return RowSums(self.n, self.xsum, self.gram, self.n_kept[index], self.ysum[index], self.yy[index],
                       np.asarray(self.xy[index]))


@dataclass
class Statistics:
    """Sums over all training models and over their validation rows, with what they were computed for."""

    all: RowSums
    val: RowSums
    target_train_index: np.ndarray  # int64 [T]; >= 0: the target is that training example
    meta: dict

    @property
    def fit(self) -> RowSums:
        """The rows the lambda path is fit on (all minus validation)."""
        return self.all - self.val

    def targets(self, index: np.ndarray) -> "Statistics":
        return Statistics(self.all.targets(index), self.val.targets(index), self.target_train_index[index], self.meta)


def validation_rows(n: int, val_fraction: float, seed: int, alpha: float) -> np.ndarray:
    """bool [n]: the models (row positions, sorted by model id) that choose lambda; seeded, independent of chunks."""
    order = rng(seed, Stream.FIT_VALIDATION, alpha).permutation(n)
    chosen = np.zeros(n, dtype=bool)
    chosen[order[: int(round(val_fraction * n))]] = True
    return chosen


class _Accumulator:
    """Running sums of one row set, on a torch device."""

    def __init__(self, p: int, n_targets: int, device: torch.device):
        import torch  # the pass's functions import torch; reading the sums (load) needs none

        f64 = dict(dtype=torch.float64, device=device)
        self.n = 0
        self.xsum, self.gram = torch.zeros(p, **f64), torch.zeros(p, p, dtype=torch.float32, device=device)
        self.n_kept, self.ysum, self.yy = (torch.zeros(n_targets, **f64) for _ in range(3))
        self.xy = torch.zeros(n_targets, p, **f64)

    def add(self, x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor) -> None:
        """x float32 [B, p] 0/1; y float64 [B, T]; keep float64 [B, T] 0/1."""
        if x.shape[0] == 0:
            return
        self.n += x.shape[0]
        self.gram.addmm_(x.T, x)
        self.xsum += x.sum(0, dtype=self.xsum.dtype)
        yk = y * keep
        self.n_kept += keep.sum(0)
        self.ysum += yk.sum(0)
        self.yy += (yk * y).sum(0)
        # float32 products (x is 0/1: exact; the outputs' float32 rounding, ~1e-7 relative, is far below
        # the sampling noise), summed across batches in float64.
        self.xy += (yk.T.to(x.dtype) @ x).to(self.xy.dtype)

    def sums(self) -> RowSums:
        return RowSums(self.n, *(t.cpu().numpy() for t in (self.xsum, self.gram, self.n_kept, self.ysum, self.yy,
                                                           self.xy)))


Batch = tuple[np.ndarray, np.ndarray]  # (bool masks [B, p], outputs [B, T])


def accumulate(batches: Iterable[Batch], n_train: int, target_train_index: np.ndarray, is_val: np.ndarray,
               prefixes: Sequence[int] = (), device: str | torch.device = "cpu") -> Iterator[tuple[int, RowSums, RowSums]]:
    """Stream row batches (in row order) into sums; yield ``(rows, all, val)`` at each prefix size and at the end.

    ``is_val`` [n] marks validation rows; ``prefixes`` are row counts, yielded in increasing
    order as the pass reaches them (the last yield is over every row).
    """
    import torch

    device = torch.device(device)
    index = torch.as_tensor(target_train_index, device=device)
    own = torch.nonzero(index >= 0).squeeze(1)
    own_example = index[own]
    n_targets = len(target_train_index)
    sums = {"all": _Accumulator(n_train, n_targets, device), "val": _Accumulator(n_train, n_targets, device)}
    stops = sorted(set(int(k) for k in prefixes if 0 < k < len(is_val))) + [len(is_val)]
    is_val_t = torch.as_tensor(is_val, device=device)
    row = 0

    def add(x: torch.Tensor, y: torch.Tensor, first: int) -> None:
        keep = torch.ones_like(y)
        if own.numel():
            keep[:, own] = 1.0 - x[:, own_example].to(torch.float64)
        sums["all"].add(x, y, keep)
        val = is_val_t[first:first + x.shape[0]]
        sums["val"].add(x[val], y[val], keep[val])

    for masks, outputs in batches:
        x = torch.as_tensor(masks, device=device).to(torch.float32)
        y = torch.from_numpy(np.array(outputs, dtype=np.float64)).to(device)
        start = 0
        while start < x.shape[0]:
            if not stops:
                raise ValueError(f"the batches hold more than the {len(is_val)} rows expected")
            stop = min(x.shape[0], start + stops[0] - row)
            add(x[start:stop], y[start:stop], row)
            row += stop - start
            start = stop
            if stops and row == stops[0]:
                yield row, sums["all"].sums(), sums["val"].sums()
                stops.pop(0)
    if stops:
        raise ValueError(f"the batches held {row} rows, expected {len(is_val)}")


def from_arrays(mask: np.ndarray, outputs: np.ndarray, target_train_index: np.ndarray, is_val: np.ndarray,
                meta: dict | None = None) -> Statistics:
    """Statistics of in-memory masks [n, p] and outputs [n, T] (the same code path as the streamed stage)."""
    *_, (n, all_rows, val_rows) = accumulate([(mask, outputs)], mask.shape[1], target_train_index, is_val)
    return Statistics(all_rows, val_rows, np.asarray(target_train_index, dtype=np.int64), meta or {})


# ----------------------------------------------------------------------------------- files
_ARRAYS = ("xsum", "gram", "n_kept", "ysum", "yy", "xy")
ALL = "all"
"""The statistics folder's subfolder of the sums over every training model; ``prefix-<rows>`` are the others."""


def save(stats: Statistics, folder: str | Path) -> None:
    """Write statistics as a folder of ``.npy`` files and ``meta.json`` (callers make the folder atomic)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("all", "val"):
        sums = getattr(stats, part)
        for name in _ARRAYS:
            np.save(folder / f"{part}_{name}.npy", getattr(sums, name), allow_pickle=False)
    np.save(folder / "target_train_index.npy", stats.target_train_index, allow_pickle=False)
    meta = {"format": FORMAT, **stats.meta, "n": stats.all.n, "n_val": stats.val.n}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def load(folder: str | Path, targets: np.ndarray | None = None) -> Statistics:
    """Read statistics written by :func:`save`; with ``targets``, only those targets' sums.

    The Gram matrices stay memory-mapped (read in row blocks by the fit); per-target sums are copied.
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder}: not a statistics folder of this pipeline ({error})") from error
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder}: format {meta.get('format')!r}, expected {FORMAT!r}")
    index = target_index(folder)
    targets = np.arange(len(index)) if targets is None else np.asarray(targets)
    parts = {}
    for part in ("all", "val"):
        arrays = {name: np.load(folder / f"{part}_{name}.npy", mmap_mode="r", allow_pickle=False) for name in _ARRAYS}
        parts[part] = RowSums(meta["n" if part == "all" else "n_val"], np.array(arrays["xsum"]),
                              arrays["gram"], np.array(arrays["n_kept"][targets]),
                              np.array(arrays["ysum"][targets]), np.array(arrays["yy"][targets]),
                              np.array(arrays["xy"][targets]))
    return Statistics(parts["all"], parts["val"], index[targets], meta)


def target_index(folder: str | Path) -> np.ndarray:
    """Every target's training-example index (-1: a test target) of a statistics folder."""
    return np.load(Path(folder) / "target_train_index.npy", allow_pickle=False)


def prefixes(folder: str | Path) -> list[tuple[int, Path]]:
    """(rows, subfolder) of the learning-curve prefixes in a statistics folder, fewest rows first."""
    found = [(int(path.name.split("-", 1)[1]), path) for path in Path(folder).glob("prefix-*")]
    return sorted(found)


def prefix_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """The learning curve's prefix sizes: round(f n) models (at least 2) for each fraction, those below n."""
    return sorted({max(2, int(round(f * n))) for f in fractions} - set(range(n, max(n, 2) + 1)))


def run(models_path: str, info_path: str, data_path: str, alpha: float, val_fraction: float, seed: int,
        fractions: Sequence[float], device: str, threads: int, output_path: str) -> None:
    """Sum the training models of one alpha (and the learning curve's prefixes) in one pass; write the folder."""
    import torch

    torch.set_num_threads(max(1, threads))
    start = time.perf_counter()
    sizing.return_freed_memory()
    info = json.loads(Path(info_path).read_text())
    layout = store.layout_for(info, alpha)
    store.check_file(models_path, layout)
    n = pq.ParquetFile(models_path).metadata.num_rows
    index = data.load(data_path).target_train_index
    sizes = prefix_sizes(n, fractions)
    is_val = validation_rows(n, val_fraction, seed, alpha)
    batches = ((models.mask, models.margins) for models in
               store.iter_models(models_path, layout, store.batch_rows_for(layout)))
    with atomic_directory(output_path) as tmp:
        for rows, all_rows, val_rows in accumulate(batches, layout.n_train, index, is_val, sizes,
                                                   devices.resolve(device)):
            meta = {"alpha": alpha, "fingerprint": layout.fingerprint, "n_train": layout.n_train,
                    "n_targets": layout.n_targets, "seed": seed, "val_fraction": val_fraction,
                    "n_models_total": n}
            save(Statistics(all_rows, val_rows, index, meta), Path(tmp) / (ALL if rows == n else f"prefix-{rows}"))
            log.info("alpha=%s: sums over the first %d of %d models (%d validation)", alpha, rows, n, val_rows.n)
    log.info("alpha=%s: %d models summed in %.1f s", alpha, n, time.perf_counter() - start)
