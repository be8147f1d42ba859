"""ModelDiff: where two learning algorithms use the training data differently, checked by retraining.

Shah, Park, Ilyas, Madry, "ModelDiff: A Framework for Comparing Learning
Algorithms" (2022). Algorithm A is the run's own recipe (``model``, ``train``);
algorithm B is that recipe with the overrides of ``applications.modeldiff.other``
(default: multinomial logistic regression instead of the MLP). Both get
datamodels on the same targets from models trained on the *same* subsets with
the same model seeds (``rule modeldiff_datamodels``), so the two weight matrices
differ only through the learning algorithm (and estimation noise).

``rule modeldiff`` compares them. Each target's weight vector is scaled to unit
L2 norm (over training examples), each algorithm's matrix is centred over the
targets, and A's row of every target is projected off B's row of the same
target (``a - <a, b> / ||b||^2 b``): what remains is how A uses the training
data *beyond* what B's datamodel of that target already explains. PCA of these
residuals gives training-example directions v; a direction distinguishes A from
B when it explains a large share of the variance of A's normalised matrix and a
small share of B's. The same is done the other way (B minus A).

Check by retraining: for the first direction each way, the ``n_remove``
training examples at the end of v that the datamodels say matter to the first
algorithm more than to the second are removed from the full training set, and
``n_seeds`` models of A *and* of B are retrained without them. If the direction
is real, the first algorithm's margins on the ``n_group`` targets with the
largest residual projections drop more (relative to random targets) than the
second algorithm's do.

Algorithm B's recipe is merged, and the settings are checked, by ``config.validate``
when Snakemake parses the workflow (``config.other_recipe``); this module is only
imported by the jobs.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .. import data, fit, store
from ..atomic import atomic_output
from ..plots import save_figure
from ..seeding import AppIndex, Stream, rng
from .figures import fmt, plt, show_image
from .retrain import Retrainer
from .sampling import top_by_weight

log = logging.getLogger(__name__)
KEY = "applications.modeldiff"
RANDOM_INDEX = (AppIndex.MODELDIFF_RANDOM_A_MINUS_B, AppIndex.MODELDIFF_RANDOM_B_MINUS_A)
"""``Stream.APPLICATION`` indices 40 (A minus B) and 41 (B minus A): the random control targets of the check."""
"""Models of algorithm B trained per ``learners.train_on`` call (bounds the memory of the margins' intermediates)."""
WAYS = (("a_minus_b", "own", "other"), ("b_minus_a", "other", "own"))
"""(name, first algorithm, second algorithm): the residual of the first after projecting off the second."""


# --------------------------------------------------------------------------------------------------------------
# Algorithm B's recipe is merged and the settings are checked at parse time: config.other_recipe, config.validate


def describe(recipe: dict, reference: dict) -> str:
    """Short name of a recipe: the learner, and the keys where it differs from ``reference``."""
    parts = []
    for section in ("model", "train"):
        for key, value in sorted(recipe[section].items()):
            if key != "name" and key != "device" and reference[section].get(key) != value:
                parts.append(f"{key}={value}")
    name = recipe["model"]["name"]
    return f"{name} ({', '.join(parts)})" if parts else name


# --------------------------------------------------------------------------------------------------------------
# Algorithm B's datamodels (rule modeldiff_datamodels; B's models: modeldiff_training, rule modeldiff_models)


def _copy(source: str, destination: str) -> None:
    with atomic_output(destination) as tmp:
        shutil.copyfile(source, tmp)


def run_datamodels(models_path: str, other_models_path: str, info_path: str, data_path: str, own_datamodels_path: str,
                   own_features_path: str, own_fit_path: str, alpha: float, fit_settings: dict, seed: int,
                   threads: int, other_datamodels_out: str, other_features_out: str, own_datamodels_out: str,
                   own_features_out: str, fit_info_out: str) -> None:
    """Fit B's datamodels on B's models, and write A's datamodels on exactly the same models: the run's own when
    every model is used, else refit."""
    torch.set_num_threads(max(1, threads))
    layout = store.layout_for(json.loads(Path(info_path).read_text()), alpha)
    other_models = store.read_models(other_models_path, layout)
    trained = store.file_metadata(other_models_path)
    n, n_run = len(other_models), trained["n_models_run"]
    models = store.read_models(models_path, layout).select(np.arange(n))
    if not np.array_equal(models.model_id, other_models.model_id):
        raise ValueError(f"{other_models_path}: B's models are not the run's first {n} training models")
    dataset = data.load(data_path)
    diverged = other_models.diverged
    keep = ~diverged
    if diverged.any():
        log.warning("algorithm B diverged on %d of %d models; both algorithms are fit on the other %d",
                    int(diverged.sum()), n, int(keep.sum()))
    fit_settings = fit.FitSettings.from_config(fit_settings)
    margins, accuracy = other_models.margins, other_models.target_accuracy
    other_fit, other_info = fit.fit(models.mask[keep], margins[keep], dataset.target_train_index, fit_settings,
                                    seed, alpha)
    fit.write(other_fit, other_datamodels_out, other_features_out)
    refit = bool(n < n_run or diverged.any())
    if refit:
        own_models, own_info = fit.fit(models.mask[keep], models.margins[keep], dataset.target_train_index,
                                       fit_settings, seed, alpha)
        fit.write(own_models, own_datamodels_out, own_features_out)
    else:
        _copy(own_datamodels_path, own_datamodels_out)
        _copy(own_features_path, own_features_out)
        own_info = json.loads(Path(own_fit_path).read_text())
    summary = {
        "alpha": alpha, "n_models_run": n_run, "n_models_used": int(keep.sum()), "n_diverged_other": int(diverged.sum()),
        "own": {"refit": refit, "mean_target_accuracy": float(models.target_accuracy[keep].mean()),
                "mean_margin": float(models.margins[keep].mean()), "fit": own_info},
        "other": {"recipe": trained.get("recipe"), "mean_target_accuracy": float(accuracy[keep].mean()),
                  "mean_margin": float(margins[keep].mean()), "train_seconds": trained["train_seconds"],
                  "train_cpu_seconds": trained["train_cpu_seconds"],
                  "models_per_second": round(n / max(trained["train_seconds"], 1e-9), 1), "fit": other_info},
    }
    with atomic_output(fit_info_out) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")


# --------------------------------------------------------------------------------------------------------------
# Residual PCA (NumPy only)


def normalise(weight: np.ndarray) -> np.ndarray:
    """Rows ``[n_targets, n_train]``: each target's weight column scaled to unit L2 norm (zeros stay zero)."""
    w = np.asarray(weight, dtype=np.float64).T
    norm = np.linalg.norm(w, axis=1, keepdims=True)
    return np.divide(w, norm, out=np.zeros_like(w), where=norm > 0)


def centre(rows: np.ndarray) -> np.ndarray:
    """Rows minus their mean row (centred over the targets)."""
    return rows - rows.mean(axis=0, keepdims=True)


def project_off(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each row of ``a`` minus its projection on the same row of ``b``: ``a - <a, b> / ||b||^2 b`` (``a`` where b = 0)."""
    bb = np.einsum("ij,ij->i", b, b)
    coef = np.divide(np.einsum("ij,ij->i", a, b), bb, out=np.zeros(len(a)), where=bb > 0)
    return a - coef[:, None] * b


def explained_variance(rows: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Share of the total variance of centred ``rows`` along each unit direction: ``||X v||^2 / ||X||_F^2``."""
    total = float(np.sum(rows ** 2))
    return np.sum((rows @ directions.T) ** 2, axis=0) / total if total > 0 else np.zeros(len(directions))


def residual_directions(first: np.ndarray, second: np.ndarray, n_components: int) -> dict:
    """Residual PCA of ``first`` (unit-norm rows) after projecting off ``second`` (same targets, same order).

    Returns the unit directions ``[k, n_train]``, the targets' residual scores
    ``[n_targets, k]`` (projections of the centred residuals), the residuals'
    explained variance ratios, and the share of the variance of each centred
    matrix (first, second) along each direction: the distinguishing score.
    """
    if not 1 <= n_components <= min(first.shape):
        raise ValueError(f"{KEY}.n_components = {n_components} must be in [1, {min(first.shape)}] for "
                         f"{first.shape[0]} targets and {first.shape[1]} training examples")
    first_c, second_c = centre(first), centre(second)
    residual = centre(project_off(first_c, second_c))
    _, singular, vt = np.linalg.svd(residual, full_matrices=False)
    directions = vt[:n_components]
    return {"directions": directions, "scores": residual @ directions.T,
            "ratio": singular[:n_components] ** 2 / max(float(np.sum(singular ** 2)), 1e-300),
            "variance_first": explained_variance(first_c, directions),
            "variance_second": explained_variance(second_c, directions),
            "top_pc_first": float(np.linalg.svd(first_c, compute_uv=False)[0] ** 2 / np.sum(first_c ** 2)),
            "top_pc_second": float(np.linalg.svd(second_c, compute_uv=False)[0] ** 2 / np.sum(second_c ** 2))}


def end_of(direction: np.ndarray, scores: np.ndarray, sign: int, n_remove: int, n_group: int,
           candidates: np.ndarray, target_train_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One end of a direction: the ``n_remove`` training examples with the largest ``sign * v``, the eligible
    targets (``candidates`` less those that are removed training examples) and the ``n_group`` of them with the
    largest ``sign * score``."""
    if not 0 < n_remove < len(direction):
        raise ValueError(f"{KEY}.n_remove = {n_remove} must be in [1, {len(direction) - 1}]")
    removed = top_by_weight(sign * np.asarray(direction, dtype=np.float64), n_remove)
    eligible = candidates[~np.isin(target_train_index[candidates], removed)]
    group = eligible[top_by_weight(sign * scores[eligible], min(n_group, len(eligible)))]
    return removed, eligible, group


def predicted_gap(rows: np.ndarray, removed: np.ndarray, group: np.ndarray, eligible: np.ndarray) -> float:
    """Datamodel-predicted margin change of removing ``removed`` (−Σ weights), group mean minus mean over all
    eligible targets; ``rows`` ``[n_targets, n_train]`` (raw or normalised weights)."""
    change = -rows[:, removed].sum(axis=1)
    return float(change[group].mean() - change[eligible].mean())


def orient(direction: np.ndarray, scores: np.ndarray, first: np.ndarray, second: np.ndarray, n_remove: int,
           n_group: int, candidates: np.ndarray, target_train_index: np.ndarray) -> tuple[int, dict]:
    """The sign whose + end matters more to the first algorithm than to the second, from the datamodels alone.

    For each sign, removing the end's ``n_remove`` examples is predicted with the
    unit-norm weights (scale-free, so two algorithms' margins compare) for the end's
    target group and for all eligible targets; the sign with the more negative
    (first − second) of (group − all) wins.
    """
    gaps = {}
    for sign in (1, -1):
        removed, eligible, group = end_of(direction, scores, sign, n_remove, n_group, candidates, target_train_index)
        gaps[sign] = {"first": predicted_gap(first, removed, group, eligible),
                      "second": predicted_gap(second, removed, group, eligible)}
    sign = min((1, -1), key=lambda s: gaps[s]["first"] - gaps[s]["second"])
    return sign, {("positive" if s == sign else "negative"): g for s, g in gaps.items()}


# --------------------------------------------------------------------------------------------------------------
# Statistics of the check by retraining


def seed_stats(per_seed: np.ndarray) -> dict:
    """Mean over seeds and its standard error (None with one seed)."""
    per_seed = np.asarray(per_seed, dtype=np.float64)
    se = float(per_seed.std(ddof=1) / np.sqrt(len(per_seed))) if len(per_seed) > 1 else None
    return {"mean": float(per_seed.mean()), "se": se}


def difference(x: dict, y: dict) -> dict:
    """x − y of two independent seed means (standard errors added in quadrature) and the z score."""
    mean = x["mean"] - y["mean"]
    se = None if x["se"] is None or y["se"] is None else float(np.hypot(x["se"], y["se"]))
    return {"mean": mean, "se": se, "z": None if not se else mean / se}


def algorithm_check(change: np.ndarray, reference: np.ndarray, margins: np.ndarray, weight: np.ndarray,
                    removed: np.ndarray, group: np.ndarray, random: np.ndarray, eligible: np.ndarray) -> dict:
    """One algorithm's response to one removal: per-seed group means of the margin change (raw and divided by the
    algorithm's mean full-data margin over the eligible targets), group − random paired by seed, accuracy change
    and the algorithm's datamodel prediction (−Σ removed raw weights)."""
    scale = float(reference[:, eligible].mean())
    per_seed = {name: change[:, members].astype(np.float64).mean(axis=1)
                for name, members in (("group", group), ("random", random), ("all", eligible))}
    correct = (margins > 0).astype(np.float64) - (reference > 0)
    predicted = -weight[removed].astype(np.float64).sum(axis=0)
    out = {"scale_mean_reference_margin": scale}
    for name, members in (("group", group), ("random", random), ("all", eligible)):
        out[name] = {**seed_stats(per_seed[name]), "relative": seed_stats(per_seed[name] / scale),
                     "accuracy_change": float(correct[:, members].mean()),
                     "predicted_change": float(predicted[members].mean())}
    gap = per_seed["group"] - per_seed["random"]
    out["group_minus_random"] = {**seed_stats(gap), "relative": seed_stats(gap / scale),
                                 "predicted": out["group"]["predicted_change"] - out["random"]["predicted_change"]}
    return out


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


# --------------------------------------------------------------------------------------------------------------
# The rule's work


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


# --------------------------------------------------------------------------------------------------------------
# Figures (matplotlib imported on use: see the module docstring)


def variance_figure(summary: dict, path: str) -> None:
    """Per direction of each way, the share of each algorithm's normalised variance along it."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9), squeeze=False)
    names = {"own": f"A: {summary['own_algorithm']}", "other": f"B: {summary['other_algorithm']}"}
    colours = {"own": "tab:blue", "other": "tab:orange"}
    for ax, (way, info) in zip(axes[0], summary["ways"].items()):
        k = len(info["variance_first"])
        x = np.arange(1, k + 1)
        values = {info["first"]: info["variance_first"], info["second"]: info["variance_second"]}
        for offset, key in ((-0.2, "own"), (0.2, "other")):
            ax.bar(x + offset, values[key], 0.4, color=colours[key], label=names[key])
        ax.plot(x, info["residual_explained_variance_ratio"], "k.--", lw=0.8, label="residual PCA (its own ratio)")
        first, second = ("A", "B") if info["first"] == "own" else ("B", "A")
        ax.set_xticks(x, [str(i) for i in x])
        ax.set(xlabel=f"direction of the residual {first} − {second}",
               ylabel="share of the normalised variance", title=f"{first} minus {second}: large for {first}, "
               f"small for {second} if it distinguishes")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    fig.suptitle(f"ModelDiff, α = {summary['alpha']:g}: {names['own']} vs {names['other']} "
                 f"({summary['n_compared']} targets, mean cosine of the datamodels "
                 f"{summary['cosine_own_other']['mean']:.2f})", fontsize=9)
    save_figure(fig, path)


def examples_figure(dataset, summary: dict, ways: dict, candidates: np.ndarray, top: int, path: str) -> None:
    """Direction 1 each way, both ends: the training examples with the largest loadings and the targets with the
    largest residual scores at that end."""
    rows = []
    for way, info in ways.items():
        label = "A − B" if way == "a_minus_b" else "B − A"
        for end, sign in (("+", 1), ("−", -1)):
            direction, scores = info["directions"][0], info["scores"][:, 0]
            train = top_by_weight(sign * direction, min(top, len(direction)))
            targets = candidates[top_by_weight(sign * scores[candidates], min(top, len(candidates)))]
            rows.append((f"{label}\ndir. 1 {end}" + ("\n(removed)" if sign > 0 else ""),
                         [(dataset.x_train[i], int(dataset.y_train[i]), f"v={direction[i]:.2g}") for i in train],
                         [(dataset.x_targets[t], int(dataset.y_targets[t]), f"s={scores[t]:.2f}") for t in targets]))
    n_cols = 2 * top + 2
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(0.95 * n_cols, 1.2 * len(rows) + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (title, train, targets) in enumerate(rows):
        axes[r, 0].text(0.5, 0.5, title, ha="center", va="center", fontsize=7, transform=axes[r, 0].transAxes)
        for offset, cells, colour in ((1, train, "tab:purple"), (top + 2, targets, "tab:blue")):
            for c, (x, y, text) in enumerate(cells):
                ax = axes[r, offset + c]
                show_image(ax, x.reshape(dataset.image_shape))
                ax.set_title(f"y={y}\n{text}", fontsize=6, color=colour)
    fig.suptitle(f"A = {summary['own_algorithm']}, B = {summary['other_algorithm']}, α = {summary['alpha']:g}: "
                 "training examples with the largest loadings at one end of direction 1 (purple) | targets with the "
                 "largest residual scores there (blue)", fontsize=8)
    save_figure(fig, path)


def check_figure(summary: dict, path: str) -> None:
    """Check by retraining: margin change of the group and the random targets for A and B, relative to each
    algorithm's mean full-data margin, per way."""
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    bars = [("group", "targets with the largest scores", 0.0), ("random", "random targets", 1.0)]
    colours = {"own": "tab:blue", "other": "tab:orange"}
    names = {"own": f"A: {summary['own_algorithm']}", "other": f"B: {summary['other_algorithm']}"}
    ticks, labels = [], []
    for w, (way, info) in enumerate(summary["ways"].items()):
        check = info["check"]
        for b, (group, _, _) in enumerate(bars):
            for a, key in enumerate(("own", "other")):
                x = 3 * w + b + (a - 0.5) * 0.4
                stats = check[key][group]["relative"]
                ax.bar(x, stats["mean"], 0.4, yerr=stats["se"] or 0.0, capsize=2, color=colours[key],
                       alpha=1.0 if group == "group" else 0.45, label=names[key] if w == 0 and b == 0 else None)
            ticks.append(3 * w + b)
            first, second = ("A", "B") if info["first"] == "own" else ("B", "A")
            labels.append(f"{first} − {second}: {'group' if group == 'group' else 'random'}")
    deltas = []
    for info in summary["ways"].values():
        first, second = ("A", "B") if info["first"] == "own" else ("B", "A")
        diff = info["check"]["first_minus_second"]["relative"]
        deltas.append(f"{first} − {second}: Δ = {fmt(diff['mean'])} ± {fmt(diff['se'])}")
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(ylabel="margin change / mean full-data margin",
           title=f"α = {summary['alpha']:g}: retrained without {summary['settings']['n_remove']} examples at the "
                 "removed end of direction 1\n(group − random) of the first algorithm minus that of the second: "
                 + "; ".join(deltas))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    save_figure(fig, path)
