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


def run(data_path: str, info_path: str, masks_path: str, output_path: str, alpha: float, split: str,
        chunk: int, recipe: dict, seed: int, threads: int) -> None:
    """Train the chunk's models together; store margins and accuracies."""
    torch.set_num_threads(max(1, threads))
    info = json.loads(Path(info_path).read_text())
    dataset = data.load(data_path)
    model_ids, mask = store.read_masks(masks_path)
    device = devices.resolve(recipe["train"].get("device", "cpu"))
    seeds = [int_seed(seed, MODEL_STREAMS[split], alpha, int(i)) for i in model_ids]
    start = time.perf_counter()
    result = learners.train_on(recipe, TrainData.of(dataset, device), masks.to_subsets(mask), seeds)
    elapsed = time.perf_counter() - start
    diverged = ~np.isfinite(result.margins).all(axis=1)
    models = store.Models(model_id=model_ids, mask=mask, margins=result.margins,
                          train_accuracy=result.train_accuracy, target_accuracy=result.target_accuracy,
                          diverged=diverged)
    store.write_models(output_path, models, store.layout_for(info, alpha), {"alpha": alpha, "split": split, "chunk": chunk})
    log.info("chunk %d (%s, alpha=%s): %d models in %.1f s (%.1f models/s), %s on %s, %d thread(s); "
             "mean target accuracy %.4f; %d diverged", chunk, split, alpha, len(model_ids), elapsed,
             len(model_ids) / elapsed, recipe["model"]["name"], device, threads,
             float(np.nanmean(result.target_accuracy)), int(diverged.sum()))
