"""Attribution baselines scored by LDS on the datamodels' held-out models, beside the compute each used.

Every method yields a score matrix ``[n_train, n_targets]`` (see
``attribution_methods``); it is scored exactly like the datamodels, with
``evaluate.score`` on the same held-out models (``aggregate/alpha=<a>/eval.parquet``),
so the LDS numbers are directly comparable. A score matrix has no meaningful
bias; LDS (a per-target Spearman correlation over held-out models) needs none,
so the bias is zero, and the pooled Spearman of such a row compares scales
across targets that the method never calibrated (read it only for the datamodels
and empirical influence, which have a bias).

Rows of the table:

* ``datamodels``: the run's lasso datamodels (LDS, median, pooled Spearman and
  per-target LDS read from the evaluation stage's ``metrics.json`` and
  ``per_target.parquet``, never recomputed), and the learning curve's refits on
  fewer models (LDS from ``learning_curve.json``);
* ``empirical_influence``: difference of mean margins with and without each
  example over the training models (the evaluation stage's baseline, read the
  same way, with its measured CPU seconds), and its learning curve;
* ``influence_function``, ``tracin``, ``trak`` (one row per ensemble size),
  ``representation_similarity``: from networks trained here by the run's learner
  (``protocol.Learner.train_networks``: learners with the ``torch_module``
  capability; ``rule all`` leaves the application out for the others, and asked
  for anyway they are skipped with a logged reason and a null row);
* ``input_similarity``: signed cosine similarity of the raw inputs (no model);
* ``external:<file stem>``: score matrices from other libraries (``external``).

Cost: ``models_trained`` and ``cpu_seconds`` (``time.process_time``, all threads
of this process). For the methods run here it is measured around the method's own
computation, training included. The datamodels' and empirical influence's models
were trained by earlier jobs: their training CPU-seconds are *estimated* as the
number of models times the per-model CPU time of ``cost_probe_models`` models
trained here with the pipeline's batched trainer; the datamodels add the lasso
fit's seconds from ``fit.json`` (wall-clock; for the learning curve's points the
full fit's seconds, an upper bound). ``cost_source`` says which.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import data, evaluate, learners, masks, protocol, store
from ..atomic import atomic_output
from ..seeding import AppIndex, Stream, app_index, int_seed, rng
from . import attribution_methods as am

log = logging.getLogger(__name__)

NETWORK_METHODS = ("influence_function", "tracin", "trak", "representation_similarity")
SETTINGS_KEY = {"influence_function": "influence", "tracin": "tracin", "trak": "trak",
                "representation_similarity": "representation"}
SEED_INDEX = {m: app_index("attribution_seeds", m) for m in ("influence_function", "tracin", "trak",
                                                               "representation_similarity")}
"""``Stream.APPLICATION`` indices of each method's model seeds; 65-68 draw its subsets (``train_set: subsets``)."""
SUBSET_INDEX = {m: app_index("attribution_subsets", m) for m in SEED_INDEX}
PROJECTION_INDEX, PROBE_INDEX = AppIndex.ATTRIBUTION_PROJECTION, AppIndex.ATTRIBUTION_PROBE
"""TRAK's projection seed; the cost probe's models (seeds and subsets)."""
TRAIN_SETS = ("full", "subsets")


@dataclass
class Row:
    """One scored (or skipped) attribution: a method at one number of models."""

    method: str
    n_models: int
    variant: str = ""
    lds: float | None = None
    lds_median: float | None = None
    pooled_spearman: float | None = None
    models_trained: int = 0
    cpu_seconds: float | None = None
    cpu_seconds_training: float | None = None
    cost_source: str = "measured"
    train_set: str = ""
    note: str = ""
    per_target: np.ndarray | None = field(default=None, repr=False)

    def record(self) -> dict:
        """The row as plain JSON values (without the per-target array)."""
        out = asdict(self)
        del out["per_target"]
        for key in ("lds", "lds_median", "pooled_spearman", "cpu_seconds", "cpu_seconds_training"):
            if out[key] is not None:
                out[key] = float(out[key])
        return out


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


# ---------------------------------------------------------------- settings
def warn_settings(settings: dict, n_train: int) -> None:
    """Log the settings that work but are likely not meant (the config is checked at parse time, config.py)."""
    dims = settings["trak"]["proj_dim"]
    if settings["trak"]["damping"] == 0 and any(int(d) >= n_train for d in dims):
        log.warning("applications.attribution.trak.proj_dim %s reaches data.n_train = %d: Phi^T Phi is singular and "
                    "is pseudo-inverted (set trak.damping > 0 for a ridge instead)", dims, n_train)


def checkpoint_epochs(settings: dict, epochs: int) -> list[int]:
    """TracIn's checkpoint epochs: the configured list, or (null) ``n_checkpoints`` evenly spaced ending at the last."""
    wanted = settings["checkpoints"]
    if wanted is None:
        n = min(settings["n_checkpoints"], epochs)
        return sorted({int(round(epochs * (k + 1) / n)) for k in range(n)})
    if not wanted or any(not 1 <= int(e) <= epochs for e in wanted):
        raise ValueError(f"applications.attribution.tracin.checkpoints must be epochs in [1, train.epochs={epochs}], "
                         f"got {wanted}")
    return sorted(set(int(e) for e in wanted))


def model_plan(method: str, n_models: int, train_set: str, seed: int, alpha: float, n_train: int
               ) -> tuple[list[int], list[np.ndarray]]:
    """Torch seeds and training rows of a method's models: all of S, or random alpha-subsets (like TRAK)."""
    seeds = [int(s) for s in rng(seed, Stream.APPLICATION, alpha, SEED_INDEX[method]).integers(2**62, size=n_models)]
    if train_set == "full":
        return seeds, [np.arange(n_train, dtype=np.int64)] * n_models
    generator = rng(seed, Stream.APPLICATION, alpha, SUBSET_INDEX[method])
    size = masks.subset_size(n_train, alpha)
    return seeds, [np.sort(generator.permutation(n_train)[:size]).astype(np.int64) for _ in range(n_models)]


# ---------------------------------------------------------------- methods run here
def _train(ctx: Context, method: str, settings: dict, n_models: int) -> tuple[list, float]:
    """A method's networks, trained by the learner (``train_networks``); (networks, CPU seconds)."""
    seeds, subsets = model_plan(method, n_models, settings["train_set"], ctx.seed, ctx.alpha, ctx.dataset.n_train)
    start = time.process_time()
    networks = [checkpoints[-1].model for checkpoints in ctx.learner.train_networks(ctx.task, np.stack(subsets), seeds)]
    return networks, time.process_time() - start


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


# ---------------------------------------------------------------- external score matrices
def load_external(path: str | Path, n_train: int, n_targets: int) -> np.ndarray:
    """An external ``[n_train, n_targets]`` score matrix from ``.npy``, ``.npz`` (key ``scores``) or Parquet.

    Parquet: the datamodels layout, one row per target with a fixed-size-list
    column ``weight`` of length n_train (so another run's ``datamodels.parquet``
    works too). ValueError naming the file and the expected shape otherwise.
    """
    path = Path(path)
    expected = f"[n_train x n_targets] = [{n_train} x {n_targets}]"
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            matrix = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "scores" not in archive.files:
                    raise ValueError(f"external score file {path}: no array 'scores' (has {archive.files}); "
                                     f"expected one of shape {expected}")
                matrix = archive["scores"]
        elif suffix in (".parquet", ".pq"):
            table = pq.read_table(path)
            if "weight" not in table.column_names:
                raise ValueError(f"external score file {path}: no column 'weight' (has {table.column_names}); "
                                 f"expected one row per target ({n_targets}) with a list of {n_train} weights")
            column = table.column("weight").combine_chunks()
            values = column.flatten().to_numpy(zero_copy_only=False)
            if table.num_rows == 0 or len(values) % table.num_rows:
                raise ValueError(f"external score file {path}: column 'weight' has lists of unequal length; "
                                 f"expected {n_targets} rows of {n_train} weights")
            matrix = values.reshape(table.num_rows, -1).T
        else:
            raise ValueError(f"external score file {path}: unknown suffix {path.suffix!r} "
                             "(use .npy, .npz with key 'scores', or .parquet)")
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"external score file {path}: cannot be read ({error})") from error
    matrix = np.asarray(matrix)
    if matrix.shape != (n_train, n_targets):
        hint = " (it looks transposed)" if matrix.shape == (n_targets, n_train) else ""
        raise ValueError(f"external score file {path}: shape {list(matrix.shape)}, expected {expected}{hint}")
    if not np.issubdtype(matrix.dtype, np.number) or not np.isfinite(matrix).all():
        raise ValueError(f"external score file {path}: scores must be finite numbers")
    return matrix.astype(np.float32)


# ---------------------------------------------------------------- scoring and costs
def score_row(row: Row, weight: np.ndarray, bias: np.ndarray | None, held_out: evaluate.HeldOut,
              target_train_index: np.ndarray) -> Row:
    """Fill a row's LDS, median LDS, pooled Spearman and per-target LDS from its weights on the held-out models."""
    bias = np.zeros(weight.shape[1], dtype=np.float32) if bias is None else bias
    summary, per_target, _ = evaluate.score(np.asarray(weight, dtype=np.float32), bias, held_out)
    row.lds, row.lds_median, row.pooled_spearman = summary["lds"], summary["lds_median"], summary["pooled_spearman"]
    row.per_target = per_target
    return row


def probe_training_cost(recipe: dict, dataset: data.Dataset, alpha: float, seed: int, n_models: int) -> float:
    """CPU seconds per model of the pipeline's trainer (``learners.train_on``, one thread like the ``train_chunk``
    jobs, on the CPU) on alpha-subsets, measured on ``n_models`` models."""
    generator = rng(seed, Stream.APPLICATION, alpha, PROBE_INDEX)
    size = masks.subset_size(dataset.n_train, alpha)
    subsets = np.stack([np.sort(generator.permutation(dataset.n_train)[:size]) for _ in range(n_models)])
    seeds = [int(s) for s in generator.integers(2**62, size=n_models)]
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the train_chunk jobs
    try:
        start = time.process_time()
        learners.train_on(recipe, protocol.TrainData.of(dataset, "cpu"), subsets, seeds)
        return (time.process_time() - start) / n_models
    finally:
        torch.set_num_threads(threads)


def evaluated_row(row: Row, summary: dict, per_target: np.ndarray) -> Row:
    """Fill a row from the evaluation stage's numbers (one computation, read here, never recomputed)."""
    row.lds, row.lds_median, row.pooled_spearman = summary["lds"], summary["lds_median"], summary["pooled_spearman"]
    row.per_target = np.asarray(per_target, dtype=np.float64)
    return row


def datamodel_rows(metrics: dict, per_target: dict, fit_seconds: float, curve: dict, per_model: float) -> list[Row]:
    """The datamodels (the evaluation's LDS on the held-out models) and their learning curve's smaller fits."""
    n_train_models = metrics["n_train_models"]
    rows = []
    for point in curve.get("points", []):
        if point["n_models"] >= n_train_models:
            continue
        rows.append(Row("datamodels", point["n_models"], lds=point["lds"], models_trained=point["n_models"],
                        cpu_seconds=point["n_models"] * per_model + fit_seconds,
                        cpu_seconds_training=point["n_models"] * per_model, cost_source="estimated",
                        train_set="subsets", note="learning_curve.json (LDS only); fit seconds of the full fit"))
    full = Row("datamodels", n_train_models, models_trained=n_train_models,
               cpu_seconds=n_train_models * per_model + fit_seconds, cpu_seconds_training=n_train_models * per_model,
               cost_source="estimated", train_set="subsets",
               note="training: models x probed CPU s per model; fit: fit.json seconds; LDS: metrics.json")
    rows.append(evaluated_row(full, metrics, per_target["lds"]))
    return rows


def empirical_influence_rows(metrics: dict, per_target: dict, curve: dict, per_model: float) -> list[Row]:
    """Empirical influence from all training models (the evaluation's baseline) and the learning curve's smaller sets."""
    n_train_models = metrics["n_train_models"]
    rows = [Row("empirical_influence", p["n_models"], lds=p["baseline_lds"], models_trained=p["n_models"],
                cpu_seconds=p["n_models"] * per_model, cpu_seconds_training=p["n_models"] * per_model,
                cost_source="estimated", train_set="subsets", note="learning_curve.json (LDS only)")
            for p in curve.get("points", []) if p["n_models"] < n_train_models and p.get("baseline_lds") is not None]
    baseline = metrics["baseline"]
    full = Row("empirical_influence", n_train_models, models_trained=n_train_models,
               cpu_seconds=n_train_models * per_model + baseline["cpu_seconds"],
               cpu_seconds_training=n_train_models * per_model, cost_source="estimated", train_set="subsets",
               note="training: models x probed CPU s per model; difference of means: measured by evaluate")
    rows.append(evaluated_row(full, baseline, per_target["baseline_lds"]))
    return rows


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


# ---------------------------------------------------------------- outputs
def headline(rows: Sequence[Row]) -> dict:
    """Per method, the row with the most models (the method's full setting): LDS and cost."""
    out = {}
    for row in rows:
        name = f"{row.method} ({row.variant})" if row.variant else row.method
        best = out.get(name)
        if best is None or row.n_models >= best["n_models"]:
            out[name] = {"lds": row.lds, "n_models": row.n_models, "models_trained": row.models_trained,
                               "cpu_seconds": None if row.cpu_seconds is None else round(float(row.cpu_seconds), 2),
                               "cost_source": row.cost_source, "note": row.note}
    return out


def write_table(rows: Sequence[Row], path: str) -> None:
    records = [r.record() for r in rows]
    schema = pa.schema([("method", pa.string()), ("variant", pa.string()), ("n_models", pa.int64()),
                        ("lds", pa.float64()),
                        ("lds_median", pa.float64()), ("pooled_spearman", pa.float64()),
                        ("models_trained", pa.int64()), ("cpu_seconds", pa.float64()),
                        ("cpu_seconds_training", pa.float64()), ("cost_source", pa.string()),
                        ("train_set", pa.string()), ("note", pa.string())])
    with atomic_output(path) as tmp:
        pq.write_table(pa.Table.from_pylist(records, schema=schema), tmp)


def write_per_target(rows: Sequence[Row], index: np.ndarray, path: str) -> None:
    """Long table: one row per (method, n_models, target) with the target's Spearman correlation."""
    scored = [r for r in rows if r.per_target is not None]
    n = len(index)
    table = pa.table({
        "method": pa.array([r.method for r in scored for _ in range(n)], pa.string()),
        "variant": pa.array([r.variant for r in scored for _ in range(n)], pa.string()),
        "n_models": pa.array(np.repeat([r.n_models for r in scored], n).astype(np.int64)),
        "target": pa.array(np.tile(np.arange(n, dtype=np.int64), len(scored))),
        "target_train_index": pa.array(np.tile(index.astype(np.int64), len(scored))),
        "lds": pa.array(np.concatenate([r.per_target for r in scored]).astype(np.float64) if scored
                        else np.zeros(0)),
    })
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)


LABELS = {"datamodels": "datamodels (lasso)", "empirical_influence": "empirical influence",
          "influence_function": "influence functions (exact H)", "tracin": "TracIn", "trak": "TRAK",
          "representation_similarity": "representation similarity", "input_similarity": "input similarity (no model)"}


def plot(rows: Sequence[Row], alpha: float, path: str) -> None:
    """LDS against models trained and against CPU seconds (log x), one line per method."""
    from ..plots import plt, save_figure

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


def run(fit_info_path: str, curve_path: str, metrics_path: str, evaluation_per_target_path: str, eval_path: str, info_path: str, data_path: str, alpha: float, settings: dict, recipe: dict, seed: int,
        threads: int, table_path: str, per_target_path: str, summary_path: str, figure_path: str) -> None:
    """Score every configured attribution method on the held-out models; write the table, summary and figure."""
    import torch

    torch.set_num_threads(max(1, threads))
    wall = time.perf_counter()
    learner = recipe["model"]["name"]
    dataset = data.load(data_path)
    warn_settings(settings, dataset.n_train)
    info = json.loads(Path(info_path).read_text())
    layout = store.layout_for(info, alpha)
    index = dataset.target_train_index
    held_out = evaluate.read_held_out(eval_path, layout, index)
    externals = [load_external(p, dataset.n_train, dataset.n_targets) for p in settings["external"]]

    per_model = probe_training_cost(recipe, dataset, alpha, seed, settings["cost_probe_models"])
    log.info("pipeline trainer: %.4f CPU s per model (probe of %d models)", per_model, settings["cost_probe_models"])
    fit_info = json.loads(Path(fit_info_path).read_text())
    fit_seconds = float(sum(fit_info.get("seconds", {}).values()))
    curve = json.loads(Path(curve_path).read_text())
    metrics = json.loads(Path(metrics_path).read_text())
    per_target = pq.read_table(evaluation_per_target_path, columns=["lds", "baseline_lds"]).to_pydict()
    rows = datamodel_rows(metrics, per_target, fit_seconds, curve, per_model)
    rows += empirical_influence_rows(metrics, per_target, curve, per_model)

    details: dict = {}
    ctx = Context(dataset, protocol.learner(recipe), seed, alpha)
    rows += network_rows(ctx, settings, held_out, index, details)
    if settings["representation"]["input_space"]:
        start = time.process_time()
        scores = am.signed_cosine(ctx.x_train.numpy(), ctx.x_targets.numpy(), dataset.y_train, dataset.y_targets)
        row = Row("input_similarity", 0, cpu_seconds=time.process_time() - start, cpu_seconds_training=0.0,
                  note="signed cosine of the raw inputs")
        rows.append(score_row(row, scores, None, held_out, index))
    for path, matrix in zip(settings["external"], externals):
        rows.append(score_row(Row(f"external:{Path(path).stem}", 0, cpu_seconds=None, cost_source="unknown",
                                  note=str(path)), matrix, None, held_out, index))

    write_table(rows, table_path)
    write_per_target(rows, index, per_target_path)
    summary = {
        "alpha": alpha, "n_train": dataset.n_train, "n_targets": dataset.n_targets, "n_eval_models": len(held_out),
        "n_train_models": metrics["n_train_models"], "learner": learner, "headline": headline(rows),
        "rows": [r.record() for r in rows],
        "skipped": {r.method: r.note for r in rows if r.lds is None},
        "training_cpu_seconds_per_model_probe": per_model, "fit_seconds": fit_seconds, "details": details,
        "settings": settings, "seconds": round(time.perf_counter() - wall, 1),
        "cpu_seconds": round(time.process_time(), 1),
    }
    with atomic_output(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    plot(rows, alpha, figure_path)
    for method, h in summary["headline"].items():
        log.info("%-28s LDS %s with %d models, %s CPU s (%s)", method,
                 "n/a" if h["lds"] is None else f"{h['lds']:.4f}", h["n_models"], h["cpu_seconds"], h["cost_source"])
    log.info("attribution (alpha=%s): %d rows in %.0f s", alpha, len(rows), summary["seconds"])
