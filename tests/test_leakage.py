"""Planted near-duplicates (data stage) and the train-test leakage application."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from datamodels_pipeline import config, data, fit
from datamodels_pipeline.applications import leakage
from datamodels_pipeline.config import ConfigError

from conftest import REPO


def _planted(seed: int = 0, n: int = 5, targets: str = "both") -> data.Dataset:
    return data.prepare("digits", 200, targets, seed=seed, n_test=50, n_planted=n, plant_noise=0.05)


def test_planting_is_deterministic_and_records_the_pairs():
    dataset, plain = _planted(), data.prepare("digits", 200, "both", seed=0, n_test=50)
    again = _planted()
    assert data.fingerprint(dataset) == data.fingerprint(again)
    np.testing.assert_array_equal(dataset.planted_target, again.planted_target)
    assert dataset.n_train == plain.n_train == 200 and dataset.n_targets == plain.n_targets and dataset.n_planted == 5
    assert dataset.planted_target.dtype == dataset.planted_train.dtype == np.int64
    assert len(set(dataset.planted_target.tolist())) == 5 and len(set(dataset.planted_train.tolist())) == 5
    assert (dataset.target_train_index[dataset.planted_target] == -1).all()          # test targets only
    t, i = dataset.planted_target, dataset.planted_train
    np.testing.assert_array_equal(dataset.y_train[i], dataset.y_targets[t])
    difference = dataset.x_train[i] - dataset.x_targets[t]
    assert 0 < np.sqrt(np.mean(difference ** 2)) < 0.06                               # noise std 0.05 x range 1, clipped
    assert dataset.x_train.min() >= 0 and dataset.x_train.max() <= 1
    distance = leakage.input_distances(dataset.x_train, dataset.x_targets[t])
    np.testing.assert_array_equal(distance.argmin(axis=1), i)                         # the copy is the nearest example
    untouched = np.setdiff1d(np.arange(200), i)
    np.testing.assert_array_equal(dataset.x_train[untouched], plain.x_train[untouched])
    np.testing.assert_array_equal(dataset.x_targets[t], plain.x_targets[t])           # the targets are not changed
    own = dataset.target_train_index >= 0                                            # train targets follow S
    np.testing.assert_array_equal(dataset.x_targets[own], dataset.x_train[dataset.target_train_index[own]])
    np.testing.assert_array_equal(dataset.y_targets[own], dataset.y_train[dataset.target_train_index[own]])
    assert not np.array_equal(_planted(seed=1).planted_target, dataset.planted_target)
    assert data.fingerprint(dataset) != data.fingerprint(plain)


def test_no_planting_keeps_the_data_and_its_old_fingerprint():
    plain = data.prepare("digits", 200, "test", seed=0, n_test=50)
    assert plain.n_planted == 0 and len(plain.planted_train) == 0
    split = data.split_dataset(*data.load_digits_arrays(), n_train=200, targets="test", seed=0, n_test=50)
    np.testing.assert_array_equal(plain.x_train, split.x_train)
    digest = hashlib.sha256()                      # the fingerprint as computed before planted pairs existed
    for key, value in sorted(asdict(plain).items()):
        if key.startswith("planted_"):
            continue
        array = np.ascontiguousarray(np.asarray(value))
        digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    assert data.fingerprint(plain) == digest.hexdigest()


def test_planting_errors_name_the_key():
    with pytest.raises(ValueError, match="data.plant_duplicates.n"):
        _planted(targets="train")
    with pytest.raises(ValueError, match="data.plant_duplicates.n"):
        data.prepare("digits", 200, "test", seed=0, n_test=4, n_planted=5)
    data.prepare("digits", 200, "train", seed=0, n_planted=0)                        # nothing planted: fine


def test_planted_pairs_roundtrip_and_old_files_load(tmp_path):
    dataset = _planted()
    data.save(dataset, tmp_path / "d.npz", tmp_path / "d.json", {"name": "digits"})
    back = data.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(back.planted_target, dataset.planted_target)
    np.testing.assert_array_equal(back.planted_train, dataset.planted_train)
    assert data.fingerprint(back) == data.fingerprint(dataset)
    info = json.loads((tmp_path / "d.json").read_text())
    assert info["n_planted"] == 5 and info["fingerprint"] == data.fingerprint(dataset)
    plain = data.prepare("digits", 200, "test", seed=0, n_test=50)
    old = {k: np.asarray(v) for k, v in asdict(plain).items() if not k.startswith("planted_")}
    np.savez(tmp_path / "old.npz", **old)                                            # a file from before planting
    loaded = data.load(tmp_path / "old.npz")
    assert loaded.planted_target.dtype == np.int64 and loaded.planted_target.shape == (0,)
    assert loaded.planted_train.dtype == np.int64 and loaded.planted_train.shape == (0,)
    assert data.fingerprint(loaded) == data.fingerprint(plain)


def test_schema_defaults_and_rejects_negative_values():
    base = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    del base["data"]["plant_duplicates"], base["applications"]["leakage"]
    filled = config.validate(base)
    assert filled["data"]["plant_duplicates"] == {"n": 0, "noise": 0.05}
    assert filled["applications"]["leakage"] == {"top_pairs": 100}
    for key, value in (("n", -1), ("noise", -0.1), ("n", 1.5)):
        bad = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
        bad["data"]["plant_duplicates"][key] = value
        with pytest.raises(ConfigError, match=rf"invalid config key 'data\.plant_duplicates\.{key}'"):
            config.validate(bad)
    bad = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    bad["data"]["plant_duplicates"]["count"] = 3
    with pytest.raises(ConfigError, match="data.plant_duplicates"):
        config.validate(bad)


# Six training examples, four targets; target 2 is training example 2 (never ranked), the others are test targets.
# Planted pairs: (target 0, example 3) and (target 3, example 1). Rows of SCORES: targets 0, 1, 3.
TARGET_TRAIN_INDEX = np.array([-1, -1, 2, -1])
PLANTED_TARGET, PLANTED_TRAIN = np.array([0, 3]), np.array([3, 1])
MISRANKED = np.array([[0.9, 0.1, 0.0, 0.5, 0.0, 0.0],
                      [0.0, 0.0, 0.0, 0.0, 0.7, 0.0],
                      [0.0, 0.3, 0.0, 0.0, 0.0, 0.2]])
WELL_RANKED = np.array([[0.1, 0.0, 0.0, 2.0, 0.0, 0.2],
                        [0.0, 0.4, 0.0, 0.0, 0.7, 0.0],
                        [0.0, 1.5, 0.0, 0.0, 0.3, 0.0]])


def _truth() -> np.ndarray:
    targets = leakage.ranked_targets(TARGET_TRAIN_INDEX)
    np.testing.assert_array_equal(targets, [0, 1, 3])
    return leakage.planted_matrix(targets, 6, PLANTED_TARGET, PLANTED_TRAIN)


def test_metrics_when_the_planted_pairs_have_the_largest_weights():
    truth = _truth()
    assert truth.sum() == 2 and truth[0, 3] and truth[2, 1]
    assert leakage.cutoffs(2, 18) == [2, 4, 10]
    metrics = leakage.method_metrics(WELL_RANKED, truth, [2, 4, 10])
    assert metrics["r_precision"] == 1.0
    assert metrics["precision_at"] == {"2": 1.0, "4": 0.5, "10": 0.2}
    assert metrics["recall_at"] == {"2": 1.0, "4": 1.0, "10": 1.0}
    assert metrics["average_precision"] == pytest.approx(1.0)
    assert metrics["median_rank_in_target"] == 1.0 and metrics["fraction_rank_1_in_target"] == 1.0
    np.testing.assert_array_equal(leakage.planted_positions(WELL_RANKED, truth), [1, 2])


def test_metrics_when_other_pairs_outrank_the_planted_ones():
    truth = _truth()
    # Ranking by hand: 0.9 (t0, 0), 0.7 (t1, 4), 0.5 (t0, 3) planted, 0.3 (t3, 1) planted, 0.2, 0.1, zeros.
    metrics = leakage.method_metrics(MISRANKED, truth, [2, 4, 10])
    assert metrics["r_precision"] == 0.0
    assert metrics["precision_at"] == {"2": 0.0, "4": 0.5, "10": 0.2}
    assert metrics["recall_at"] == {"2": 0.0, "4": 1.0, "10": 1.0}
    assert metrics["average_precision"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    # (t0, 3) is second within target 0 (0.9 is above it); (t3, 1) is first within target 3.
    assert metrics["median_rank_in_target"] == 1.5 and metrics["fraction_rank_1_in_target"] == 0.5
    np.testing.assert_array_equal(leakage.planted_positions(MISRANKED, truth), [3, 4])


def test_rank_in_target_counts_ties_against_the_planted_example():
    scores = np.array([[0.0, 0.3, 0.3, 0.1]])
    assert leakage.rank_in_target(scores, 0, 1) == 2
    assert leakage.rank_in_target(scores, 0, 3) == 3
    assert leakage.rank_in_target(np.zeros((1, 4)), 0, 0) == 4


def test_planted_matrix_rejects_a_planted_target_that_is_not_ranked():
    with pytest.raises(ValueError, match="not a test target"):
        leakage.planted_matrix(np.array([0, 1, 3]), 6, np.array([2]), np.array([0]))
    with pytest.raises(ValueError, match="not a test target"):
        leakage.planted_matrix(np.array([0, 1, 3]), 6, np.array([5]), np.array([0]))


def _synthetic_files(tmp_path, scores: np.ndarray) -> tuple[str, str]:
    """A prepared data set and datamodels whose test-target weights are ``scores`` (self pair: a huge weight)."""
    generator = np.random.default_rng(0)
    x_train = generator.uniform(size=(6, 2, 1)).astype(np.float32)
    x_targets = generator.uniform(size=(4, 2, 1)).astype(np.float32)
    x_targets[2] = x_train[2]
    x_train[PLANTED_TRAIN] = x_targets[PLANTED_TARGET] + 0.01
    dataset = data.Dataset(x_train=x_train, y_train=np.array([0, 1, 2, 0, 1, 2]), x_targets=x_targets,
                           y_targets=np.array([0, 1, 2, 1]), target_train_index=TARGET_TRAIN_INDEX, image_shape=(2, 1),
                           planted_target=PLANTED_TARGET, planted_train=PLANTED_TRAIN)
    data.save(dataset, tmp_path / "d.npz", tmp_path / "d.json", {"name": "synthetic"})
    weight = np.zeros((6, 4), np.float32)
    weight[:, [0, 1, 3]] = scores.T
    weight[2, 2] = 100.0                                                  # target 2 is training example 2
    zeros = np.zeros(4, np.float32)
    fit.write(fit.Datamodels(weight=weight, bias=zeros, weight_std=weight, bias_std=zeros, lam=zeros,
                             mu=np.zeros(6, np.float32), sigma=np.ones(6, np.float32), n_models=np.ones(4, np.int64),
                             converged=np.ones(4, bool), target_train_index=TARGET_TRAIN_INDEX),
              tmp_path / "dm.parquet", tmp_path / "features.parquet")
    return str(tmp_path / "dm.parquet"), str(tmp_path / "d.npz")


def test_run_writes_the_table_summary_and_figure(tmp_path):
    datamodels_path, data_path = _synthetic_files(tmp_path, MISRANKED)
    paths = {name: str(tmp_path / name) for name in ("top.parquet", "summary.json", "leakage.png")}
    leakage.run(datamodels_path, data_path, 0.5, {"top_pairs": 5}, *paths.values())
    table = pq.read_table(paths["top.parquet"]).to_pylist()
    # The default ranking: every target's top weight first (ties by weight / the target's largest), then the seconds.
    assert [(r["target"], r["train_index"]) for r in table] == [(0, 0), (1, 4), (3, 1), (3, 5), (0, 3)]
    assert [r["planted"] for r in table] == [False, False, True, False, True]
    assert [r["rank"] for r in table] == [1, 2, 3, 4, 5] and [r["rank_in_target"] for r in table] == [1, 1, 1, 2, 2]
    assert table[4]["weight"] == pytest.approx(0.5) and table[4]["train_label"] == 0 and table[4]["target_label"] == 0
    assert table[4]["distance"] == pytest.approx(0.01 * np.sqrt(2), rel=1e-3)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_pairs"] == 18 and summary["n_planted"] == 2 and summary["n_test_targets"] == 3
    assert summary["planted_in_top_pairs"] == 2 and summary["precision_at_random"] == pytest.approx(2 / 18)
    assert summary["methods"]["datamodel"]["precision_at"] == {"2": 0.0, "4": 0.5, "10": 0.2}
    assert summary["default_method"] == "datamodel_rank" and set(summary["methods"]) == set(leakage.METHODS)
    assert summary["methods"]["datamodel_rank"]["precision_at"] == {"2": 0.0, "4": 0.25, "10": 0.2}
    assert summary["methods"]["datamodel_rank"]["recall_at"] == {"2": 0.0, "4": 0.5, "10": 1.0}
    assert summary["methods"]["nearest"]["r_precision"] == 1.0      # the planted copies are 0.014 away
    assert [(p["target"], p["train_index"], p["datamodel_rank_in_target"], p["datamodel_pair_rank"])
            for p in summary["planted"]] == [(0, 3, 2, 3), (3, 1, 1, 4)]
    assert (tmp_path / "leakage.png").stat().st_size > 1000


def test_run_without_planted_pairs(tmp_path):
    datamodels_path, data_path = _synthetic_files(tmp_path, WELL_RANKED)
    dataset = data.load(data_path)
    empty = np.zeros(0, np.int64)
    data.save(data.Dataset(**{**asdict(dataset), "planted_target": empty, "planted_train": empty}),
              tmp_path / "d.npz", tmp_path / "d.json", {"name": "synthetic"})
    leakage.run(datamodels_path, data_path, 0.5, {"top_pairs": 3}, str(tmp_path / "t.parquet"),
                str(tmp_path / "s.json"), str(tmp_path / "f.png"))
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["n_planted"] == 0 and summary["methods"] is None and summary["k"] == []
    assert pq.read_table(tmp_path / "t.parquet").column("weight").to_pylist() == pytest.approx([2.0, 0.7, 1.5])


def test_per_target_statistics_find_a_copy_that_raw_weights_miss():
    # Target 0's margins vary ten times more than target 1's: its ordinary weights outrank target 1's planted copy
    # (example 2) globally, but within its own target the copy stands out.
    raw = np.array([[3.0, 2.5, 2.0, -1.0, 0.5],
                    [0.1, -0.2, 0.9, 0.0, 0.05]])
    truth = np.zeros(raw.shape, bool)
    truth[1, 2] = True
    scores = leakage.weight_scores(raw)
    assert set(scores) == {m for m in leakage.METHODS if m != "nearest"}
    np.testing.assert_array_equal(leakage.within_target_rank(raw), [[1, 2, 3, 5, 4], [2, 5, 1, 4, 3]])
    np.testing.assert_allclose(scores["datamodel_max"][1], raw[1] / 0.9)
    np.testing.assert_allclose(scores["datamodel_standardized"][0], (raw[0] - raw[0].mean()) / raw[0].std())
    # Every rank-1 pair comes before every rank-2 pair, whatever the weights.
    assert scores["datamodel_rank"][1, 2] > scores["datamodel_rank"][0, 1] > scores["datamodel_rank"][1, 0]
    position = {m: leakage.planted_positions(scores[m], truth)[0] for m in scores}
    assert position["datamodel"] == 4                              # behind 3.0, 2.5, 2.0 of target 0
    # Rank and largest-|weight| ratio: tied with target 0's top pair (1.0), broken by position; z-score: first.
    assert position["datamodel_rank"] == 2 and position["datamodel_max"] == 2 and position["datamodel_standardized"] == 1
    metrics = leakage.method_metrics(scores["datamodel_standardized"], truth, [1, 2])
    assert metrics["average_precision"] == pytest.approx(1.0) and metrics["recall_at"] == {"1": 1.0, "2": 1.0}
    zero = leakage.weight_scores(np.zeros((1, 3)))                  # an all-zero datamodel: no division by zero
    assert all(np.isfinite(v).all() for v in zero.values())
