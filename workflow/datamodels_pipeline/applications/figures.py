"""Figures of the applications (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..plots import save_figure  # noqa: E402

STRATEGY_LABELS = {"datamodel": "top-k datamodel weights", "random": "k random examples",
                   "nearest": "k nearest neighbours (input space)"}


def show_image(ax: plt.Axes, image: np.ndarray) -> None:
    """Draw one example: 2-D grey levels, channel-first colour images (C, H, W), or a feature vector as a strip."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2 and image.ndim != 3:
        image = image.reshape(1, -1)
    if image.ndim == 2:
        ax.imshow(image, cmap="gray_r", aspect="auto" if image.shape[0] == 1 else "equal")
    else:
        ax.imshow(np.clip(image, 0.0, 1.0))


def fmt(value: float | None) -> str:
    """A number with three decimals, or n/a."""
    return "n/a" if value is None else f"{value:.3f}"


def counterfactual_scatter(predicted: np.ndarray, actual: np.ndarray, k: np.ndarray, stats: dict, alpha: float,
                           path: str | Path) -> None:
    """Predicted against actual margin change of the datamodel removals, coloured by k."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    sizes = sorted(set(k.tolist()))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    for size, colour in zip(sizes, colours):
        rows = k == size
        ax.scatter(predicted[rows], actual[rows], s=14, color=colour, alpha=0.8, label=f"k = {size}")
    both = np.concatenate([predicted, actual]) if len(predicted) else np.zeros(2)
    low, high = float(both.min()), float(both.max())
    ax.plot([low, high], [low, high], color="tab:red", lw=1, label="y = x")
    ax.set(xlabel="predicted margin change (−Σ removed weights)", ylabel="actual change (retrained, mean over seeds)",
           title=f"α = {alpha:g}: Spearman {fmt(stats['spearman'])}, Pearson {fmt(stats['pearson'])}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def margin_drop_vs_k(ks: list[int], mean_change: dict, rows: dict, alpha: float, path: str | Path) -> None:
    """Mean actual margin drop against removal size for each strategy (error bars: s.e.m. over targets)."""
    strategy, k, actual = np.asarray(rows["strategy"]), np.asarray(rows["k"]), np.asarray(rows["actual_change"])
    fig, ax = plt.subplots(figsize=(5.5, 3.9))
    for name, label in STRATEGY_LABELS.items():
        drop = [-mean_change[name][str(size)] for size in ks]
        sem = []
        for size in ks:
            values = actual[(strategy == name) & (k == size)]
            sem.append(values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0)
        ax.errorbar(ks, drop, yerr=sem, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(size) for size in ks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="examples removed from the full training set (k)", ylabel="mean margin drop (retrained)",
           title=f"α = {alpha:g} datamodels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def support_curve(grid: np.ndarray, curves: dict[str, np.ndarray], alpha: float, path: str | Path) -> None:
    """Fraction of targets whose (estimated or confirmed) support is at most k."""
    fig, ax = plt.subplots(figsize=(5.5, 3.9))
    for label, fraction in curves.items():
        ax.step(grid, fraction, where="post", label=label)
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set(xlabel="k (training examples removed)", ylabel="fraction of sampled targets",
           title=f"data support, α = {alpha:g} datamodels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def example_grid(target_images: np.ndarray, target_labels: np.ndarray, positive: list[list[tuple[np.ndarray, int, float]]],
                 negative: list[list[tuple[np.ndarray, int, float]]], top: int, path: str | Path) -> None:
    """Each row: a target, its top positive-weight and top negative-weight training examples."""
    n_rows, n_cols = len(target_images), 2 * top + 2
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.05 * n_cols, 1.25 * n_rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for row in range(n_rows):
        show_image(axes[row, 0], target_images[row])
        axes[row, 0].set_title(f"target y={target_labels[row]}", fontsize=7, color="tab:blue")
        for offset, examples, colour, sign in ((2, positive[row], "tab:green", "+"),
                                               (top + 2, negative[row], "tab:red", "−")):
            for j, (image, label, w) in enumerate(examples):
                ax = axes[row, offset + j]
                show_image(ax, image)
                ax.set_title(f"{sign} y={label}\nw={w:.2g}", fontsize=6, color=colour)
    fig.suptitle("target | largest positive weights (green) | largest negative weights (red)", fontsize=8)
    save_figure(fig, path)


def _image_row(axes: np.ndarray, cells: list[tuple], colour: str, fmt: str) -> None:
    """Images with 'y=<label>' and a formatted value above each, in consecutive axes."""
    for ax, (image, label, value) in zip(axes, cells):
        show_image(ax, image)
        ax.set_title(f"y={label}\n{fmt.format(value)}", fontsize=6, color=colour)


def pc_extremes(panels: list[dict], ratios: np.ndarray, alpha: float, path: str | Path) -> None:
    """Each row: one end of a principal component, its most extreme targets and training examples."""
    n_show = max([len(p["targets"]) for p in panels] + [len(p["train"]) for p in panels] + [1])
    n_rows, n_cols = len(panels), 2 * n_show + 2
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.0 * n_cols, 1.2 * n_rows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for row, panel in enumerate(panels):
        axes[row, 0].text(0.5, 0.5, f"{panel['title']}\n({ratios[panel['pc'] - 1]:.1%} var.)", ha="center", va="center",
                          fontsize=8, transform=axes[row, 0].transAxes)
        _image_row(axes[row, 1:1 + n_show], panel["targets"], "tab:blue", "proj {:.2f}")
        _image_row(axes[row, n_show + 2:], panel["train"], "tab:purple", "v={:.2g}")
    fig.suptitle(f"α = {alpha:g} datamodel embeddings: targets at each end of a principal component (blue, "
                 "projection) | training examples with the largest loadings at that end (purple)", fontsize=8)
    save_figure(fig, path)


def embedding_clusters(points: np.ndarray, clusters: np.ndarray, labels: np.ndarray, members: list[list[tuple]],
                       stats: dict, alpha: float, path: str | Path) -> None:
    """PC1 vs PC2 of the targets coloured by spectral cluster and by label; below, typical members per cluster."""
    n_clusters, n_show = len(members), max([len(m) for m in members] + [1])
    fig = plt.figure(figsize=(9, 4.4 + 0.9 * n_clusters))
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.4, 0.9 * n_clusters])
    left, right = top.subplots(1, 2)
    cmap = plt.get_cmap("tab10" if max(n_clusters, int(labels.max()) + 1) <= 10 else "tab20")
    for ax, colour_by, name in ((left, clusters, "spectral cluster"), (right, labels, "class label")):
        for value in np.unique(colour_by):
            rows = colour_by == value
            colour = "lightgrey" if value < 0 else cmap(int(value) % cmap.N)
            ax.scatter(points[rows, 0], points[rows, 1], s=8, color=colour, alpha=0.8,
                       label="none" if value < 0 else str(int(value)))
        ax.set(xlabel="PC1 projection", ylabel="PC2 projection", title=f"coloured by {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, markerscale=1.5, ncol=2, title=name, title_fontsize=6)
    top.suptitle(f"α = {alpha:g} datamodel embeddings: {n_clusters} clusters, purity {fmt(stats['purity'])}, "
                 f"adjusted Rand index {fmt(stats['adjusted_rand_index'])} (vs class labels)", fontsize=9)
    axes = bottom.subplots(n_clusters, n_show + 1, squeeze=False, gridspec_kw={"top": 0.94, "bottom": 0.02})
    for ax in axes.ravel():
        ax.axis("off")
    majority = {c["cluster"]: c for c in stats["clusters"]}
    for c, cells in enumerate(members):
        text = f"cluster {c} (n={int((clusters == c).sum())})"
        if c in majority:
            text += f"\n{majority[c]['majority_fraction']:.0%} y={majority[c]['majority_label']}"
        axes[c, 0].text(0.5, 0.5, text, ha="center", va="center", fontsize=7, transform=axes[c, 0].transAxes)
        for ax, (image, label) in zip(axes[c, 1:], cells):
            show_image(ax, image)
            ax.set_title(f"y={label}", fontsize=6, pad=2)
    bottom.suptitle("most typical members of each cluster (closest to its mean embedding)", fontsize=8)
    save_figure(fig, path)


GROUP_LABELS = {"aligned": "aligned targets (same end)", "opposite": "opposite targets",
                "random": "random targets", "all": "all targets"}


def intervention_bars(results: list[dict], n_remove: int, alpha: float, path: str | Path) -> None:
    """Mean margin change (retrained, paired by seed) of each target group per removed component end."""
    fig, ax = plt.subplots(figsize=(max(5.5, 1.5 * len(results) + 2), 3.9))
    x = np.arange(len(results))
    width = 0.8 / len(GROUP_LABELS)
    for g, (name, label) in enumerate(GROUP_LABELS.items()):
        means = [np.nan if r["groups"][name]["mean"] is None else r["groups"][name]["mean"] for r in results]
        errors = [0.0 if r["groups"][name]["se"] is None else r["groups"][name]["se"] for r in results]
        ax.bar(x + (g - (len(GROUP_LABELS) - 1) / 2) * width, means, width, yerr=errors, capsize=2, label=label)
    ax.set_xticks(x, [f"PC{r['pc']} {'+' if r['end'] == 'positive' else '−'}\nΔ={fmt(r['aligned_minus_opposite']['mean'])}"
                      for r in results], fontsize=8)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="end of the component whose top examples were removed (Δ: aligned − opposite)",
           ylabel="mean margin change (retrained)",
           title=f"α = {alpha:g}: removing {n_remove} training examples at one end of a principal component")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    save_figure(fig, path)


LEAKAGE_LABELS = {"datamodel_rank": "rank within its target (default)", "datamodel": "raw datamodel weight",
                  "datamodel_normalized": "weight / its target's L2 norm",
                  "datamodel_max": "weight / its target's largest |weight|",
                  "datamodel_standardized": "weight standardised within its target",
                  "nearest": "nearest neighbours (input space)"}


def leakage_curves(positions: dict[str, np.ndarray], n_pairs: int, methods: dict | None, top_weights: np.ndarray,
                   top_planted: np.ndarray, alpha: float, path: str | Path) -> None:
    """Train-test leakage: precision-recall and recall@K of every ranking against the planted pairs, and the
    weights of the default ranking's top pairs (planted ones in red)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.0))
    pr, recall_k, top = axes
    for name, label in LEAKAGE_LABELS.items():
        found = positions.get(name, np.zeros(0))
        if not len(found):
            continue
        j = np.arange(1, len(found) + 1)
        ap = methods[name]["average_precision"] if methods else None
        pr.plot(j / len(found), j / found, marker="o", ms=2, lw=1, label=f"{label} (AP {fmt(ap)})")
        recall_k.step(np.concatenate([[1], found, [n_pairs]]), np.concatenate([[0], j, [j[-1]]]) / len(found),
                      where="post", label=label)
    if not any(len(found) for found in positions.values()):
        for ax in (pr, recall_k):
            ax.text(0.5, 0.5, "no planted pairs\n(data.plant_duplicates.n = 0)", ha="center", va="center",
                    transform=ax.transAxes)
    pr.set(xlabel="recall (planted pairs found)", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.05),
           title="precision–recall over all pairs")
    recall_k.set_xscale("log")
    recall_k.set(xlabel="K (top-ranked pairs)", ylabel="recall at K", ylim=(0, 1.05),
                 title=f"recall at K ({n_pairs:,} pairs)")
    rank = np.arange(1, len(top_weights) + 1)
    top.plot(rank, top_weights, color="grey", lw=1)
    top.scatter(rank[~top_planted], top_weights[~top_planted], s=8, color="grey", label="other pair")
    top.scatter(rank[top_planted], top_weights[top_planted], s=18, color="tab:red", label="planted pair", zorder=3)
    top.set(xlabel="rank (default: rank within its target)", ylabel="weight (raw units)", title="top-ranked pairs")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right" if ax is recall_k else "best")
    fig.suptitle(f"train-test leakage, α = {alpha:g} datamodels", fontsize=10)
    save_figure(fig, path)
