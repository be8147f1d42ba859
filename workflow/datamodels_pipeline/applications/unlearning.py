"""Unlearning by datamodel matching (Georgiev et al., "Attribute-to-Delete", ICLR 2025).

Task: models were trained on the full training set S; a forget set F of S must be removed. The gold standard
is retraining on S \\ F from scratch (the *oracles*); an unlearning method instead edits the trained models and
is judged by how close its outputs come to the oracles' distribution of outputs over seeds.

Datamodel matching (DMM) predicts every output of a model retrained without F and fine-tunes the trained model
towards those predictions:

* a point p outside F (a retained training example or a test target): predicted margin = the trained model's
  own margin on p − Σ_{i∈F} weight[i, p] (the datamodel's predicted change from removing F, added to that
  model's own output; train-set datamodels for training examples, the run's datamodels for test targets);
* a forget point j: the trained model has seen j itself, an effect its train-set datamodel cannot express (it is
  fit only on models that exclude j, so weight[j, j] = 0). Its predicted mean margin is the datamodel's own output
  at the retain mask, bias[j] + Σ_{i∉F} weight[i, j], i.e. j's margin as an unseen example of a model trained on
  S \\ F; each model's prediction keeps that model's deviation from the trained models' mean margin on j.
  The simpler "own margin − Σ_{i∈F} weight[i, j]" misses that self-influence; its error is reported too
  (``predicted_difference_form`` in the table, ``datamodel_prediction_error_difference_form`` in the summary).

The fine-tuning loss is the mean squared error between the model's correct-class margin and its prediction over
the *matching* points (the forget set, half of a random sample of retained examples and half of the test
targets). Baselines: the trained models unchanged, plain fine-tuning on the retained data (cross-entropy, the same
optimiser, learning rate, batch size and number of steps), and *oracle matching* (the same fine-tuning with the
datamodels' predicted change replaced by the true mean change measured on the second half of the oracles: what
DMM would reach with perfect predictions). Every method is scored on the forget points, the held-out half of the
retained sample and the evaluation half of the test targets (never used for fine-tuning) against the first half
of the oracles: margin error and KLoM (KL divergence between Gaussians fitted to the margins over seeds); the
second half of the oracles scored the same way is the noise floor.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn

from .. import data, devices, fit, learners, protocol
from ..protocol import TORCH_MODULE, TrainData
from ..atomic import atomic_output
from ..outputs import correct_class_margin
from ..plots import save_figure
from ..seeding import AppIndex, Stream, app_index, rng
from .figures import fmt, plt
from .retrain import keep_indices, model_seeds

log = logging.getLogger(__name__)
FORGET_INDEX, RETAIN_INDEX, SPLIT_INDEX = AppIndex.UNLEARNING_FORGET, AppIndex.UNLEARNING_RETAIN, AppIndex.UNLEARNING_SPLIT
"""``Stream.APPLICATION`` indices of the forget set, the retained sample and the test targets' split."""
ORDER_INDEX = {m: app_index("unlearning_order", m) for m in ("dmm", "finetune", "oracle_matching")}
"""``Stream.APPLICATION`` indices of each fine-tuning method's minibatch orders."""
PROBLEM_ALPHA = 0.0
"""The unlearning problem (forget set, points, minibatches) is keyed on alpha 0: it is the same for every alpha,
only the datamodels' predictions differ."""
METHODS = ("original", "finetune", "dmm", "oracle_matching")
METHOD_LABELS = {"original": "no unlearning (trained models)", "finetune": "fine-tuning on retained data",
                 "dmm": "datamodel matching (DMM)", "oracle_matching": "oracle matching (upper bound)"}


def check_learner(recipe: dict) -> protocol.Learner:
    """The run's learner; unlearning fine-tunes the trained network, so it must provide it (``torch_module``)."""
    learner = protocol.learner(recipe)
    protocol.require(learner, TORCH_MODULE, "unlearning")
    return learner


def forget_set(y_train: np.ndarray, size: int, forget_class: int | None, seed: int) -> np.ndarray:
    """Sorted training indices of the forget set: ``size`` random examples, of class ``forget_class`` if given.

    Drawn from ``seeding.rng(seed, APPLICATION, 0, AppIndex.UNLEARNING_FORGET)``.
    """
    pool = np.arange(len(y_train)) if forget_class is None else np.flatnonzero(y_train == forget_class)
    if forget_class is not None and not len(pool):
        raise ValueError(f"applications.unlearning.forget_class {forget_class}: no training example has this label "
                         f"(labels {sorted(set(np.unique(y_train).tolist()))})")
    if not 1 <= size <= len(pool) or size >= len(y_train):
        where = f"the {len(pool)} training examples of class {forget_class}" if forget_class is not None else \
            f"{len(y_train) - 1} (|S| = {len(y_train)} minus one retained example)"
        raise ValueError(f"applications.unlearning.forget_size {size}: must be at least 1 and at most {where}")
    generator = rng(seed, Stream.APPLICATION, PROBLEM_ALPHA, FORGET_INDEX)
    return np.sort(generator.choice(pool, size=size, replace=False)).astype(np.int64)


@dataclass
class Points:
    """The points every model is evaluated on, by role: training indices, or target indices (columns of the run's
    datamodels) for the test roles. Everything per point is in the concatenation order of ``ROLES``."""

    forget: np.ndarray
    retain_match: np.ndarray
    retain_eval: np.ndarray
    test_match: np.ndarray
    test_eval: np.ndarray

    ROLES: ClassVar[tuple[str, ...]] = ("forget", "retain_match", "retain_eval", "test_match", "test_eval")

    def role_of_each(self) -> np.ndarray:
        """The role of every point in concatenation order."""
        return np.concatenate([np.full(len(getattr(self, r)), r) for r in self.ROLES]).astype(object)

    def is_train(self) -> np.ndarray:
        """True for training examples, False for test targets."""
        return np.concatenate([np.full(len(getattr(self, r)), not r.startswith("test")) for r in self.ROLES])

    def index(self) -> np.ndarray:
        """Training index or target index of every point."""
        return np.concatenate([getattr(self, r) for r in self.ROLES]).astype(np.int64)

    def gather(self, x_train: np.ndarray, y_train: np.ndarray, train_dm: fit.Datamodels, x_targets: np.ndarray,
               y_targets: np.ndarray, test_dm: fit.Datamodels) -> tuple[np.ndarray, ...]:
        """Inputs, labels, datamodel weights ``[n_train, n_points]`` and biases of the points in concatenation
        order: training examples from the train-set datamodels, test targets from the run's datamodels."""
        parts = []
        for r in self.ROLES:
            i = getattr(self, r)
            x, y, dm = (x_targets, y_targets, test_dm) if r.startswith("test") else (x_train, y_train, train_dm)
            parts.append((x[i], y[i], dm.weight[:, i], dm.bias[i]))
        x, y, w, b = (np.concatenate(p, axis=1 if k == 2 else 0) for k, p in enumerate(zip(*parts)))
        return x.astype(np.float32), y.astype(np.int64), w.astype(np.float64), b.astype(np.float64)


def choose_points(n_train: int, test_targets: np.ndarray, forget: np.ndarray, n_retain: int, seed: int) -> Points:
    """A random sample of ``n_retain`` retained examples and the test targets, each split into halves.

    The first half of each (in random order) is matched by fine-tuning, the second only evaluated.
    """
    retained = keep_indices(n_train, forget)
    if not 2 <= n_retain <= len(retained):
        raise ValueError(f"applications.unlearning.n_retain {n_retain}: must be in [2, {len(retained)}] (the "
                         f"training examples outside the forget set)")
    if len(test_targets) < 2:
        raise ValueError(f"the run has {len(test_targets)} test targets; the unlearning application needs at least 2 "
                         "(data.targets test or both)")
    sample = rng(seed, Stream.APPLICATION, PROBLEM_ALPHA, RETAIN_INDEX).choice(retained, size=n_retain, replace=False)
    order = rng(seed, Stream.APPLICATION, PROBLEM_ALPHA, SPLIT_INDEX).permutation(test_targets)
    half_retain, half_test = n_retain // 2, len(order) // 2
    return Points(forget=forget, retain_match=np.sort(sample[:half_retain]), retain_eval=np.sort(sample[half_retain:]),
                  test_match=np.sort(order[:half_test]), test_eval=np.sort(order[half_test:]))


def predict_margins(own_margins: np.ndarray, weight: np.ndarray, bias: np.ndarray, forget: np.ndarray,
                    forget_point: np.ndarray) -> np.ndarray:
    """Datamodel prediction of each model's margins after removing ``forget`` from the full training set.

    ``own_margins`` [n_models, n_points]: the trained models' margins; ``weight`` [n_train, n_points] and ``bias``
    [n_points]: each point's datamodel; ``forget_point`` [n_points] bool marks the forget points. Every prediction
    is the model's own margin plus a predicted change: minus the forget set's weights for the other points; for a
    forget point the datamodel's output at the retain mask minus the trained models' mean margin (so the mean
    prediction is that output, and each model keeps its own deviation: matching does not collapse the spread
    over seeds).
    """
    weight = np.asarray(weight, dtype=np.float64)
    own_margins = np.asarray(own_margins, dtype=np.float64)
    removal = weight[forget].sum(axis=0)
    at_retain_mask = np.asarray(bias, dtype=np.float64) + weight.sum(axis=0) - removal
    change = np.where(forget_point, at_retain_mask - own_margins.mean(axis=0), -removal)
    return own_margins + change


def oracle_matching_targets(own_margins: np.ndarray, oracle_mean: np.ndarray) -> np.ndarray:
    """DMM's targets with perfect predictions: each model's own margin plus the true mean change (the oracles'
    mean margin minus the trained models' mean margin).

    ``oracle_mean`` must come from oracles that are not used for scoring (the second half).
    """
    own_margins = np.asarray(own_margins, dtype=np.float64)
    return own_margins + (oracle_mean - own_margins.mean(axis=0))


def margins_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Correct-class margins of one network on the points, float64 NumPy."""
    with torch.inference_mode():
        return correct_class_margin(model(x), y).double().cpu().numpy()


def _optimizer(model: nn.Module, settings: dict) -> torch.optim.Optimizer:
    if settings["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=settings["lr"])
    if settings["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=settings["lr"], momentum=0.9)
    raise ValueError(f"applications.unlearning.finetune.optimizer {settings['optimizer']!r} is not adam or sgd")


def n_steps(n_match: int, settings: dict) -> int:
    """Gradient steps of one fine-tuning: ``epochs`` passes over the matching points."""
    return settings["epochs"] * math.ceil(n_match / settings["batch_size"])


def finetune_to_margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, settings: dict,
                        generator: np.random.Generator) -> int:
    """Fine-tune in place: mean squared error between the correct-class margin and ``target``; returns the steps."""
    optimizer, steps = _optimizer(model, settings), 0
    for _ in range(settings["epochs"]):
        order = torch.from_numpy(generator.permutation(len(x))).to(x.device)
        for start in range(0, len(x), settings["batch_size"]):
            index = order[start:start + settings["batch_size"]]
            loss = (correct_class_margin(model(x[index]), y[index]) - target[index]).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    return steps


def finetune_on_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, settings: dict,
                       generator: np.random.Generator, loss: Callable = F.cross_entropy) -> int:
    """Fine-tune in place with the training ``loss`` (default cross-entropy) on (x, y) for exactly ``steps``
    minibatch steps (epochs in random order)."""
    optimizer, done = _optimizer(model, settings), 0
    while done < steps:
        order = torch.from_numpy(generator.permutation(len(x))).to(x.device)
        for start in range(0, len(x), settings["batch_size"]):
            index = order[start:start + settings["batch_size"]]
            value = loss(model(x[index]), y[index])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return done


def gaussian_kl(mu_p: np.ndarray, sd_p: np.ndarray, mu_q: np.ndarray, sd_q: np.ndarray) -> np.ndarray:
    """KL(N(mu_p, sd_p²) ‖ N(mu_q, sd_q²)), elementwise."""
    return np.log(sd_q / sd_p) + (sd_p ** 2 + (mu_p - mu_q) ** 2) / (2 * sd_q ** 2) - 0.5


def fitted_gaussian(margins: np.ndarray, std_floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof 1, at least ``std_floor``) over models (axis 0)."""
    sd = margins.std(axis=0, ddof=1) if len(margins) > 1 else np.zeros(margins.shape[1])
    return margins.mean(axis=0), np.maximum(sd, std_floor)


def klom(margins: np.ndarray, oracle: np.ndarray, std_floor: float) -> np.ndarray:
    """KLoM-style score per point: KL from the Gaussian fitted to a method's margins over models to the oracles'."""
    return gaussian_kl(*fitted_gaussian(margins, std_floor), *fitted_gaussian(oracle, std_floor))


def score(margins: np.ndarray, oracle: np.ndarray, std_floor: float) -> dict:
    """Margin error (|difference of mean margins| averaged over points), KLoM mean and median, accuracy."""
    if margins.shape[1] == 0:
        return {"margin_error": None, "klom_mean": None, "klom_median": None, "accuracy": None}
    kl = klom(margins, oracle, std_floor)
    return {"margin_error": float(np.abs(margins.mean(axis=0) - oracle.mean(axis=0)).mean()),
            "klom_mean": float(kl.mean()), "klom_median": float(np.median(kl)), "accuracy": float((margins > 0).mean())}


def group_masks(points: Points, labels: np.ndarray, forget_class: int | None) -> dict[str, np.ndarray]:
    """Boolean masks over the concatenated points of each evaluation group: the forget points, the held-out
    retained examples, the evaluation half of the test targets and, for a one-class forget set, those of its class."""
    role = points.role_of_each()
    groups = {"forget": role == "forget", "retain": role == "retain_eval", "test": role == "test_eval"}
    if forget_class is not None:
        groups["test_forget_class"] = (role == "test_eval") & (labels == forget_class)
    return groups


def summarise(method_margins: dict[str, np.ndarray], oracle: np.ndarray, oracle2: np.ndarray, predicted: np.ndarray,
              groups: dict[str, np.ndarray], std_floor: float) -> dict:
    """Per evaluation group: each method's scores, the oracle floor and the datamodel prediction's own error."""
    out = {}
    for name, rows in groups.items():
        o = oracle[:, rows]
        out[name] = {
            "n_points": int(rows.sum()),
            "oracle_mean_margin": float(o.mean()) if rows.any() else None,
            "oracle_accuracy": float((o > 0).mean()) if rows.any() else None,
            "methods": {m: score(values[:, rows], o, std_floor) for m, values in method_margins.items()},
            "oracle_floor": score(oracle2[:, rows], o, std_floor),
            "datamodel_prediction_error": (float(np.abs(predicted[:, rows].mean(axis=0) - o.mean(axis=0)).mean())
                                           if rows.any() else None),
        }
    return out


GROUP_TITLES = {"forget": "forget set", "retain": "held-out retained examples", "test": "test targets (evaluation half)",
                "test_forget_class": "test targets of the forget class"}
METHOD_COLOURS = {"original": "tab:grey", "finetune": "tab:orange", "dmm": "tab:green", "oracle_matching": "tab:blue"}


def metrics_figure(results: dict, methods: list[str], forget_class: int | None, alpha: float, path: str | Path) -> None:
    """Per evaluation group: margin error and median KLoM of each method, the oracle floor dashed."""
    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(3.3 * len(names) + 0.6, 6.4), squeeze=False)
    for col, group in enumerate(names):
        g = results[group]
        for row, (key, ylabel) in enumerate((("margin_error", "margin error |mean − oracle mean|"),
                                             ("klom_median", "KLoM (median KL to the oracles)"))):
            ax = axes[row, col]
            bars = [(METHOD_LABELS[m], g["methods"][m][key], METHOD_COLOURS[m]) for m in methods]
            if key == "margin_error":
                bars.append(("datamodel prediction (before fine-tuning)", g["datamodel_prediction_error"], "tab:green"))
            values = [np.nan if v is None else v for _, v, _ in bars]
            x = np.arange(len(bars))
            handles = ax.bar(x, values, color=[c for *_, c in bars], edgecolor="black", linewidth=0.5)
            if key == "margin_error":
                handles[-1].set_hatch("//")
                handles[-1].set_alpha(0.5)
            floor = g["oracle_floor"][key]
            if floor is not None:
                ax.axhline(floor, color="black", ls="--", lw=1, label=f"oracle vs oracle ({fmt(floor)})")
            for xi, v in zip(x, values):
                if np.isfinite(v):
                    ax.text(xi, v, f"{v:.2g}", ha="center", va="bottom", fontsize=7)
            finite = [v for v in values + [floor or np.nan] if np.isfinite(v) and v > 0]
            if key == "klom_median" and finite:
                ax.set_yscale("log")
                ax.set_ylim(min(finite) / 1.5, max(finite) * 3)
            elif finite:
                ax.set_ylim(0, max(finite) * 1.3)
            ax.set_xticks(x, ["original", "fine-tune", "DMM", "oracle m."][:len(methods)]
                          + (["DM pred."] if key == "margin_error" else []), fontsize=7)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.legend(fontsize=7, loc="upper center")
            ax.grid(alpha=0.3, axis="y")
            if row == 0:
                ax.set_title(f"{GROUP_TITLES[group]} (n={g['n_points']})", fontsize=9)
    what = f"{results['forget']['n_points']} training examples" + (
        f" of class {forget_class}" if forget_class is not None else " (random)")
    fig.suptitle(f"unlearning {what}, α = {alpha:g} datamodels: distance of each method's outputs to models "
                 "retrained without them", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def scatter_figure(panels: dict[str, np.ndarray], oracle_mean: np.ndarray, predicted_mean: np.ndarray,
                   method_means: dict[str, np.ndarray], alpha: float, path: str | Path) -> None:
    """Oracle mean margin (x) against the datamodel prediction and each method's mean margin (y), per panel."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.8 * len(panels), 5.0), squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels.items()):
        x = oracle_mean[rows]
        series = [("original", method_means["original"][rows], "tab:grey", "o"),
                  ("datamodel prediction", predicted_mean[rows], "tab:purple", "x")]
        series += [(m, method_means[m][rows], METHOD_COLOURS[m], "o") for m in ("finetune", "dmm") if m in method_means]
        for name, y, colour, marker in series:
            error = np.abs(y - x).mean() if len(x) else np.nan
            ax.scatter(x, y, s=14, color=colour, marker=marker, alpha=0.75,
                       label=f"{METHOD_LABELS.get(name, name)} (error {error:.2f})")
        values = np.concatenate([x] + [y for _, y, *_ in series]) if len(x) else np.zeros(2)
        low, high = float(values.min()), float(values.max())
        ax.plot([low, high], [low, high], color="tab:red", lw=1, label="y = x")
        ax.set(xlabel="oracle margin (mean over models retrained without the forget set)",
               ylabel="margin (mean over models)", title=f"{title} (n={int(rows.sum())})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"α = {alpha:g}: predicted and unlearned margins against retraining", fontsize=10)
    save_figure(fig, path)


def run(datamodels_path: str, train_set_datamodels_path: str, data_path: str, alpha: float, settings: dict,
        recipe: dict, seed: int, threads: int, table_path: str, summary_path: str, metrics_path: str,
        scatter_path: str) -> None:
    """Train, unlearn three ways, retrain the oracles, and write the table, summary and figures.

    ``threads`` is used by the batched oracle training only: the plain-loop training and the fine-tuning step one
    small network on small minibatches, where one thread is fastest (more only add contention).
    """
    torch.set_num_threads(1)
    start = time.perf_counter()
    learner = check_learner(recipe)
    dataset = data.load(data_path)
    n_train, n_seeds, tune = dataset.n_train, settings["n_seeds"], settings["finetune"]
    test_dm, train_dm = fit.read(datamodels_path), fit.read(train_set_datamodels_path)
    if train_dm.weight.shape != (n_train, n_train):
        raise ValueError(f"{train_set_datamodels_path}: weights {train_dm.weight.shape}, expected train-set datamodels "
                         f"({n_train}, {n_train}) of this data set")
    if test_dm.weight.shape != (n_train, dataset.n_targets):
        raise ValueError(f"{datamodels_path}: weights {test_dm.weight.shape} do not match the data set "
                         f"({n_train} training examples, {dataset.n_targets} targets)")
    forget_class = settings.get("forget_class")
    forget = forget_set(dataset.y_train, settings["forget_size"], forget_class, seed)
    keep = keep_indices(n_train, forget)
    points = choose_points(n_train, np.flatnonzero(dataset.target_train_index < 0), forget, settings["n_retain"], seed)
    is_train, index, role = points.is_train(), points.index(), points.role_of_each()
    x_flat_train = dataset.x_train.reshape(n_train, -1).astype(np.float32)
    x_points, y_points, weight, bias = points.gather(x_flat_train, dataset.y_train, train_dm,
                                                     dataset.x_targets.reshape(dataset.n_targets, -1).astype(np.float32),
                                                     dataset.y_targets, test_dm)
    forget_point = role == "forget"
    match = np.isin(role, ["forget", "retain_match", "test_match"])

    device = devices.resolve(recipe["train"].get("device", "cpu"))
    x_train_t = torch.from_numpy(np.ascontiguousarray(x_flat_train))
    y_train_t = torch.from_numpy(dataset.y_train.astype(np.int64))
    x_p, y_p = torch.from_numpy(x_points).to(device), torch.from_numpy(y_points).to(device)
    seeds = model_seeds(seed, 3 * n_seeds)
    original_seeds, oracle_seeds = seeds[:n_seeds], seeds[n_seeds:]

    tic = time.perf_counter()
    task = TrainData.of(dataset, device, x_points, y_points)
    originals = [learner.train_network(task, np.arange(n_train), s) for s in original_seeds]
    original = np.stack([margins_of(m, x_p, y_p) for m in originals])
    log.info("%d trained networks (%s) in %.1f s", n_seeds, learner.name, time.perf_counter() - tic)
    tic = time.perf_counter()
    torch.set_num_threads(max(1, threads))
    oracles = learners.train_on(recipe, task, np.repeat(keep[None], 2 * n_seeds, axis=0), oracle_seeds
                                ).margins.astype(np.float64)
    torch.set_num_threads(1)
    oracle, oracle2 = oracles[:n_seeds], oracles[n_seeds:]
    log.info("%d oracles retrained without the %d forget examples in %.1f s", 2 * n_seeds, len(forget),
             time.perf_counter() - tic)

    predicted = predict_margins(original, weight, bias, forget, forget_point)
    difference_prediction = original - weight[forget].sum(axis=0)
    steps = n_steps(int(match.sum()), tune)
    x_match, y_match = x_p[match], y_p[match]
    x_retain = x_train_t[keep].to(device)
    y_retain = y_train_t[keep].to(device)
    oracle_targets = oracle_matching_targets(original, oracle2.mean(axis=0))
    generators = {m: rng(seed, Stream.APPLICATION, PROBLEM_ALPHA, i) for m, i in ORDER_INDEX.items()}
    methods: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    tic = time.perf_counter()
    for s, trained in enumerate(originals):
        methods["original"].append(original[s])
        model = copy.deepcopy(trained)
        finetune_on_labels(model, x_retain, y_retain, steps, tune, generators["finetune"], learner.loss)
        methods["finetune"].append(margins_of(model, x_p, y_p))
        model = copy.deepcopy(trained)
        target = torch.as_tensor(predicted[s, match], dtype=torch.float32, device=device)
        finetune_to_margins(model, x_match, y_match, target, tune, generators["dmm"])
        methods["dmm"].append(margins_of(model, x_p, y_p))
        if settings["oracle_matching"]:
            model = copy.deepcopy(trained)
            target = torch.as_tensor(oracle_targets[s, match], dtype=torch.float32, device=device)
            finetune_to_margins(model, x_match, y_match, target, tune, generators["oracle_matching"])
            methods["oracle_matching"].append(margins_of(model, x_p, y_p))
    margins = {m: np.stack(v) for m, v in methods.items() if v}
    log.info("fine-tuned %d models x %d methods, %d steps each, in %.1f s", n_seeds, len(margins) - 1, steps,
             time.perf_counter() - tic)

    floor = settings["klom_std_floor"]
    groups = group_masks(points, y_points, forget_class)
    results = summarise(margins, oracle, oracle2, predicted, groups, floor)
    forget_rows = groups["forget"]
    results["forget"]["datamodel_prediction_error_difference_form"] = float(np.abs(
        difference_prediction[:, forget_rows].mean(axis=0) - oracle[:, forget_rows].mean(axis=0)).mean())

    columns: dict[str, object] = {
        "role": pa.array(role.tolist(), type=pa.string()), "source": pa.array(np.where(is_train, "train", "test").tolist()),
        "index": pa.array(index), "label": pa.array(y_points),
        "predicted": pa.array(predicted.mean(axis=0)),
        "predicted_difference_form": pa.array(difference_prediction.mean(axis=0)),
        "removal_weight_sum": pa.array(weight[forget].sum(axis=0)),
    }
    for name, values in (("oracle", oracle), ("oracle2", oracle2), *margins.items()):
        mu, sd = fitted_gaussian(values, 0.0)
        columns[f"{name}_mean"], columns[f"{name}_std"] = pa.array(mu), pa.array(sd)
    columns["oracle2_klom"] = pa.array(klom(oracle2, oracle, floor))
    for name, values in margins.items():
        columns[f"{name}_klom"] = pa.array(klom(values, oracle, floor))
    with atomic_output(table_path) as tmp:
        pq.write_table(pa.table(columns), tmp)

    summary = {
        "alpha": alpha, "forget_size": int(len(forget)), "forget_class": forget_class,
        "forget": [int(i) for i in forget], "forget_label_counts": {str(k): int(v) for k, v in zip(
            *np.unique(dataset.y_train[forget], return_counts=True))},
        "n_seeds": n_seeds, "n_oracles": 2 * n_seeds, "klom_std_floor": floor, "finetune": dict(tune),
        "finetune_steps": steps, "n_points": {r: int((role == r).sum()) for r in Points.ROLES},
        "n_matching_points": int(match.sum()), "methods": list(margins), "groups": results,
        "n_models_trained": 3 * n_seeds, "n_models_finetuned": n_seeds * (len(margins) - 1),
        "seconds": round(time.perf_counter() - start, 1),
    }
    with atomic_output(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    metrics_figure(results, list(margins), forget_class, alpha, metrics_path)
    test_rows = groups.get("test_forget_class", groups["test"])
    scatter_figure({"forget points": forget_rows, ("test targets of the forget class (evaluation half)"
                                                   if "test_forget_class" in groups else "test targets (evaluation half)"):
                    test_rows}, oracle.mean(axis=0), predicted.mean(axis=0),
                   {m: v.mean(axis=0) for m, v in margins.items()}, alpha, scatter_path)
    log.info("unlearning (alpha=%s): forget %d examples; forget-set margin error original %.3f, finetune %.3f, "
             "dmm %.3f (floor %.3f); %.0f s", alpha, len(forget),
             *(results["forget"]["methods"][m]["margin_error"] for m in ("original", "finetune", "dmm")),
             results["forget"]["oracle_floor"]["margin_error"], summary["seconds"])
