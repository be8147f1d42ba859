"""Backdoor detection from train-set datamodels (Khaddaj et al., "Rethinking Backdoor Attacks", ICML 2023).

A backdoor is a feature (the trigger) that a small group of training examples
share and that is, for the model, the strongest reason to predict their label:
each poisoned example's margin rises when the *other* poisoned examples are in
the training set. In the train-set datamodel matrix ``A`` (``A[i, j]``: effect
of training example i on training example j's margin) they form a block of
large mutual weights. Detection looks for the ``s``-by-``s`` principal
submatrix of largest sum of the symmetrised matrix, for several sizes ``s``,
by random-restart local search, and scores every example by how often the
searches select it (``sum_s`` selections / s, as the paper's code). The
diagonal is set to ``-rowsum * s / N`` (the paper's correction): an example
that raises *every* margin a little (a typical, helpful example) is held
back, so that the search prefers examples that support the group more than
they support a random group of the same size. The spectral alternative
scores each example by its loading on the top eigenvector of the symmetrised
matrix. All of it is NumPy on an ``[N, N]`` matrix (N = 1,200 by default).

Check by retraining: models are trained on the full backdoored training set,
without the flagged examples, without the true poisons (oracle) and without a
random set of the flagged size (same model seeds for every set); each reports
its attack success rate (triggered test images of other classes classified as
the target class) and its clean test accuracy.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import data, fit
from ..atomic import atomic_output
from ..seeding import AppIndex, Stream, rng
from .backdoor import read_plant_info
from .figures import fmt
from .retrain import Retrainer, mean_and_se
from .sampling import top_by_weight

log = logging.getLogger(__name__)
SEARCH_INDEX, RANDOM_INDEX = AppIndex.BACKDOOR_SEARCH, AppIndex.BACKDOOR_RANDOM
"""``Stream.APPLICATION`` indices of the search's random restarts and of the random removal set (the flagged
set's size); ``backdoor`` draws the poisons with 30."""


def symmetrise(weight: np.ndarray) -> np.ndarray:
    """``(A + A^T) / 2`` with a zero diagonal, in float64 (``weight`` must be square ``[N, N]``)."""
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 2 or weight.shape[0] != weight.shape[1]:
        raise ValueError(f"train-set datamodels must be a square [n_train, n_train] matrix, got {weight.shape}")
    sym = (weight + weight.T) / 2.0
    np.fill_diagonal(sym, 0.0)
    return sym


def penalised(sym: np.ndarray, size: int, penalty: float = 1.0) -> np.ndarray:
    """The matrix searched for size ``s``: ``sym`` with its diagonal set to ``-penalty * rowsum(sym) * s / N``.

    With ``penalty`` 1 this is the paper's correction: the sum of a principal
    submatrix S is the within-group support minus, per member, a share of the
    support it gives everyone (its row sum scaled to a group of size s), so
    examples that help every margin alike are held back and a group must
    support itself more than it supports the rest. (Each pair counts twice in
    the sum, so ``penalty`` 2 would cancel uniform support exactly; 0 is no
    correction.)
    """
    n = sym.shape[0]
    out = np.array(sym, dtype=np.float64, copy=True)
    np.fill_diagonal(out, 0.0)
    rowsum = out.sum(axis=1)
    np.fill_diagonal(out, -penalty * rowsum * size / n)
    return out


def submatrix_sum(matrix: np.ndarray, members: np.ndarray) -> float:
    """Sum of the principal submatrix of ``matrix`` on ``members`` (the search's objective)."""
    members = np.asarray(members, dtype=np.int64)
    return float(matrix[np.ix_(members, members)].sum())


def local_search(matrix: np.ndarray, size: int, n_restarts: int, generator: np.random.Generator,
                 max_passes: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Random-restart local search for the max-sum ``size`` x ``size`` principal submatrix of a symmetric matrix.

    Each restart starts from a random set of ``size`` examples. A pass makes
    up to ``min(size, N - size)`` swaps in a row, each exchanging the worst
    member (smallest contribution ``2 g_u - B_uu``, with ``g = B[:, S].sum(1)``)
    for the best non-member (largest ``2 g_v + B_vv``), among examples not yet
    moved in this pass, *even when a swap lowers the sum*; the pass then keeps
    the set after its best prefix of swaps (Kernighan-Lin, as the paper's
    code: plain greedy swaps stop at the first set where no single worst-for-
    best swap helps, often a group of generally helpful examples). Passes
    repeat while they improve the sum. The exact change of one swap is
    ``(2 g_v + B_vv) - (2 g_u - B_uu) - 2 B_uv``; ``g`` is updated in O(N) per
    swap, all restarts step together. Returns the members ``[n_restarts,
    size]`` (sorted) and each restart's objective ``[n_restarts]``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.shape[0]
    if not 1 <= size < n:
        raise ValueError(f"submatrix size {size} must be in [1, {n - 1}]")
    if n_restarts < 1:
        raise ValueError(f"n_restarts = {n_restarts} must be at least 1")
    diag = np.diag(matrix)
    tol = 1e-9 * (1.0 + np.abs(matrix).sum(axis=1).max())
    member = np.zeros((n_restarts, n), dtype=bool)
    start = np.argsort(generator.random((n_restarts, n)), axis=1)[:, :size]
    member[np.arange(n_restarts)[:, None], start] = True
    active = np.arange(n_restarts)
    for _ in range(max_passes):
        if not len(active):
            break
        current = member[active].copy()
        gain = current.astype(np.float64) @ matrix              # [R, N]; symmetric: g_k = sum_{j in S} B[k, j]
        moved = np.zeros_like(current)
        rows = np.arange(len(active))
        total = np.zeros(len(active))
        best_total, best = np.zeros(len(active)), current.copy()
        for _step in range(min(size, n - size)):
            worst = np.where(current & ~moved, 2.0 * gain - diag, np.inf).argmin(axis=1)
            add = np.where(~current & ~moved, 2.0 * gain + diag, -np.inf).argmax(axis=1)
            total += (2.0 * gain[rows, add] + diag[add]) - (2.0 * gain[rows, worst] - diag[worst]) \
                - 2.0 * matrix[worst, add]
            current[rows, worst], current[rows, add] = False, True
            moved[rows, worst], moved[rows, add] = True, True
            gain += matrix[add] - matrix[worst]
            better = total > best_total + tol
            best_total[better] = total[better]
            best[better] = current[better]
        member[active] = best
        active = active[best_total > tol]
    members = np.stack([np.flatnonzero(m) for m in member])
    objective = np.einsum("ri,ri->r", member.astype(np.float64), member.astype(np.float64) @ matrix)
    return members, objective


def search_scores(weight: np.ndarray, sizes: list[int], n_restarts: int, generator: np.random.Generator,
                  penalty: float = 1.0) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, dict]]:
    """Score of each example: ``sum_s (fraction of restarts of size s that select it) / s``.

    Dividing by s makes every size contribute the same total (1 per restart),
    so small sizes, which pick only the core of the strongest group, are not
    outweighed by large ones. Returns the scores ``[N]``, per size the
    selection frequency ``[N]``, and per size the search's objective values and
    its best set. ``weight`` is the train-set datamodel matrix (symmetrised here).
    """
    sym = symmetrise(weight)
    n = sym.shape[0]
    score = np.zeros(n)
    frequency, runs = {}, {}
    for size in sizes:
        members, objective = local_search(penalised(sym, size, penalty), size, n_restarts, generator)
        counts = np.bincount(members.ravel(), minlength=n)
        frequency[size] = counts / n_restarts
        score += frequency[size] / size
        best = int(np.argmax(objective))
        runs[size] = {"objective": objective, "best_members": members[best],
                      "n_distinct_solutions": int(len({tuple(m) for m in members.tolist()}))}
    return score, frequency, runs


def spectral_scores(sym: np.ndarray) -> tuple[np.ndarray, float]:
    """|loading| of every example on the eigenvector of the largest (algebraic) eigenvalue, and that eigenvalue."""
    values, vectors = np.linalg.eigh(sym)
    return np.abs(vectors[:, -1]), float(values[-1])


def n_flagged(n_train: int, flag_fraction: float) -> int:
    """How many examples the defender flags: ``round(flag_fraction * n_train)``, at least 1, less than n_train."""
    return int(min(max(1, round(flag_fraction * n_train)), n_train - 1))


def flag(score: np.ndarray, n_flag: int) -> np.ndarray:
    """The ``n_flag`` examples of largest score (ties: lower index first), as a sorted index array."""
    return np.sort(top_by_weight(np.asarray(score, dtype=np.float64), n_flag))


def detection_metrics(score: np.ndarray, flagged: np.ndarray, poisoned: np.ndarray) -> dict:
    """Precision and recall of the flagged set and average precision of the score against the planted poisons.

    With no poisons every metric but ``n_flagged`` is None (nothing to find).
    """
    from sklearn.metrics import average_precision_score

    poisoned = np.asarray(poisoned, dtype=np.int64)
    hits = int(np.isin(flagged, poisoned).sum())
    if len(poisoned) == 0:
        return {"n_flagged": int(len(flagged)), "n_poisoned_flagged": 0, "precision": None, "recall": None,
                "average_precision": None}
    truth = np.zeros(len(score), dtype=bool)
    truth[poisoned] = True
    return {"n_flagged": int(len(flagged)), "n_poisoned_flagged": hits,
            "precision": hits / len(flagged) if len(flagged) else None, "recall": hits / len(poisoned),
            "average_precision": float(average_precision_score(truth, score))}


def precision_recall_curve(score: np.ndarray, poisoned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of the top-k examples by score, for k = 1 .. N (ties broken by index, as ``flag``)."""
    truth = np.zeros(len(score), dtype=bool)
    truth[np.asarray(poisoned, dtype=np.int64)] = True
    order = top_by_weight(np.asarray(score, dtype=np.float64), len(score))
    found = np.cumsum(truth[order])
    k = np.arange(1, len(score) + 1)
    return found / k, found / max(1, truth.sum())


# ---------------------------------------------------------------- retraining check and outputs


def removal_sets(flagged: np.ndarray, poisoned: np.ndarray, n_train: int, generator: np.random.Generator
                 ) -> dict[str, np.ndarray]:
    """The retrained removal sets by name: none, the flagged, the true poisons (only when there are some) and a
    random set of the flagged size."""
    sets = {"full": np.zeros(0, dtype=np.int64), "flagged": np.asarray(flagged, dtype=np.int64)}
    if len(poisoned):
        sets["oracle"] = np.asarray(poisoned, dtype=np.int64)
    sets["random"] = np.sort(generator.choice(n_train, size=len(flagged), replace=False)).astype(np.int64)
    return sets


def seed_stats(per_seed: np.ndarray) -> dict:
    """Mean over seeds, its standard error (None with one seed) and the per-seed values."""
    return {**mean_and_se(per_seed), "per_seed": [float(v) for v in np.asarray(per_seed, dtype=np.float64)]}


def attack_stats(margins: np.ndarray, clean: np.ndarray, triggered: np.ndarray, has_attack: bool) -> dict:
    """Clean accuracy (share of clean test targets with margin > 0) and attack success rate (share of triggered
    copies with margin > 0, i.e. classified as the target class) per seed; margins ``[n_seeds, n_targets]``."""
    out = {"clean_accuracy": seed_stats((margins[:, clean] > 0).mean(axis=1))}
    out["attack_success_rate"] = (seed_stats((margins[:, triggered] > 0).mean(axis=1))
                                  if has_attack and len(triggered) else None)
    return out


def retrain_check(dataset: data.Dataset, plant_info: dict, sets: dict[str, np.ndarray], recipe: dict, seed: int,
                  n_seeds: int) -> tuple[dict, int]:
    """Retrain ``n_seeds`` models per removal set (same seeds for every set); statistics per set and models trained.

    Clean targets: the data set's test targets before the appended triggered copies.
    """
    first = plant_info["triggered_first"]
    clean = np.flatnonzero(dataset.target_train_index[:first] < 0)
    triggered = np.arange(first, dataset.n_targets)
    retrainer = Retrainer(dataset, recipe, seed, n_seeds)
    names = list(sets)
    margins = retrainer.margins([sets[name] for name in names])
    stats = {}
    for i, name in enumerate(names):
        stats[name] = {"n_removed": int(len(sets[name])),
                       "n_poisoned_removed": int(np.isin(sets[name], plant_info["poisoned"]).sum()),
                       **attack_stats(margins[i], clean, triggered, plant_info["n_poison"] > 0)}
    return stats, retrainer.n_models_trained


def _write_table(path: str, dataset: data.Dataset, plant_info: dict, score: np.ndarray, flagged: np.ndarray,
                 spectral: np.ndarray, spectral_flagged: np.ndarray, frequency: dict[int, np.ndarray]) -> None:
    n = dataset.n_train
    poisoned = np.zeros(n, dtype=bool)
    poisoned[plant_info["poisoned"]] = True
    original = dataset.y_train.astype(np.int64).copy()
    original[plant_info["poisoned"]] = plant_info["poisoned_original_label"]
    columns = {
        "train_index": pa.array(np.arange(n, dtype=np.int64)),
        "label": pa.array(dataset.y_train.astype(np.int64)),
        "original_label": pa.array(original),
        "poisoned": pa.array(poisoned),
        "score": pa.array(score.astype(np.float64)),
        "rank": pa.array(_ranks(score)),
        "flagged": pa.array(np.isin(np.arange(n), flagged)),
        "spectral_score": pa.array(spectral.astype(np.float64)),
        "spectral_flagged": pa.array(np.isin(np.arange(n), spectral_flagged)),
        **{f"selected_fraction_s{size}": pa.array(freq.astype(np.float64)) for size, freq in frequency.items()},
    }
    with atomic_output(path) as tmp:
        pq.write_table(pa.table(columns), tmp)


def _ranks(score: np.ndarray) -> np.ndarray:
    """1-based rank of every example by decreasing score (ties: lower index first, as the flagging)."""
    ranks = np.empty(len(score), dtype=np.int64)
    ranks[top_by_weight(np.asarray(score, dtype=np.float64), len(score))] = np.arange(1, len(score) + 1)
    return ranks


def run(datamodels_path: str, data_path: str, data_info_path: str, alpha: float, settings: dict, recipe: dict,
        seed: int, threads: int, table_path: str, summary_path: str, detection_path: str, attack_path: str) -> None:
    """The rule ``backdoor``: search the train-set datamodels, score the flagged set, retrain, write the outputs."""
    import torch

    torch.set_num_threads(max(1, threads))
    start = time.perf_counter()
    dataset = data.load(data_path)
    plant_info = read_plant_info(data_info_path)
    weight = fit.read(datamodels_path).weight
    if weight.shape != (dataset.n_train, dataset.n_train):
        raise ValueError(f"train-set datamodels {weight.shape} do not match the {dataset.n_train} training examples")
    poisoned = np.asarray(plant_info["poisoned"], dtype=np.int64)
    sym = symmetrise(weight)
    n_flag = n_flagged(dataset.n_train, settings["flag_fraction"])
    search_start = time.perf_counter()
    score, frequency, runs = search_scores(weight, settings["sizes"], settings["n_restarts"],
                                           rng(seed, Stream.APPLICATION, alpha, SEARCH_INDEX), settings["penalty"])
    search_seconds = time.perf_counter() - search_start
    flagged = flag(score, n_flag)
    spectral, eigenvalue = spectral_scores(sym)
    spectral_flagged = flag(spectral, n_flag)
    sets = removal_sets(flagged, poisoned, dataset.n_train, rng(seed, Stream.APPLICATION, alpha, RANDOM_INDEX))
    retrained, n_models = retrain_check(dataset, plant_info, sets, recipe, seed, settings["n_seeds"])
    _write_table(table_path, dataset, plant_info, score, flagged, spectral, spectral_flagged, frequency)
    per_size = {str(size): {"best_objective": float(r["objective"].max()),
                            "median_objective": float(np.median(r["objective"])),
                            "n_distinct_solutions": r["n_distinct_solutions"],
                            "best_set_poisoned_fraction": (float(np.isin(r["best_members"], poisoned).mean())
                                                           if len(poisoned) else None),
                            "poisoned_selected_fraction": (float(frequency[size][poisoned].mean())
                                                           if len(poisoned) else None),
                            "clean_selected_fraction": float(np.delete(frequency[size], poisoned).mean())}
                for size, r in runs.items()}
    flagged_labels = np.bincount(dataset.y_train[flagged], minlength=dataset.n_classes)
    summary = {
        "alpha": alpha, "n_train": dataset.n_train, "target_class": plant_info["target_class"],
        "trigger_size": plant_info["trigger_size"], "n_poison": plant_info["n_poison"],
        "n_triggered_targets": plant_info["n_triggered_targets"], "settings": settings,
        "n_flagged": n_flag, "precision_at_random": plant_info["n_poison"] / dataset.n_train,
        "detection": {"search": detection_metrics(score, flagged, poisoned),
                      "spectral": {**detection_metrics(spectral, spectral_flagged, poisoned),
                                   "top_eigenvalue": eigenvalue}},
        "per_size": per_size, "search_seconds": round(search_seconds, 2),
        "flagged": flagged.tolist(),
        "flagged_label_counts": {str(c): int(v) for c, v in enumerate(flagged_labels) if v},
        "retraining": {"n_seeds": settings["n_seeds"], "sets": retrained}, "n_models_trained": n_models,
        "seconds": round(time.perf_counter() - start, 1),
    }
    with atomic_output(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    detection_figure(dataset, score, spectral, flagged, poisoned, summary, alpha, detection_path)
    attack_figure(retrained, summary, alpha, attack_path)
    search, spec = summary["detection"]["search"], summary["detection"]["spectral"]
    log.info("backdoor (alpha=%s): %d poisons, %d flagged; search precision %s recall %s AP %s; spectral precision "
             "%s recall %s AP %s (search %.1f s)", alpha, len(poisoned), n_flag, *(fmt(search[k]) for k in
             ("precision", "recall", "average_precision")), *(fmt(spec[k]) for k in
             ("precision", "recall", "average_precision")), search_seconds)
    for name, stats in retrained.items():
        asr = stats["attack_success_rate"]
        log.info("retrained without %s (%d removed, %d poisons): clean accuracy %.3f, attack success %s", name,
                 stats["n_removed"], stats["n_poisoned_removed"], stats["clean_accuracy"]["mean"],
                 fmt(asr["mean"] if asr else None))
    log.info("%d models in %.1f s", n_models, summary["seconds"])


# ---------------------------------------------------------------- figures

SET_LABELS = {"full": "full poisoned S", "flagged": "S − flagged", "oracle": "S − true poisons\n(oracle)",
              "random": "S − random\n(flagged size)"}
SHOW_FLAGGED = 12
"""Top-scored training examples drawn under the detection panels."""


def detection_figure(dataset: data.Dataset, score: np.ndarray, spectral: np.ndarray, flagged: np.ndarray,
                     poisoned: np.ndarray, summary: dict, alpha: float, path: str) -> None:
    """Score distributions (poisoned vs clean) of both detectors, their precision-recall curves, and the
    top-scored training examples (red title: a planted poison)."""
    import matplotlib.pyplot as plt

    from ..plots import save_figure
    from .figures import show_image

    fig = plt.figure(figsize=(14, 6.2))
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.2, 1.6])
    axes = top.subplots(1, 3)
    is_poison = np.zeros(dataset.n_train, dtype=bool)
    is_poison[poisoned] = True
    threshold = np.sort(score)[::-1][len(flagged) - 1]
    for ax, values, name in ((axes[0], score, "max-sum submatrix score"), (axes[1], spectral,
                                                                           "spectral score (|top eigenvector|)")):
        bins = np.linspace(float(values.min()), float(values.max()) + 1e-12, 41)
        ax.hist(values[~is_poison], bins=bins, color="grey", alpha=0.7, label=f"clean ({int((~is_poison).sum())})")
        if is_poison.any():
            ax.hist(values[is_poison], bins=bins, color="tab:red", alpha=0.7,
                    label=f"poisoned ({int(is_poison.sum())})")
        ax.set_yscale("log")
        ax.set(xlabel=name, ylabel="training examples", title=name)
    axes[0].axvline(threshold, color="black", lw=1, ls="--", label=f"flag threshold (top {len(flagged)})")
    for ax in axes[:2]:
        ax.legend(fontsize=8)
    pr = axes[2]
    if is_poison.any():
        for values, name, key in ((score, "max-sum submatrix", "search"), (spectral, "spectral", "spectral")):
            precision, recall = precision_recall_curve(values, poisoned)
            stats = summary["detection"][key]
            pr.plot(recall, precision, label=f"{name} (AP {fmt(stats['average_precision'])})")
            pr.scatter([stats["recall"]], [stats["precision"]], s=25, zorder=3)
        pr.axhline(summary["precision_at_random"], color="grey", lw=0.8, ls=":", label="chance")
    else:
        pr.text(0.5, 0.5, "no poisons planted\n(applications.backdoor.n_poison = 0)", ha="center", va="center",
                transform=pr.transAxes)
    pr.set(xlabel="recall (planted poisons found)", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.05),
           title=f"top-k by score (dots: the {len(flagged)} flagged)")
    pr.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    top.suptitle(f"backdoor detection, α = {alpha:g} train-set datamodels: {summary['n_poison']} poisons "
                 f"(target class {summary['target_class']}, trigger {summary['trigger_size']}x"
                 f"{summary['trigger_size']}), {len(flagged)} flagged", fontsize=10)
    order = top_by_weight(score, min(SHOW_FLAGGED, dataset.n_train))
    cells = bottom.subplots(1, len(order), squeeze=False)[0]
    for ax, i in zip(cells, order):
        show_image(ax, dataset.x_train[i].reshape(dataset.image_shape))
        ax.set_title(f"#{i} y={dataset.y_train[i]}\n{'poison' if is_poison[i] else 'clean'}", fontsize=7,
                     color="tab:red" if is_poison[i] else "black")
        ax.axis("off")
    bottom.suptitle("highest-scored training examples (as trained: trigger and relabelled class)", fontsize=8)
    save_figure(fig, path)


def attack_figure(retrained: dict, summary: dict, alpha: float, path: str) -> None:
    """Attack success rate and clean accuracy of the models retrained on each training set (error bars: s.e.)."""
    import matplotlib.pyplot as plt

    from ..plots import save_figure

    names = list(retrained)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    for ax, key, label in ((axes[0], "attack_success_rate", "attack success rate\n(triggered test images → target)"),
                           (axes[1], "clean_accuracy", "clean test accuracy")):
        stats = [retrained[n][key] for n in names]
        if all(s is None for s in stats):
            ax.text(0.5, 0.5, "no poisons planted: no attack", ha="center", va="center", transform=ax.transAxes)
        means = [np.nan if s is None else s["mean"] for s in stats]
        errors = [0.0 if s is None or s["se"] is None else s["se"] for s in stats]
        colours = ["tab:red", "tab:green", "tab:blue", "grey"][:len(names)]
        ax.bar(range(len(names)), means, yerr=errors, capsize=3, color=colours)
        for x, m in enumerate(means):
            if np.isfinite(m):
                ax.text(x, m + 0.01, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), [f"{SET_LABELS[n]}\n−{retrained[n]['n_removed']} "
                                          f"({retrained[n]['n_poisoned_removed']} poisons)" for n in names], fontsize=7)
        ax.set(ylabel=label, ylim=(0, 1.08))
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"α = {alpha:g}: models retrained on the poisoned training set and without the flagged, true "
                 f"poison and random examples ({summary['retraining']['n_seeds']} seeds each)", fontsize=9)
    save_figure(fig, path)
