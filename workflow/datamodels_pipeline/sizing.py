"""Memory of the data-path jobs as formulas of the config (``mem_mb`` of the rules, and docs/scale.md's table).

p = data.n_train (|S|), T = targets, M = subsets.n_models, E = subsets.n_eval_models,
b = targets in one fit job (fit.targets_per_job, or T). None grows with M except where said.
benchmarks/scale.py measures the stages at p = 5,000, T = 500 (docs/scale.md): aggregate 1.1-1.2 GB,
statistics 1.4 GB, fit 1.6 GB, whatever the number of models.
"""

from __future__ import annotations

import math

MB = 2**20
BASE_MB = 900  # Python, torch (the CUDA build) and pyarrow loaded: resident size of a stage process before its work
BATCH_MB = 128  # the work on one batch of models (store.batch_rows_for's budget)


def aggregate_mb(p: int, T: int, models_per_chunk: int, M: int) -> int:
    """One chunk decoded (bool masks, float32 margins, twice for sort and filter) and ~100 bytes per model id."""
    chunk = models_per_chunk * (p + 4 * T) * 3
    return math.ceil(BASE_MB + (chunk + 100 * M) / MB)


def statistics_mb(p: int, T: int) -> int:
    """Two Gram matrices (float32) and two [T, p] sums (float64) on the device, plus a batch."""
    return math.ceil(BASE_MB + 2 * BATCH_MB + (2 * 4 * p * p + 2 * 8 * T * p) / MB)


def fit_block_mb(p: int, b: int, M: int = 0, exact_train_targets: bool = False) -> int:
    """Two [p, p] covariances (float32, built through ~100 MB of temporaries) + per-target [b, p] float64 arrays
    (sums of three row sets and their centred forms); the exact train-target form adds the dense rows.
    Calibrated by benchmarks/scale.py (p = 5,000, b = 500)."""
    dense = M * (p * 5 + 8 * b) if exact_train_targets else 0
    return math.ceil(BASE_MB + 100 + (2 * 4 * p * p + 16 * 8 * b * p + dense) / MB)


def merge_mb(p: int, b: int) -> int:
    """One block's rows (raw and standardised weights)."""
    return math.ceil(BASE_MB + 3 * 2 * 4 * b * p / MB)


def evaluate_mb(p: int, T: int, E: int, R: int = 0) -> int:
    """The datamodels ([p, T] twice) and the baseline's weights (built a block of targets at a time), the
    held-out masks (bit-packed), predictions and outputs with their ranks ([E, T], float64); and ``R`` repeated
    held-out models' outputs (float32) with a seed-average's float64 temporaries ([R, T])."""
    return math.ceil(BASE_MB + 2 * BATCH_MB + (3 * 4 * p * T + E * p / 8 + 6 * 8 * E * T + 4 * 8 * R * T) / MB)


def learning_curve_mb(p: int, T: int, E: int, b: int, M: int = 0, exact_train_targets: bool = False) -> int:
    """Fit jobs' work on each prefix, one target block at a time, beside an evaluation."""
    return fit_block_mb(p, b, M, exact_train_targets) + evaluate_mb(p, T, E) - BASE_MB


def disk_bytes(p: int, T: int, M: int, n_prefixes: int) -> dict[str, int]:
    """Bytes per alpha: bit-packed masks and float32 margins of the models; the statistics folder (all + prefixes)."""
    models = M * (math.ceil(p / 8) + 4 * T + 24)
    stats = (1 + n_prefixes) * (2 * 4 * p * p + 2 * 8 * T * p)
    return {"models": models, "statistics": stats, "datamodels": 2 * 4 * p * T}


def return_freed_memory() -> None:
    """Make glibc give large freed blocks back to the system (a fixed 1 MiB mmap threshold).

    By default glibc raises its mmap threshold after large blocks are freed, so later batch-sized
    arrays come from the heap, which fragments: a streaming stage's resident memory then creeps up
    with the number of batches it has processed (measured: +25% from 10,000 to 160,000 models).
    With a fixed threshold every batch-sized array is mapped and unmapped, and memory stays flat.
    Does nothing where the C library has no ``mallopt`` (not glibc).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except OSError:
        pass
