"""Reference implementations beside ours: dattri's TRAK and influence functions on the same networks.

With the optional extra installed (``pip install -e .[peers]``), :func:`peer_rows`
adds ``dattri_trak`` and ``dattri_influence`` rows to the attribution table,
computed by dattri's own ``TRAKAttributor`` and ``IFAttributorExplicit``
(``applications.attribution.peers``). They run on the *same* trained networks as
our ``trak`` and ``influence_function`` rows (the learner's networks from
``settings.model_plan``, shared through :class:`.methods.Context`'s cache, so
they are trained once), and their ``[n_train, n_targets]`` score matrices are
scored on the same held-out models through ``table.score_row``, the external-score
path. Only the implementation differs:

* ``dattri_trak``: dattri's TRAK with the same output function (the log-odds
  ``log p / (1 - p)`` of the correct class, for the training examples' and the
  targets' gradients), the same ``Q = diag(1 - p)`` averaged over the ensemble and
  the same damping (``trak.damping`` as dattri's ``regularization``). dattri
  projects with its own seeded normal projector (one per model), scales the
  gradients by ``1/sqrt(n_params)`` and solves in float32; ours draws a different
  Gaussian projection and pseudo-inverts in float64.
* ``dattri_influence``: dattri's explicit-Hessian influence functions with the
  learner's training loss (mean over the model's own training rows, as ours) and
  the correct-class margin as the target function. dattri adds its
  ``regularization`` to the Hessian (a shift, ``H + lambda I``); ours raises the
  eigenvalues below ``influence.damping`` to it (a floor): on a network whose
  Hessian has negative eigenvalues the two differ, see docs/applications.md. The
  regularization is ``influence.damping`` plus the learner's weight decay (our
  Hessian includes the weight-decay term). dattri returns
  ``grad loss_i^T (H + lambda I)^-1 grad f_t``; the row is minus that over the number of
  training rows, the effect of *including* example i on the target's margin (our
  sign convention; LDS is unchanged by the positive scale).

A library that is not importable yields a null row per method with the reason
(``libraries: auto``); dattri is imported only here, inside the functions.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import numpy as np

from ... import evaluate, protocol
from ...reference_libraries import peer_libraries, peer_version
from ...seeding import Stream, int_seed
from .. import attribution_methods as am
from .methods import Context, trained_networks
from .settings import PROJECTION_INDEX, model_plan
from .table import Row, score_row

log = logging.getLogger(__name__)

LIBRARIES = {"dattri": ("dattri_trak", "dattri_influence")}
"""The reference libraries (``reference_libraries.PEER_LIBRARIES``) and the rows each adds."""
INSTALL_HINT = "pip install -e .[peers]"


def _quiet(*modules) -> None:
    """Silence dattri's per-batch tqdm bars (they would fill the rule's log)."""
    for module in modules:
        if hasattr(module, "tqdm"):
            module.tqdm = lambda iterable, *args, **kwargs: iterable


@contextmanager
def _chunked_hessian(chunk: int):
    """dattri's explicit Hessian (``torch.func.hessian``: forward-over-reverse over every basis vector at once,
    about 9 GB at 4,810 parameters and 1,200 examples) computed as ``jacrev(jacrev(f))`` in chunks of ``chunk``
    basis vectors: the same matrix (to float rounding), the memory bounded. Restored on exit."""
    from dattri.func import hessian as module
    from torch.func import jacrev

    original = module.hessian
    module.hessian = lambda func, argnums=0: jacrev(jacrev(func, argnums=argnums), argnums=argnums, chunk_size=chunk)
    try:
        yield
    finally:
        module.hessian = original


def _loader(x, y):
    """One unshuffled batch of all examples (dattri's explicit Hessian is that of one batch's loss)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(TensorDataset(x, y.to(torch.int64)), batch_size=max(1, len(x)), shuffle=False)


def _functions(model, loss):
    """dattri's functions of (parameters, data) for a network: the mean training loss, the summed margin, the
    summed log-odds and the correct-class probability (one example or a batch: inputs are reshaped to ``[B, d]``)."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call

    def logits(params, x):
        return functional_call(model, params, (x.reshape(-1, x.shape[-1]),))

    def mean_loss(params, data):
        x, y = data
        return (loss or F.cross_entropy)(logits(params, x), y.reshape(-1))

    def margin(params, data):
        x, y = data
        out, index = logits(params, x), y.reshape(-1, 1)
        return (out.gather(1, index)[:, 0] - out.scatter(1, index, float("-inf")).max(dim=-1).values).sum()

    def log_odds(params, data):
        x, y = data
        out, index = logits(params, x), y.reshape(-1, 1)
        return (out.gather(1, index)[:, 0] - torch.logsumexp(out.scatter(1, index, float("-inf")), dim=-1)).sum()

    def probability(params, data):
        x, y = data
        return torch.softmax(logits(params, x), dim=-1).gather(1, y.reshape(-1, 1)).sum()

    return mean_loss, margin, log_odds, probability


def dattri_trak_scores(networks: list, x_train, y_train, x_targets, y_targets, proj_dim: int, seed: int,
                       regularization: float = 0.0, loss=None) -> np.ndarray:
    """dattri's ``TRAKAttributor`` on an ensemble of trained networks, ``[n_train, n_targets]`` (float64).

    Gradients of the log-odds output for the training examples and the targets,
    projected to ``proj_dim`` by dattri's seeded normal projector, ``Q = 1 - p``
    averaged over the ensemble; ``loss`` is unused (TRAK's output is the log-odds).
    """
    import torch
    from dattri.algorithm import base, trak
    from dattri.task import AttributionTask

    _quiet(trak, base)
    _, _, log_odds, probability = _functions(networks[0], loss)
    task = AttributionTask(loss_func=log_odds, model=networks[0], target_func=log_odds,
                           checkpoints=[_state(network) for network in networks])
    attributor = trak.TRAKAttributor(task, probability, regularization=float(regularization),
                                     projector_kwargs={"proj_dim": int(proj_dim), "proj_max_batch_size": 32,
                                                       "proj_seed": int(seed), "device": "cpu"})
    with torch.no_grad():  # torch.func's transforms still differentiate; no autograd graph over the parameters
        attributor.cache(_loader(x_train, y_train))
        return attributor.attribute(_loader(x_targets, y_targets)).double().numpy()


def dattri_influence_scores(model, x_train, y_train, fit_rows, x_targets, y_targets, regularization: float,
                            loss=None) -> np.ndarray:
    """dattri's ``IFAttributorExplicit`` for one network, in our convention, ``[n_train, n_targets]`` (float64).

    The Hessian is that of the mean training loss (``loss(logits, labels)``,
    cross-entropy when None) over ``fit_rows``, plus ``regularization * I``;
    the target function is the correct-class margin. dattri returns
    ``grad loss_i^T (H + lambda I)^-1 grad f_t``; the result is minus that over
    ``len(fit_rows)``, the effect of including example i on target t's margin.
    """
    import torch
    from dattri.algorithm import base
    from dattri.algorithm.influence_function import IFAttributorExplicit
    from dattri.task import AttributionTask

    _quiet(base)
    mean_loss, margin, _, _ = _functions(model, loss)
    task = AttributionTask(loss_func=mean_loss, model=model, target_func=margin, checkpoints=[_state(model)])
    attributor = IFAttributorExplicit(task, regularization=float(regularization))
    rows = torch.as_tensor(np.asarray(fit_rows), dtype=torch.int64)
    attributor.cache(_loader(x_train[rows], y_train[rows]))
    with torch.no_grad(), _chunked_hessian(am.HVP_CHUNK):
        raw = attributor.attribute(_loader(x_train, y_train), _loader(x_targets, y_targets))
    return -raw.double().numpy() / len(rows)


def _state(network) -> dict:
    return {name: value.detach().clone() for name, value in network.state_dict().items()}


def dattri_trak(ctx: Context, settings: dict, proj_dim: int, n_models: int) -> tuple[np.ndarray, float, float]:
    """dattri's TRAK on the first ``n_models`` of our TRAK's networks: (scores, CPU seconds with the networks'
    share of training, training CPU seconds)."""
    networks, training_seconds = trained_networks(ctx, "trak", settings, n_models)
    seed = (int_seed(ctx.seed, Stream.APPLICATION, ctx.alpha, PROJECTION_INDEX) + proj_dim) % 2**31
    start = time.process_time()
    scores = dattri_trak_scores(networks, ctx.x_train, ctx.y_train, ctx.x_targets, ctx.y_targets, proj_dim, seed,
                                settings["damping"])
    return scores, time.process_time() - start + training_seconds, training_seconds


def _influence_regularization(ctx: Context, settings: dict) -> float:
    """dattri's shift of the Hessian: our damping plus the learner's weight decay (our Hessian includes it)."""
    return float(settings["damping"]) + float(ctx.learner.weight_decay)


def dattri_influence(ctx: Context, settings: dict) -> tuple[np.ndarray, float, float]:
    """dattri's explicit-Hessian influence functions on our influence functions' networks, averaged over them:
    (scores in our sign convention, CPU seconds with training, training CPU seconds)."""
    n_models = settings["n_models"]
    networks, training_seconds = trained_networks(ctx, "influence_function", settings, n_models)
    _, subsets = model_plan("influence_function", n_models, settings["train_set"], ctx.seed, ctx.alpha,
                            ctx.dataset.n_train)
    regularization = _influence_regularization(ctx, settings)
    start = time.process_time()
    total = sum(dattri_influence_scores(model, ctx.x_train, ctx.y_train, rows, ctx.x_targets, ctx.y_targets,
                                        regularization, ctx.loss) for model, rows in zip(networks, subsets))
    return total / len(networks), time.process_time() - start + training_seconds, training_seconds


def peer_rows(ctx: Context, settings: dict, held_out: evaluate.HeldOut, index: np.ndarray) -> list[Row]:
    """The reference libraries' rows: scored on the held-out models, or null rows with the reason."""
    peers = settings["peers"]
    rows: list[Row] = []
    for library in peer_libraries(settings):
        methods = LIBRARIES[library]
        version = peer_version(library)
        reason = None
        if version is None:
            reason = f"skipped: {library} not installed ({INSTALL_HINT})"
        elif protocol.TORCH_MODULE not in ctx.learner.capabilities:
            reason = (f"skipped: needs a learner with its torch network ({protocol.TORCH_MODULE!r}); model.name "
                      f"{ctx.learner.name!r} declares {sorted(ctx.learner.capabilities)}")
        if reason is not None:
            log.warning("%s: %s", library, reason)
            rows += [Row(method, 0, cpu_seconds=None, note=reason) for method in methods]
            continue
        trak, influence = settings["trak"], settings["influence"]
        n_trak = int(peers["trak_ensemble"] or max(trak["ensemble"], default=0))
        if n_trak:
            for d in peers["trak_proj_dim"]:
                scores, seconds, training = dattri_trak(ctx, trak, int(d), n_trak)
                row = Row("dattri_trak", n_trak, variant=f"proj_dim={d}", models_trained=n_trak, cpu_seconds=seconds,
                          cpu_seconds_training=training, train_set=trak["train_set"],
                          note=f"dattri {version} TRAKAttributor on our TRAK networks (the first {n_trak})")
                rows.append(score_row(row, scores, None, held_out, index))
                log.info("dattri %s TRAK (proj_dim %d) with %d models: LDS %.4f (%.1f CPU s)", version, d, n_trak,
                         row.lds, seconds)
        if influence["n_models"]:
            scores, seconds, training = dattri_influence(ctx, influence)
            n = influence["n_models"]
            regularization = _influence_regularization(ctx, influence)
            row = Row("dattri_influence", n, models_trained=n, cpu_seconds=seconds, cpu_seconds_training=training,
                      train_set=influence["train_set"],
                      note=f"dattri {version} IFAttributorExplicit on our influence networks, H + {regularization:g} I")
            rows.append(score_row(row, scores, None, held_out, index))
            log.info("dattri %s influence functions with %d models: LDS %.4f (%.1f CPU s)", version, n, row.lds,
                     seconds)
    return rows
