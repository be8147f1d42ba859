"""ModelDiff: algorithm B's recipe, the residual PCA against a planted difference, the check statistics, and
B's models on the run's own subsets and seeds."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml

from datamodels_pipeline import config, data, fit, learners, masks, store
from datamodels_pipeline.applications import modeldiff, modeldiff_training
from datamodels_pipeline.config import ConfigError
from datamodels_pipeline.seeding import Stream, int_seed

from conftest import REPO


@pytest.fixture(scope="module")
def default_config() -> dict:
    return config.validate(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))


def _with_other(cfg: dict, other: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["applications"]["modeldiff"]["other"] = other
    return cfg


def test_other_recipe_merges_onto_the_run_and_drops_keys_the_learner_does_not_use(default_config):
    b = config.other_recipe(_with_other(default_config, {"model": {"name": "logistic"}}))
    assert b["model"] == {"name": "logistic"}                      # model.hidden dropped: logistic has none
    assert b["train"] == default_config["train"]                  # the run's train recipe, unchanged
    b = config.other_recipe(_with_other(default_config, {"model": {"hidden": [256]}, "train": {"epochs": 5}}))
    assert b["model"] == {"name": "mlp", "hidden": [256]}
    assert b["train"] == {**default_config["train"], "epochs": 5}
    b = config.other_recipe(_with_other(default_config, {"model": {"name": "cnn"}}))
    assert b["model"]["channels"] == [16, 32] and b["train"]["schedule"] == "constant"  # cnn's defaults filled in
    assert b["train"]["epochs"] == default_config["train"]["epochs"]


@pytest.mark.parametrize("other, message", [
    ({"model": {"name": "logistic", "hidden": [3]}}, "model.hidden"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"model": {"name": "mlp"}}, "own recipe"),
    ({}, "own recipe"),
    ({"fit": {}}, "other.fit"),
])
def test_invalid_other_recipes_name_the_key(default_config, other, message):
    with pytest.raises(ConfigError, match="applications.modeldiff.other") as error:
        config.other_recipe(_with_other(default_config, other))
    assert message in str(error.value)


def test_settings_checks(default_config):
    config.validate(default_config)
    for key, value in (("n_remove", 1200), ("n_components", 598), ("n_group", 598), ("n_models", 9001)):
        cfg = copy.deepcopy(default_config)
        cfg["applications"]["modeldiff"][key] = value
        with pytest.raises(ConfigError, match=f"applications.modeldiff.{key}"):
            config.validate(cfg)
    with pytest.raises(ConfigError, match="applications.modeldiff.n_models"):
        config.validate({**yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
                         "applications": {"modeldiff": {"n_models": 5}}})


def test_project_off_leaves_rows_orthogonal_to_the_other_matrix():
    generator = np.random.default_rng(0)
    a, b = generator.normal(size=(6, 9)), generator.normal(size=(6, 9))
    b[2] = 0.0
    r = modeldiff.project_off(a, b)
    for t in range(6):
        expected = a[t] if t == 2 else a[t] - (a[t] @ b[t]) / (b[t] @ b[t]) * b[t]
        np.testing.assert_allclose(r[t], expected)
    np.testing.assert_allclose(np.einsum("ij,ij->i", r, b), 0.0, atol=1e-12)


def test_explained_variance_of_the_top_principal_component_matches_sklearn():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(1).normal(size=(40, 12)) * np.linspace(3, 0.5, 12)
    pca = PCA(n_components=3).fit(x)
    np.testing.assert_allclose(modeldiff.explained_variance(modeldiff.centre(x), pca.components_),
                               pca.explained_variance_ratio_, rtol=1e-10)


N_TRAIN, N_TARGETS = 80, 60
PLANTED_TRAIN, PLANTED_TARGETS = np.arange(60, 70), np.arange(0, 15)


def planted_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw weights ``[N_TRAIN, N_TARGETS]`` of two algorithms: both use class blocks (targets of class c rely on
    training examples of class c) with independent noise; A's targets 0-14 additionally rely on training
    examples 60-69, which B ignores. Scales differ by target and algorithm (normalisation must remove that)."""
    generator = np.random.default_rng(seed)
    classes_train, classes_target = np.arange(N_TRAIN) % 4, np.arange(N_TARGETS) % 4
    shared = (classes_train[:, None] == classes_target[None, :]) * generator.uniform(0.5, 1.5, (N_TRAIN, N_TARGETS))
    a = shared + generator.normal(scale=0.1, size=shared.shape)
    b = shared + generator.normal(scale=0.1, size=shared.shape)
    a[np.ix_(PLANTED_TRAIN, PLANTED_TARGETS)] += 1.5
    return a * generator.uniform(0.1, 10, N_TARGETS), b * generator.uniform(0.1, 10, N_TARGETS)


def test_residual_pca_finds_the_planted_difference_in_one_direction_only():
    a, b = planted_pair()
    rows_a, rows_b = modeldiff.normalise(a), modeldiff.normalise(b)
    np.testing.assert_allclose(np.linalg.norm(rows_a, axis=1), 1.0)
    pca = modeldiff.residual_directions(rows_a, rows_b, 3)
    v = pca["directions"][0]
    assert np.sum(v[PLANTED_TRAIN] ** 2) > 0.8                    # the direction is the planted examples
    assert pca["variance_first"][0] > 5 * pca["variance_second"][0]
    assert pca["ratio"][0] > 3 * pca["ratio"][1]
    top = np.argsort(-np.abs(pca["scores"][:, 0]))[:len(PLANTED_TARGETS)]
    assert len(set(top) & set(PLANTED_TARGETS)) >= 13
    # Orientation: the + end is the planted examples (removing them is predicted to hurt A's planted targets).
    candidates = np.arange(N_TARGETS)
    sign, gaps = modeldiff.orient(v, pca["scores"][:, 0], rows_a, rows_b, 10, 15, candidates, np.full(N_TARGETS, -1))
    removed, _, group = modeldiff.end_of(sign * v, sign * pca["scores"][:, 0], 1, 10, 15, candidates,
                                         np.full(N_TARGETS, -1))
    assert set(removed) == set(PLANTED_TRAIN) and len(set(group) & set(PLANTED_TARGETS)) >= 13
    assert gaps["positive"]["first"] < gaps["positive"]["second"] < 0.05
    # The other way finds nothing comparable: B has no planted structure A lacks.
    other = modeldiff.residual_directions(rows_b, rows_a, 3)
    assert other["variance_first"][0] / other["variance_second"][0] < \
        pca["variance_first"][0] / pca["variance_second"][0] / 3


def test_end_of_leaves_removed_training_targets_out_of_the_group():
    direction = np.array([0.9, 0.8, -0.1, 0.0, -0.5])
    scores = np.array([5.0, 4.0, 3.0, -1.0, 2.0])
    target_train_index = np.array([1, -1, -1, 4, -1])             # target 0 is training example 1
    removed, eligible, group = modeldiff.end_of(direction, scores, 1, 2, 2, np.arange(5), target_train_index)
    np.testing.assert_array_equal(removed, [0, 1])
    np.testing.assert_array_equal(eligible, [1, 2, 3, 4])
    np.testing.assert_array_equal(group, [1, 2])
    removed, eligible, group = modeldiff.end_of(direction, scores, -1, 1, 2, np.arange(5), target_train_index)
    np.testing.assert_array_equal(removed, [4])
    np.testing.assert_array_equal(eligible, [0, 1, 2, 4])         # target 3 is example 4 (removed): left out
    np.testing.assert_array_equal(group, [4, 2])                  # most negative scores first
    with pytest.raises(ValueError, match="n_remove"):
        modeldiff.end_of(direction, scores, 1, 5, 2, np.arange(5), target_train_index)


def test_algorithm_check_statistics_by_hand():
    reference = np.array([[2.0, 4.0, 6.0, 8.0], [2.0, 4.0, 6.0, 8.0]])
    change = np.array([[-1.0, -3.0, 0.5, 0.0], [-2.0, -1.0, 0.5, 1.0]])
    weight = np.arange(12, dtype=np.float64).reshape(3, 4)
    out = modeldiff.algorithm_check(change, reference, reference + change, weight, np.array([0, 2]),
                                    np.array([0, 1]), np.array([2, 3]), np.arange(4))
    assert out["scale_mean_reference_margin"] == 5.0
    assert out["group"]["mean"] == pytest.approx(-1.75)
    assert out["group"]["se"] == pytest.approx(np.std([-2.0, -1.5], ddof=1) / np.sqrt(2))
    assert out["random"]["mean"] == pytest.approx(0.5)
    gap = np.array([-2.0 - 0.25, -1.5 - 0.75])
    assert out["group_minus_random"]["mean"] == pytest.approx(gap.mean())
    assert out["group_minus_random"]["relative"]["mean"] == pytest.approx(gap.mean() / 5.0)
    assert out["group"]["accuracy_change"] == -0.25               # seed 2, target 0: margin 2 - 2 = 0 is wrong
    assert out["group"]["predicted_change"] == pytest.approx(-((0 + 8) + (1 + 9)) / 2)
    d = modeldiff.difference({"mean": -3.0, "se": 0.3}, {"mean": -1.0, "se": 0.4})
    assert d == {"mean": -2.0, "se": pytest.approx(0.5), "z": pytest.approx(-4.0)}


RECIPE = {"model": {"name": "mlp", "hidden": [8]},
          "train": {"epochs": 2, "batch_size": 16, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "device": "cpu"}}
LOGISTIC = {"model": {"name": "logistic"}, "train": RECIPE["train"]}


@pytest.mark.usefixtures("one_thread")
def test_other_datamodels_use_the_runs_subsets_and_seeds(tmp_path):
    """B = A's own recipe reproduces the run's margins (train_chunk's seeds); n_models refits A on those models."""
    x, y, shape = data.load_digits_arrays()
    dataset = data.split_dataset(x, y, shape, n_train=40, targets="test", seed=0, n_test=6)
    info = {"n_train": 40, "n_targets": 6, "fingerprint": data.fingerprint(dataset)}
    alpha, seed, ids = 0.5, 3, np.arange(30)
    subsets = masks.draw_subsets(seed, "train", alpha, ids, 40)
    seeds = [int_seed(seed, Stream.TRAIN_MODEL, alpha, int(i)) for i in ids]
    own = learners.train(RECIPE, dataset.x_train, dataset.y_train, subsets, seeds, dataset.x_targets,
                         dataset.y_targets)
    mask = masks.to_mask(subsets, 40)
    margins, _ = modeldiff_training.train_other(dataset, RECIPE, mask, modeldiff_training.model_seeds(seed, alpha, ids), batch=7)
    np.testing.assert_allclose(margins, own.margins, atol=1e-4)   # same subsets and seeds, in batches of 7

    layout = store.layout_for(info, alpha)
    store.write_models(tmp_path / "train.parquet", store.Models(ids, mask, own.margins, own.train_accuracy,
                                                                own.target_accuracy, np.zeros(30, bool)), layout, {})
    (tmp_path / "dataset.json").write_text(json.dumps(info))
    data.save(dataset, tmp_path / "dataset.npz", tmp_path / "unused.json", info)
    settings = fit.FitSettings(n_lambdas=4, val_fraction=0.2, max_iter=100)
    run_models, run_info = fit.fit(mask, own.margins, dataset.target_train_index, settings, seed, alpha)
    fit.write(run_models, tmp_path / "dm.parquet", tmp_path / "features.parquet")
    (tmp_path / "fit.json").write_text(json.dumps(run_info))
    out = {name: str(tmp_path / "out" / f"{name}.parquet") for name in ("od", "of", "wd", "wf")}
    for n_models in (None, 20):
        # Two rules: B's models (training only), then both algorithms' fits.
        modeldiff_training.run_other_models(str(tmp_path / "train.parquet"), str(tmp_path / "dataset.json"),
                                   str(tmp_path / "dataset.npz"), alpha, {"n_models": n_models}, LOGISTIC, seed, 1,
                                   str(tmp_path / "out" / "other_models.parquet"))
        modeldiff.run_datamodels(
            str(tmp_path / "train.parquet"), str(tmp_path / "out" / "other_models.parquet"),
            str(tmp_path / "dataset.json"), str(tmp_path / "dataset.npz"), str(tmp_path / "dm.parquet"),
            str(tmp_path / "features.parquet"), str(tmp_path / "fit.json"), alpha, settings.__dict__, seed, 1,
            out["od"], out["of"], out["wd"], out["wf"], str(tmp_path / "out" / "fit.json"))
        summary = json.loads((tmp_path / "out" / "fit.json").read_text())
        own_models = fit.read(out["wd"]).weight
        if n_models is None:
            assert summary["own"]["refit"] is False and summary["n_models_used"] == 30
            np.testing.assert_array_equal(own_models, run_models.weight)
        else:
            assert summary["own"]["refit"] is True and summary["n_models_used"] == 20
            expected, _ = fit.fit(mask[:20], own.margins[:20], dataset.target_train_index, settings, seed, alpha)
            np.testing.assert_allclose(own_models, expected.weight, atol=1e-6)
            b_margins, _ = modeldiff_training.train_other(dataset, LOGISTIC, mask[:20], seeds[:20])
            expected, _ = fit.fit(mask[:20], b_margins, dataset.target_train_index, settings, seed, alpha)
            np.testing.assert_allclose(fit.read(out["od"]).weight, expected.weight, atol=1e-5)
        assert summary["other"]["recipe"] == LOGISTIC
