"""ModelDiff's algorithm B trained on the run's own training subsets (rule ``modeldiff_models``): training only.

Apart from ``modeldiff`` so that the training rule's code is only what trains (an edit of the fit or of the
comparison never retrains B). B's model i uses the run's model i's subset and torch seed (``train_chunk``'s).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from .. import data, devices, learners, masks, store
from ..protocol import TrainData
from ..seeding import Stream, int_seed

log = logging.getLogger(__name__)
TRAIN_BATCH = 1000
"""Models trained per ``learners.train_on`` call."""


def model_seeds(seed: int, alpha: float, model_ids: np.ndarray) -> list[int]:
    """The torch seeds of the run's training models (``train_chunk``'s): B's model i uses A's model i's seed."""
    return [int_seed(seed, Stream.TRAIN_MODEL, alpha, int(i)) for i in model_ids]


def train_other(dataset, recipe: dict, mask: np.ndarray, seeds: list[int], batch: int = TRAIN_BATCH
                ) -> tuple[np.ndarray, np.ndarray]:
    """Margins ``[M, n_targets]`` and target accuracies ``[M]`` of B's models, one per (mask row, seed)."""
    device = devices.resolve(recipe["train"].get("device", "cpu"))
    subsets = masks.to_subsets(mask)
    margins = np.empty((len(mask), dataset.n_targets), dtype=np.float32)
    accuracy = np.empty(len(mask), dtype=np.float32)
    for start in range(0, len(mask), batch):
        stop = min(start + batch, len(mask))
        result = learners.train_on(recipe, TrainData.of(dataset, device), subsets[start:stop], seeds[start:stop])
        margins[start:stop], accuracy[start:stop] = result.margins, result.target_accuracy
    return margins, accuracy



def run_other_models(models_path: str, info_path: str, data_path: str, alpha: float, settings: dict, other: dict,
                     seed: int, threads: int, output_path: str) -> None:
    """Train B on the run's training masks (the first ``n_models``, seeds as A's); write B's models file
    (the run's layout; training times in its metadata). Training only: a fit change never reruns it."""
    info = json.loads(Path(info_path).read_text())
    layout = store.layout_for(info, alpha)
    models = store.read_models(models_path, layout)
    dataset = data.load(data_path)
    n_run = len(models)
    n = n_run if settings["n_models"] is None else settings["n_models"]
    if n > n_run:
        raise ValueError(f"applications.modeldiff.n_models = {n} is more than the {n_run} (non-diverged) training models of the run")
    models = models.select(np.arange(n))
    torch.set_num_threads(max(1, threads))
    start, cpu = time.perf_counter(), time.process_time()
    margins, accuracy = train_other(dataset, other, models.mask, model_seeds(seed, alpha, models.model_id))
    trained, cpu = time.perf_counter() - start, time.process_time() - cpu
    diverged = ~np.isfinite(margins).all(axis=1)
    log.info("algorithm B (%s): %d models in %.1f s (%.0f models/s; %.1f s of CPU), mean target accuracy %.4f, "
             "%d diverged", other["model"]["name"], n, trained, n / max(trained, 1e-9), cpu,
             float(np.mean(accuracy[~diverged])), int(diverged.sum()))
    other_models = store.Models(models.model_id, models.mask, margins, np.full(n, np.nan, np.float32), accuracy,
                                diverged)
    store.write_models(output_path, other_models, layout, {
        "alpha": alpha, "algorithm": "B", "recipe": other, "n_models_run": n_run, "train_seconds": round(trained, 1),
        "train_cpu_seconds": round(cpu, 1)})
