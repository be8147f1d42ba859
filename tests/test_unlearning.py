"""Unlearning by datamodel matching: forget set, points, predictions, KLoM, fine-tuning, and a tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from scipy import integrate, stats

from datamodels_pipeline import config, data, fit
from datamodels_pipeline.applications import unlearning
from datamodels_pipeline.config import ConfigError

from conftest import REPO


def test_forget_set_is_reproducible_one_class_and_checked():
    y = np.repeat(np.arange(4), 25)
    forget = unlearning.forget_set(y, 10, 2, seed=0)
    assert len(forget) == 10 and len(set(forget)) == 10 and np.all(np.diff(forget) > 0)
    assert set(y[forget]) == {2}
    np.testing.assert_array_equal(forget, unlearning.forget_set(y, 10, 2, seed=0))
    assert not np.array_equal(forget, unlearning.forget_set(y, 10, 2, seed=1))
    random = unlearning.forget_set(y, 40, None, seed=0)
    assert len(set(y[random])) > 1                          # not one class
    np.testing.assert_array_equal(unlearning.forget_set(y, 25, 3, seed=5), np.arange(75, 100))
    for size, cls, match in ((26, 3, "forget_size"), (0, None, "forget_size"), (100, None, "forget_size"),
                             (5, 7, "forget_class")):
        with pytest.raises(ValueError, match=match):
            unlearning.forget_set(y, size, cls, seed=0)


def test_points_are_disjoint_halves_outside_the_forget_set():
    forget = np.array([3, 10, 11, 40])
    tests = np.arange(100, 131)                              # 31 test targets
    points = unlearning.choose_points(50, tests, forget, 21, seed=0)
    retain = np.concatenate([points.retain_match, points.retain_eval])
    assert len(points.retain_match) == 10 and len(points.retain_eval) == 11
    assert len(set(retain)) == 21 and not set(retain) & set(forget) and retain.max() < 50
    assert len(points.test_match) == 15 and len(points.test_eval) == 16
    np.testing.assert_array_equal(np.sort(np.concatenate([points.test_match, points.test_eval])), tests)
    role = points.role_of_each()
    assert role.tolist()[:4] == ["forget"] * 4 and (role == "test_eval").sum() == 16
    np.testing.assert_array_equal(points.is_train(), ~np.char.startswith(role.astype(str), "test"))
    with pytest.raises(ValueError, match="n_retain"):
        unlearning.choose_points(50, tests, forget, 47, seed=0)
    with pytest.raises(ValueError, match="test targets"):
        unlearning.choose_points(50, tests[:1], forget, 10, seed=0)


def test_prediction_is_exact_for_planted_linear_outputs():
    """When every output is exactly linear in the training mask, the prediction equals the margin without F."""
    generator = np.random.default_rng(0)
    n_train, n_points, n_models = 30, 8, 3
    weight = generator.normal(size=(n_train, n_points))
    bias = generator.normal(size=n_points)
    forget = np.array([2, 5, 6])
    forget_point = np.zeros(n_points, bool)
    forget_point[:3] = True
    weight[forget[0], 0] = weight[forget[1], 1] = weight[forget[2], 2] = 0.0   # train-set datamodels exclude j
    seed_noise = generator.normal(size=(n_models, n_points))
    full = np.ones(n_train)
    retained = full.copy()
    retained[forget] = 0
    # The trained model also memorised its forget points (+4), which the datamodels cannot see.
    own = bias + full @ weight + seed_noise + 4.0 * forget_point
    truth = bias + retained @ weight
    predicted = unlearning.predict_margins(own, weight, bias, forget, forget_point)
    np.testing.assert_allclose(predicted[:, ~forget_point], (truth + seed_noise)[:, ~forget_point], atol=1e-12)
    # Forget points: the mean is the margin without F (the memorised +4 is gone); each model keeps its deviation.
    np.testing.assert_allclose(predicted.mean(axis=0)[forget_point], truth[forget_point], atol=1e-12)
    deviation = seed_noise - seed_noise.mean(axis=0)
    np.testing.assert_allclose((predicted - predicted.mean(axis=0))[:, forget_point], deviation[:, forget_point],
                               atol=1e-12)


def test_oracle_matching_targets_add_the_true_mean_change_to_each_model():
    own = np.array([[1.0, 5.0, 2.0], [3.0, 7.0, 0.0]])          # 2 models x 3 points
    oracle_mean = np.array([-1.0, 4.0, 3.0])
    targets = unlearning.oracle_matching_targets(own, oracle_mean)
    # Point 0: mean own margin 2, oracle -1 -> change -3 per model; point 1: 6 -> 4, -2; point 2: 1 -> 3, +2.
    np.testing.assert_allclose(targets, [[-2.0, 3.0, 4.0], [0.0, 5.0, 2.0]])
    np.testing.assert_allclose(targets.mean(axis=0), oracle_mean)


def test_gaussian_kl_matches_numerical_integration():
    for mu_p, sd_p, mu_q, sd_q in ((0.0, 1.0, 0.0, 1.0), (1.0, 0.5, -0.3, 2.0), (3.0, 2.0, 0.0, 0.7)):
        p, q = stats.norm(mu_p, sd_p), stats.norm(mu_q, sd_q)
        numeric = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -40, 40, limit=200)[0]
        assert unlearning.gaussian_kl(np.array(mu_p), np.array(sd_p), np.array(mu_q), np.array(sd_q)) == \
            pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_klom_and_scores_against_direct_computation():
    generator = np.random.default_rng(1)
    oracle = generator.normal(loc=[0.0, 2.0, 5.0], scale=[1.0, 0.5, 0.01], size=(200, 3))
    same = generator.normal(loc=[0.0, 2.0, 5.0], scale=[1.0, 0.5, 0.01], size=(200, 3))
    shifted = same + np.array([3.0, 0.0, 0.0])
    assert np.all(unlearning.klom(same, oracle, 0.05) < 0.05)
    kl = unlearning.klom(shifted, oracle, 0.05)
    assert kl[0] == pytest.approx(4.5, rel=0.2)                # (Δμ)² / 2σ² with σ = 1
    # The floor bounds a near-deterministic point's divergence: σ = 0.01 -> 0.05 on both sides.
    nudged = same + np.array([0.0, 0.0, 0.1])
    assert unlearning.klom(nudged, oracle, 0.05)[2] == pytest.approx(0.1 ** 2 / (2 * 0.05 ** 2), rel=0.05)
    s = unlearning.score(shifted, oracle, 0.05)
    assert s["margin_error"] == pytest.approx(np.abs(shifted.mean(0) - oracle.mean(0)).mean())
    assert s["klom_median"] == pytest.approx(np.median(kl)) and s["klom_mean"] == pytest.approx(kl.mean())
    assert s["accuracy"] == pytest.approx((shifted > 0).mean())


def small_mlp(seed: int = 0, n_in: int = 6, n_classes: int = 3) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_in, 16), torch.nn.ReLU(), torch.nn.Linear(16, n_classes))


def test_finetune_to_margins_reaches_planted_targets(one_thread):
    generator = np.random.default_rng(0)
    x = torch.from_numpy(generator.normal(size=(60, 6)).astype(np.float32))
    y = torch.from_numpy(generator.integers(0, 3, size=60))
    target = torch.from_numpy(generator.uniform(-3, 3, size=60).astype(np.float32))
    model = small_mlp()
    before = float((torch.from_numpy(unlearning.margins_of(model, x, y)).float() - target).square().mean())
    settings = {"optimizer": "adam", "lr": 0.01, "epochs": 150, "batch_size": 20}
    steps = unlearning.finetune_to_margins(model, x, y, target, settings, np.random.default_rng(1))
    after = float((torch.from_numpy(unlearning.margins_of(model, x, y)).float() - target).square().mean())
    assert steps == unlearning.n_steps(60, settings) == 450
    assert after < 0.1 * before


def test_finetune_on_labels_takes_exactly_the_steps(one_thread):
    generator = np.random.default_rng(0)
    x = torch.from_numpy(generator.normal(size=(50, 6)).astype(np.float32))
    y = torch.from_numpy(generator.integers(0, 3, size=50))
    model = small_mlp()
    calls = []
    settings = {"optimizer": "sgd", "lr": 0.05, "epochs": 1, "batch_size": 16}
    with torch.no_grad():
        loss_before = float(torch.nn.functional.cross_entropy(model(x), y))
    optimizer_step = torch.optim.SGD.step

    def counting_step(self, *args, **kwargs):
        calls.append(1)
        return optimizer_step(self, *args, **kwargs)

    torch.optim.SGD.step = counting_step
    try:
        assert unlearning.finetune_on_labels(model, x, y, 11, settings, np.random.default_rng(0)) == 11
    finally:
        torch.optim.SGD.step = optimizer_step
    assert len(calls) == 11                                  # 11 steps: 3 epochs of 4 batches, cut after 11
    with torch.no_grad():
        assert float(torch.nn.functional.cross_entropy(model(x), y)) < loss_before


def test_learner_check():
    with pytest.raises(ValueError, match="model.name 'resnet9'.*torch_module"):
        unlearning.check_learner({"model": {"name": "resnet9"}, "train": {}})
    unlearning.check_learner({"model": {"name": "logistic"}, "train": {}})
    own = {"name": "custom", "entry_point": "datamodels_pipeline.examples.own_torch_model:TanhNet"}
    unlearning.check_learner({"model": own, "train": {}})


def test_config_defaults_and_bounds():
    base = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    base["applications"].pop("unlearning", None)
    filled = config.validate(base)["applications"]["unlearning"]
    assert filled["forget_size"] >= 1 and filled["n_seeds"] >= 2 and filled["finetune"]["optimizer"] in ("adam", "sgd")
    bad = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    bad["applications"]["unlearning"] = {"finetune": {"optimizer": "lbfgs"}}
    with pytest.raises(ConfigError, match="applications.unlearning.finetune.optimizer"):
        config.validate(bad)


def tiny_inputs(tmp_path, n_train: int = 90, n_test: int = 40):
    """Digits: a prepared data set of n_train + n_test examples and planted (all-zero) datamodels.

    The train-set datamodels of the forget class get bias -2: DMM must pull the forget points' margins there.
    """
    x, y, shape = data.load_digits_arrays()
    order = np.random.default_rng(0).permutation(len(x))[:n_train + n_test]
    train, test = order[:n_train], order[n_train:]
    dataset = data.Dataset(x_train=x[train], y_train=y[train], x_targets=x[test], y_targets=y[test],
                           target_train_index=np.full(n_test, -1, dtype=np.int64), image_shape=shape)
    data.save(dataset, tmp_path / "dataset.npz", tmp_path / "dataset.json", {})

    def planted(n_targets: int, bias: np.ndarray) -> fit.Datamodels:
        zeros = np.zeros((n_train, n_targets), np.float32)
        return fit.Datamodels(weight=zeros, bias=bias.astype(np.float32), weight_std=zeros,
                              bias_std=bias.astype(np.float32), lam=np.zeros(n_targets, np.float32),
                              mu=np.zeros(n_train, np.float32), sigma=np.ones(n_train, np.float32),
                              n_models=np.full(n_targets, 10), converged=np.ones(n_targets, bool),
                              target_train_index=np.full(n_targets, -1, dtype=np.int64))

    fit.write(planted(n_test, np.zeros(n_test)), tmp_path / "test.parquet", tmp_path / "test_features.parquet")
    fit.write(planted(n_train, np.where(dataset.y_train == 3, -2.0, 0.0)), tmp_path / "train.parquet",
              tmp_path / "train_features.parquet")
    return dataset


def test_tiny_run_writes_outputs_and_dmm_moves_forget_margins_to_the_prediction(tmp_path, one_thread):
    dataset = tiny_inputs(tmp_path)
    settings = {"forget_size": 6, "forget_class": 3, "n_retain": 20, "n_seeds": 2, "oracle_matching": True,
                "klom_std_floor": 0.05, "finetune": {"optimizer": "adam", "lr": 0.01, "epochs": 40, "batch_size": 32}}
    recipe = {"model": {"name": "mlp", "hidden": [16]},
              "train": {"epochs": 4, "batch_size": 32, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
                        "device": "cpu"}}
    out = {"table_path": tmp_path / "points.parquet", "summary_path": tmp_path / "summary.json",
           "metrics_path": tmp_path / "metrics.png", "scatter_path": tmp_path / "scatter.png"}
    unlearning.run(str(tmp_path / "test.parquet"), str(tmp_path / "train.parquet"), str(tmp_path / "dataset.npz"),
                   0.5, settings, recipe, 0, 1, **{k: str(v) for k, v in out.items()})
    summary = json.loads(out["summary_path"].read_text())
    assert all(out[k].stat().st_size > 0 for k in out)
    assert summary["forget_label_counts"] == {"3": 6} and summary["n_models_trained"] == 6
    assert set(summary["groups"]) == {"forget", "retain", "test", "test_forget_class"}
    assert summary["methods"] == list(unlearning.METHODS)
    table = pq.read_table(out["table_path"]).to_pandas()
    forget = table[table.role == "forget"]
    assert len(forget) == 6 and set(forget.label) == {3} and set(dataset.y_train[forget["index"]]) == {3}
    np.testing.assert_allclose(forget.predicted, -2.0, atol=1e-6)         # bias + 0 weights
    # Zero weights predict "no change" elsewhere: the prediction there is the trained models' own margin.
    others = table[table.role != "forget"]
    np.testing.assert_allclose(others.predicted, others.original_mean, atol=1e-5)
    # DMM pulls the forget margins (trained on, so large) to the planted -2; plain fine-tuning does not.
    dmm_gap = np.abs(forget.dmm_mean + 2.0).mean()
    assert dmm_gap < 0.5 * np.abs(forget.original_mean + 2.0).mean()
    assert dmm_gap < np.abs(forget.finetune_mean + 2.0).mean()
    # The summary's scores are those of the table's columns.
    group = summary["groups"]["forget"]["methods"]["dmm"]
    assert group["margin_error"] == pytest.approx(np.abs(forget.dmm_mean - forget.oracle_mean).mean(), rel=1e-6)
    assert group["klom_median"] == pytest.approx(np.median(forget.dmm_klom), rel=1e-6)
    with pytest.raises(ValueError, match="model.name 'resnet9'"):
        unlearning.run(str(tmp_path / "test.parquet"), str(tmp_path / "train.parquet"),
                       str(tmp_path / "dataset.npz"), 0.5, settings, {"model": {"name": "resnet9"}, "train": {}},
                       0, 1, **{k: str(v) for k, v in out.items()})


def test_the_workflow_leaves_unlearning_out_by_declared_capability():
    """rule all leaves unlearning out for the learners that do not declare the torch network (protocol.py), not by
    a list of names."""
    from conftest import REPO

    from datamodels_pipeline import protocol

    assert "UNLEARNING_LEARNERS" not in (REPO / "workflow/rules/unlearning.smk").read_text()
    sklearn = {"name": "custom", "entry_point": "datamodels_pipeline.examples.sklearn_logistic:train"}
    assert protocol.applications_left_out(sklearn, ["unlearning", "leakage"]) == {"unlearning": "torch_module"}
    for model in ({"name": "mlp"}, {"name": "logistic"},
                  {"name": "custom", "entry_point": "datamodels_pipeline.examples.own_torch_model:TanhNet"}):
        assert protocol.applications_left_out(model, ["unlearning", "attribution"]) == {}


def test_a_cnn_run_unlearns_its_own_network(tmp_path, one_thread):
    """cnn provides its torch network (learner protocol): unlearning fine-tunes it like the MLP's."""
    tiny_inputs(tmp_path)
    settings = {"forget_size": 6, "forget_class": 3, "n_retain": 20, "n_seeds": 2, "oracle_matching": False,
                "klom_std_floor": 0.05, "finetune": {"optimizer": "adam", "lr": 0.01, "epochs": 20, "batch_size": 32}}
    recipe = {"model": {"name": "cnn", "channels": [4, 8]},
              "train": {"epochs": 4, "batch_size": 32, "lr": 0.05, "schedule": "constant", "device": "cpu"}}
    out = {"table_path": tmp_path / "points.parquet", "summary_path": tmp_path / "summary.json",
           "metrics_path": tmp_path / "metrics.png", "scatter_path": tmp_path / "scatter.png"}
    unlearning.run(str(tmp_path / "test.parquet"), str(tmp_path / "train.parquet"), str(tmp_path / "dataset.npz"),
                   0.5, settings, recipe, 0, 1, **{k: str(v) for k, v in out.items()})
    summary = json.loads(out["summary_path"].read_text())
    assert summary["methods"] == ["original", "finetune", "dmm"] and summary["n_models_trained"] == 6
    forget = pq.read_table(out["table_path"]).to_pandas().query("role == 'forget'")
    assert np.isfinite(forget[["original_mean", "dmm_mean", "oracle_mean"]].to_numpy()).all()
    assert np.abs(forget.dmm_mean + 2.0).mean() < np.abs(forget.original_mean + 2.0).mean()
