"""The train_chunk stage: train one chunk of models and write their outputs."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from . import data, devices, learners, masks, store
from .seeding import Stream, int_seed

log = logging.getLogger(__name__)
MODEL_STREAMS = {"train": Stream.TRAIN_MODEL, "eval": Stream.EVAL_MODEL}
FAIL_CHUNKS_ENV = "DATAMODELS_TEST_FAIL_CHUNKS"
FAIL_ONCE_DIR_ENV = "DATAMODELS_TEST_FAIL_ONCE_DIR"


def inject_test_failure(alpha: float, split: str, chunk: int) -> None:
    """TEST-ONLY failure injection; does nothing unless the environment variables below are set.

    ``DATAMODELS_TEST_FAIL_CHUNKS`` lists chunks that must fail, comma-separated, each written as
    ``alpha=<alpha>/<split>/<chunk>`` (e.g. ``alpha=0.5/train/1``). A listed chunk raises RuntimeError
    naming it, before training. With ``DATAMODELS_TEST_FAIL_ONCE_DIR`` set as well, a chunk fails only
    on its first attempt: the failure leaves a marker file in that folder and a later attempt that finds
    the marker trains normally (a transient failure). The workflow tests use this to check retries and
    the reuse of finished chunks after a failure; never set these variables in a real run.
    """
    listed = {item.strip() for item in os.environ.get(FAIL_CHUNKS_ENV, "").split(",") if item.strip()}
    name = f"alpha={alpha:g}/{split}/{chunk}"
    if name not in listed:
        return
    once_dir = os.environ.get(FAIL_ONCE_DIR_ENV)
    if once_dir:
        marker = Path(once_dir) / f"alpha={alpha:g}_{split}_{chunk}.failed"
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    message = f"chunk {name}: injected test failure ({FAIL_CHUNKS_ENV}{', first attempt only' if once_dir else ''})"
    log.error(message)
    raise RuntimeError(message)


def run(data_path: str, info_path: str, masks_path: str, output_path: str, alpha: float, split: str,
        chunk: int, recipe: dict, seed: int, threads: int) -> None:
    """Train the chunk's models together; store margins and accuracies."""
    inject_test_failure(alpha, split, chunk)
    torch.set_num_threads(max(1, threads))
    info = json.loads(Path(info_path).read_text())
    dataset = data.load(data_path)
    model_ids, mask = store.read_masks(masks_path)
    device = devices.resolve(recipe["train"].get("device", "cpu"))
    seeds = [int_seed(seed, MODEL_STREAMS[split], alpha, int(i)) for i in model_ids]
    start = time.perf_counter()
    result = learners.train(recipe, dataset.x_train, dataset.y_train, masks.to_subsets(mask), seeds,
                            dataset.x_targets, dataset.y_targets, device=device, image_shape=dataset.image_shape)
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
