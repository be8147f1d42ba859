"""The attribution methods that train networks: influence functions, TracIn, TRAK and representation similarity.

:class:`Context` holds the prepared data as tensors and the run's learner, whose
``train_networks`` trains each method's networks (seeds and rows from
``settings.model_plan``); each method returns its score matrix and CPU seconds
(the computations are in ``applications.attribution_methods``), and
:func:`network_rows` scores them into table rows, or null rows with the reason for
a learner without its torch network.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ... import data, evaluate, protocol
from ...seeding import Stream, int_seed
from .. import attribution_methods as am
from .settings import NETWORK_METHODS, PROJECTION_INDEX, SETTINGS_KEY, checkpoint_epochs, model_plan
from .table import Row, score_row

log = logging.getLogger(__name__)


@dataclass
class Context:
    """The prepared data as float tensors, the run's learner and the seeding keys."""

    dataset: data.Dataset
    learner: protocol.Learner
    seed: int
    alpha: float

    def __post_init__(self) -> None:
        import torch

        d = self.dataset
        self.task = protocol.TrainData.of(d, "cpu")
        # The learner's own loss for the per-example gradients; None: cross-entropy (the methods' own code path).
        self.loss = None if type(self.learner).loss is protocol.Learner.loss else self.learner.loss
        self.x_train = torch.from_numpy(d.x_train.reshape(d.n_train, -1).astype(np.float32))
        self.y_train = torch.from_numpy(d.y_train.astype(np.int64))
        self.x_targets = torch.from_numpy(d.x_targets.reshape(d.n_targets, -1).astype(np.float32))
        self.y_targets = torch.from_numpy(d.y_targets.astype(np.int64))
        self.n_classes = d.n_classes
        # Each method's trained networks and their training CPU seconds, for the reference libraries' rows (peers).
        self.networks: dict[tuple[str, str], tuple[list, float]] = {}


def _train(ctx: Context, method: str, settings: dict, n_models: int) -> tuple[list, float]:
    """A method's networks, trained by the learner (``train_networks``); (networks, CPU seconds). Kept in ``ctx``."""
    seeds, subsets = model_plan(method, n_models, settings["train_set"], ctx.seed, ctx.alpha, ctx.dataset.n_train)
    start = time.process_time()
    networks = [checkpoints[-1].model for checkpoints in ctx.learner.train_networks(ctx.task, np.stack(subsets), seeds)]
    seconds = time.process_time() - start
    ctx.networks[(method, settings["train_set"])] = (networks, seconds)
    return networks, seconds


def trained_networks(ctx: Context, method: str, settings: dict, n_models: int) -> tuple[list, float]:
    """The first ``n_models`` of a method's networks (``model_plan`` is nested), trained here unless already
    trained for the method's row; (networks, their share of the training CPU seconds)."""
    cached = ctx.networks.get((method, settings["train_set"]))
    if cached is None or len(cached[0]) < n_models:
        return _train(ctx, method, settings, n_models)
    networks, seconds = cached
    return networks[:n_models], seconds * n_models / len(networks)


def influence_function(ctx: Context, settings: dict) -> tuple[np.ndarray, float, float, dict]:
    """Influence functions with the exact Hessian, averaged over ``n_models`` models.

    Returns (scores, CPU seconds in all, CPU seconds training, details of the eigenvalue clamping).
    """
    start = time.process_time()
    networks, training_seconds = _train(ctx, "influence_function", settings, settings["n_models"])
    _, subsets = model_plan("influence_function", settings["n_models"], settings["train_set"], ctx.seed, ctx.alpha,
                            ctx.dataset.n_train)
    total, details = None, []
    for model, rows in zip(networks, subsets):
        scores, inverse = am.influence_scores(model, ctx.x_train, ctx.y_train, rows, ctx.x_targets, ctx.y_targets,
                                              ctx.n_classes, settings["damping"], ctx.learner.weight_decay, ctx.loss)
        total = scores if total is None else total + scores
        details.append({"n_params": int(inverse.inverse.shape[0]), "n_negative_eigenvalues": inverse.n_negative,
                        "n_clamped": inverse.n_clamped, "eigenvalue_min": inverse.eigenvalue_min,
                        "eigenvalue_max": inverse.eigenvalue_max})
        log.info("influence function model %d: %d parameters, %d negative eigenvalues (min %.3g, max %.3g), "
                 "%d clamped at %g", len(details), inverse.inverse.shape[0], inverse.n_negative,
                 inverse.eigenvalue_min, inverse.eigenvalue_max, inverse.n_clamped, settings["damping"])
    return total / len(networks), time.process_time() - start, training_seconds, {"models": details}


def tracin(ctx: Context, settings: dict) -> tuple[np.ndarray, float, float, dict]:
    """TracIn over the checkpoints at the end of the chosen epochs, averaged over ``n_models`` models."""
    epochs = checkpoint_epochs(settings, ctx.learner.epochs)
    seeds, subsets = model_plan("tracin", settings["n_models"], settings["train_set"], ctx.seed, ctx.alpha,
                                ctx.dataset.n_train)
    start = time.process_time()
    trained = ctx.learner.train_networks(ctx.task, np.stack(subsets), seeds, epochs)
    training_seconds = time.process_time() - start
    total = sum(am.tracin_scores(checkpoints, ctx.x_train, ctx.y_train, ctx.x_targets, ctx.y_targets, ctx.n_classes,
                                 ctx.loss) for checkpoints in trained)
    return total / len(trained), time.process_time() - start, training_seconds, {"checkpoint_epochs": epochs}


def trak(ctx: Context, settings: dict) -> list[tuple[int, int, np.ndarray, float, float]]:
    """TRAK at each projection dimension and ensemble size (nested: the first k models):
    (proj_dim, k, scores, CPU seconds, training CPU seconds).

    The largest ensemble's models are trained together; a size's CPU seconds are
    its share of that training (k / K), its k models' per-example gradients, their
    projection and kernel at that dimension, and the final averaging. Projection
    seeds depend only on (seed, alpha, dimension).
    """
    sizes = sorted(int(k) for k in settings["ensemble"])
    dims = [int(d) for d in settings["proj_dim"]]
    networks, training_seconds = _train(ctx, "trak", settings, sizes[-1])
    n_params = am.FlatModel(networks[0]).n_params
    base = int_seed(ctx.seed, Stream.APPLICATION, ctx.alpha, PROJECTION_INDEX)
    projections, projection_seconds = {}, {}
    for d in dims:
        t0 = time.process_time()
        projections[d] = am.gaussian_projection(n_params, d, (base + d) % 2**63)
        projection_seconds[d] = time.process_time() - t0
    kernels = {d: [] for d in dims}
    probabilities, gradient_seconds, kernel_seconds = [], [], {d: [] for d in dims}
    for model in networks:
        t1 = time.process_time()
        g_train, g_targets = am.output_grads(model, ctx.x_train, ctx.y_train, ctx.x_targets, ctx.y_targets,
                                             ctx.n_classes)
        probabilities.append(am.correct_class_probability(model, ctx.x_train, ctx.y_train))
        gradient_seconds.append(time.process_time() - t1)
        for d in dims:
            t2 = time.process_time()
            kernels[d].append(am.trak_kernel_scores((g_train @ projections[d]).double(),
                                                    (g_targets @ projections[d]).double(), settings["damping"]))
            kernel_seconds[d].append(time.process_time() - t2)
    per_model_training = training_seconds / len(networks)
    log.info("TRAK: %d models trained in %.1f CPU s; gradients %.1f CPU s; projections %s of %d parameters",
             len(networks), training_seconds, sum(gradient_seconds), dims, n_params)
    out = []
    for d in dims:
        for k in sizes:
            t3 = time.process_time()
            scores = am.trak_scores(kernels[d][:k], probabilities[:k])
            seconds = (k * per_model_training + sum(gradient_seconds[:k]) + projection_seconds[d]
                       + sum(kernel_seconds[d][:k]) + time.process_time() - t3)
            out.append((d, k, scores, seconds, k * per_model_training))
    return out


def representation_similarity(ctx: Context, settings: dict) -> tuple[np.ndarray, float, float, dict]:
    """Signed cosine similarity of penultimate-layer features, averaged over ``n_models`` models."""
    start = time.process_time()
    networks, training_seconds = _train(ctx, "representation_similarity", settings, settings["n_models"])
    total = sum(am.signed_cosine(ctx.learner.features(model, ctx.x_train).numpy(),
                                 ctx.learner.features(model, ctx.x_targets).numpy(),
                                 ctx.dataset.y_train, ctx.dataset.y_targets) for model in networks)
    features = ctx.learner.features_description
    return total / len(networks), time.process_time() - start, training_seconds, {"features": features}


def network_rows(ctx: Context, settings: dict, held_out: evaluate.HeldOut, index: np.ndarray,
                 details: dict) -> list[Row]:
    """Rows of the methods that need the trained network (null rows with the reason for learners without it)."""
    methods = [m for m in NETWORK_METHODS if (settings["trak"]["ensemble"] if m == "trak"
                                              else settings[SETTINGS_KEY[m]]["n_models"])]
    if protocol.TORCH_MODULE not in ctx.learner.capabilities:
        reason = (f"skipped: needs a learner with its torch network ({protocol.TORCH_MODULE!r}); model.name "
                  f"{ctx.learner.name!r} declares {sorted(ctx.learner.capabilities)}")
        for method in methods:
            log.warning("%s %s", method, reason)
        return [Row(method, 0, cpu_seconds=None, note=reason) for method in methods]
    rows = []
    for method in methods:
        key = SETTINGS_KEY[method]
        train_set = settings[key]["train_set"]
        if method == "trak":
            for d, k, scores, seconds, training_seconds in trak(ctx, settings[key]):
                row = Row("trak", k, variant=f"proj_dim={d}", models_trained=k, cpu_seconds=seconds,
                          cpu_seconds_training=training_seconds, train_set=train_set,
                          note=f"projected gradients of the log-odds output to {d} dimensions")
                rows.append(score_row(row, scores, None, held_out, index))
                log.info("TRAK (proj_dim %d) with %d models: LDS %.4f (%.1f CPU s)", d, k, row.lds, seconds)
            continue
        function = {"influence_function": influence_function, "tracin": tracin,
                    "representation_similarity": representation_similarity}[method]
        scores, seconds, training_seconds, info = function(ctx, settings[key])
        details[method] = info
        n = settings[key]["n_models"]
        note = (f"exact Hessian, eigenvalues clamped at {settings[key]['damping']:g}" if method == "influence_function"
                else f"checkpoints at epochs {info['checkpoint_epochs']}" if method == "tracin" else info["features"])
        row = Row(method, n, models_trained=n, cpu_seconds=seconds, cpu_seconds_training=training_seconds,
                  train_set=train_set, note=note)
        rows.append(score_row(row, scores, None, held_out, index))
        log.info("%s with %d models: LDS %.4f (%.1f CPU s)", method, n, row.lds, seconds)
    return rows
