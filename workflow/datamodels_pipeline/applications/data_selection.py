"""Data selection with datamodels (DsDm, Engstrom, Feldmann and Madry 2024), checked by training on the selection.

The datamodel of target t predicts its margin for a training subset (boolean
mask m) as ``bias_t + m @ weight[:, t]``. The training subset of size k that
maximises the predicted summed margin over a target set T is therefore the k
training examples with the largest score ``sum_{t in T} weight[i, t]`` (top-k;
the bias does not depend on the subset). DsDm trains on that subset.

Honest check: the target set (test targets, optionally one class) is split
reproducibly into a *selection half*, whose weights choose the subset, and a
*held-out half* that the selection never sees; both are reported, so a gain is
not only in-sample. For every size k, ``n_seeds`` models are trained on the
DsDm selection, ``n_seeds`` on each of ``n_random`` random selections of the
same size, ``n_seeds`` on each of ``n_random`` class-matched random selections
(random examples with the DsDm selection's class counts: does DsDm do more
than shift the class balance?), and ``n_seeds`` on the full training set (the
same model seeds everywhere). The selection is trained as "the full training set minus its
complement" (``retrain.Retrainer``).

The datamodel-predicted mean margin of each selection is reported beside the
measured one. The datamodels were fit on subsets of size alpha |S| only, so
their predictions at sizes far from alpha |S| are extrapolations of a linear
model (on digits they overestimate the margin of small random selections):
they rank selections of one size; they are not calibrated across sizes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from .. import data, fit  # noqa: E402
from ..atomic import atomic_output  # noqa: E402
from ..plots import save_figure  # noqa: E402
from ..seeding import AppIndex, Stream, rng  # noqa: E402
from .retrain import Retrainer, mean_and_se  # noqa: E402
from .sampling import top_by_weight  # noqa: E402

log = logging.getLogger(__name__)
SPLIT_INDEX, RANDOM_INDEX, MATCHED_INDEX = (AppIndex.DATA_SELECTION_SPLIT, AppIndex.DATA_SELECTION_RANDOM,
                                         AppIndex.DATA_SELECTION_MATCHED)
"""``Stream.APPLICATION`` indices of the selection / held-out split of the targets, of the random selections and of
the class-matched random selections."""
HALVES = ("selection", "holdout")
BASELINES = ("random", "matched")
"""Random selections of the same size, and random selections with the DsDm selection's class counts."""
KEY = "applications.data_selection"
PREDICTION_NOTE = ("predicted = bias + sum of the selected examples' weights: a linear model fit on subsets of size "
                   "alpha |S| only, so at other sizes it extrapolates (it ranks selections of one size; it is not "
                   "calibrated across sizes)")


def target_set(target_train_index: np.ndarray, y_targets: np.ndarray, target_class: int | None) -> np.ndarray:
    """Indices of the test targets (not training examples), optionally only those of ``target_class``."""
    test = np.flatnonzero(np.asarray(target_train_index) < 0)
    if len(test) == 0:
        raise ValueError(f"{KEY}: the run has no test targets (data.targets is 'train'); data selection needs "
                         "test targets to select for")
    if target_class is None:
        return test
    chosen = test[np.asarray(y_targets)[test] == target_class]
    if len(chosen) < 2:
        present = sorted(int(c) for c in np.unique(np.asarray(y_targets)[test]))
        raise ValueError(f"{KEY}.target_class = {target_class}: {len(chosen)} test targets of that class (need at "
                         f"least 2); classes present: {present}")
    return chosen


def split_targets(targets: np.ndarray, holdout_fraction: float, generator: np.random.Generator,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A random split of ``targets`` into (selection half, held-out half), each sorted; round(fraction * n) held out."""
    targets = np.asarray(targets, dtype=np.int64)
    n_holdout = int(round(holdout_fraction * len(targets)))
    if not 1 <= n_holdout <= len(targets) - 1:
        raise ValueError(f"{KEY}.holdout_fraction = {holdout_fraction} holds out {n_holdout} of {len(targets)} "
                         "targets; both halves need at least one target")
    order = generator.permutation(targets)
    return np.sort(order[n_holdout:]), np.sort(order[:n_holdout])


def selection_sizes(fractions: list[float], n_train: int) -> list[int]:
    """Selection sizes round(f * n_train), ascending; each must be in [1, n_train - 1] and distinct."""
    sizes = [int(round(f * n_train)) for f in fractions]
    if any(not 1 <= k <= n_train - 1 for k in sizes) or len(set(sizes)) != len(sizes):
        raise ValueError(f"{KEY}.fractions = {list(fractions)} give sizes {sizes} of |S| = {n_train}; each must be a "
                         f"distinct size in [1, {n_train - 1}]")
    return sorted(sizes)


def scores(weight: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Score of each training example: the sum of its raw datamodel weights over ``targets`` (float64)."""
    return np.asarray(weight, dtype=np.float64)[:, np.asarray(targets, dtype=np.int64)].sum(axis=1)


def select(score: np.ndarray, k: int) -> np.ndarray:
    """The DsDm selection of size k: the k highest scores (sorted indices). It maximises the predicted summed
    margin ``sum_t (bias_t + sum_{i in selection} weight[i, t])`` over all subsets of size k."""
    return np.sort(top_by_weight(score, k))


def random_selections(n_train: int, n_random: int, generator: np.random.Generator) -> np.ndarray:
    """``n_random`` random orders of the training set ``[n_random, n_train]``; random selection j of size k is
    the first k of order j (nested across sizes and independent of the size list)."""
    if n_random == 0:
        return np.zeros((0, n_train), np.int64)
    return np.stack([generator.permutation(n_train) for _ in range(n_random)])


def class_orders(y_train: np.ndarray, n_random: int, generator: np.random.Generator) -> list[dict[int, np.ndarray]]:
    """Per draw, a random order of each class's training examples (classes in increasing order)."""
    classes = np.unique(y_train)
    return [{int(c): generator.permutation(np.flatnonzero(y_train == c)) for c in classes} for _ in range(n_random)]


def matched_selection(order: dict[int, np.ndarray], counts: list[int]) -> np.ndarray:
    """A random selection with ``counts[c]`` examples of each class c: the first counts[c] of that class's order."""
    parts = [order[c][:n] for c, n in enumerate(counts) if n]
    if any(n > len(order.get(c, ())) for c, n in enumerate(counts)):
        raise ValueError(f"class counts {counts} exceed the training examples of some class")
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def predicted_margin(weight: np.ndarray, bias: np.ndarray, selected: np.ndarray, targets: np.ndarray) -> float:
    """Datamodel-predicted mean margin over ``targets`` of a model trained on ``selected``."""
    w = np.asarray(weight, dtype=np.float64)[np.asarray(selected, dtype=np.int64)][:, targets]
    return float((np.asarray(bias, dtype=np.float64)[targets] + w.sum(axis=0)).mean())


def per_model_stats(margins: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean margin and accuracy (margin > 0) over ``targets`` per model: ``[..., n_targets]`` -> two ``[...]``."""
    chosen = np.asarray(margins, dtype=np.float64)[..., np.asarray(targets, dtype=np.int64)]
    return chosen.mean(axis=-1), (chosen > 0).mean(axis=-1)


def difference(a: dict, b: dict) -> dict:
    """a - b of two independent estimates; se = sqrt(se_a^2 + se_b^2) (None when either is None)."""
    se = None if a["se"] is None or b["se"] is None else float(np.hypot(a["se"], b["se"]))
    return {"mean": a["mean"] - b["mean"], "se": se}


def measured(margins: np.ndarray, targets: np.ndarray) -> dict:
    """Mean margin and accuracy of one trained selection (``margins [n_seeds, n_targets]``): mean and se over seeds."""
    margin, accuracy = per_model_stats(margins, targets)
    return {"margin": mean_and_se(margin), "accuracy": mean_and_se(accuracy)}


def measured_random(margins: np.ndarray, targets: np.ndarray) -> dict:
    """The same for the random selections (``[n_random, n_seeds, n_targets]``): mean over seeds per draw, then
    mean and se over draws (the se covers both the draw and the seed noise)."""
    margin, accuracy = per_model_stats(margins, targets)
    return {"margin": mean_and_se(margin.mean(axis=1)), "accuracy": mean_and_se(accuracy.mean(axis=1))}


def label_counts(labels: np.ndarray, n_classes: int) -> list[int]:
    """Examples per class 0..n_classes-1."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(int).tolist()


def selections(weight: np.ndarray, y_train: np.ndarray, n_classes: int, selection_targets: np.ndarray,
               sizes: list[int], orders: np.ndarray, matched_orders: list[dict[int, np.ndarray]] | None,
               ) -> dict[str, dict[int, list[np.ndarray]]]:
    """Every selection to train, by method and size: DsDm (one), random (one per order), and class-matched random
    (one per class order, with the DsDm selection's class counts; absent when ``matched_orders`` is None)."""
    score = scores(weight, selection_targets)
    dsdm = {k: [select(score, k)] for k in sizes}
    out = {"dsdm": dsdm, "random": {k: [np.sort(order[:k]) for order in orders] for k in sizes}}
    if matched_orders is not None:
        out["matched"] = {k: [matched_selection(order, label_counts(y_train[dsdm[k][0]], n_classes))
                              for order in matched_orders] for k in sizes}
    return out


def evaluate_sizes(weight: np.ndarray, bias: np.ndarray, y_train: np.ndarray, n_classes: int,
                   halves: dict[str, np.ndarray], sizes: list[int], chosen: dict[str, dict[int, list[np.ndarray]]],
                   retrainer: Retrainer) -> tuple[dict, list[dict]]:
    """Train on the full set and on every selection; the per-size results and the table rows."""
    n_train = len(y_train)
    methods = [m for m in ("dsdm", *BASELINES) if m in chosen]
    full_set = np.arange(n_train)
    reference = retrainer.reference()                                                # [n_seeds, n_targets]
    keys = [(m, k, j) for k in sizes for m in methods for j in range(len(chosen[m][k]))]
    trained = retrainer.margins([np.setdiff1d(full_set, chosen[m][k][j]) for m, k, j in keys])
    margins = {key: trained[i] for i, key in enumerate(keys)}                        # [n_seeds, n_targets] each
    rows = [_row("full", n_train, -1, full_set, reference, weight, bias, halves, y_train, n_classes)]
    rows += [_row(m, k, j if m != "dsdm" else -1, chosen[m][k][j], margins[m, k, j], weight, bias, halves, y_train,
                  n_classes) for m, k, j in keys]
    full = {half: {**measured(reference, t), "predicted_margin": predicted_margin(weight, bias, full_set, t)}
            for half, t in halves.items()}
    per_size = {}
    for k in sizes:
        result: dict = {"size": k, "fraction_of_train": k / n_train}
        for half, t in halves.items():
            stats = {"dsdm": measured(margins["dsdm", k, 0], t)}
            for m in methods[1:]:
                stats[m] = measured_random(np.stack([margins[m, k, j] for j in range(len(chosen[m][k]))]), t)
            result[half] = {m: {**stats[m], "predicted_margin": float(np.mean(
                [predicted_margin(weight, bias, s, t) for s in chosen[m][k]]))} for m in methods}
            for m in methods[1:]:
                result[half][f"gain_over_{m}"] = {q: difference(stats["dsdm"][q], stats[m][q])
                                                  for q in ("margin", "accuracy")}
            result[half]["gain_over_full"] = {q: difference(stats["dsdm"][q], full[half][q])
                                              for q in ("margin", "accuracy")}
        result["dsdm_class_counts"] = label_counts(y_train[chosen["dsdm"][k][0]], n_classes)
        result["random_class_counts_mean"] = np.mean([label_counts(y_train[s], n_classes) for s in
                                                      chosen["random"][k]], axis=0).round(2).tolist()
        per_size[str(k)] = result
    return {"full": full, "per_size": per_size, "train_class_counts": label_counts(y_train, n_classes)}, rows


def _row(method: str, size: int, draw: int, selected: np.ndarray, margins: np.ndarray, weight: np.ndarray,
         bias: np.ndarray, halves: dict[str, np.ndarray], y_train: np.ndarray, n_classes: int) -> dict:
    """One table row: a trained selection, its measured and predicted mean margin and accuracy on both halves."""
    row = {"method": method, "size": int(size), "draw": int(draw), "n_seeds": int(margins.shape[0])}
    for half, t in halves.items():
        margin, accuracy = per_model_stats(margins, t)
        row[f"{half}_margin"] = float(margin.mean())
        row[f"{half}_accuracy"] = float(accuracy.mean())
        row[f"{half}_predicted_margin"] = predicted_margin(weight, bias, selected, t)
    row["class_counts"] = label_counts(y_train[selected], n_classes)
    row["selected"] = np.asarray(selected, dtype=np.int64).tolist()
    return row


def _write_table(path: str, rows: list[dict]) -> None:
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    types = {"class_counts": pa.list_(pa.int64()), "selected": pa.list_(pa.int64())}
    table = pa.table({name: pa.array(values, type=types.get(name)) for name, values in columns.items()})
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)


def _value(stat: dict) -> tuple[float, float]:
    return stat["mean"], 0.0 if stat["se"] is None else stat["se"]


def curve_figure(results: dict, n_train: int, target_label: str, alpha: float, path: str | Path) -> None:
    """Held-out target mean margin and accuracy against selection size (DsDm, random, class-matched, full), the
    selection half faintly, the predicted margins dotted, and the class composition of the DsDm selections."""
    sizes = [results["per_size"][k]["size"] for k in results["per_size"]]
    per_size = list(results["per_size"].values())
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, metric, label in ((axes[0], "margin", "mean target margin"), (axes[1], "accuracy", "target accuracy")):
        for half, style in (("holdout", {"lw": 2}), ("selection", {"lw": 1, "alpha": 0.45, "ls": "--"})):
            tag = "held-out half" if half == "holdout" else "selection half"
            for method, colour, name in (("dsdm", "tab:blue", "DsDm"), ("random", "tab:orange", "random"),
                                         ("matched", "tab:green", "random, DsDm's class counts")):
                if method not in per_size[0][half] or (half == "selection" and method == "matched"):
                    continue
                mean, se = zip(*(_value(r[half][method][metric]) for r in per_size))
                ax.errorbar(sizes, mean, yerr=se, marker="o", capsize=3, color=colour, label=f"{name}, {tag}", **style)
            full_mean, full_se = _value(results["full"][half][metric])
            ax.axhline(full_mean, color="black", label=f"full training set, {tag}", **style)
            if half == "holdout" and full_se:
                ax.axhspan(full_mean - full_se, full_mean + full_se, color="black", alpha=0.08)
        if metric == "margin":
            predicted = [r["holdout"]["dsdm"]["predicted_margin"] for r in per_size]
            ax.plot(sizes, predicted, ls=":", marker="x", color="tab:blue", label="DsDm predicted, held-out half")
            predicted = [r["holdout"]["random"]["predicted_margin"] for r in per_size]
            ax.plot(sizes, predicted, ls=":", marker="x", color="tab:orange", label="random predicted, held-out half")
            ax.axvline(alpha * n_train, color="grey", lw=0.8, ls=":")
        ax.set(xlabel=f"selected training examples (of {n_train})", ylabel=label, title=f"{label} ({target_label})")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.36, 0.02), ncol=3, fontsize=7)
    counts = np.array([r["dsdm_class_counts"] for r in per_size] + [results["train_class_counts"]], dtype=np.float64)
    share = counts / counts.sum(axis=1, keepdims=True)
    bottom = np.zeros(len(counts))
    colours = plt.cm.tab10(np.arange(counts.shape[1]) % 10)
    x = np.arange(len(counts))
    for c in range(counts.shape[1]):
        axes[2].bar(x, share[:, c], bottom=bottom, color=colours[c], label=str(c))
        bottom += share[:, c]
    axes[2].set_xticks(x, [str(k) for k in sizes] + [f"all {n_train}"])
    axes[2].set(xlabel="selection size (last bar: the full training set)", ylabel="share of the selection",
                ylim=(0, 1), title="class composition of the DsDm selections")
    axes[2].legend(fontsize=7, title="class", ncol=2, bbox_to_anchor=(1.0, 1.0), loc="upper left")
    fig.suptitle(f"data selection (DsDm) with the α = {alpha:g} datamodels, verified by training", fontsize=10)
    save_figure(fig, path)


def run(datamodels_path: str, data_path: str, alpha: float, settings: dict, recipe: dict, seed: int, threads: int,
        table_path: str, summary_path: str, curve_path: str) -> None:
    """Choose the target halves, select, train on every selection, and write the table, summary and figure."""
    import torch

    torch.set_num_threads(max(1, threads))
    start = time.perf_counter()
    dataset = data.load(data_path)
    datamodels = fit.read(datamodels_path)
    weight, bias = datamodels.weight, datamodels.bias
    targets = target_set(dataset.target_train_index, dataset.y_targets, settings["target_class"])
    selection, holdout = split_targets(targets, settings["holdout_fraction"],
                                       rng(seed, Stream.APPLICATION, alpha, SPLIT_INDEX))
    halves = {"selection": selection, "holdout": holdout}
    sizes = selection_sizes(settings["fractions"], dataset.n_train)
    orders = random_selections(dataset.n_train, settings["n_random"],
                               rng(seed, Stream.APPLICATION, alpha, RANDOM_INDEX))
    matched_orders = (class_orders(dataset.y_train, settings["n_random"],
                                   rng(seed, Stream.APPLICATION, alpha, MATCHED_INDEX))
                      if settings["class_matched"] else None)
    chosen = selections(weight, dataset.y_train, dataset.n_classes, selection, sizes, orders, matched_orders)
    retrainer = Retrainer(dataset, recipe, seed, settings["n_seeds"])
    results, rows = evaluate_sizes(weight, bias, dataset.y_train, dataset.n_classes, halves, sizes, chosen, retrainer)
    _write_table(table_path, rows)
    baselines = [m for m in BASELINES if m in chosen]
    gains = {f"gain_over_{m}": {half: {metric: {str(k): results["per_size"][str(k)][half][f"gain_over_{m}"][metric]
                                                 for k in sizes} for metric in ("margin", "accuracy")}
                                for half in HALVES} for m in baselines}
    target_class = settings["target_class"]
    target_label = "all test targets" if target_class is None else f"test targets of class {target_class}"
    summary = {
        "alpha": alpha, "target_class": settings["target_class"], "target_set": target_label,
        "n_targets": int(len(targets)), "n_selection_targets": int(len(selection)),
        "n_holdout_targets": int(len(holdout)), "selection_targets": selection.tolist(),
        "holdout_targets": holdout.tolist(), "n_train": dataset.n_train, "sizes": sizes,
        "n_seeds": settings["n_seeds"], "n_random": settings["n_random"], "baselines": baselines,
        **gains, **results, "prediction_note": PREDICTION_NOTE,
        "n_models_trained": retrainer.n_models_trained, "seconds": round(time.perf_counter() - start, 1),
    }
    with atomic_output(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    curve_figure(results, dataset.n_train, target_label, alpha, curve_path)
    full = results["full"]["holdout"]
    log.info("full training set, held-out half: margin %.3f, accuracy %.3f", full["margin"]["mean"],
             full["accuracy"]["mean"])
    for k in sizes:
        r = results["per_size"][str(k)]["holdout"]
        log.info("size %d, held-out half: DsDm margin %.3f acc %.3f (predicted %.3f); random margin %.3f acc %.3f "
                 "(predicted %.3f); gain margin %+.3f, accuracy %+.3f", k, r["dsdm"]["margin"]["mean"],
                 r["dsdm"]["accuracy"]["mean"], r["dsdm"]["predicted_margin"], r["random"]["margin"]["mean"],
                 r["random"]["accuracy"]["mean"], r["random"]["predicted_margin"],
                 r["gain_over_random"]["margin"]["mean"], r["gain_over_random"]["accuracy"]["mean"])
        if "gain_over_matched" in r:
            log.info("size %d, held-out half: class-matched random margin %.3f acc %.3f; DsDm gain margin %+.3f, "
                     "accuracy %+.3f", k, r["matched"]["margin"]["mean"], r["matched"]["accuracy"]["mean"],
                     r["gain_over_matched"]["margin"]["mean"], r["gain_over_matched"]["accuracy"]["mean"])
    log.info("data selection (alpha=%s, %s): %d sizes, %d models trained in %.0f s", alpha, target_label, len(sizes),
             retrainer.n_models_trained, summary["seconds"])
