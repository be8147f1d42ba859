"""The attribution leaderboard: one :class:`Row` per method and number of models, scored, and written as tables.

:func:`score_row` scores a score matrix on the held-out models (``evaluate.score``);
the datamodels' and empirical influence's rows are the evaluation stage's numbers,
read (:func:`datamodel_rows`, :func:`empirical_influence_rows`); :func:`headline`,
:func:`write_table` and :func:`write_per_target` give the summary's headline,
``lds.parquet`` and ``per_target.parquet``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ... import evaluate, store
from ...atomic import atomic_output


@dataclass
class Row:
    """One scored (or skipped) attribution: a method at one number of models."""

    method: str
    n_models: int
    variant: str = ""
    lds: float | None = None
    lds_median: float | None = None
    pooled_spearman: float | None = None
    models_trained: int = 0
    cpu_seconds: float | None = None
    cpu_seconds_training: float | None = None
    cost_source: str = "measured"
    train_set: str = ""
    note: str = ""
    per_target: np.ndarray | None = field(default=None, repr=False)

    def record(self) -> dict:
        """The row as plain JSON values (without the per-target array)."""
        out = asdict(self)
        del out["per_target"]
        for key in ("lds", "lds_median", "pooled_spearman", "cpu_seconds", "cpu_seconds_training"):
            if out[key] is not None:
                out[key] = float(out[key])
        return out


def score_row(row: Row, weight: np.ndarray, bias: np.ndarray | None, held_out: evaluate.HeldOut,
              target_train_index: np.ndarray) -> Row:
    """Fill a row's LDS, median LDS, pooled Spearman and per-target LDS from its weights on the held-out models."""
    bias = np.zeros(weight.shape[1], dtype=np.float32) if bias is None else bias
    summary, per_target, _ = evaluate.score(np.asarray(weight, dtype=np.float32), bias, held_out)
    row.lds, row.lds_median, row.pooled_spearman = summary["lds"], summary["lds_median"], summary["pooled_spearman"]
    row.per_target = per_target
    return row


def evaluated_row(row: Row, summary: dict, per_target: np.ndarray) -> Row:
    """Fill a row from the evaluation stage's numbers (one computation, read here, never recomputed)."""
    row.lds, row.lds_median, row.pooled_spearman = summary["lds"], summary["lds_median"], summary["pooled_spearman"]
    row.per_target = np.asarray(per_target, dtype=np.float64)
    return row


def training_cost(train_integrity: dict, n_models: int) -> tuple[int, float | None]:
    """(models trained, measured CPU seconds) of the first ``n_models`` kept training models: the train chunks' own
    timings, carried by the aggregate's integrity record (``store.training_cost``); None without them."""
    chunks = train_integrity.get("training", {}).get("chunks")
    if not chunks:
        return n_models, None
    cost = store.training_cost(chunks, n_models, train_integrity.get("diverged_model_ids", ()))
    return cost["models_trained"], cost["cpu_seconds"]


def _plus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else float(a) + float(b)


def _source(cpu_seconds: float | None) -> str:
    return "measured" if cpu_seconds is not None else "unknown"


def _measured_rows(method: str, curve: dict, n_train_models: int, train_integrity: dict, lds_key: str, cost_key: str,
                   computed: str) -> list[Row]:
    """A method's rows at the learning curve's smaller sets of models (``lds_key`` and ``cost_key`` of each point):
    the measured training CPU of those models plus the point's measured CPU of ``computed``."""
    rows = []
    for point in curve.get("points", []):
        if point["n_models"] >= n_train_models or point.get(lds_key) is None:
            continue
        trained, training = training_cost(train_integrity, point["n_models"])
        cpu = _plus(training, point.get(cost_key))
        rows.append(Row(method, point["n_models"], lds=point[lds_key], models_trained=trained, cpu_seconds=cpu,
                        cpu_seconds_training=training, cost_source=_source(cpu), train_set="subsets",
                        note=f"LDS: learning_curve.json; training: the train chunks' CPU s; {computed}: the point's "
                             f"{cost_key}"))
    return rows


def _evaluated_full_row(method: str, n_train_models: int, train_integrity: dict, cost: float | None,
                        evaluated: dict, per_target, computed: str) -> Row:
    """A method's row at every training model: the evaluation's numbers, the training CPU plus ``cost``."""
    trained, training = training_cost(train_integrity, n_train_models)
    cpu = _plus(training, cost)
    full = Row(method, n_train_models, models_trained=trained, cpu_seconds=cpu, cpu_seconds_training=training,
               cost_source=_source(cpu), train_set="subsets",
               note=f"LDS: metrics.json; training: the train chunks' CPU s; {computed}")
    return evaluated_row(full, evaluated, per_target)


def datamodel_rows(metrics: dict, per_target: dict, fit_cpu_seconds: float | None, curve: dict,
                   train_integrity: dict) -> list[Row]:
    """The datamodels (the evaluation's LDS on the held-out models) and their learning curve's smaller fits.

    Cost: the measured training CPU of the models fit on (the train chunks' timings) plus the measured CPU of
    the fit (``fit.json``'s ``cpu_seconds``; a learning-curve point's own ``fit_cpu_seconds``).
    """
    n = metrics["n_train_models"]
    return [*_measured_rows("datamodels", curve, n, train_integrity, "lds", "fit_cpu_seconds", "fit"),
            _evaluated_full_row("datamodels", n, train_integrity, fit_cpu_seconds, metrics, per_target["lds"],
                                "fit: fit.json cpu_seconds")]


def empirical_influence_rows(metrics: dict, per_target: dict, curve: dict, train_integrity: dict) -> list[Row]:
    """Empirical influence from all training models (the evaluation's baseline) and the learning curve's smaller sets.

    Cost: the measured training CPU of the models plus the measured CPU of the difference of means.
    """
    n, baseline = metrics["n_train_models"], metrics["baseline"]
    return [*_measured_rows("empirical_influence", curve, n, train_integrity, "baseline_lds", "baseline_cpu_seconds",
                            "difference of means"),
            _evaluated_full_row("empirical_influence", n, train_integrity, baseline.get("cpu_seconds"), baseline,
                                per_target["baseline_lds"], "difference of means: measured by evaluate")]


def headline(rows: Sequence[Row]) -> dict:
    """Per method, the row with the most models (the method's full setting): LDS and cost."""
    out = {}
    for row in rows:
        name = f"{row.method} ({row.variant})" if row.variant else row.method
        best = out.get(name)
        if best is None or row.n_models >= best["n_models"]:
            out[name] = {"lds": row.lds, "n_models": row.n_models, "models_trained": row.models_trained,
                               "cpu_seconds": None if row.cpu_seconds is None else round(float(row.cpu_seconds), 2),
                               "cost_source": row.cost_source, "note": row.note}
    return out


def write_table(rows: Sequence[Row], path: str) -> None:
    records = [r.record() for r in rows]
    schema = pa.schema([("method", pa.string()), ("variant", pa.string()), ("n_models", pa.int64()),
                        ("lds", pa.float64()),
                        ("lds_median", pa.float64()), ("pooled_spearman", pa.float64()),
                        ("models_trained", pa.int64()), ("cpu_seconds", pa.float64()),
                        ("cpu_seconds_training", pa.float64()), ("cost_source", pa.string()),
                        ("train_set", pa.string()), ("note", pa.string())])
    with atomic_output(path) as tmp:
        pq.write_table(pa.Table.from_pylist(records, schema=schema), tmp)


def write_per_target(rows: Sequence[Row], index: np.ndarray, path: str) -> None:
    """Long table: one row per (method, n_models, target) with the target's Spearman correlation."""
    scored = [r for r in rows if r.per_target is not None]
    n = len(index)
    table = pa.table({
        "method": pa.array([r.method for r in scored for _ in range(n)], pa.string()),
        "variant": pa.array([r.variant for r in scored for _ in range(n)], pa.string()),
        "n_models": pa.array(np.repeat([r.n_models for r in scored], n).astype(np.int64)),
        "target": pa.array(np.tile(np.arange(n, dtype=np.int64), len(scored))),
        "target_train_index": pa.array(np.tile(index.astype(np.int64), len(scored))),
        "lds": pa.array(np.concatenate([r.per_target for r in scored]).astype(np.float64) if scored
                        else np.zeros(0)),
    })
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)
