"""The train_chunk stage: train one chunk of models and write their outputs."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from . import data, devices, learners, masks, store
from .protocol import TrainData
from .seeding import Stream, int_seed

log = logging.getLogger(__name__)
MODEL_STREAMS = {"train": Stream.TRAIN_MODEL, "eval": Stream.EVAL_MODEL}
REPEAT_STRIDE = 2**32
"""Stream index of repeat model (mask k, seed s): ``s * REPEAT_STRIDE + k``, whatever the number of masks or seeds."""


def model_seeds(seed: int, split: str, alpha: float, model_ids, repeated_masks: int = 0) -> list[int]:
    """Torch seeds of a chunk's models: (config seed, split's model stream, alpha, index).

    ``repeat`` models draw from their own stream (``Stream.EVAL_REPEAT_MODEL``) keyed by (held-out mask, seed
    index), so the ``eval`` models' seeds, and a repeat model's seed, never depend on ``evaluate.seeds_per_mask``
    or ``evaluate.repeated_masks``.
    """
    if split == "repeat":
        mask_index, seed_index = masks.repeat_pairs(model_ids, repeated_masks)
        return [int_seed(seed, Stream.EVAL_REPEAT_MODEL, alpha, int(s) * REPEAT_STRIDE + int(k))
                for k, s in zip(mask_index, seed_index)]
    return [int_seed(seed, MODEL_STREAMS[split], alpha, int(i)) for i in model_ids]


def run(data_path: str, info_path: str, masks_path: str, output_path: str, alpha: float, split: str,
        chunk: int, recipe: dict, seed: int, threads: int, repeated_masks: int = 0) -> None:
    """Train the chunk's models together; store margins and accuracies."""
    torch.set_num_threads(max(1, threads))
    info = json.loads(Path(info_path).read_text())
    dataset = data.load(data_path)
    model_ids, mask = store.read_masks(masks_path)
    device = devices.resolve(recipe["train"].get("device", "cpu"))
    seeds = model_seeds(seed, split, alpha, model_ids, repeated_masks)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = learners.train_on(recipe, TrainData.of(dataset, device), masks.to_subsets(mask), seeds)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    diverged = ~np.isfinite(result.margins).all(axis=1)
    models = store.Models(model_id=model_ids, mask=mask, margins=result.margins,
                          train_accuracy=result.train_accuracy, target_accuracy=result.target_accuracy,
                          diverged=diverged)
    # The chunk's own training cost, carried by aggregation (store.TRAINING_KEY): the attribution leaderboard's
    # measured cost of the datamodels' and empirical influence's models.
    training = {"cpu_seconds": cpu, "wall_seconds": elapsed, "threads": int(threads), "device": str(device)}
    store.write_models(output_path, models, store.layout_for(info, alpha),
                       {"alpha": alpha, "split": split, "chunk": chunk, store.TRAINING_KEY: training})
    log.info("chunk %d (%s, alpha=%s): %d models in %.1f s (%.1f models/s, %.1f CPU s), %s on %s, %d thread(s); "
             "mean target accuracy %.4f; %d diverged", chunk, split, alpha, len(model_ids), elapsed,
             len(model_ids) / elapsed, cpu, recipe["model"]["name"], device, threads,
             float(np.nanmean(result.target_accuracy)), int(diverged.sum()))
