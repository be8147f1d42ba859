"""Batched lasso for datamodels: every target solved at once, in covariance form.

For target ``t`` we minimise ``(1/2n) ||Zc w - yc_t||^2 + lam_t ||w||_1`` (unpenalised
bias, hence centred ``Zc``, ``yc``). Only ``G_t = Zc^T Zc / n``, ``c_t = Zc^T yc_t / n``
and ``yy_t = yc_t^T yc_t / n`` are needed, so the solver sees a *quadratic operator*
``op`` (``op.matmul(W)[:, t] = G_t W[:, t]``) plus ``xy = c`` ``[p, T]`` and ``yy`` ``[T]``.

The solver is FISTA with an adaptive step and monotone restart. Each iteration costs one
operator product (a ``T x p`` by ``p x p`` GEMM for a shared Gram matrix) and keeps
``G w`` at the current iterate, so the duality gap -- scikit-learn's, in covariance
form, with the same ``gap <= tol * yy`` stopping rule -- is checked every iteration at
the cost of a few reductions, and the curvature along each step is known exactly (it
sets the next step size). Converged targets are dropped from the batch; products skip
features that are zero in every remaining target; :func:`path` warm-starts each lambda
from a linear extrapolation of the previous two solutions (exact while the active set
does not change). Nothing is screened, so every gap is over all features.

When there are fewer rows than features (n < p) the problem is not strongly convex at
small lambda and convergence slows sharply where the support size nears n (hundreds of
iterations per lambda; coordinate descent copes better there).

Internally everything is target-major (``[T, p]``, contiguous), so per-target
reductions and dropping targets are contiguous; the public API is ``[p, T]``.

Usage::

    gram, xy, yy = gram_moments(z, y)  # z [n, p] standardised masks, y [n, T] outputs
    lambdas = lambda_grid(lambda_max(xy), 30, 1e-3)
    for k, w, info in path(GramOperator(gram), xy, yy, lambdas, workers=4):
        ...  # w [p, T] at lambdas[k]; bias: intercept(z, y, w); log ~info.converged
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import torch

# Products use only the features that are non-zero in some target when they are at most
# this share of all features (``W[:, S] @ G[S]`` instead of ``W @ G``).
_SPARSE_SHARE = 0.8
# Converged targets are dropped from the batch once they are this share of it.
_DROP_SHARE = 1 / 16


class QuadraticOperator(Protocol):
    """``G_t w_t`` for every target column ``t``: all the solver needs of the data."""

    def matmul(self, w: torch.Tensor) -> torch.Tensor:
        """``[p, T] -> [p, T]``, column ``t`` is ``G_t w[:, t]``.

        Fastest when ``w.T`` is contiguous; the result's transpose is contiguous.
        """
        ...

    def lipschitz(self) -> torch.Tensor:
        """Upper bounds on the largest eigenvalue of each ``G_t``: ``[T]``, or a scalar if shared."""
        ...

    def select(self, targets: torch.Tensor) -> QuadraticOperator:
        """The operator restricted to the given target columns, in that order."""
        ...


def _support(x: torch.Tensor) -> torch.Tensor | None:
    """Features non-zero in some row of ``x`` ``[T, p]``, or None when that is most of them."""
    features = torch.nonzero(x.abs().amax(dim=0)).squeeze(1)
    return features if features.numel() <= _SPARSE_SHARE * x.shape[1] else None


def _top_eigenvalue(a: torch.Tensor, n_iter: int = 30, k: int = 8, margin: float = 1.01) -> torch.Tensor:
    """Largest eigenvalue of a symmetric PSD matrix, by block power iteration, times ``margin``.

    Rayleigh-Ritz on an 8-vector block reaches the spectral edge far faster than
    single-vector power iteration; ``margin`` covers what is left of its (downward) error.
    """
    gen = torch.Generator(device=a.device).manual_seed(0)
    v = torch.randn(a.shape[0], min(k, a.shape[0]), generator=gen, dtype=a.dtype, device=a.device)
    for _ in range(n_iter):
        v = torch.linalg.qr(a @ v).Q
    return torch.linalg.eigvalsh(v.T @ a @ v)[-1].clamp_min(0) * margin


class GramOperator:
    """All targets share one Gram matrix ``G`` ``[p, p]`` (the usual case)."""

    def __init__(self, gram: torch.Tensor) -> None:
        self.gram = gram
        self._lipschitz: torch.Tensor | None = None

    def matmul(self, w: torch.Tensor) -> torch.Tensor:
        x = w.T
        features = _support(x)
        if features is None:
            return (x @ self.gram).T
        return (x.index_select(1, features) @ self.gram.index_select(0, features)).T

    def lipschitz(self) -> torch.Tensor:
        if self._lipschitz is None:
            self._lipschitz = _top_eigenvalue(self.gram)
        return self._lipschitz

    def select(self, targets: torch.Tensor) -> GramOperator:
        return self


class MaskedRowsOperator:
    """Target ``t`` is fit only on the rows where ``keep[:, t]`` is True.

    ``G_t w = Z^T (k_t * Z w) / n_t - m_t (m_t^T w)``: the covariance of ``z`` ``[n, p]``
    centred over ``t``'s own rows, ``m_t`` ``[p]`` being their column means. For
    train-set datamodels, where a training example's datamodel may only see models
    whose subset excluded it. Products cost ``2 n p T`` instead of ``p^2 T``.
    """

    def __init__(self, z: torch.Tensor, keep: torch.Tensor) -> None:
        self.z, self.z_t = z, z.T.contiguous()  # [n, p] and [p, n]
        self.keep = keep.T.to(z.dtype).contiguous()  # [T, n]
        self.n_rows = self.keep.sum(1)  # [T]
        if bool((self.n_rows == 0).any()):
            raise ValueError("every target needs at least one row")
        self.z_mean = (self.keep @ z) / self.n_rows[:, None]  # [T, p]
        self._top: torch.Tensor | None = None

    def matmul(self, w: torch.Tensor) -> torch.Tensor:
        x = w.T
        features = _support(x)
        if features is None:
            zx = x @ self.z_t
        else:
            zx = x.index_select(1, features) @ self.z_t.index_select(0, features)
        out = (zx.mul_(self.keep) @ self.z).div_(self.n_rows[:, None])
        return out.sub_(self.z_mean * (self.z_mean * x).sum(1, keepdim=True)).T

    def lipschitz(self) -> torch.Tensor:
        """Safe bound ``G_t <= Z_t^T Z_t / n_t <= (n / n_t) Z^T Z / n``: about 1.6x loose at half the rows."""
        if self._top is None:
            self._top = _top_eigenvalue(self.z.T @ self.z)
        return self._top / self.n_rows

    def select(self, targets: torch.Tensor) -> MaskedRowsOperator:
        self.lipschitz()  # computed once here, shared by every selection (they have the same z)
        op = object.__new__(MaskedRowsOperator)
        op.z, op.z_t, op._top = self.z, self.z_t, self._top
        op.keep, op.n_rows, op.z_mean = self.keep[targets], self.n_rows[targets], self.z_mean[targets]
        return op

    def moments(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(xy [p, T], yy [T])`` for outputs ``y`` ``[n, T]``, centred over each target's rows."""
        yc = (y.T - self._y_mean(y)[:, None]) * self.keep  # [T, n]
        # Z^T yc needs no centring of Z: yc sums to zero over t's rows.
        return (yc @ self.z).T / self.n_rows, (yc * yc).sum(1) / self.n_rows

    def intercept(self, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Bias ``[T]``: ``b_t = mean_t(y_t) - mean_t(Z) . w_t``, means over ``t``'s rows."""
        return self._y_mean(y) - (self.z_mean * w.T).sum(1)

    def _y_mean(self, y: torch.Tensor) -> torch.Tensor:
        return (self.keep * y.T).sum(1) / self.n_rows


def gram_moments(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(gram [p, p], xy [p, T], yy [T])`` for the shared case, centring ``z`` ``[n, p]`` and ``y`` ``[n, T]``."""
    n = z.shape[0]
    zc, yc = z - z.mean(0), y - y.mean(0)
    return zc.T @ zc / n, zc.T @ yc / n, (yc * yc).sum(0) / n


def intercept(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Bias ``[T]`` for the shared case: ``mean(y_t) - mean(Z) . w_t``."""
    return y.mean(0) - z.mean(0) @ w


def lambda_max(xy: torch.Tensor) -> torch.Tensor:
    """``[T]`` the smallest lambda at which ``w = 0`` is optimal: ``max_j |c_jt|``."""
    return xy.abs().amax(dim=0)


def lambda_grid(lam_max: torch.Tensor, n_lambdas: int, eps: float) -> torch.Tensor:
    """``[L, T]`` geometric grid from ``lam_max`` down to ``eps * lam_max`` (scikit-learn's)."""
    exponents = torch.linspace(0.0, 1.0, n_lambdas, dtype=torch.float64)
    factors = torch.tensor(eps, dtype=torch.float64) ** exponents
    return factors.to(lam_max)[:, None] * lam_max[None, :]


@dataclass
class SolveInfo:
    """Per-target outcome of a solve; ``gap`` is on scikit-learn's scale (compare with ``tol * yy``)."""

    n_iter: torch.Tensor  # [T] int64: iterations used (0: the start point had converged)
    converged: torch.Tensor  # [T] bool
    gap: torch.Tensor  # [T] duality gap of the returned coefficients


def _primal_gap(
    x: torch.Tensor, g: torch.Tensor, c: torch.Tensor, yy: torch.Tensor, lam: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(primal objective, duality gap)`` ``[T]`` from ``x`` and ``g = G x - c`` (target-major).

    The dual point is the residual scaled into the dual feasible set, as in scikit-learn's
    coordinate descent: with ``R2 = ||r||^2 / n = yy + x.g - x.c`` and
    ``s = min(1, lam / ||g||_inf)``, ``dual = s (yy - c.x) - s^2 R2 / 2``.
    """
    cx = torch.linalg.vecdot(c, x)
    r2 = yy + torch.linalg.vecdot(g, x) - cx
    primal = 0.5 * r2 + lam * x.abs().sum(1)
    dual_norm = g.abs().amax(1)
    scale = torch.where(dual_norm > lam, lam / dual_norm.clamp_min(torch.finfo(x.dtype).tiny), 1.0)
    return primal, primal - scale * (yy - cx) + 0.5 * scale * scale * r2


def objective(op: QuadraticOperator, xy: torch.Tensor, yy: torch.Tensor, w: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``[T]`` primal objective ``0.5 w^T G w - c^T w + 0.5 yy + lam |w|_1`` (scikit-learn's lasso objective)."""
    return 0.5 * ((op.matmul(w) - 2 * xy) * w).sum(0) + 0.5 * yy + lam * w.abs().sum(0)


def _fista(
    op: QuadraticOperator,
    c: torch.Tensor,
    yy: torch.Tensor,
    lam: torch.Tensor,
    x: torch.Tensor,
    g: torch.Tensor,
    tol: float,
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor, SolveInfo]:
    """FISTA from ``x`` with ``g = G x - c``, all ``[T, p]``; returns ``(X, G X - c, info)``."""
    n_targets = c.shape[0]
    out_x, out_g = x.clone(), g.clone()
    primal, out_gap = _primal_gap(x, g, c, yy, lam)
    thr = tol * yy
    converged = out_gap <= thr
    n_iter = torch.zeros(n_targets, dtype=torch.int64, device=c.device)
    active = torch.nonzero(~converged).squeeze(1)  # batch row -> target
    if active.numel() == 0:
        return out_x, out_g, SolveInfo(n_iter, converged, out_gap)

    lip_max = op.lipschitz().expand(n_targets)[active]
    op = op.select(active)
    c, yy, lam, thr, x, g, primal = (v[active] for v in (c, yy, lam, thr, x, g, primal))
    lip = lip_max.clone()
    x_prev, g_prev = x, g
    t = torch.ones_like(yy)
    done = torch.zeros_like(converged[active])  # converged and recorded, still in the batch
    for it in range(1, max_iter + 1):
        # Extrapolate (G y - c follows from g, g_prev by linearity), then a proximal gradient
        # step of length 1 / lip: soft-threshold y - (G y - c) / lip at lam / lip.
        t_next = 0.5 * (1 + torch.sqrt(1 + 4 * t * t))
        beta = ((t - 1) / t_next)[:, None]
        y, gy = torch.lerp(x, x_prev, -beta), torch.lerp(g, g_prev, -beta)
        x_new = torch.addcmul(y, gy, (1 / lip)[:, None], value=-1)
        tau = (lam / lip)[:, None]
        buf = torch.maximum(x_new, -tau)
        x_new.sub_(torch.minimum(buf, tau, out=buf))  # soft-threshold at tau
        g_new = op.matmul(x_new.T).T.sub_(c)
        primal_new, gap = _primal_gap(x_new, g_new, c, yy, lam)

        # Adaptive step: the curvature d.Gd / d.d of f along the step d = x_new - y is exact
        # (G d = g_new - gy). A step whose curvature exceeds lip breaks the descent lemma and
        # is rejected (unless lip is already the global bound); so is an extrapolated step
        # that raised the objective (monotone restart). Accepted plain steps (beta = 0,
        # curvature <= lip) always descend, so rounding noise cannot stall the solver.
        # The next lip is 1.5x the observed curvature, within [lip_max / 5, lip_max].
        d = torch.sub(x_new, y, out=y)
        d_gd = torch.linalg.vecdot(d, g_new) - torch.linalg.vecdot(d, gy)
        curv = d_gd / torch.linalg.vecdot(d, d).clamp_min(torch.finfo(d.dtype).tiny)
        worse = ((curv > lip) & (lip < lip_max)) | ((primal_new > primal) & (beta[:, 0] > 0))
        if bool(worse.any()):
            rows = torch.nonzero(worse).squeeze(1)
            x_new[rows], g_new[rows], primal_new[rows], t_next[rows] = x[rows], g[rows], primal[rows], 1.0
        lip = torch.clamp(1.5 * curv, min=lip_max / 5, max=lip_max)
        x_prev, g_prev, x, g, primal, t = x, g, x_new, g_new, primal_new, t_next

        new = (gap <= thr) & ~done & ~worse
        if bool(new.any()):
            rows = torch.nonzero(new).squeeze(1)
            targets = active[rows]
            out_x[targets], out_g[targets], out_gap[targets] = x[rows], g[rows], gap[rows]
            n_iter[targets], converged[targets] = it, True
            done |= new
            n_done = int(done.sum())
            if n_done == done.numel():
                break
            if n_done >= _DROP_SHARE * done.numel():
                keep = torch.nonzero(~done).squeeze(1)
                active, op = active[keep], op.select(keep)
                c, yy, lam, thr, lip, lip_max, x, g, x_prev, g_prev, primal, t, done = (
                    v[keep] for v in (c, yy, lam, thr, lip, lip_max, x, g, x_prev, g_prev, primal, t, done)
                )
    else:  # max_iter reached: keep the (best, by monotonicity) last iterate, unconverged
        rows = torch.nonzero(~done).squeeze(1)
        targets = active[rows]
        out_x[targets], out_g[targets] = x[rows], g[rows]
        out_gap[targets] = _primal_gap(x[rows], g[rows], c[rows], yy[rows], lam[rows])[1]
        n_iter[targets] = max_iter
    return out_x, out_g, SolveInfo(n_iter, converged, out_gap)


def solve(
    op: QuadraticOperator,
    xy: torch.Tensor,
    yy: torch.Tensor,
    lam: torch.Tensor | float,
    w0: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
) -> tuple[torch.Tensor, SolveInfo]:
    """Solve every target's lasso at its own ``lam`` ``[T]`` (or one float); returns ``(W [p, T], info)``.

    A target stops once its duality gap is ``<= tol * yy_t`` (scikit-learn's rule). One
    still above that after ``max_iter`` iterations returns its last iterate -- also its
    best, as accepted steps never raise the objective -- flagged ``converged = False``.
    dtype and device follow ``xy``.
    """
    c = xy.T.contiguous()
    lam = torch.as_tensor(lam).to(c).expand(c.shape[0])
    x = torch.zeros_like(c) if w0 is None else w0.T.to(c).contiguous()
    g = op.matmul(x.T).T - c
    x, _, info = _fista(op, c, yy, lam, x, g, tol, max_iter)
    return x.T, info


def path(
    op: QuadraticOperator,
    xy: torch.Tensor,
    yy: torch.Tensor,
    lambdas: torch.Tensor,
    tol: float = 1e-4,
    max_iter: int = 1000,
    workers: int = 1,
) -> Iterator[tuple[int, torch.Tensor, SolveInfo]]:
    """Solve along a decreasing grid ``lambdas`` ``[L, T]``, yielding ``(k, W_k [p, T], info_k)``.

    Lambda ``k`` starts from the better (lower objective) of the previous solution and its
    linear extrapolation from the two previous ones: on a fixed active set with fixed
    signs the lasso solution is linear in lambda, so the extrapolation is then exact.

    ``workers > 1`` splits the targets into that many chunks solved in parallel threads
    (torch releases the GIL in its kernels). Pair it with ``torch.set_num_threads(1)``:
    independent single-threaded chunks scale better than intra-op threads, which wait on
    each other at every small elementwise op and stall when another process holds a core.
    """
    if workers <= 1 or xy.shape[1] < 2:
        yield from _path(op, xy, yy, lambdas, tol, max_iter)
        return
    op.lipschitz()  # computed once, shared by the chunks' operators
    chunks = torch.arange(xy.shape[1], device=xy.device).tensor_split(min(workers, xy.shape[1]))
    runs = [_path(op.select(idx), xy[:, idx], yy[idx], lambdas[:, idx], tol, max_iter) for idx in chunks]
    with ThreadPoolExecutor(len(runs)) as pool:
        for k in range(lambdas.shape[0]):
            steps = list(pool.map(next, runs))
            infos = [info for _, _, info in steps]
            yield k, torch.cat([w for _, w, _ in steps], dim=1), SolveInfo(
                *(torch.cat(parts) for parts in zip(*((i.n_iter, i.converged, i.gap) for i in infos)))
            )


def _path(
    op: QuadraticOperator, xy: torch.Tensor, yy: torch.Tensor, lambdas: torch.Tensor, tol: float, max_iter: int
) -> Iterator[tuple[int, torch.Tensor, SolveInfo]]:
    """:func:`path` for one batch of targets."""
    c = xy.T.contiguous()
    x, g = torch.zeros_like(c), -c
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # last two (lam, X, G X - c)
    for k in range(lambdas.shape[0]):
        lam = lambdas[k]
        if len(history) == 2:
            (lam0, x0, g0), (lam1, x1, g1) = history
            ratio = ((lam1 - lam) / (lam0 - lam1).clamp_min(torch.finfo(c.dtype).tiny))[:, None]
            x_ex, g_ex = torch.lerp(x1, x0, -ratio), torch.lerp(g1, g0, -ratio)  # x1 + ratio (x1 - x0)
            better = (_primal_gap(x_ex, g_ex, c, yy, lam)[0] < _primal_gap(x1, g1, c, yy, lam)[0])[:, None]
            x, g = torch.where(better, x_ex, x1), torch.where(better, g_ex, g1)
        x, g, info = _fista(op, c, yy, lam, x, g, tol, max_iter)
        history = [*history[-1:], (lam, x, g)]
        yield k, x.T.clone(), info
