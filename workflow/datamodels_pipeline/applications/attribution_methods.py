"""Attribution methods compared with datamodels (the ``attribution`` application's computations).

Every method returns a score matrix ``[n_train, n_targets]`` whose column t
ranks the training examples by their predicted effect of being *included* on
target t's output (positive: including the example raises the target's
correct-class margin), so that ``mask @ scores[:, t]`` is a linear prediction
scored by LDS exactly like a datamodel (LDS is a per-target Spearman
correlation, so a column's scale and the bias do not matter).

The gradient methods work on a trained ``nn.Sequential`` MLP (or logistic
regression: no hidden layer) through ``torch.func``: ``functional_call`` on a
flat parameter vector, ``grad`` and ``vmap`` for per-example gradients.

* influence functions: ``tau[i, t] = -(1/n) grad f_t^T H^-1 grad loss_i`` with H
  the exact Hessian of the model's mean training loss (plus the weight-decay
  term), its eigenvalues clamped from below at ``damping`` (the trained network
  is not at a minimum of a convex loss, so H has negative eigenvalues);
* TracIn: ``sum_checkpoints lr * grad f_t . (-grad loss_i)``;
* TRAK: ``Phi_t (Phi^T Phi)^-1 Phi^T Q`` with projected gradients of the
  log-odds output and ``Q = diag(1 - p_i)``, averaged over an ensemble;
* representation similarity: cosine of penultimate-layer features, signed by
  label agreement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from ..protocol import Checkpoint
from ..training import train_networks, train_with_checkpoints  # noqa: F401 (re-exported)

GRAD_CHUNK = 512
"""Examples per vmapped per-example-gradient call (bounds the memory of the stacked activations)."""
HVP_CHUNK = 256
"""Hessian rows (basis vectors) per vmapped Hessian-vector-product call."""


class FlatModel:
    """A ``nn.Module`` evaluated at a flat parameter vector (``functional_call``)."""

    def __init__(self, model: nn.Module):
        self.model = model
        named = [(name, p.detach()) for name, p in model.named_parameters()]
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.theta = torch.cat([p.reshape(-1) for _, p in named]).clone()

    @property
    def n_params(self) -> int:
        return int(self.theta.numel())

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: part.reshape(shape) for name, part, shape in
                zip(self.names, torch.split(theta, self.sizes), self.shapes)}

    def logits(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch ``[B, d]`` (or one example ``[d]``) at parameters ``theta``."""
        return functional_call(self.model, self.unflatten(theta), (x,))


# Per-example scalar functions of (logits [C], one-hot label [C]).
def margin_output(logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Correct-class margin: the true logit minus the largest other logit (the pipeline's output)."""
    correct = (logits * onehot).sum()
    return correct - logits.masked_fill(onehot > 0, float("-inf")).max()


def log_odds_output(logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """TRAK's multi-class output ``log(p / (1 - p))``: the true logit minus logsumexp of the others."""
    correct = (logits * onehot).sum()
    return correct - torch.logsumexp(logits.masked_fill(onehot > 0, float("-inf")), dim=-1)


def loss_output(logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of one example."""
    return -(torch.log_softmax(logits, dim=-1) * onehot).sum()


OutputFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A learner's training loss ``loss(logits [B, C], labels [B])``, a mean over the batch."""


def example_loss(loss: LossFn | None) -> OutputFn:
    """The per-example loss as an output function: :func:`loss_output` (cross-entropy) when ``loss`` is None."""
    if loss is None:
        return loss_output
    return lambda logits, onehot: loss(logits[None], onehot.argmax()[None])


def per_example_grads(flat: FlatModel, x: torch.Tensor, onehot: torch.Tensor, output: OutputFn,
                      theta: torch.Tensor | None = None) -> torch.Tensor:
    """Gradients ``[n, n_params]`` of ``output(logits(x_i), onehot_i)`` w.r.t. the parameters, one row per example."""
    theta = flat.theta if theta is None else theta

    def one(th: torch.Tensor, xi: torch.Tensor, oi: torch.Tensor) -> torch.Tensor:
        return output(flat.logits(th, xi), oi)

    per_example = vmap(grad(one), in_dims=(None, 0, 0))
    return torch.cat([per_example(theta, x[s:s + GRAD_CHUNK], onehot[s:s + GRAD_CHUNK])
                      for s in range(0, len(x), GRAD_CHUNK)]) if len(x) else torch.zeros(0, flat.n_params)


def onehot_labels(y: np.ndarray | torch.Tensor, n_classes: int) -> torch.Tensor:
    return F.one_hot(torch.as_tensor(np.asarray(y), dtype=torch.int64), n_classes).float()


# ---------------------------------------------------------------- influence functions
def hessian(flat: FlatModel, x: torch.Tensor, y: torch.Tensor, weight_decay: float = 0.0,
            loss: LossFn | None = None) -> torch.Tensor:
    """Exact Hessian ``[P, P]`` of ``mean_i CE(x_i, y_i) + weight_decay/2 |theta|^2`` at the model's parameters
    (``loss(logits, labels)`` instead of the mean cross-entropy CE when given).

    Built row block by row block as Hessian-vector products (forward-over-reverse,
    ``jvp`` of ``grad``) on the basis vectors, vmapped in chunks of ``HVP_CHUNK``;
    symmetrised against float rounding.
    """
    def objective(theta: torch.Tensor) -> torch.Tensor:
        return (loss or F.cross_entropy)(flat.logits(theta, x), y) + 0.5 * weight_decay * theta.pow(2).sum()

    gradient = grad(objective)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return jvp(gradient, (flat.theta,), (v,))[1]

    eye = torch.eye(flat.n_params, dtype=flat.theta.dtype)
    rows = [vmap(hvp)(eye[s:s + HVP_CHUNK]) for s in range(0, flat.n_params, HVP_CHUNK)]
    h = torch.cat(rows)
    return (h + h.T) / 2


@dataclass
class InverseHessian:
    """``H^-1`` with H's eigenvalues clamped at ``damping``, and how many were changed."""

    inverse: torch.Tensor        # [P, P], float64
    n_negative: int              # eigenvalues < 0
    n_clamped: int               # eigenvalues < damping (raised to it)
    eigenvalue_min: float
    eigenvalue_max: float


def clamped_inverse(h: torch.Tensor, damping: float) -> InverseHessian:
    """Inverse of the symmetric H after ``eigenvalue -> max(eigenvalue, damping)`` (float64 eigh).

    Clamping keeps the curvature of the well-determined directions and treats the
    negative and near-zero ones as ``damping`` (a Levenberg-Marquardt-style floor),
    instead of flipping the sign of the update along negative directions.
    """
    if damping <= 0:
        raise ValueError(f"applications.attribution.influence.damping must be > 0, got {damping}")
    values, vectors = torch.linalg.eigh(h.double())
    clamped = values.clamp_min(damping)
    return InverseHessian(inverse=(vectors / clamped) @ vectors.T, n_negative=int((values < 0).sum()),
                          n_clamped=int((values < damping).sum()), eigenvalue_min=float(values[0]),
                          eigenvalue_max=float(values[-1]))


def influence_from_grads(inverse: torch.Tensor, grad_loss_train: torch.Tensor, grad_f_targets: torch.Tensor,
                         n_fit: int) -> np.ndarray:
    """``tau[i, t] = -(1/n) grad f_t^T H^-1 grad loss_i`` as ``[n_train, n_targets]``.

    Removing example i from the mean loss over n moves the optimum by
    ``+(1/n) H^-1 grad loss_i``, so *including* it changes f_t by minus that
    times ``grad f_t``.
    """
    solved = inverse @ grad_loss_train.double().T                          # [P, n_train]
    return (-(grad_f_targets.double() @ solved).T / n_fit).numpy()


def influence_scores(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, fit_rows: np.ndarray,
                     x_targets: torch.Tensor, y_targets: torch.Tensor, n_classes: int, damping: float,
                     weight_decay: float = 0.0, loss: LossFn | None = None) -> tuple[np.ndarray, InverseHessian]:
    """Influence of every training example on every target's margin for one trained model.

    The Hessian is that of the mean loss over the model's own training rows
    ``fit_rows``; gradients of the loss are taken for every training example.
    """
    flat = FlatModel(model)
    rows = torch.as_tensor(np.asarray(fit_rows), dtype=torch.int64)
    inverse = clamped_inverse(hessian(flat, x_train[rows], y_train[rows], weight_decay, loss), damping)
    g_loss = per_example_grads(flat, x_train, onehot_labels(y_train, n_classes), example_loss(loss))
    g_f = per_example_grads(flat, x_targets, onehot_labels(y_targets, n_classes), margin_output)
    return influence_from_grads(inverse.inverse, g_loss, g_f, len(rows)), inverse


# ---------------------------------------------------------------- TracIn
def tracin_scores(checkpoints: Sequence[Checkpoint], x_train: torch.Tensor, y_train: torch.Tensor,
                  x_targets: torch.Tensor, y_targets: torch.Tensor, n_classes: int, loss: LossFn | None = None
                  ) -> np.ndarray:
    """``sum_c lr_c * grad f_t(theta_c) . (-grad loss_i(theta_c))`` as ``[n_train, n_targets]``.

    A gradient step on example i moves the parameters by ``-lr grad loss_i``,
    which changes f_t by about ``lr grad f_t . (-grad loss_i)``.
    """
    onehot_train, onehot_targets = onehot_labels(y_train, n_classes), onehot_labels(y_targets, n_classes)
    total = np.zeros((len(x_train), len(x_targets)))
    for c in checkpoints:
        flat = FlatModel(c.model)
        g_loss = per_example_grads(flat, x_train, onehot_train, example_loss(loss))
        g_f = per_example_grads(flat, x_targets, onehot_targets, margin_output)
        total += c.lr * (-(g_loss.double() @ g_f.double().T)).numpy()
    return total


# ---------------------------------------------------------------- TRAK
def gaussian_projection(n_params: int, proj_dim: int, seed: int) -> torch.Tensor:
    """Gaussian random projection ``[n_params, proj_dim]`` (entries N(0, 1/proj_dim)) from a seeded generator."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn(n_params, proj_dim, generator=generator) / np.sqrt(proj_dim)


def trak_features(model: nn.Module, x: torch.Tensor, y: np.ndarray | torch.Tensor, n_classes: int,
                  projection: torch.Tensor) -> torch.Tensor:
    """Projected gradients of the log-odds output, ``phi_i = P^T grad f(z_i)``, as ``[n, proj_dim]`` (float64)."""
    flat = FlatModel(model)
    if projection.shape[0] != flat.n_params:
        raise ValueError(f"projection has {projection.shape[0]} rows for a model with {flat.n_params} parameters")
    g = per_example_grads(flat, x, onehot_labels(y, n_classes), log_odds_output)
    return (g @ projection).double()


def output_grads(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_targets: torch.Tensor,
                 y_targets: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unprojected per-example gradients of the log-odds output, training examples and targets (for several P)."""
    flat = FlatModel(model)
    return (per_example_grads(flat, x_train, onehot_labels(y_train, n_classes), log_odds_output),
            per_example_grads(flat, x_targets, onehot_labels(y_targets, n_classes), log_odds_output))


def correct_class_probability(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The model's softmax probability of each example's correct class."""
    with torch.no_grad():
        return torch.softmax(model(x), dim=-1).gather(1, y.reshape(-1, 1))[:, 0].double().numpy()


def trak_kernel_scores(phi_train: torch.Tensor, phi_targets: torch.Tensor, damping: float = 0.0) -> np.ndarray:
    """One model's ``Phi_train (Phi_train^T Phi_train + damping I)^-1 Phi_targets^T``, ``[n_train, n_targets]``.

    With ``damping`` 0 the inverse is a pseudo-inverse (eigenvalues below
    1e-10 of the largest are dropped), so a rank-deficient Phi does not fail.
    """
    gram = phi_train.T @ phi_train
    values, vectors = torch.linalg.eigh(gram)
    values = values + damping
    keep = values > 1e-10 * values.abs().max().clamp_min(1e-300)
    inv = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    return (phi_train @ inv @ phi_targets.T).numpy()


def trak_scores(kernels: Sequence[np.ndarray], probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """TRAK's ensemble: the mean over models of the kernel scores, each row i times the mean of ``1 - p_i``.

    ``tau = mean_m[Phi_t (Phi^T Phi)^-1 Phi^T] Q`` with ``Q = diag(mean_m(1 - p_i))``, as TRAK (and ``traker``)
    average them; returned transposed as ``[n_train, n_targets]``.
    """
    if not kernels or len(kernels) != len(probabilities):
        raise ValueError("trak_scores needs one kernel and one probability vector per model")
    q = 1.0 - np.mean(np.stack(probabilities), axis=0)
    return np.mean(np.stack(kernels), axis=0) * q[:, None]


# ---------------------------------------------------------------- representation similarity
def penultimate_features(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Activations feeding the last linear layer (the inputs themselves for logistic regression)."""
    with torch.no_grad():
        return model[:-1](x)


def signed_cosine(features_train: np.ndarray | torch.Tensor, features_targets: np.ndarray | torch.Tensor,
                  y_train: np.ndarray, y_targets: np.ndarray) -> np.ndarray:
    """Cosine similarity ``[n_train, n_targets]``, + for the same label and - for different labels.

    A zero feature vector (a dead ReLU layer) has similarity 0 to everything.
    """
    a = np.asarray(features_train, dtype=np.float64)
    b = np.asarray(features_targets, dtype=np.float64)
    na, nb = np.linalg.norm(a, axis=1, keepdims=True), np.linalg.norm(b, axis=1, keepdims=True)
    a = np.divide(a, na, out=np.zeros_like(a), where=na > 0)
    b = np.divide(b, nb, out=np.zeros_like(b), where=nb > 0)
    sign = np.where(np.asarray(y_train)[:, None] == np.asarray(y_targets)[None, :], 1.0, -1.0)
    return (a @ b.T) * sign
