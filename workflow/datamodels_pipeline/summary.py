"""The summary stage: one table and a short Markdown digest of a run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .atomic import atomic_output

COLUMNS = ["alpha", "n_train_models", "n_eval_models", "lds", "baseline_lds", "pooled_spearman", "pooled_pearson",
           "mse", "n_diverged", "mean_target_accuracy", "fit_seconds", "noise_ceiling", "lds_seed_averaged",
           "lds_fraction_of_ceiling"]


def _number(value: float | None) -> str:
    """Four decimals; NA for a metric the run does not have (no repeated held-out models)."""
    return "NA" if value is None else f"{value:.4f}"


def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def run(run_name: str, alphas: Sequence[str], metrics: Sequence[str], curves: Sequence[str], fits: Sequence[str],
        integrity: Sequence[str], info_path: str, markdown_path: str, table_path: str) -> None:
    """Write ``summary.tsv`` (shown in the report) and ``summary.md``."""
    info = _load(info_path)
    checks = {(r["alpha"], r["split"]): r for r in map(_load, integrity)}
    rows = []
    for alpha, m, f in zip(alphas, map(_load, metrics), map(_load, fits)):
        diverged = sum(r["n_diverged"] for (a, _), r in checks.items() if a == float(alpha))
        rows.append({"alpha": alpha, "n_train_models": m["n_train_models"], "n_eval_models": m["n_eval_models"],
                     "lds": f"{m['lds']:.4f}", "baseline_lds": f"{m['baseline_lds']:.4f}",
                     "pooled_spearman": f"{m['pooled_spearman']:.4f}", "pooled_pearson": f"{m['pooled_pearson']:.4f}",
                     "mse": f"{m['mse']:.4f}", "n_diverged": diverged,
                     "mean_target_accuracy": f"{m['mean_target_accuracy_eval_models']:.4f}",
                     "fit_seconds": f"{sum(f['seconds'].values()):.1f}",
                     **{key: _number(m.get(key)) for key in COLUMNS[-3:]}})
    with atomic_output(table_path) as tmp:
        Path(tmp).write_text("\n".join("\t".join(str(r[c]) for c in COLUMNS) for r in [dict(zip(COLUMNS, COLUMNS)), *rows]) + "\n")
    lines = [f"# Datamodels run `{run_name}`", "",
             f"Data set `{info['name']}`: {info['n_train']} training examples, {info['n_targets']} targets "
             f"({info['targets']}), fingerprint `{info['fingerprint'][:16]}`.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    lines += ["", "LDS: mean over targets of the Spearman correlation, over held-out models, between predicted and "
              "actual margin. Baseline: empirical influence (difference of mean margins with and without each example). "
              "noise_ceiling: the LDS that the seed-averaged outputs of infinitely many models reach against one "
              "model's outputs on the repeated held-out masks (leave-one-seed-out, Spearman-Brown corrected; "
              "docs/evaluation.md); lds_seed_averaged: the datamodels' LDS against outputs averaged over the seeds "
              "(the paper's protocol); lds_fraction_of_ceiling: their LDS against single outputs on the same masks "
              "over the ceiling.", ""]
    for alpha, curve in zip(alphas, map(_load, curves)):
        points = ", ".join(f"{p['n_models']} models: {p['lds']:.3f}" for p in curve["points"])
        lines.append(f"Learning curve (alpha={alpha}): {points}.")
    for alpha, m in zip(alphas, map(_load, metrics)):
        if m.get("repeated"):
            r = m["repeated"]
            lines.append(f"Repeated held-out models (alpha={alpha}): {r['n_masks']} masks x {r['seeds_per_mask']} "
                         f"seeds; noise ceiling {m['noise_ceiling']:.3f} (uncorrected {m['noise_ceiling_uncorrected']:.3f}, "
                         f"against {r['seeds_per_mask']}-seed means {m['noise_ceiling_seed_averaged']:.3f}); datamodels' "
                         f"LDS {m['lds_single_repeated']:.3f} against single outputs, {m['lds_seed_averaged']:.3f} "
                         f"against seed-averaged outputs; "
                         f"{'NA' if m['lds_fraction_of_ceiling'] is None else format(m['lds_fraction_of_ceiling'], '.3f')} "
                         f"of the ceiling.")
    for (alpha, split), record in sorted(checks.items()):
        if record["n_diverged"]:
            lines.append(f"WARNING: {record['n_diverged']} {split} models at alpha={alpha:g} diverged and were excluded.")
    with atomic_output(markdown_path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
