"""The learning-curve stage: LDS against the number of training models.

Datamodels are refit on nested prefixes (by model id) of the training models, from the
statistics stage's snapshots of its running sums (one pass over the models serves every
fraction); every point is scored on the same held-out models as the main evaluation. A
prefix's validation models are the full fit's validation models among its rows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from . import data, evaluate, fit, plots, statistics, store
from .atomic import atomic_output

log = logging.getLogger(__name__)


def run(statistics_path: str, train_path: str, eval_path: str, info_path: str, data_path: str, metrics_path: str,
        alpha: float, fractions: list[float], settings: dict, threads: int, curve_path: str, plot_path: str) -> None:
    """Fit on each fraction of the training models (the full set is read from the main evaluation)."""
    torch.set_num_threads(max(1, threads))
    settings = fit.FitSettings.from_config(settings)
    info = json.loads(Path(info_path).read_text())
    layout = store.layout_for(info, alpha)
    index = data.load(data_path).target_train_index
    held_out = evaluate.read_held_out(eval_path, layout, index)
    full = json.loads(Path(metrics_path).read_text())
    n = full["n_train_models"]
    folders = dict(statistics.prefixes(statistics_path))
    points = []
    for fraction in sorted(set(fractions)):
        rows = max(2, int(round(fraction * n)))
        if rows >= n:
            points.append({"fraction": fraction, "n_models": n, "lds": full["lds"],
                           "baseline_lds": full["baseline_lds"], "pooled_spearman": full["pooled_spearman"]})
            continue
        stats = statistics.load(folders[rows])

        def prefix_rows(rows: int = rows) -> fit.Rows:
            models = store.read_models(train_path, layout)
            return models.mask[:rows], models.margins[:rows]

        result, _ = fit.fit_targets(stats, settings, rows=prefix_rows)
        mu, sigma = fit.standardization(stats.all.xsum, stats.all.n)
        datamodels = fit.assemble(result, mu, sigma, index)
        summary, _, _ = evaluate.score(datamodels.weight, datamodels.bias, held_out)
        base, _, _ = evaluate.score(*evaluate.empirical_influence_from_sums(stats.all, index), held_out)
        points.append({"fraction": fraction, "n_models": rows, "lds": summary["lds"], "baseline_lds": base["lds"],
                       "pooled_spearman": summary["pooled_spearman"]})
        log.info("%d models: LDS %.4f (baseline %.4f)", rows, summary["lds"], base["lds"])
    with atomic_output(curve_path) as tmp:
        Path(tmp).write_text(json.dumps({"alpha": alpha, "points": points}, indent=2) + "\n")
    plots.learning_curve([p["n_models"] for p in points], [p["lds"] for p in points],
                         [p["baseline_lds"] for p in points], plot_path)
