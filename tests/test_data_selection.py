"""Data selection (DsDm): the selection rule against brute force, the target split, the statistics, and a planted
noisy-label data set on which the selection must pick the clean examples and beat random selections when trained."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from datamodels_pipeline import config, data, fit
from datamodels_pipeline.applications import data_selection as ds
from datamodels_pipeline.config import ConfigError

SETTINGS = {"fractions": [0.25, 0.5], "target_class": None, "holdout_fraction": 0.5, "n_seeds": 2, "n_random": 3,
            "class_matched": True}
RECIPE = {"model": {"name": "mlp", "hidden": [16]},
          "train": {"epochs": 15, "batch_size": 16, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "device": "cpu"}}


def test_top_k_selection_maximises_the_predicted_summed_margin_by_brute_force():
    generator = np.random.default_rng(0)
    n_train, n_targets = 9, 6
    weight = generator.normal(size=(n_train, n_targets)).astype(np.float32)
    bias = generator.normal(size=n_targets).astype(np.float32)
    targets = np.array([0, 2, 3, 5])
    score = ds.scores(weight, targets)
    np.testing.assert_allclose(score, [weight[i, targets].astype(np.float64).sum() for i in range(n_train)])
    for k in (1, 3, 5, 8):
        chosen = ds.select(score, k)
        assert len(chosen) == k and np.all(np.diff(chosen) > 0)
        best = max(ds.predicted_margin(weight, bias, np.array(s), targets)
                   for s in itertools.combinations(range(n_train), k))
        assert ds.predicted_margin(weight, bias, chosen, targets) == pytest.approx(best)
    # predicted margin: mean over targets of bias + summed selected weights (the datamodel on the mask).
    selected = np.array([1, 4, 7])
    mask = np.zeros(n_train, bool)
    mask[selected] = True
    direct = (mask @ weight.astype(np.float64) + bias)[targets].mean()
    assert ds.predicted_margin(weight, bias, selected, targets) == pytest.approx(direct)


def test_target_set_excludes_training_targets_and_filters_a_class():
    target_train_index = np.array([-1, -1, 4, -1, -1, 7, -1])
    y_targets = np.array([0, 1, 1, 1, 2, 1, 0])
    np.testing.assert_array_equal(ds.target_set(target_train_index, y_targets, None), [0, 1, 3, 4, 6])
    np.testing.assert_array_equal(ds.target_set(target_train_index, y_targets, 1), [1, 3])
    with pytest.raises(ValueError, match="applications.data_selection.target_class"):
        ds.target_set(target_train_index, y_targets, 2)          # one test target of class 2
    with pytest.raises(ValueError, match="data.targets"):
        ds.target_set(np.array([0, 1]), np.array([0, 1]), None)


def test_split_is_disjoint_reproducible_and_sized():
    targets = np.arange(10, 31)
    selection, holdout = ds.split_targets(targets, 0.5, np.random.default_rng(3))
    assert len(holdout) == round(0.5 * 21) and len(selection) == 21 - len(holdout)
    assert set(selection) | set(holdout) == set(targets) and not set(selection) & set(holdout)
    again = ds.split_targets(targets, 0.5, np.random.default_rng(3))
    np.testing.assert_array_equal(selection, again[0])
    other = ds.split_targets(targets, 0.5, np.random.default_rng(4))
    assert not np.array_equal(selection, other[0])
    for bad in (0.01, 0.99):
        with pytest.raises(ValueError, match="holdout_fraction"):
            ds.split_targets(targets, bad, np.random.default_rng(0))


def test_selection_sizes_and_random_selections():
    assert ds.selection_sizes([0.5, 0.125, 0.75, 0.25], 1200) == [150, 300, 600, 900]
    for bad in ([0.001], [0.999], [0.5, 0.501]):
        with pytest.raises(ValueError, match="applications.data_selection.fractions"):
            ds.selection_sizes(bad, 100)
    orders = ds.random_selections(50, 4, np.random.default_rng(1))
    assert orders.shape == (4, 50)
    assert all(sorted(o) == list(range(50)) for o in orders)
    np.testing.assert_array_equal(orders[:2], ds.random_selections(50, 2, np.random.default_rng(1)))  # prefix-stable
    assert len({tuple(o[:10]) for o in orders}) == 4


def test_class_matched_selections_have_the_requested_counts():
    y_train = np.array([0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 2, 0])
    orders = ds.class_orders(y_train, 3, np.random.default_rng(5))
    assert len(orders) == 3 and all(sorted(o) == [0, 1, 2] for o in orders)
    for order in orders:
        for c, members in order.items():
            assert sorted(members) == np.flatnonzero(y_train == c).tolist()
    counts = [3, 0, 2]
    picks = [ds.matched_selection(order, counts) for order in orders]
    for pick in picks:
        assert ds.label_counts(y_train[pick], 3) == counts and np.all(np.diff(pick) > 0)
    assert len({tuple(p) for p in picks}) > 1                    # different draws differ
    smaller = ds.matched_selection(orders[0], [2, 0, 1])
    assert set(smaller) <= set(picks[0])                         # nested as the counts grow
    with pytest.raises(ValueError, match="class counts"):
        ds.matched_selection(orders[0], [6, 0, 0])


def test_statistics_against_a_direct_computation():
    generator = np.random.default_rng(2)
    margins = generator.normal(size=(4, 12))                     # [n_seeds, n_targets]
    targets = np.array([0, 3, 4, 9])
    stats = ds.measured(margins, targets)
    per_seed = [np.mean(margins[s, targets]) for s in range(4)]
    assert stats["margin"]["mean"] == pytest.approx(np.mean(per_seed))
    assert stats["margin"]["se"] == pytest.approx(np.std(per_seed, ddof=1) / 2)
    assert stats["accuracy"]["mean"] == pytest.approx((margins[:, targets] > 0).mean())
    random = generator.normal(size=(5, 4, 12))                   # [n_random, n_seeds, n_targets]
    stats_r = ds.measured_random(random, targets)
    per_draw = [random[j][:, targets].mean() for j in range(5)]
    assert stats_r["margin"]["mean"] == pytest.approx(np.mean(per_draw))
    assert stats_r["margin"]["se"] == pytest.approx(np.std(per_draw, ddof=1) / np.sqrt(5))
    gain = ds.difference(stats["margin"], stats_r["margin"])
    assert gain["mean"] == pytest.approx(stats["margin"]["mean"] - stats_r["margin"]["mean"])
    assert gain["se"] == pytest.approx(np.hypot(stats["margin"]["se"], stats_r["margin"]["se"]))
    assert ds.measured(margins[:1], targets)["margin"]["se"] is None
    assert ds.label_counts(np.array([2, 0, 2, 2]), 4) == [1, 0, 3, 0]


def _noisy_blobs(tmp_path):
    """Three well-separated blobs; training examples 0-47 have their true label, 48-89 a wrong one.

    The planted datamodels of the test targets say exactly that (+ for clean, - for noisy examples); the two
    training-set targets' datamodels favour the noisy examples, so using them would select noise.
    """
    generator = np.random.default_rng(0)
    centres = np.array([[4.0, 0.0], [-2.0, 3.5], [-2.0, -3.5]])
    y_train = np.tile(np.arange(3), 30)
    x_train = centres[y_train] + generator.normal(scale=0.7, size=(90, 2))
    noisy = np.arange(48, 90)
    y_noisy = y_train.copy()
    y_noisy[noisy] = (y_train[noisy] + 1 + generator.integers(0, 2, size=len(noisy))) % 3
    y_test = np.tile(np.arange(3), 10)
    x_test = centres[y_test] + generator.normal(scale=0.7, size=(30, 2))
    dataset = data.Dataset(x_train=x_train.astype(np.float32), y_train=y_noisy.astype(np.int64),
                           x_targets=np.concatenate([x_test, x_train[:2]]).astype(np.float32),
                           y_targets=np.concatenate([y_test, y_noisy[:2]]).astype(np.int64),
                           target_train_index=np.array([-1] * 30 + [0, 1], dtype=np.int64), image_shape=(2,))
    data.save(dataset, tmp_path / "dataset.npz", tmp_path / "dataset.json", {})
    weight = np.full((90, 32), 0.05, np.float32)
    weight[noisy, :30] = -0.05
    weight[:, 30:] = -1.0
    weight[noisy, 30:] = 1.0
    weight += generator.normal(scale=0.005, size=weight.shape).astype(np.float32)
    zeros = np.zeros(32, np.float32)
    datamodels = fit.Datamodels(weight=weight, bias=np.full(32, 0.5, np.float32), weight_std=weight, bias_std=zeros,
                                lam=zeros, mu=np.zeros(90, np.float32), sigma=np.ones(90, np.float32),
                                n_models=np.full(32, 100, np.int64), converged=np.ones(32, bool),
                                target_train_index=dataset.target_train_index)
    fit.write(datamodels, tmp_path / "datamodels.parquet", tmp_path / "features.parquet")
    return dataset, weight, noisy


@pytest.mark.usefixtures("one_thread")
def test_planted_noisy_labels_dsdm_selects_clean_examples_and_beats_random(tmp_path):
    dataset, weight, noisy = _noisy_blobs(tmp_path)
    paths = {name: str(tmp_path / name) for name in ("selections.parquet", "summary.json", "curve.png")}
    ds.run(str(tmp_path / "datamodels.parquet"), str(tmp_path / "dataset.npz"), 0.5, SETTINGS, RECIPE, seed=0,
           threads=1, table_path=paths["selections.parquet"], summary_path=paths["summary.json"],
           curve_path=paths["curve.png"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    table = pq.read_table(paths["selections.parquet"]).to_pylist()
    assert summary["sizes"] == [22, 45] and summary["n_targets"] == 30        # training-set targets left out
    assert summary["n_selection_targets"] == 15 and summary["n_holdout_targets"] == 15
    assert not set(summary["selection_targets"]) & set(summary["holdout_targets"])
    assert max(summary["selection_targets"] + summary["holdout_targets"]) < 30
    assert summary["n_models_trained"] == 2 * (1 + 2 * (1 + 3 + 3))
    assert len(table) == 1 + 2 * (1 + 3 + 3) and summary["baselines"] == ["random", "matched"]
    for row in (r for r in table if r["method"] == "dsdm"):
        assert not set(row["selected"]) & set(noisy.tolist()), row["size"]    # only clean examples
        assert sum(row["class_counts"]) == row["size"]
        assert row["class_counts"] == summary["per_size"][str(row["size"])]["dsdm_class_counts"]
    for row in (r for r in table if r["method"] == "matched"):
        assert row["class_counts"] == summary["per_size"][str(row["size"])]["dsdm_class_counts"]
        assert set(row["selected"]) & set(noisy.tolist())                     # random within each class
    for k in ("22", "45"):
        result = summary["per_size"][k]
        for half, baseline in itertools.product(("selection", "holdout"), ("random", "matched")):
            gain = result[half][f"gain_over_{baseline}"]
            assert gain["margin"]["mean"] > 0.5, (k, half, baseline, gain)
            assert gain["accuracy"]["mean"] > 0.05, (k, half, baseline, gain)
            assert summary[f"gain_over_{baseline}"][half]["accuracy"][k] == gain["accuracy"]
        for half in ("selection", "holdout"):
            gain = result[half]["gain_over_random"]
            assert summary["gain_over_random"][half]["margin"][k] == gain["margin"]
            assert result[half]["gain_over_full"]["margin"]["mean"] == pytest.approx(
                result[half]["dsdm"]["margin"]["mean"] - summary["full"][half]["margin"]["mean"])
            # the summary agrees with the table's rows
            dsdm_row = next(r for r in table if r["method"] == "dsdm" and r["size"] == int(k))
            random_rows = [r for r in table if r["method"] == "random" and r["size"] == int(k)]
            assert result[half]["dsdm"]["margin"]["mean"] == pytest.approx(dsdm_row[f"{half}_margin"])
            assert result[half]["random"]["margin"]["mean"] == pytest.approx(
                np.mean([r[f"{half}_margin"] for r in random_rows]))
            targets = np.array(summary[f"{half}_targets"])
            assert result[half]["dsdm"]["predicted_margin"] == pytest.approx(
                ds.predicted_margin(weight, np.full(32, 0.5), np.array(dsdm_row["selected"]), targets), rel=1e-5)
        assert {len(r["selected"]) for r in table if r["size"] == int(k)} == {int(k)}
    full = next(r for r in table if r["method"] == "full")
    assert full["size"] == 90 and full["selected"] == list(range(90))
    assert (tmp_path / "curve.png").stat().st_size > 10_000


def test_run_rejects_bad_settings_naming_the_key(tmp_path):
    _noisy_blobs(tmp_path)
    args = (str(tmp_path / "datamodels.parquet"), str(tmp_path / "dataset.npz"), 0.5)
    outputs = {"table_path": str(tmp_path / "t.parquet"), "summary_path": str(tmp_path / "s.json"),
               "curve_path": str(tmp_path / "c.png")}
    for change, key in (({"fractions": [0.001]}, "fractions"), ({"target_class": 7}, "target_class"),
                        ({"holdout_fraction": 0.01}, "holdout_fraction")):
        with pytest.raises(ValueError, match=f"applications.data_selection.{key}"):
            ds.run(*args, {**SETTINGS, **change}, RECIPE, seed=0, threads=1, **outputs)
    assert not (tmp_path / "s.json").exists()


def test_config_defaults_and_schema_bounds():
    base = {"run": "x", "seed": 0, "data": {"name": "digits", "n_train": 300},
            "model": {"name": "mlp"}, "subsets": {"alphas": [0.5], "n_models": 20, "n_eval_models": 5,
                                                  "models_per_chunk": 10},
            "evaluate": {"learning_curve": [1.0]}}  # 20 models: too few for the default curve
    filled = config.validate(base)
    assert filled["applications"]["data_selection"] == {
        "fractions": [0.125, 0.25, 0.5, 0.75], "target_class": None, "holdout_fraction": 0.5, "n_seeds": 10,
        "n_random": 10, "class_matched": True}
    for bad, key in (({"fractions": [1.0]}, "fractions"), ({"fractions": []}, "fractions"),
                     ({"target_class": -1}, "target_class"), ({"holdout_fraction": 0}, "holdout_fraction"),
                     ({"n_seeds": 0}, "n_seeds"), ({"n_random": 0}, "n_random"), ({"sizes": [10]}, "")):
        with pytest.raises(ConfigError, match=f"applications.data_selection.?{key}"):
            config.validate({**base, "applications": {"data_selection": bad}})


@pytest.mark.usefixtures("one_thread")
def test_without_the_class_matched_baseline(tmp_path):
    _noisy_blobs(tmp_path)
    settings = {**SETTINGS, "fractions": [0.5], "n_random": 2, "class_matched": False, "target_class": 1}
    ds.run(str(tmp_path / "datamodels.parquet"), str(tmp_path / "dataset.npz"), 0.5, settings, RECIPE, seed=0,
           threads=1, table_path=str(tmp_path / "t.parquet"), summary_path=str(tmp_path / "s.json"),
           curve_path=str(tmp_path / "c.png"))
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["baselines"] == ["random"] and "gain_over_matched" not in summary
    assert "matched" not in summary["per_size"]["45"]["holdout"]
    assert summary["n_models_trained"] == 2 * (1 + 1 + 2)
    assert summary["n_targets"] == 10 and summary["target_set"] == "test targets of class 1"
    assert {r["method"] for r in pq.read_table(tmp_path / "t.parquet").to_pylist()} == {"full", "dsdm", "random"}
