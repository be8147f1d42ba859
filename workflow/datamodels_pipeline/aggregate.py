"""The aggregate stage: all chunks of one (alpha, split) into one checked Parquet file.

Streams: ids of every chunk first (integrity checks), then one chunk at a time into
row groups of the output. Memory: one chunk plus a few bytes per model id. The integrity
record carries each chunk's own measured training cost (``training``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path


from . import sizing, store
from .atomic import atomic_output

log = logging.getLogger(__name__)


def run(chunk_paths: Sequence[str], info_path: str, alpha: float, split: str, n_models: int,
        output_path: str, integrity_path: str) -> None:
    """Check every chunk, merge them, write the aggregate and an integrity record."""
    sizing.return_freed_memory()
    info = json.loads(Path(info_path).read_text())
    layout = store.layout_for(info, alpha)
    result = store.aggregate(chunk_paths, layout, range(n_models), output_path, {"alpha": alpha, "split": split})
    if result.diverged_ids:
        log.warning("%d of %d models diverged (non-finite margins) and are excluded: %s",
                    len(result.diverged_ids), n_models, result.diverged_ids[:20])
    record = {
        "alpha": alpha, "split": split, "n_chunks": len(chunk_paths), "n_models_configured": n_models,
        "n_models": result.n_models, "n_diverged": len(result.diverged_ids),
        "diverged_model_ids": result.diverged_ids,
        "mean_target_accuracy": result.mean_target_accuracy,
        "mean_train_accuracy": result.mean_train_accuracy,
        # Each chunk's own measured training cost (store.TRAINING_KEY), and their sum: what the attribution
        # leaderboard charges the datamodels and empirical influence (store.training_cost for a prefix).
        "training": {**store.training_cost(result.chunks), "chunks": result.chunks},
    }
    with atomic_output(integrity_path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2) + "\n")
    cost = record["training"]
    log.info("alpha=%s %s: %d models from %d chunks; training measured by the chunks: %s CPU s, %s s wall", alpha,
             split, result.n_models, len(chunk_paths), _seconds(cost["cpu_seconds"]), _seconds(cost["wall_seconds"]))


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
