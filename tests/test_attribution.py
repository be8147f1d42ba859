"""Attribution baselines: each method against a direct computation on a tiny problem, external score files,
scoring, the learner guard and the config section."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
import torch.nn.functional as F
from torch import nn

from datamodels_pipeline import config, evaluate, masks, protocol, store, training
from datamodels_pipeline.applications import attribution
from datamodels_pipeline.applications import attribution_methods as am
from datamodels_pipeline.applications.attribution import frontier
from datamodels_pipeline.config import ConfigError

from conftest import REPO

SKLEARN_ENTRY_POINT = "datamodels_pipeline.examples.sklearn_logistic:train"
OWN_TORCH_ENTRY_POINT = "datamodels_pipeline.examples.own_torch_model:TanhNet"

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_problem(n: int = 40, d: int = 4, classes: int = 3, seed: int = 0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=generator, dtype=dtype) * 1.5
    y = torch.arange(n) % classes
    x = centres[y] + torch.randn(n, d, generator=generator, dtype=dtype)
    return x, y


def tiny_mlp(d: int = 4, hidden: int = 5, classes: int = 3, seed: int = 0, dtype=torch.float32) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, classes)).to(dtype)


# ---------------------------------------------------------------- influence functions
def test_hessian_matches_autograd_hessian_with_weight_decay():
    x, y = tiny_problem(dtype=torch.float64)
    model = tiny_mlp(dtype=torch.float64)
    flat = am.FlatModel(model)
    h = am.hessian(flat, x, y, weight_decay=0.3)

    def objective(theta):
        return F.cross_entropy(flat.logits(theta, x), y) + 0.15 * theta.pow(2).sum()

    expected = torch.autograd.functional.hessian(objective, flat.theta)
    assert h.shape == (flat.n_params, flat.n_params) == (4 * 5 + 5 + 5 * 3 + 3,) * 2
    torch.testing.assert_close(h, expected, atol=1e-10, rtol=1e-8)


def test_clamped_inverse_floors_negative_eigenvalues():
    vectors = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))[0]
    values = torch.tensor([-2.0, -1e-4, 1e-3, 0.5, 3.0], dtype=torch.float64)
    h = (vectors * values) @ vectors.T
    result = am.clamped_inverse(h, damping=0.01)
    expected = (vectors / torch.tensor([0.01, 0.01, 0.01, 0.5, 3.0], dtype=torch.float64)) @ vectors.T
    torch.testing.assert_close(result.inverse, expected)
    assert (result.n_negative, result.n_clamped) == (2, 3)
    assert result.eigenvalue_min == pytest.approx(-2.0) and result.eigenvalue_max == pytest.approx(3.0)
    with pytest.raises(ValueError, match="influence.damping"):
        am.clamped_inverse(h, damping=0.0)


def _fit_logistic(x, y, weight, weight_decay, init=None):
    """Minimise sum_i weight_i CE_i / n + weight_decay/2 |theta|^2 for logistic regression (float64, L-BFGS)."""
    model = nn.Sequential(nn.Linear(x.shape[1], 3)).double()
    if init is not None:
        with torch.no_grad():
            for p, q in zip(model.parameters(), init.parameters()):
                p.copy_(q)
    optimiser = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-13,
                                  tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        losses = F.cross_entropy(model(x), y, reduction="none")
        loss = (weight * losses).sum() / len(x) + 0.5 * weight_decay * sum(p.pow(2).sum() for p in model.parameters())
        loss.backward()
        return loss

    for _ in range(3):
        optimiser.step(closure)
    return model


def test_influence_function_predicts_leave_one_out_retraining_on_logistic_regression():
    """Convex case: -tau[i, t] is the first-order change of target t's margin when example i's loss is dropped,
    checked against actually refitting without it (the regularised optimum, found to machine precision)."""
    x, y = tiny_problem(n=120, seed=3, dtype=torch.float64)
    x_targets, y_targets = tiny_problem(n=9, seed=4, dtype=torch.float64)
    decay = 0.1
    model = _fit_logistic(x, y, torch.ones(len(x), dtype=torch.float64), decay)
    scores, inverse = am.influence_scores(model, x, y, np.arange(len(x)), x_targets, y_targets, 3, damping=1e-12,
                                          weight_decay=decay)
    assert scores.shape == (120, 9) and inverse.n_negative == 0

    def margins(m):
        with torch.no_grad():
            return torch.func.vmap(am.margin_output)(m(x_targets), am.onehot_labels(y_targets, 3).double()).numpy()

    base = margins(model)
    removed = np.arange(0, 120, 8)
    actual = []
    for i in removed:
        weight = torch.ones(len(x), dtype=torch.float64)
        weight[i] = 0
        actual.append(margins(_fit_logistic(x, y, weight, decay, init=model)) - base)
    actual, predicted = np.array(actual), -scores[removed]
    print(np.corrcoef(actual.ravel(), predicted.ravel())[0, 1], np.abs(predicted-actual).max()/np.abs(actual).max())
    assert np.corrcoef(actual.ravel(), predicted.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(predicted, actual, atol=0.2 * np.abs(actual).max())  # first order: ~10% low


# ---------------------------------------------------------------- TracIn
def test_train_with_checkpoints_ends_at_train_module_models():
    x, y = tiny_problem(n=30)
    recipe = training.Recipe(hidden=(6,), epochs=3, batch_size=8, lr=0.05)
    subsets = np.stack([np.arange(0, 30, 2), np.arange(1, 30, 2), np.arange(15)])
    trained = am.train_with_checkpoints(x, y, subsets, [7, 8, 9], recipe, 3, epochs=[1, 3])
    assert len(trained) == 3
    for checkpoints, subset, seed in zip(trained, subsets, [7, 8, 9]):
        assert [c.epoch for c in checkpoints] == [1, 3] and all(c.lr == 0.05 for c in checkpoints)
        reference = training.train_module(x, y, subset, seed, recipe, 3)
        assert len(checkpoints[-1].model) == len(reference) == 3
        for p, q in zip(checkpoints[-1].model.parameters(), reference.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
        assert not torch.equal(checkpoints[0].model[0].weight, checkpoints[1].model[0].weight)
    final = am.train_networks(x, y, subsets, [7, 8, 9], recipe, 3)
    torch.testing.assert_close(final[1][2].weight, trained[1][-1].model[2].weight)
    with pytest.raises(ValueError, match="tracin.checkpoints"):
        am.train_with_checkpoints(x, y, subsets, [7, 8, 9], recipe, 3, epochs=[4])


def test_tracin_is_the_sum_of_learning_rate_times_gradient_products():
    x, y = tiny_problem(n=12)
    x_targets, y_targets = tiny_problem(n=5, seed=9)
    checkpoints = [am.Checkpoint(1, 0.1, tiny_mlp(seed=1)), am.Checkpoint(2, 0.05, tiny_mlp(seed=2))]
    scores = am.tracin_scores(checkpoints, x, y, x_targets, y_targets, 3)
    expected = np.zeros((12, 5))
    for c in checkpoints:
        params = list(c.model.parameters())

        def flat_grad(value):
            return torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, params)])

        g_loss = [flat_grad(F.cross_entropy(c.model(x[i:i + 1]), y[i:i + 1])) for i in range(12)]
        g_f = []
        for t in range(5):
            logits = c.model(x_targets[t:t + 1])[0]
            others = torch.cat([logits[:y_targets[t]], logits[y_targets[t] + 1:]])
            g_f.append(flat_grad(logits[y_targets[t]] - others.max()))
        expected += c.lr * np.array([[-(gi @ gt).item() for gt in g_f] for gi in g_loss])
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------- TRAK
def test_trak_exact_formula_on_a_hand_sized_case():
    phi_train = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    phi_targets = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    # Phi^T Phi = [[2, 1], [1, 5]], inverse [[5, -1], [-1, 2]] / 9
    kernel = am.trak_kernel_scores(phi_train, phi_targets)
    expected = np.array([[4.0, -1.0], [2.0, 4.0], [5.0, 1.0]]) / 9   # Phi_train inv Phi_targets^T
    np.testing.assert_allclose(kernel, expected, atol=1e-12)
    damped = am.trak_kernel_scores(phi_train, phi_targets, damping=1.0)
    a = phi_train.numpy()
    np.testing.assert_allclose(damped, a @ np.linalg.inv(a.T @ a + np.eye(2)) @ phi_targets.numpy().T, atol=1e-12)
    # Ensemble: mean kernel, rows times mean (1 - p).
    k2 = 2 * expected
    scores = am.trak_scores([expected, k2], [np.array([0.9, 0.5, 0.0]), np.array([0.7, 0.5, 1.0])])
    np.testing.assert_allclose(scores, 1.5 * expected * np.array([0.2, 0.5, 0.5])[:, None])


def test_trak_features_are_projected_log_odds_gradients():
    x, y = tiny_problem(n=7)
    model = tiny_mlp()
    n_params = am.FlatModel(model).n_params
    projection = am.gaussian_projection(n_params, 6, seed=11)
    assert projection.shape == (n_params, 6)
    torch.testing.assert_close(projection, am.gaussian_projection(n_params, 6, seed=11))
    assert not torch.equal(projection, am.gaussian_projection(n_params, 6, seed=12))
    phi = am.trak_features(model, x, y, 3, projection)
    assert phi.shape == (7, 6) and phi.dtype == torch.float64
    logits = model(x[2:3])[0]
    p = torch.softmax(logits, 0)[y[2]]
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(torch.log(p / (1 - p)), list(model.parameters()))])
    torch.testing.assert_close(phi[2], (g @ projection).double(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="parameters"):
        am.trak_features(model, x, y, 3, projection[:-1])
    probability = am.correct_class_probability(model, x, y)
    np.testing.assert_allclose(probability[2], p.item(), rtol=1e-6)


# ---------------------------------------------------------------- representation similarity
def test_signed_cosine_and_penultimate_features():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [0.0, 3.0]])
    scores = am.signed_cosine(a, b, np.array([0, 1, 0]), np.array([0, 0]))
    np.testing.assert_allclose(scores, [[1.0, 0.0], [-np.sqrt(0.5), -np.sqrt(0.5)], [0.0, 0.0]])
    model, x = tiny_mlp(), tiny_problem(n=5)[0]
    torch.testing.assert_close(am.penultimate_features(model, x), torch.relu(model[0](x)))
    logistic = nn.Sequential(nn.Linear(4, 3))
    torch.testing.assert_close(am.penultimate_features(logistic, x), x)


# ---------------------------------------------------------------- external files, scoring, plan, guard
def test_external_score_files_and_shape_errors(tmp_path):
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "a.npy", matrix)
    np.savez(tmp_path / "b.npz", scores=matrix)
    np.savez(tmp_path / "c.npz", other=matrix)
    weight = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix.T).ravel()), 4)
    pq.write_table(pa.table({"target": np.arange(3), "weight": weight}), tmp_path / "d.parquet")
    for name in ("a.npy", "b.npz", "d.parquet"):
        np.testing.assert_array_equal(attribution.load_external(tmp_path / name, 4, 3), matrix)
    with pytest.raises(ValueError, match=r"a\.npy.*\[4, 3\].*\[5 x 3\]"):
        attribution.load_external(tmp_path / "a.npy", 5, 3)
    with pytest.raises(ValueError, match="looks transposed"):
        attribution.load_external(tmp_path / "a.npy", 3, 4)
    with pytest.raises(ValueError, match=r"c\.npz: no array 'scores'"):
        attribution.load_external(tmp_path / "c.npz", 4, 3)
    with pytest.raises(ValueError, match=r"d\.parquet.*expected \[n_train x n_targets\] = \[4 x 5\]"):
        attribution.load_external(tmp_path / "d.parquet", 4, 5)
    (tmp_path / "e.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="unknown suffix"):
        attribution.load_external(tmp_path / "e.csv", 4, 3)


def test_scoring_recovers_a_planted_linear_truth_regardless_of_scale():
    generator = np.random.default_rng(0)
    n_train, n_targets = 30, 4
    subsets = masks.draw_subsets(0, "eval", 0.5, range(200), n_train)
    mask = masks.to_mask(subsets, n_train)
    truth = generator.normal(size=(n_train, n_targets))
    margins = (mask @ truth + 0.1 * generator.normal(size=(200, n_targets))).astype(np.float32)
    index = np.full(n_targets, -1)
    held_out = evaluate.HeldOut.from_models(
        store.Models(np.arange(200), mask, margins, *(np.zeros(200, np.float32),) * 2, np.zeros(200, bool)), index)
    row = attribution.score_row(attribution.Row("x", 1), truth, None, held_out, index)
    scaled = attribution.score_row(attribution.Row("x", 1), truth * np.array([3.0, 0.1, 7.0, 1.0]), None,
                                   held_out, index)
    assert row.lds > 0.95 and scaled.lds == pytest.approx(row.lds)
    np.testing.assert_allclose(scaled.per_target, row.per_target)
    flipped = attribution.score_row(attribution.Row("x", 1), -truth, None, held_out, index)
    assert flipped.lds == pytest.approx(-row.lds)


def test_model_plan_and_learner_guard():
    seeds, rows = attribution.model_plan("trak", 3, "subsets", 0, 0.5, 20)
    assert len(set(seeds)) == 3 and all(len(r) == 10 and len(set(r.tolist())) == 10 for r in rows)
    assert not np.array_equal(rows[0], rows[1])
    assert attribution.model_plan("trak", 3, "subsets", 0, 0.5, 20)[0] == seeds
    assert attribution.model_plan("tracin", 3, "subsets", 0, 0.5, 20)[0] != seeds
    _, full = attribution.model_plan("influence_function", 2, "full", 0, 0.5, 20)
    assert all(np.array_equal(r, np.arange(20)) for r in full)
    settings = config.validate(_with())["applications"]["attribution"]
    margins_only = protocol.learner({"model": {"name": "custom", "entry_point": SKLEARN_ENTRY_POINT}, "train": {}})
    rows = attribution.network_rows(SimpleNamespace(learner=margins_only), settings, None, None, {})
    assert [r.method for r in rows] == list(attribution.NETWORK_METHODS)
    assert all(r.lds is None and "skipped" in r.note and "'custom'" in r.note and "torch_module" in r.note
               for r in rows)


BASE = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())   # a valid config (the smoke run's)


def _with(**attribution_settings) -> dict:
    return {**BASE, "applications": {**BASE.get("applications", {}), "attribution": attribution_settings}}


def test_config_section_defaults_and_checks():
    settings = config.validate(_with())["applications"]["attribution"]
    assert settings["trak"]["ensemble"] and settings["influence"]["damping"] > 0 and settings["external"] == []
    assert settings["trak"]["proj_dim"] == [128, 1024] and settings["tracin"]["checkpoints"] is None
    for key, value in (("influence", {"damping": -1.0}), ("trak", {"proj_dim": [0]}),
                       ("tracin", {"train_set": "half"}), ("trak", {"ensemble": [5, 5]})):
        with pytest.raises(ConfigError, match=f"applications.attribution.{key}"):
            config.validate(_with(**{key: value}))
    assert attribution.checkpoint_epochs({"checkpoints": None, "n_checkpoints": 4}, 20) == [5, 10, 15, 20]
    assert attribution.checkpoint_epochs({"checkpoints": None, "n_checkpoints": 4}, 3) == [1, 2, 3]
    assert attribution.checkpoint_epochs({"checkpoints": [8, 2, 8], "n_checkpoints": 4}, 8) == [2, 8]
    with pytest.raises(ConfigError, match="applications.attribution.tracin.checkpoints"):  # smoke: 8 epochs
        config.validate(_with(tracin={"checkpoints": [25]}))


TINY_RECIPES = {
    "mlp": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 4, "batch_size": 16, "lr": 0.1,
                                                               "momentum": 0.9, "weight_decay": 0.0}},
    "logistic": {"model": {"name": "logistic"}, "train": {"epochs": 4, "batch_size": 16, "lr": 0.1, "momentum": 0.9,
                                                          "weight_decay": 0.0}},
    # label smoothing: the learner's own loss in the Hessian and the per-example loss gradients
    "cnn": {"model": {"name": "cnn", "channels": [4, 8]}, "train": {"epochs": 4, "batch_size": 16, "lr": 0.05,
                                                                   "schedule": "constant", "tta_flip": False}},
    "own_torch_model": {"model": {"name": "custom", "entry_point": OWN_TORCH_ENTRY_POINT,
                                  "options": {"hidden": 8, "epochs": 4, "batch_size": 16}}, "train": {}},
}


@pytest.mark.parametrize("learner", list(TINY_RECIPES))
def test_network_methods_run_end_to_end_on_a_tiny_run(learner):
    """Every network method yields a finite LDS on held-out models of a tiny digits run; the table rows carry cost.
    The user's own torch network (the package's example) gets every method through the learner protocol."""
    from datamodels_pipeline import data, learners

    x, y, shape = data.load_digits_arrays()
    dataset = data.split_dataset(x, y, shape, n_train=60, targets="test", seed=0, n_test=15)
    recipe = TINY_RECIPES[learner]
    subsets = masks.draw_subsets(0, "eval", 0.5, range(40), 60)
    result = learners.train_on(recipe, protocol.TrainData.of(dataset), subsets, list(range(40)))
    held_out = evaluate.HeldOut.from_models(
        store.Models(np.arange(40), masks.to_mask(subsets, 60), result.margins, result.train_accuracy,
                     result.target_accuracy, np.zeros(40, bool)), dataset.target_train_index)
    settings = config.validate(_with(influence={"n_models": 2}, tracin={"n_models": 2},
                                     trak={"ensemble": [1, 2], "proj_dim": [16]},
                                     representation={"n_models": 2}))["applications"]["attribution"]
    ctx = attribution.Context(dataset, protocol.learner(recipe), 0, 0.5)
    details = {}
    rows = attribution.network_rows(ctx, settings, held_out, dataset.target_train_index, details)
    assert [(r.method, r.n_models) for r in rows] == [("influence_function", 2), ("tracin", 2), ("trak", 1),
                                                      ("trak", 2), ("representation_similarity", 2)]
    for row in rows:
        assert np.isfinite(row.lds) and row.per_target.shape == (15,) and row.cpu_seconds > 0
        assert row.models_trained == row.n_models and 0 <= row.cpu_seconds_training <= row.cpu_seconds
    assert details["tracin"]["checkpoint_epochs"] == [1, 2, 3, 4]
    assert len(details["influence_function"]["models"]) == 2
    expected = {"logistic": "inputs (logistic regression)", "mlp": "hidden activations",
                "own_torch_model": "penultimate-layer activations",
                "cnn": "flattened features of the last convolutional block"}[learner]
    assert details["representation_similarity"]["features"] == expected


# ---------------------------------------------------------------- measured costs and the cost frontier
def _row(method, n, lds, cpu, variant=""):
    return attribution.Row(method, n, variant=variant, lds=lds, cpu_seconds=cpu)


def test_frontier_gives_the_best_row_at_each_cpu_budget():
    rows = [_row("input_similarity", 0, 0.19, 0.01), _row("trak", 1, 0.30, 0.1, "proj_dim=128"),
            _row("trak", 50, 0.58, 4.0, "proj_dim=128"), _row("trak", 50, 0.26, 30.0, "proj_dim=1024"),
            _row("datamodels", 100, 0.40, 8.0), _row("datamodels", 1000, 0.62, 25.0),
            _row("datamodels", 9000, 0.70, 200.0), _row("influence_function", 1, 0.49, 40.0),
            _row("empirical_influence", 9000, 0.64, 190.0), _row("external:x", 0, 0.99, None),
            attribution.Row("tracin", 5)]  # skipped (no LDS) and unknown cost: left out
    best = frontier.frontier(rows)
    assert [(b["method"], b["from_cpu_seconds"], b["to_cpu_seconds"]) for b in best] == [
        ("input_similarity", 0.01, 0.1), ("trak (proj_dim=128)", 0.1, 4.0), ("trak (proj_dim=128)", 4.0, 25.0),
        ("datamodels", 25.0, 190.0), ("empirical_influence", 190.0, 200.0), ("datamodels", 200.0, None)]
    assert [b["lds"] for b in best] == [0.19, 0.30, 0.58, 0.62, 0.64, 0.70]
    assert frontier.segments(best) == [
        {"from_cpu_seconds": 0.01, "to_cpu_seconds": 0.1, "method": "input_similarity"},
        {"from_cpu_seconds": 0.1, "to_cpu_seconds": 25.0, "method": "trak (proj_dim=128)"},
        {"from_cpu_seconds": 25.0, "to_cpu_seconds": 190.0, "method": "datamodels"},
        {"from_cpu_seconds": 190.0, "to_cpu_seconds": 200.0, "method": "empirical_influence"},
        {"from_cpu_seconds": 200.0, "to_cpu_seconds": None, "method": "datamodels"}]
    duel = frontier.versus(rows, "datamodels", "trak")
    assert [(d["from_cpu_seconds"], d["winner"]) for d in duel] == [
        (0.1, "trak"), (4.0, "trak"), (8.0, "trak"), (25.0, "datamodels"), (30.0, "datamodels"),
        (200.0, "datamodels")]
    assert duel[2]["datamodels_lds"] == 0.40 and duel[2]["trak_lds"] == 0.58 and duel[0]["datamodels_lds"] is None
    record = frontier.record(rows)
    assert record["datamodels_vs_trak_winner"] == [
        {"from_cpu_seconds": 0.1, "to_cpu_seconds": 25.0, "winner": "trak"},
        {"from_cpu_seconds": 25.0, "to_cpu_seconds": None, "winner": "datamodels"}]
    assert frontier.describe(record["datamodels_vs_trak_winner"]) == \
        "[0.1, 25) CPU s: trak; [25, ∞) CPU s: datamodels"
    assert frontier.frontier([]) == [] and frontier.versus([], "datamodels", "trak") == []


def test_datamodel_and_empirical_influence_rows_charge_the_measured_training_and_fit_cpu():
    integrity = {"diverged_model_ids": [], "training": {"chunks": [
        {"first_id": 0, "last_id": 99, "n_models": 100, "cpu_seconds": 2.0, "wall_seconds": 2.5},
        {"first_id": 100, "last_id": 199, "n_models": 100, "cpu_seconds": 4.0, "wall_seconds": 4.5}]}}
    metrics = {"n_train_models": 200, "lds": 0.7, "lds_median": 0.71, "pooled_spearman": 0.9,
               "baseline": {"lds": 0.6, "lds_median": 0.61, "pooled_spearman": 0.8, "cpu_seconds": 0.5}}
    per_target = {"lds": [0.7, 0.7], "baseline_lds": [0.6, 0.6]}
    curve = {"points": [{"n_models": 50, "lds": 0.5, "baseline_lds": 0.3, "fit_cpu_seconds": 1.25,
                         "baseline_cpu_seconds": 0.25},
                        {"n_models": 200, "lds": 0.7, "baseline_lds": 0.6}]}
    small, full = attribution.datamodel_rows(metrics, per_target, 3.0, curve, integrity)
    assert (small.n_models, small.models_trained, small.cpu_seconds_training, small.cpu_seconds) == (50, 50, 1.0, 2.25)
    assert (full.n_models, full.cpu_seconds_training, full.cpu_seconds, full.lds) == (200, 6.0, 9.0, 0.7)
    assert {small.cost_source, full.cost_source} == {"measured"}
    small, full = attribution.empirical_influence_rows(metrics, per_target, curve, integrity)
    assert (small.cpu_seconds, full.cpu_seconds, full.lds) == (1.25, 6.5, 0.6)
    # a learning curve written without timings, or chunks without measurements: the cost is unknown, never guessed
    old_curve = {"points": [{"n_models": 50, "lds": 0.5, "baseline_lds": 0.3}]}
    assert attribution.datamodel_rows(metrics, per_target, 3.0, old_curve, integrity)[0].cost_source == "unknown"
    rows = attribution.datamodel_rows(metrics, per_target, 3.0, curve, {"training": {}})
    assert all(r.cpu_seconds is None and r.cost_source == "unknown" for r in rows)


def test_learning_curve_points_must_leave_a_validation_split():
    base = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert min(config.validate(base)["evaluate"]["learning_curve"]) * base["subsets"]["n_models"] < 120  # ~100 models
    base["evaluate"]["learning_curve"] = [0.001, 1.0]  # 9 of 9,000 models: about 1 for validation
    with pytest.raises(ConfigError, match=r"evaluate.learning_curve\[0\]"):
        config.validate(base)
    base["evaluate"]["learning_curve"] = [0.0]
    with pytest.raises(ConfigError, match="evaluate.learning_curve"):
        config.validate(base)
