"""The learning-curve stage: LDS against the number of training models.

Datamodels are refit on nested prefixes (by model id) of the training models, from the
statistics stage's snapshots of its running sums (one pass over the models serves every
fraction); every point is scored on the same held-out models as the main evaluation. A
prefix's validation models are the full fit's validation models among its rows.

Each point records the CPU seconds (``time.process_time``, all threads) of its lasso fit
(``fit_cpu_seconds``) and of its empirical influence (``baseline_cpu_seconds``): the attribution
leaderboard's measured fitting cost at that number of models. The full set's point reads the
main evaluation and carries no timing (its fit's cost is ``fit.json``'s).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from . import data, evaluate, fit, plots, sizing, statistics, store
from .atomic import atomic_output

log = logging.getLogger(__name__)


def fit_prefix(folder: Path, train_path: str, layout: store.Layout, rows: int, settings: fit.FitSettings
               ) -> fit.Datamodels:
    """Datamodels of every target from a prefix's statistics, fit.targets_per_job targets at a time (as the fit jobs)."""

    loaded: list[store.Models] = []  # the training models, read once for every block that needs them

    def prefix_rows() -> fit.Rows:
        if not loaded:
            loaded.append(store.read_models(train_path, layout))
        return loaded[0].mask[:rows], loaded[0].margins[:rows, block]

    shared = statistics.load(folder, targets=np.zeros(0, np.int64))  # the sums every target shares
    n_targets = layout.n_targets
    parts = []
    for number in range(fit.n_blocks(n_targets, settings.targets_per_job)):
        block = fit.block_targets(n_targets, settings.targets_per_job, number)
        stats = statistics.load(folder, targets=block)
        result, _ = fit.fit_targets(stats, settings, rows=prefix_rows, few_models_on_rows=True)
        parts.append(result)
    result = {key: np.concatenate([part[key] for part in parts], axis=-1) for key in parts[0]}
    mu, sigma = fit.standardization(shared.all.xsum, shared.all.n)
    return fit.assemble(result, mu, sigma, statistics.target_index(folder))


def run(statistics_path: str, train_path: str, eval_path: str, info_path: str, data_path: str, metrics_path: str,
        alpha: float, fractions: list[float], settings: dict, threads: int, curve_path: str, plot_path: str) -> None:
    """Fit on each fraction of the training models (the full set is read from the main evaluation)."""
    sizing.return_freed_memory()
    settings = fit.FitSettings.from_config(settings)
    info = json.loads(Path(info_path).read_text())
    layout = store.layout_for(info, alpha)
    index = data.load(data_path).target_train_index
    held_out = evaluate.read_held_out(eval_path, layout, index)
    full = json.loads(Path(metrics_path).read_text())
    n = full["n_train_models"]
    folders = dict(statistics.prefixes(statistics_path))
    if statistics.prefix_sizes(n, fractions):  # a prefix to fit: the solver's threads (a curve of the full set only
        import torch  # reads the evaluation and starts without torch)

        torch.set_num_threads(max(1, threads))
    points = []
    for fraction in sorted(set(fractions)):
        rows = max(2, int(round(fraction * n)))
        if rows >= n:
            points.append({"fraction": fraction, "n_models": n, "lds": full["lds"],
                           "baseline_lds": full["baseline_lds"], "pooled_spearman": full["pooled_spearman"]})
            continue
        start = time.process_time()
        datamodels = fit_prefix(folders[rows], train_path, layout, rows, settings)
        fit_cpu = time.process_time() - start
        summary, _, _ = evaluate.score(datamodels.weight, datamodels.bias, held_out)
        start = time.process_time()
        weight, bias, _ = evaluate.baseline(folders[rows], index)
        base_cpu = time.process_time() - start
        base, _, _ = evaluate.score(weight, bias, held_out)
        points.append({"fraction": fraction, "n_models": rows, "lds": summary["lds"], "baseline_lds": base["lds"],
                       "pooled_spearman": summary["pooled_spearman"], "fit_cpu_seconds": fit_cpu,
                       "baseline_cpu_seconds": base_cpu})
        log.info("%d models: LDS %.4f (baseline %.4f); fit %.1f CPU s, baseline %.2f CPU s", rows, summary["lds"],
                 base["lds"], fit_cpu, base_cpu)
    with atomic_output(curve_path) as tmp:
        Path(tmp).write_text(json.dumps({"alpha": alpha, "points": points}, indent=2) + "\n")
    plots.learning_curve([p["n_models"] for p in points], [p["lds"] for p in points],
                         [p["baseline_lds"] for p in points], plot_path)
