"""The learning-curve stage: LDS against the number of training models.

Datamodels are refit on nested prefixes (by model id) of the training models;
every point is scored on the same held-out models as the main evaluation.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from . import data, evaluate, fit, plots, store
from .atomic import atomic_output

log = logging.getLogger(__name__)


def run(train_path: str, eval_path: str, info_path: str, data_path: str, metrics_path: str, alpha: float,
        fractions: list[float], settings: dict, seed: int, threads: int, curve_path: str, plot_path: str) -> None:
    """Fit on each fraction of the training models (the full set is read from the main evaluation)."""
    torch.set_num_threads(max(1, threads))
    info = json.loads(Path(info_path).read_text())
    layout = store.layout_for(info, alpha)
    train, held_out = store.read_models(train_path, layout), store.read_models(eval_path, layout)
    index = data.load(data_path).target_train_index
    full = json.loads(Path(metrics_path).read_text())
    points = []
    for fraction in sorted(set(fractions)):
        n = max(2, int(round(fraction * len(train))))
        if n >= len(train):
            points.append({"fraction": fraction, "n_models": len(train), "lds": full["lds"],
                           "baseline_lds": full["baseline_lds"], "pooled_spearman": full["pooled_spearman"]})
            continue
        subset = train.select(slice(0, n))
        datamodels, _ = fit.fit(subset.mask, subset.margins, index, fit.FitSettings(**settings), seed, alpha)
        summary, _, _ = evaluate.score(datamodels.weight, datamodels.bias, held_out.mask, held_out.margins, index)
        base, _, _ = evaluate.score(*evaluate.baseline(subset.mask, subset.margins, index), held_out.mask,
                                    held_out.margins, index)
        points.append({"fraction": fraction, "n_models": n, "lds": summary["lds"], "baseline_lds": base["lds"],
                       "pooled_spearman": summary["pooled_spearman"]})
        log.info("%d models: LDS %.4f (baseline %.4f)", n, summary["lds"], base["lds"])
    with atomic_output(curve_path) as tmp:
        Path(tmp).write_text(json.dumps({"alpha": alpha, "points": points}, indent=2) + "\n")
    plots.learning_curve([p["n_models"] for p in points], [p["lds"] for p in points],
                         [p["baseline_lds"] for p in points], plot_path)
