"""The summary stage: one table and a short Markdown digest of a run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .atomic import atomic_output

COLUMNS = ["alpha", "n_train_models", "n_eval_models", "lds", "baseline_lds", "pooled_spearman", "pooled_pearson",
           "mse", "n_diverged", "mean_target_accuracy", "fit_seconds"]


def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def run(run_name: str, alphas: Sequence[str], metrics: Sequence[str], curves: Sequence[str], fits: Sequence[str],
        integrity: Sequence[str], info_path: str, markdown_path: str, table_path: str) -> None:
    """Write ``summary.tsv`` (shown in the report) and ``summary.md``."""
    info = _load(info_path)
    checks = {(r["alpha"], r["split"]): r for r in map(_load, integrity)}
    rows = []
    for alpha, m, f in zip(alphas, map(_load, metrics), map(_load, fits)):
        diverged = sum(checks[(float(alpha), s)]["n_diverged"] for s in ("train", "eval"))
        rows.append({"alpha": alpha, "n_train_models": m["n_train_models"], "n_eval_models": m["n_eval_models"],
                     "lds": f"{m['lds']:.4f}", "baseline_lds": f"{m['baseline_lds']:.4f}",
                     "pooled_spearman": f"{m['pooled_spearman']:.4f}", "pooled_pearson": f"{m['pooled_pearson']:.4f}",
                     "mse": f"{m['mse']:.4f}", "n_diverged": diverged,
                     "mean_target_accuracy": f"{m['mean_target_accuracy_eval_models']:.4f}",
                     "fit_seconds": f"{sum(f['seconds'].values()):.1f}"})
    with atomic_output(table_path) as tmp:
        Path(tmp).write_text("\n".join("\t".join(str(r[c]) for c in COLUMNS) for r in [dict(zip(COLUMNS, COLUMNS)), *rows]) + "\n")
    lines = [f"# Datamodels run `{run_name}`", "",
             f"Data set `{info['name']}`: {info['n_train']} training examples, {info['n_targets']} targets "
             f"({info['targets']}), fingerprint `{info['fingerprint'][:16]}`.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    lines += ["", "LDS: mean over targets of the Spearman correlation, over held-out models, between predicted and "
              "actual margin. Baseline: empirical influence (difference of mean margins with and without each example).", ""]
    for alpha, curve in zip(alphas, map(_load, curves)):
        points = ", ".join(f"{p['n_models']} models: {p['lds']:.3f}" for p in curve["points"])
        lines.append(f"Learning curve (alpha={alpha}): {points}.")
    for (alpha, split), record in sorted(checks.items()):
        if record["n_diverged"]:
            lines.append(f"WARNING: {record['n_diverged']} {split} models at alpha={alpha:g} diverged and were excluded.")
    with atomic_output(markdown_path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
