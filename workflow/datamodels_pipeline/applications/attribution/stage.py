"""``rule attribution``'s work: every configured method scored on the held-out models; the tables, summary and figure.

:func:`run` reads the evaluation's numbers for the datamodels and empirical
influence with their measured costs (the train chunks' own CPU seconds, carried by the
train aggregate's integrity record, plus the fits' CPU seconds), runs the network methods,
input similarity and external score matrices, and writes ``lds.parquet``,
``per_target.parquet``, ``summary.json`` (with the cost ``frontier``) and ``lds_vs_cost.png``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pyarrow.parquet as pq

from ... import data, evaluate, protocol, store
from ...atomic import atomic_output
from .. import attribution_methods as am
from .external import load_external
from .frontier import describe, record as frontier_record
from .figures import plot
from .methods import Context, network_rows
from .peers import peer_rows
from .settings import warn_settings
from .table import Row, datamodel_rows, empirical_influence_rows, headline, score_row, write_per_target, write_table

log = logging.getLogger(__name__)


def run(fit_info_path: str, train_integrity_path: str, curve_path: str, metrics_path: str, evaluation_per_target_path: str, eval_path: str, info_path: str, data_path: str, alpha: float, settings: dict, recipe: dict, seed: int,
        threads: int, table_path: str, per_target_path: str, summary_path: str, figure_path: str) -> None:
    """Score every configured attribution method on the held-out models; write the table, summary and figure."""
    import torch

    torch.set_num_threads(max(1, threads))
    wall = time.perf_counter()
    learner = recipe["model"]["name"]
    dataset = data.load(data_path)
    warn_settings(settings, dataset.n_train)
    info = json.loads(Path(info_path).read_text())
    layout = store.layout_for(info, alpha)
    index = dataset.target_train_index
    held_out = evaluate.read_held_out(eval_path, layout, index)
    externals = [load_external(p, dataset.n_train, dataset.n_targets) for p in settings["external"]]

    train_integrity = json.loads(Path(train_integrity_path).read_text())
    training = train_integrity.get("training", {})
    log.info("training models: %s CPU s for %s models, measured by the train chunks", training.get("cpu_seconds"),
             training.get("models_trained"))
    fit_info = json.loads(Path(fit_info_path).read_text())
    fit_cpu_seconds = fit_info.get("cpu_seconds")
    curve = json.loads(Path(curve_path).read_text())
    metrics = json.loads(Path(metrics_path).read_text())
    per_target = pq.read_table(evaluation_per_target_path, columns=["lds", "baseline_lds"]).to_pydict()
    rows = datamodel_rows(metrics, per_target, fit_cpu_seconds, curve, train_integrity)
    rows += empirical_influence_rows(metrics, per_target, curve, train_integrity)

    details: dict = {}
    ctx = Context(dataset, protocol.learner(recipe), seed, alpha)
    rows += network_rows(ctx, settings, held_out, index, details)
    rows += peer_rows(ctx, settings, held_out, index)  # reference libraries on the same networks (peers.py)
    if settings["representation"]["input_space"]:
        start = time.process_time()
        scores = am.signed_cosine(ctx.x_train.numpy(), ctx.x_targets.numpy(), dataset.y_train, dataset.y_targets)
        row = Row("input_similarity", 0, cpu_seconds=time.process_time() - start, cpu_seconds_training=0.0,
                  note="signed cosine of the raw inputs")
        rows.append(score_row(row, scores, None, held_out, index))
    for path, matrix in zip(settings["external"], externals):
        rows.append(score_row(Row(f"external:{Path(path).stem}", 0, cpu_seconds=None, cost_source="unknown",
                                  note=str(path)), matrix, None, held_out, index))

    write_table(rows, table_path)
    write_per_target(rows, index, per_target_path)
    summary = {
        "alpha": alpha, "n_train": dataset.n_train, "n_targets": dataset.n_targets, "n_eval_models": len(held_out),
        "n_train_models": metrics["n_train_models"], "learner": learner, "headline": headline(rows),
        "rows": [r.record() for r in rows],
        "skipped": {r.method: r.note for r in rows if r.lds is None},
        "frontier": frontier_record(rows),
        "training_cpu_seconds": training.get("cpu_seconds"), "fit_cpu_seconds": fit_cpu_seconds, "details": details,
        "settings": settings, "seconds": round(time.perf_counter() - wall, 1),
        "cpu_seconds": round(time.process_time(), 1),
    }
    with atomic_output(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    plot(rows, alpha, summary["frontier"], figure_path)
    for method, h in summary["headline"].items():
        log.info("%-28s LDS %s with %d models, %s CPU s (%s)", method,
                 "n/a" if h["lds"] is None else f"{h['lds']:.4f}", h["n_models"], h["cpu_seconds"], h["cost_source"])
    log.info("best attribution by CPU budget: %s", describe(summary["frontier"]["best_method"], "method"))
    log.info("datamodels vs TRAK by CPU budget: %s", describe(summary["frontier"]["datamodels_vs_trak_winner"]))
    log.info("attribution (alpha=%s): %d rows in %.0f s", alpha, len(rows), summary["seconds"])
