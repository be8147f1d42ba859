"""The aggregate stage: all chunks of one (alpha, split) into one checked Parquet file."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import store
from .atomic import atomic_output

log = logging.getLogger(__name__)


def run(chunk_paths: Sequence[str], info_path: str, alpha: float, split: str, n_models: int,
        output_path: str, integrity_path: str) -> None:
    """Check every chunk, merge them, write the aggregate and an integrity record."""
    info = json.loads(Path(info_path).read_text())
    layout = store.layout_for(info, alpha)
    result = store.aggregate(chunk_paths, layout, expected_ids=range(n_models))
    if result.diverged_ids:
        log.warning("%d of %d models diverged (non-finite margins) and are excluded: %s",
                    len(result.diverged_ids), n_models, result.diverged_ids[:20])
    if len(result.models) == 0:
        raise store.StoreError(f"every one of the {n_models} {split} models diverged; nothing to aggregate")
    store.write_models(output_path, result.models, layout, {"alpha": alpha, "split": split})
    record = {
        "alpha": alpha, "split": split, "n_chunks": len(chunk_paths), "n_models_configured": n_models,
        "n_models": len(result.models), "n_diverged": len(result.diverged_ids),
        "diverged_model_ids": result.diverged_ids,
        "mean_target_accuracy": float(np.mean(result.models.target_accuracy)),
        "mean_train_accuracy": float(np.mean(result.models.train_accuracy)),
    }
    with atomic_output(integrity_path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2) + "\n")
    log.info("alpha=%s %s: %d models from %d chunks", alpha, split, len(result.models), len(chunk_paths))
