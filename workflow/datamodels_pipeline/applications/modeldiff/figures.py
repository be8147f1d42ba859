"""ModelDiff's figures: the variance each direction explains, the examples at its ends, the check by retraining.

matplotlib is imported inside the functions (the package is imported at parse
time; see the package docstring).
"""

from __future__ import annotations

import numpy as np

from ...plots import save_figure
from ..figures import fmt, plt, show_image
from ..sampling import top_by_weight


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
