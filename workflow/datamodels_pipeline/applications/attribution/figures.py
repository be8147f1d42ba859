"""The attribution figure: LDS against models trained and against CPU seconds, one line per method.

matplotlib is imported inside :func:`plot` (through ``plots``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .table import Row


LABELS = {"datamodels": "datamodels (lasso)", "empirical_influence": "empirical influence",
          "influence_function": "influence functions (exact H)", "tracin": "TracIn", "trak": "TRAK",
          "representation_similarity": "representation similarity", "input_similarity": "input similarity (no model)"}


def plot(rows: Sequence[Row], alpha: float, path: str) -> None:
    """LDS against models trained and against CPU seconds (log x), one line per method."""
    from ...plots import plt, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
    methods = list(dict.fromkeys((r.method, r.variant) for r in rows if r.lds is not None))
    colours = dict(zip(methods, plt.cm.tab10(np.arange(len(methods)) % 10)))
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
    axes[0].set(xscale="log", xlabel="models trained", ylabel="LDS on held-out models (mean per-target Spearman)",
                title=f"α = {alpha:g}: LDS against models trained")
    axes[1].set(xscale="log", xlabel="CPU seconds (estimated for datamodels / empirical influence)",
                title="LDS against CPU seconds")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.margins(x=0.1)
    axes[0].legend(fontsize=7, loc="best")
    save_figure(fig, path)
