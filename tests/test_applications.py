"""Unit tests of the applications' pure logic, and of retraining on removal sets."""

from __future__ import annotations

import numpy as np
import yaml
import pytest

from datamodels_pipeline import config, data, evaluate
from datamodels_pipeline.applications import brittleness, counterfactuals, retrain, similar_examples
from datamodels_pipeline.config import ConfigError

from conftest import REPO


def test_top_by_weight_is_descending_with_stable_ties():
    weight = np.array([0.1, 0.5, 0.5, -0.2, 0.0])
    np.testing.assert_array_equal(retrain.top_by_weight(weight, 3), [1, 2, 0])
    assert len(retrain.top_by_weight(weight, 0)) == 0
    with pytest.raises(ValueError):
        retrain.top_by_weight(weight, 6)


def test_target_order_is_reproducible_and_prefix_stable():
    a = retrain.target_order(50, seed=3, alpha=0.5, index=0)
    np.testing.assert_array_equal(a, retrain.target_order(50, seed=3, alpha=0.5, index=0))
    assert sorted(a) == list(range(50))
    assert not np.array_equal(a, retrain.target_order(50, seed=3, alpha=0.5, index=1))
    assert not np.array_equal(a, retrain.target_order(50, seed=4, alpha=0.5, index=0))


def test_keep_indices():
    np.testing.assert_array_equal(retrain.keep_indices(6, np.array([4, 1])), [0, 2, 3, 5])
    np.testing.assert_array_equal(retrain.keep_indices(3, np.array([], dtype=np.int64)), [0, 1, 2])
    for bad in ([1, 1], [6], [-1]):
        with pytest.raises(ValueError):
            retrain.keep_indices(6, np.array(bad))


def test_counterfactual_prediction_is_minus_the_sum_of_removed_raw_weights():
    generator = np.random.default_rng(0)
    weight = generator.normal(size=40).astype(np.float32)
    bias = np.float32(1.5)
    removed = retrain.top_by_weight(weight, 7)
    expected = -float(weight[removed].astype(np.float64).sum())
    assert counterfactuals.predicted_change(weight, removed) == pytest.approx(expected)
    assert counterfactuals.predicted_change(weight, removed) < 0
    # The same as the datamodel's prediction on the full set minus the reduced set.
    full = np.ones((1, 40), bool)
    reduced = full.copy()
    reduced[0, removed] = False
    difference = (evaluate.predict(reduced, weight[:, None], np.array([bias]))
                  - evaluate.predict(full, weight[:, None], np.array([bias])))[0, 0]
    assert counterfactuals.predicted_change(weight, removed) == pytest.approx(float(difference), abs=1e-5)
    assert str(counterfactuals.predicted_change(np.zeros(3), np.array([0]))) == "0.0"  # no "-0.0"


def test_nearest_neighbours_in_input_space():
    x_train = np.array([[0.0, 0.0], [3.0, 0.0], [1.0, 1.0], [0.0, 0.5]], np.float32)
    np.testing.assert_array_equal(counterfactuals.nearest_neighbours(x_train, np.array([0.0, 0.0]), 3), [0, 3, 2])
    images = x_train.reshape(4, 2, 1)  # inputs are flattened
    np.testing.assert_array_equal(counterfactuals.nearest_neighbours(images, np.array([[3.0], [0.1]]), 1), [1])


def test_removal_sets_of_the_three_strategies():
    generator = np.random.default_rng(1)
    weight = generator.normal(size=(30, 4))
    x_train, x_targets = generator.normal(size=(30, 5)), generator.normal(size=(4, 5))
    records = counterfactuals.removal_sets(weight, x_train, x_targets, np.array([2, 0]), [1, 3],
                                           np.random.default_rng(7))
    assert [(r["target"], r["k"], r["strategy"]) for r in records[:6]] == [
        (2, 1, "datamodel"), (2, 1, "random"), (2, 1, "nearest"), (2, 3, "datamodel"), (2, 3, "random"), (2, 3, "nearest")]
    assert len(records) == 2 * 2 * 3
    for r in records:
        assert len(r["removed"]) == r["k"] and len(set(r["removed"].tolist())) == r["k"]
        if r["strategy"] == "datamodel":
            np.testing.assert_array_equal(r["removed"], np.argsort(-weight[:, r["target"]])[:r["k"]])
        if r["strategy"] == "nearest":
            distance = ((x_train - x_targets[r["target"]]) ** 2).sum(axis=1)
            np.testing.assert_array_equal(r["removed"], np.argsort(distance)[:r["k"]])
    again = counterfactuals.removal_sets(weight, x_train, x_targets, np.array([2, 0]), [1, 3], np.random.default_rng(7))
    for a, b in zip(records, again):
        np.testing.assert_array_equal(a["removed"], b["removed"])


def test_counterfactual_summary():
    rows = {"strategy": ["datamodel", "random", "nearest"] * 4, "k": [1] * 6 + [2] * 6,
            "predicted_change": [-1.0, 0.0, 0.0, -2.0, 0.0, 0.0, -3.0, 0.0, 0.0, -4.0, 0.0, 0.0],
            "actual_change": [-0.5, 0.1, -0.2, -1.5, 0.3, -0.4, -2.0, -0.1, -0.6, -2.5, 0.1, -0.8]}
    summary = counterfactuals.summarise(rows, [1, 2])
    assert summary["datamodel_removals"]["spearman"] == pytest.approx(1.0)
    assert summary["datamodel_removals"]["n"] == 4
    assert summary["mean_actual_change"]["datamodel"]["1"] == pytest.approx(-1.0)
    assert summary["mean_actual_change"]["nearest"]["2"] == pytest.approx(-0.7)
    assert summary["per_k"]["1"]["spearman"] is None  # two points: undefined


def test_support_estimate_on_a_hand_made_weight_vector():
    weight = np.array([0.5, -1.0, 2.0, 0.3, 0.0])
    # Decreasing order 2.0, 0.5, 0.3 (positive): predicted margins 2.6 - [2.0, 2.5, 2.8] = 0.6, 0.1, -0.2.
    assert brittleness.support_estimate(weight, 2.6) == 3
    assert brittleness.support_estimate(weight, 1.9) == 1
    assert brittleness.support_estimate(weight, 2.5) == 3        # exactly 0 has not crossed yet
    assert brittleness.support_estimate(weight, 2.81) == brittleness.NOT_FLIPPABLE  # positive weights exhausted
    assert brittleness.support_estimate(-np.abs(weight), 0.1) == brittleness.NOT_FLIPPABLE
    assert brittleness.support_estimate(weight, -0.3) == 0        # already misclassified


def test_inflate_flipped_and_fraction_at_most():
    assert brittleness.inflate(10, 0.2, 1200) == 12
    assert brittleness.inflate(11, 0.2, 1200) == 14
    assert brittleness.inflate(1, 0.2, 1200) == 2               # always at least one more
    assert brittleness.inflate(5, 0.0, 1200) == 6
    assert brittleness.inflate(99, 0.2, 100) == 99               # leaves a training example
    assert brittleness.flipped(np.array([-1.0, -0.1, 2.0]))
    assert not brittleness.flipped(np.array([-1.0, 2.0]))        # a tie is not a majority
    assert not brittleness.flipped(np.array([0.5, 0.1, -3.0]))
    np.testing.assert_allclose(brittleness.fraction_at_most(np.array([3, -1, 1, 10]), np.array([1, 2, 3, 100])),
                               [0.25, 0.25, 0.5, 0.75])


def test_top_examples_by_sign():
    weight = np.array([0.0, 0.4, -0.3, 0.9, -0.05, 0.1, 0.0])
    positive, negative = similar_examples.top_examples(weight, 2)
    np.testing.assert_array_equal(positive, [3, 1])
    np.testing.assert_array_equal(negative, [2, 4])
    positive, negative = similar_examples.top_examples(weight, 5)
    np.testing.assert_array_equal(positive, [3, 1, 5])           # zero weights are never listed
    np.testing.assert_array_equal(negative, [2, 4])


def _tiny_dataset() -> data.Dataset:
    x, y, shape = data.load_digits_arrays()
    return data.split_dataset(x, y, shape, n_train=60, targets="test", seed=0, n_test=5)


RECIPE = {"model": {"name": "mlp", "hidden": [8]},
          "train": {"epochs": 2, "batch_size": 16, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "device": "cpu"}}


@pytest.mark.usefixtures("one_thread")
def test_retrained_margins_do_not_depend_on_the_other_removal_sets():
    retrainer = retrain.Retrainer(_tiny_dataset(), RECIPE, seed=0, n_seeds=2)
    reference = retrainer.reference()
    assert reference.shape == (2, 5) and np.isfinite(reference).all()
    assert not np.allclose(reference[0], reference[1])           # two different seeds
    sets = [np.array([3, 7]), np.array([1, 2, 5]), np.array([10, 11])]
    together = retrainer.margins(sets)
    assert together.shape == (3, 2, 5)
    np.testing.assert_allclose(together[2], retrainer.margins([sets[2]])[0], atol=1e-4)
    np.testing.assert_allclose(together[1], retrainer.margins([sets[1]])[0], atol=1e-4)
    np.testing.assert_allclose(retrainer.margins([np.zeros(0, np.int64)])[0], reference, atol=1e-4)
    assert retrainer.n_models_trained == 2 + 6 + 2 + 2 + 2
    assert retrain.model_seeds(0, 3)[:2] == retrain.model_seeds(0, 2)


def test_config_defaults_and_removal_sizes():
    base = {"run": "x", "seed": 0, "data": {"name": "digits", "n_train": 300},
            "model": {"name": "mlp"}, "subsets": {"alphas": [0.5], "n_models": 20, "n_eval_models": 5,
                                                  "models_per_chunk": 10},
            "evaluate": {"learning_curve": [1.0]}}  # 20 models: too few for the default curve
    filled = config.validate(base)
    first = ("counterfactuals", "brittleness", "similar_examples", "embeddings", "leakage")
    assert {name: filled["applications"][name] for name in first} == {
        "counterfactuals": {"n_targets": 30, "k": [5, 10, 20, 40, 80], "n_seeds": 5},
        "brittleness": {"n_targets": 40, "n_seeds": 5, "inflation": 0.2},
        "similar_examples": {"n_targets": 8, "top": 5},
        "embeddings": {"n_components": 10, "n_clusters": 10, "n_seeds": 5,
                       "intervention": {"n_components": 2, "n_remove": 100, "n_group": 30}},
        "leakage": {"top_pairs": 100},
    }
    # The follow-up applications' schema defaults are the values config/config.yaml spells out.

    shipped = config.validate(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))["applications"]
    assert filled["applications"] == shipped
    too_many = {**base, "data": {"name": "digits", "n_train": 60}}
    with pytest.raises(ConfigError, match="applications.counterfactuals.k"):
        config.validate(too_many)
    with pytest.raises(ConfigError, match="applications.brittleness"):
        config.validate({**base, "applications": {"brittleness": {"n_seed": 3}}})


def test_shipped_configs_set_every_application_key():
    """config.yaml documents every application key; smoke.yaml has every application section."""

    schema = config.load_schema()["properties"]["applications"]["properties"]
    applications = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["applications"]
    assert {k: set(v) for k, v in applications.items()} == {k: set(v["properties"]) for k, v in schema.items()}
    # The smoke configuration sizes every application down (the keys it leaves out keep their defaults).
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())["applications"]
    assert set(smoke) == set(schema)


@pytest.mark.parametrize("shape", [(8, 8), (1, 28, 28), (3, 32, 32), (20,)])
def test_example_grid_draws_every_image_layout(tmp_path, shape):
    """Grey, channel-first colour (CIFAR) and plain feature vectors all draw (no reshape errors)."""
    from datamodels_pipeline.applications import figures

    generator = np.random.default_rng(0)
    cells = [[(generator.random(shape), 1, 0.5)] * 2 for _ in range(2)]
    path = tmp_path / "grid.png"
    figures.example_grid(generator.random((2, *shape)), np.array([0, 1]), cells, cells, 2, path)
    assert path.stat().st_size > 1000
