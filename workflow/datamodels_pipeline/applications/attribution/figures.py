"""The attribution figure: LDS against models trained and against measured CPU seconds, one line per method,
with the cost frontier (the best method at each CPU budget, datamodels against TRAK) under the CPU panel.

matplotlib is imported inside :func:`plot` (through ``plots``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .table import Row


LABELS = {"datamodels": "datamodels (lasso)", "empirical_influence": "empirical influence",
          "influence_function": "influence functions (exact H)", "tracin": "TracIn", "trak": "TRAK",
          "representation_similarity": "representation similarity", "input_similarity": "input similarity (no model)"}


def _label(method: str) -> str:
    """Display name of a frontier method name (``method`` or ``method (variant)``)."""
    base, _, variant = method.partition(" (")
    return LABELS.get(base, base) + (f" ({variant}" if variant else "")


def plot(rows: Sequence[Row], alpha: float, frontier: dict, path: str) -> None:
    """LDS against models trained and against measured CPU seconds (log x), one line per method; under the
    CPU panel, the best method at each budget and datamodels against TRAK (the summary's ``frontier``)."""
    from ...plots import plt, save_figure

    fig = plt.figure(figsize=(11, 5.4))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 0.16], hspace=0.08)
    axes = [fig.add_subplot(grid[0, 0])]
    axes.append(fig.add_subplot(grid[0, 1], sharey=axes[0]))
    strip = fig.add_subplot(grid[1, 1], sharex=axes[1])
    methods = list(dict.fromkeys((r.method, r.variant) for r in rows if r.lds is not None))
    colours = dict(zip(methods, plt.cm.tab10(np.arange(len(methods)) % 10)))
    by_name = {f"{m} ({v})" if v else m: colours[(m, v)] for m, v in methods}
    for method in methods:
        points = sorted((r for r in rows if (r.method, r.variant) == method and r.lds is not None),
                        key=lambda r: r.n_models)
        label = LABELS.get(method[0], method[0]) + (f" ({method[1]})" if method[1] else "")
        for ax, cost in zip(axes, ("models_trained", "cpu_seconds")):
            xs = [getattr(r, cost) for r in points]
            ys = [r.lds for r in points]
            if cost == "models_trained" and all(x == 0 for x in xs):
                ax.axhline(max(ys), color=colours[method], ls="--", lw=1,
                           label=label if "model" in label else f"{label} (0 models)")
                continue
            keep = [(x, y) for x, y in zip(xs, ys) if x is not None and x > 0]
            if keep:
                ax.plot(*zip(*keep), marker="o", ms=4, color=colours[method], label=label)
                ax.annotate(f"{keep[-1][1]:.2f}", keep[-1], textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color=colours[method])
    best = frontier.get("best", [])
    positive = [b["from_cpu_seconds"] for b in best if b["from_cpu_seconds"] > 0]
    if positive:
        low, high = min(positive) / 2, max(positive) * 2
        edges = [max(b["from_cpu_seconds"], low) for b in best] + [high]
        xs = [x for edge, nxt in zip(edges, edges[1:]) for x in (edge, nxt)]
        ys = [b["lds"] for b in best for _ in range(2)]
        axes[1].plot(xs, ys, color="black", lw=2.5, alpha=0.25, zorder=0, label="best at each CPU budget")
        lanes = (("best", frontier.get("best_method", []), "method"),
                 ("datamodels\nvs TRAK", frontier.get("datamodels_vs_trak_winner", []), "winner"))
        for lane, (title, segs, key) in enumerate(lanes):
            for seg in segs:
                start = max(seg["from_cpu_seconds"], low)
                stop = high if seg["to_cpu_seconds"] is None else max(seg["to_cpu_seconds"], low)
                colour = by_name.get(seg[key], "lightgrey") if seg[key] else "white"
                if seg[key] == "trak":  # the TRAK variant on the frontier, else the first TRAK colour
                    colour = next((c for n, c in by_name.items() if n.startswith("trak")), colour)
                strip.axvspan(start, stop, ymin=1 - (lane + 1) / 2 + 0.05, ymax=1 - lane / 2 - 0.05, color=colour)
                text = _label(seg[key]).split(" (")[0] if seg[key] else "neither"  # the colour tells the variant
                if math.log10(stop / start) > 0.06 * len(text) + 0.1:  # it fits (a character: ~0.06 decade)
                    strip.text((start * stop) ** 0.5, 1.5 - lane, text, ha="center", va="center", fontsize=6.5)
        strip.set(ylim=(0, 2), yticks=[1.5, 0.5], yticklabels=[t for t, _, _ in lanes])
        strip.tick_params(axis="y", labelsize=7, length=0)
    axes[0].set(xscale="log", xlabel="models trained", ylabel="LDS on held-out models (mean per-target Spearman)",
                title=f"α = {alpha:g}: LDS against models trained")
    axes[1].set(xscale="log", title="LDS against CPU seconds (measured)")
    axes[1].tick_params(labelbottom=False)
    strip.set(xscale="log", xlabel="CPU budget (s, measured): a row is afforded once its cost fits")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.margins(x=0.1)
    axes[0].legend(fontsize=7, loc="best")
    axes[1].legend(handles=axes[1].get_legend_handles_labels()[0][-1:], fontsize=7, loc="lower right")
    save_figure(fig, path)
