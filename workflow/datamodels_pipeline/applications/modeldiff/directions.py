"""ModelDiff's linear algebra (NumPy only): the residual PCA of two algorithms' datamodels and its directions' ends.

Each target's weights are scaled to unit norm (:func:`normalise`), each matrix is
centred over the targets, the first algorithm's rows are projected off the
second's (:func:`project_off`), and the PCA of the residuals gives the
distinguishing directions with the share of each algorithm's variance along
them (:func:`residual_directions`). :func:`orient` picks each direction's sign
from the datamodels alone and :func:`end_of` selects the training examples
removed and the targets compared at one end.
"""

from __future__ import annotations

import numpy as np

from ..sampling import top_by_weight
from .recipe import KEY


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
