"""Similar examples: the training examples with the largest positive and negative datamodel weights.

Positive weights are the training examples whose presence raises the target's
margin the most (typically the same class and a similar drawing), negative
weights those whose presence lowers it (typically a confusable class).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import data, fit
from ..atomic import atomic_output
from ..seeding import AppIndex
from . import figures
from .sampling import target_order, top_examples

log = logging.getLogger(__name__)
TARGET_INDEX = AppIndex.SIMILAR_EXAMPLES_TARGETS
"""``Stream.APPLICATION`` index of the target sample."""


def run(datamodels_path: str, data_path: str, alpha: float, settings: dict, seed: int, table_path: str,
        summary_path: str, grid_path: str) -> None:
    """Write the table of each sampled target's top examples, a summary and the image grid."""
    dataset = data.load(data_path)
    weight = fit.read(datamodels_path).weight
    top = settings["top"]
    targets = target_order(dataset.n_targets, seed, alpha, TARGET_INDEX)[:settings["n_targets"]]
    rows: dict[str, list] = {name: [] for name in ("target", "target_label", "sign", "rank", "train_index",
                                                   "train_label", "weight")}
    images = lambda x: x.reshape(dataset.image_shape)  # noqa: E731
    positive_cells, negative_cells = [], []
    for t in targets:
        positive, negative = top_examples(weight[:, t], top)
        for sign, indices, cells in (("positive", positive, positive_cells), ("negative", negative, negative_cells)):
            cells.append([(images(dataset.x_train[i]), int(dataset.y_train[i]), float(weight[i, t])) for i in indices])
            for rank, i in enumerate(indices):
                rows["target"].append(int(t))
                rows["target_label"].append(int(dataset.y_targets[t]))
                rows["sign"].append(sign)
                rows["rank"].append(rank)
                rows["train_index"].append(int(i))
                rows["train_label"].append(int(dataset.y_train[i]))
                rows["weight"].append(float(weight[i, t]))
    with atomic_output(table_path) as tmp:
        pq.write_table(pa.table(rows), tmp)
    sign = np.asarray(rows["sign"], dtype=object)
    same = np.asarray(rows["train_label"]) == np.asarray(rows["target_label"])
    base_rate = float(np.mean([np.mean(dataset.y_train == dataset.y_targets[t]) for t in targets])) if len(targets) else None
    summary = {
        "alpha": alpha, "n_targets": int(len(targets)), "targets": [int(t) for t in targets], "top": top,
        "fraction_same_label_positive": float(same[sign == "positive"].mean()) if (sign == "positive").any() else None,
        "fraction_same_label_negative": float(same[sign == "negative"].mean()) if (sign == "negative").any() else None,
        "fraction_same_label_random": base_rate,
    }
    with atomic_output(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    figures.example_grid(np.stack([images(dataset.x_targets[t]) for t in targets]), dataset.y_targets[targets],
                         positive_cells, negative_cells, top, grid_path)
    log.info("similar examples (alpha=%s): %d targets; same label as the target: %.2f of the top positive, "
             "%.2f of the top negative examples (%.2f at random)", alpha, len(targets),
             *(float("nan") if v is None else v for v in (summary["fraction_same_label_positive"],
                                                          summary["fraction_same_label_negative"], base_rate)))
