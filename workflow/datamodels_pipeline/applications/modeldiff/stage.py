"""``rule modeldiff``'s work: the residual PCA both ways, the check by retraining A and B, the tables and summary.

:func:`run` reads both algorithms' datamodels, finds and orients the
distinguishing directions each way (:mod:`.directions`), retrains A and B
without the removed end of each first direction (``applications.retrain``),
summarises the check (:mod:`.check`) and writes ``targets.parquet``,
``directions.parquet``, ``summary.json`` and the figures (:mod:`.figures`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ... import data, fit
from ...atomic import atomic_output
from ...seeding import AppIndex, Stream, rng
from ..figures import fmt
from ..retrain import Retrainer
from ..sampling import top_by_weight
from .check import algorithm_check, difference
from .directions import end_of, normalise, orient, residual_directions
from .figures import check_figure, examples_figure, variance_figure
from .recipe import KEY, describe

log = logging.getLogger(__name__)
RANDOM_INDEX = (AppIndex.MODELDIFF_RANDOM_A_MINUS_B, AppIndex.MODELDIFF_RANDOM_B_MINUS_A)
"""``Stream.APPLICATION`` indices 40 (A minus B) and 41 (B minus A): the random control targets of the check."""
WAYS = (("a_minus_b", "own", "other"), ("b_minus_a", "other", "own"))
"""(name, first algorithm, second algorithm): the residual of the first after projecting off the second."""


def _label_counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts)}


def _ends(dataset, direction: np.ndarray, scores: np.ndarray, eligible: np.ndarray, top: int) -> dict:
    """The ``top`` training examples at each end of a direction and the eligible targets with the most extreme
    scores, with labels."""
    out = {}
    for end, sign in (("positive", 1), ("negative", -1)):
        train = top_by_weight(sign * direction, min(top, len(direction)))
        targets = eligible[top_by_weight(sign * scores[eligible], min(top, len(eligible)))]
        out[end] = {"train": [{"index": int(i), "label": int(dataset.y_train[i]), "loading": float(direction[i])}
                              for i in train],
                    "targets": [{"index": int(t), "label": int(dataset.y_targets[t]), "score": float(scores[t])}
                                for t in targets]}
    return out


def run(own_datamodels_path: str, other_datamodels_path: str, fit_info_path: str, data_path: str, alpha: float,
        settings: dict, recipe: dict, other: dict, seed: int, threads: int, table_path: str, loadings_path: str,
        summary_path: str, variance_path: str, examples_path: str, check_path: str) -> None:
    """Residual PCA both ways, the check by retraining A and B without one end of each first direction, outputs."""
    torch.set_num_threads(max(1, threads))
    start = time.perf_counter()
    dataset = data.load(data_path)
    weights = {"own": fit.read(own_datamodels_path).weight, "other": fit.read(other_datamodels_path).weight}
    names = {"own": describe(recipe, other), "other": describe(other, recipe)}
    rows = {key: normalise(w) for key, w in weights.items()}
    zero = {key: np.linalg.norm(r, axis=1) == 0 for key, r in rows.items()}
    candidates = np.flatnonzero(~zero["own"] & ~zero["other"])
    if len(candidates) < max(2, settings["n_group"]):
        raise ValueError(f"only {len(candidates)} targets have a non-zero datamodel under both algorithms; "
                         f"{KEY}.n_group = {settings['n_group']} needs more (fit more models?)")
    cosine = np.einsum("ij,ij->i", rows["own"], rows["other"])
    tti = dataset.target_train_index
    ways, removals, groups = {}, {}, {}
    for i, (way, first, second) in enumerate(WAYS):
        pca = residual_directions(rows[first][candidates], rows[second][candidates], settings["n_components"])
        scores = np.full((dataset.n_targets, settings["n_components"]), np.nan)
        scores[candidates] = pca["scores"]
        directions, orientation = pca["directions"].copy(), []
        for j in range(settings["n_components"]):
            sign, gaps = orient(directions[j], scores[:, j], rows[first], rows[second], settings["n_remove"],
                                settings["n_group"], candidates, tti)
            directions[j] *= sign
            scores[:, j] *= sign
            orientation.append(gaps)
        removed, eligible, group = end_of(directions[0], scores[:, 0], 1, settings["n_remove"], settings["n_group"],
                                          candidates, tti)
        random = np.sort(rng(seed, Stream.APPLICATION, alpha, RANDOM_INDEX[i]).choice(
            eligible, size=min(settings["n_group"], len(eligible)), replace=False))
        removals[way], groups[way] = removed, {"group": group, "random": random, "eligible": eligible}
        ways[way] = {"first": first, "second": second, "directions": directions, "scores": scores, "pca": pca,
                     "orientation": orientation}
    retrained, n_models = {}, 0
    for key, algorithm in (("own", recipe), ("other", other)):
        retrainer = Retrainer(dataset, algorithm, seed, settings["n_seeds"])
        reference = retrainer.reference()
        margins = retrainer.margins([removals[way] for way, _, _ in WAYS])
        retrained[key] = {"reference": reference, "margins": dict(zip((w for w, _, _ in WAYS), margins))}
        n_models += retrainer.n_models_trained
    summary_ways, changes = {}, {}
    for way, first, second in WAYS:
        info, g = ways[way], groups[way]
        checks = {}
        for key in ("own", "other"):
            reference, margins = retrained[key]["reference"], retrained[key]["margins"][way]
            changes[(way, key)] = margins - reference
            checks[key] = algorithm_check(margins - reference, reference, margins, weights[key], removals[way],
                                          g["group"], g["random"], g["eligible"])
        gap = {key: checks[key]["group_minus_random"] for key in ("own", "other")}
        pca = info["pca"]
        summary_ways[way] = {
            "first": first, "second": second, "first_algorithm": names[first], "second_algorithm": names[second],
            "residual_explained_variance_ratio": [float(r) for r in pca["ratio"]],
            "variance_first": [float(v) for v in pca["variance_first"]],
            "variance_second": [float(v) for v in pca["variance_second"]],
            "variance_ratio_first_to_second": [float(a / b) if b > 0 else None
                                               for a, b in zip(pca["variance_first"], pca["variance_second"])],
            "top_pc_variance_first": pca["top_pc_first"], "top_pc_variance_second": pca["top_pc_second"],
            "directions": [{"direction": j + 1, "predicted_gap_normalised": info["orientation"][j],
                            **_ends(dataset, info["directions"][j], info["scores"][:, j], candidates, settings["top"])}
                           for j in range(settings["n_components"])],
            "check": {
                "direction": 1, "n_removed": int(len(removals[way])), "removed": removals[way].tolist(),
                "removed_label_counts": _label_counts(dataset.y_train[removals[way]]),
                "group": g["group"].tolist(), "group_label_counts": _label_counts(dataset.y_targets[g["group"]]),
                "random": g["random"].tolist(), "n_eligible": int(len(g["eligible"])),
                "own": checks["own"], "other": checks["other"],
                "first_minus_second": {
                    "raw": difference(gap[first], gap[second]),
                    "relative": difference(gap[first]["relative"], gap[second]["relative"]),
                    "accuracy": (checks[first]["group"]["accuracy_change"] - checks[first]["random"]["accuracy_change"])
                    - (checks[second]["group"]["accuracy_change"] - checks[second]["random"]["accuracy_change"]),
                },
            },
        }
    fit_info = json.loads(Path(fit_info_path).read_text())
    summary = {
        "alpha": alpha, "own_algorithm": names["own"], "other_algorithm": names["other"], "own_recipe": recipe,
        "other_recipe": other, "n_models_fit": fit_info["n_models_used"], "own_refit": fit_info["own"]["refit"],
        "mean_target_accuracy": {"own": fit_info["own"]["mean_target_accuracy"],
                                 "other": fit_info["other"]["mean_target_accuracy"]},
        "n_targets": dataset.n_targets, "n_compared": int(len(candidates)),
        "n_zero_datamodels": {key: int(z.sum()) for key, z in zero.items()},
        "n_dropped": int(dataset.n_targets - len(candidates)),
        "cosine_own_other": {"mean": float(cosine[candidates].mean()), "median": float(np.median(cosine[candidates]))},
        "settings": {k: v for k, v in settings.items() if k != "other"}, "ways": summary_ways,
        "n_models_retrained": n_models, "seconds": round(time.perf_counter() - start, 1),
    }
    _write_tables(table_path, loadings_path, dataset, weights, cosine, candidates, ways, removals, retrained, changes)
    with atomic_output(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    variance_figure(summary, variance_path)
    examples_figure(dataset, summary, ways, candidates, settings["top"], examples_path)
    check_figure(summary, check_path)
    for way, s in summary_ways.items():
        c = s["check"]
        log.info("%s: direction 1 explains %.4f of %s's and %.4f of %s's normalised variance (residual PCA %.4f); "
                 "removing %d examples, group - random margin change: %s %s ± %s (relative %s), %s %s ± %s "
                 "(relative %s); first - second relative %s ± %s", way, s["variance_first"][0], s["first_algorithm"],
                 s["variance_second"][0], s["second_algorithm"], s["residual_explained_variance_ratio"][0],
                 c["n_removed"], names["own"], fmt(c["own"]["group_minus_random"]["mean"]),
                 fmt(c["own"]["group_minus_random"]["se"]), fmt(c["own"]["group_minus_random"]["relative"]["mean"]),
                 names["other"], fmt(c["other"]["group_minus_random"]["mean"]),
                 fmt(c["other"]["group_minus_random"]["se"]),
                 fmt(c["other"]["group_minus_random"]["relative"]["mean"]),
                 fmt(c["first_minus_second"]["relative"]["mean"]), fmt(c["first_minus_second"]["relative"]["se"]))
    log.info("modeldiff (alpha=%s): %s vs %s on %d targets, mean cosine %.3f; %d models retrained in %.0f s",
             alpha, names["own"], names["other"], len(candidates), summary["cosine_own_other"]["mean"], n_models,
             summary["seconds"])


def _write_tables(table_path: str, loadings_path: str, dataset, weights: dict, cosine: np.ndarray,
                  candidates: np.ndarray, ways: dict, removals: dict, retrained: dict, changes: dict) -> None:
    """targets.parquet (one row per target) and directions.parquet (one row per training example)."""
    compared = np.zeros(dataset.n_targets, dtype=bool)
    compared[candidates] = True
    targets = {
        "target": np.arange(dataset.n_targets, dtype=np.int64), "target_label": dataset.y_targets.astype(np.int64),
        "target_train_index": dataset.target_train_index.astype(np.int64), "compared": compared,
        "norm_own": np.linalg.norm(weights["own"].astype(np.float64), axis=0),
        "norm_other": np.linalg.norm(weights["other"].astype(np.float64), axis=0),
        "cosine_own_other": cosine,
    }
    for way, info in ways.items():
        for j in range(info["scores"].shape[1]):
            targets[f"score_{way}_{j + 1}"] = info["scores"][:, j]
    for key in ("own", "other"):
        targets[f"reference_margin_{key}"] = retrained[key]["reference"].mean(axis=0).astype(np.float64)
    for (way, key), change in changes.items():
        targets[f"margin_change_{key}_{way}"] = change.mean(axis=0).astype(np.float64)
    loadings = {"train_index": np.arange(dataset.n_train, dtype=np.int64),
                "train_label": dataset.y_train.astype(np.int64)}
    for way, info in ways.items():
        for j in range(info["directions"].shape[0]):
            loadings[f"loading_{way}_{j + 1}"] = info["directions"][j]
        loadings[f"removed_{way}"] = np.isin(np.arange(dataset.n_train), removals[way])
    for path, columns in ((table_path, targets), (loadings_path, loadings)):
        with atomic_output(path) as tmp:
            pq.write_table(pa.table({name: pa.array(values) for name, values in columns.items()}), tmp)
