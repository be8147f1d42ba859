"""Figures for the report (matplotlib, written as PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .atomic import atomic_output  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Write a figure as PNG atomically and release it."""
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def predicted_vs_actual(predicted: np.ndarray, actual: np.ndarray, title: str, path: str | Path) -> None:
    """Hexbin of predicted against actual margins over all (model, target) pairs."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    hb = ax.hexbin(actual.ravel(), predicted.ravel(), gridsize=60, bins="log", cmap="viridis", mincnt=1)
    low, high = np.percentile(np.concatenate([actual.ravel(), predicted.ravel()]), [0.1, 99.9])
    ax.plot([low, high], [low, high], color="tab:red", lw=1, label="y = x")
    ax.set(xlabel="actual margin (held-out model)", ylabel="datamodel prediction", title=title)
    ax.legend(loc="upper left")
    fig.colorbar(hb, ax=ax, label="pairs (log)")
    save_figure(fig, path)


def lds_histogram(per_target: dict[str, np.ndarray], path: str | Path) -> None:
    """Histogram of per-target Spearman correlations, one series per method."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    bins = np.linspace(-0.2, 1.0, 49)
    for name, values in per_target.items():
        ax.hist(values, bins=bins, alpha=0.6, label=f"{name} (mean {np.mean(values):.3f})")
    ax.set(xlabel="per-target Spearman correlation on held-out models", ylabel="targets")
    ax.legend()
    save_figure(fig, path)


def learning_curve(n_models: Sequence[int], lds: Sequence[float], baseline: Sequence[float], path: str | Path) -> None:
    """LDS against the number of training models, with the empirical-influence baseline."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(n_models, lds, marker="o", label="lasso datamodels")
    ax.plot(n_models, baseline, marker="s", label="empirical influence")
    ax.set_xscale("log")
    ax.set(xlabel="training models", ylabel="LDS (mean per-target Spearman)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
