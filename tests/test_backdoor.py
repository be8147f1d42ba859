"""Backdoor planting, the max-sum submatrix search, the detection metrics and the retraining check."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from datamodels_pipeline import data, fit
from datamodels_pipeline.applications import backdoor, backdoor_detection as detection

PLANT = {"target_class": 0, "n_poison": 20, "trigger_size": 2}
DETECT = {"sizes": [10, 20, 40], "n_restarts": 30, "flag_fraction": 0.1, "penalty": 1.0, "n_seeds": 2}
RECIPE = {"model": {"name": "mlp", "hidden": [32]},
          "train": {"epochs": 15, "batch_size": 32, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "device": "cpu"}}


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    """Digits with 300 training examples; targets: 60 test examples then the training examples ("both")."""
    return data.prepare("digits", 300, "both", seed=0, n_test=60)


# ---------------------------------------------------------------- planting


def test_trigger_patch_sets_the_bottom_right_corner_of_every_channel():
    x = np.zeros((2, 64), dtype=np.float32)
    out = backdoor.trigger_patch(x, (8, 8), 2, 1.0).reshape(2, 8, 8)
    assert out[:, 6:, 6:].min() == 1.0 and out.sum() == 2 * 4
    assert x.sum() == 0                                           # a copy
    colour = backdoor.trigger_patch(np.zeros((1, 3 * 32 * 32)), (3, 32, 32), 3, 0.5).reshape(3, 32, 32)
    assert (colour[:, 29:, 29:] == 0.5).all() and colour.sum() == pytest.approx(3 * 9 * 0.5)
    flat = backdoor.trigger_patch(np.zeros((1, 10)), (10,), 2, 1.0)
    assert flat[0, 6:].tolist() == [1.0] * 4 and flat[0, :6].sum() == 0
    with pytest.raises(ValueError, match="applications.backdoor.trigger_size"):
        backdoor.trigger_patch(x, (8, 8), 9, 1.0)


def test_plant_poisons_other_classes_and_appends_triggered_test_copies(digits):
    backdoored, info = backdoor.plant(digits, PLANT, seed=0)
    poisoned = np.array(info["poisoned"])
    assert len(poisoned) == 20 == len(np.unique(poisoned))
    assert (digits.y_train[poisoned] != 0).all() and (backdoored.y_train[poisoned] == 0).all()
    assert info["poisoned_original_label"] == digits.y_train[poisoned].tolist()
    images = backdoored.x_train.reshape(-1, 8, 8)
    assert (images[poisoned, 6:, 6:] == 1.0).all()
    clean = np.setdiff1d(np.arange(digits.n_train), poisoned)
    np.testing.assert_array_equal(backdoored.x_train[clean], digits.x_train[clean])
    np.testing.assert_array_equal(backdoored.y_train[clean], digits.y_train[clean])
    # Original targets kept (training-set targets follow their poisoned example), triggered copies appended.
    first = info["triggered_first"]
    assert first == digits.n_targets and backdoored.n_targets == first + info["n_triggered_targets"]
    own = np.flatnonzero(digits.target_train_index >= 0)
    np.testing.assert_array_equal(backdoored.x_targets[own], backdoored.x_train[digits.target_train_index[own]])
    source = np.array(info["triggered_source"])
    expected = np.flatnonzero((digits.target_train_index < 0) & (digits.y_targets != 0))
    np.testing.assert_array_equal(source, expected)
    np.testing.assert_array_equal(backdoored.x_targets[first:],
                                  backdoor.trigger_patch(digits.x_targets[source], (8, 8), 2, 1.0))
    assert (backdoored.y_targets[first:] == 0).all() and (backdoored.target_train_index[first:] == -1).all()
    # Reproducible; another seed poisons other examples.
    assert backdoor.plant(digits, PLANT, seed=0)[1]["poisoned"] == info["poisoned"]
    assert backdoor.plant(digits, PLANT, seed=1)[1]["poisoned"] != info["poisoned"]


def test_plant_nothing_and_bad_settings(digits, tmp_path):
    backdoored, info = backdoor.plant(digits, {**PLANT, "n_poison": 0}, seed=0)
    assert info["n_poison"] == 0 and info["poisoned"] == []
    np.testing.assert_array_equal(backdoored.x_train, digits.x_train)
    backdoor.run_plant(str(_save(digits, tmp_path)), {**PLANT, "n_poison": 0}, 0, str(tmp_path / "b.npz"),
                       str(tmp_path / "b.json"))
    assert backdoor.read_plant_info(str(tmp_path / "b.json"))["n_poison"] == 0
    assert data.load(tmp_path / "b.npz").n_targets == backdoored.n_targets
    with pytest.raises(ValueError, match="applications.backdoor.target_class"):
        backdoor.plant(digits, {**PLANT, "target_class": 10}, seed=0)
    with pytest.raises(ValueError, match="applications.backdoor.n_poison"):
        backdoor.plant(digits, {**PLANT, "n_poison": int((digits.y_train != 0).sum()) + 1}, seed=0)


def _save(dataset: data.Dataset, folder) -> object:
    path = folder / "dataset.npz"
    data.save(dataset, path, folder / "dataset.json", {})
    return path


# ---------------------------------------------------------------- search


def test_local_search_objective_and_brute_force_optimum():
    generator = np.random.default_rng(0)
    raw = generator.normal(size=(12, 12))
    matrix = detection.penalised(detection.symmetrise(raw), 4)
    members, objective = detection.local_search(matrix, 4, 60, np.random.default_rng(1))
    assert members.shape == (60, 4)
    for m, value in zip(members, objective):                     # the incremental objective is the true one
        assert value == pytest.approx(detection.submatrix_sum(matrix, m))
    brute = max(detection.submatrix_sum(matrix, np.array(c)) for c in itertools.combinations(range(12), 4))
    assert objective.max() == pytest.approx(brute)
    # Every restart ends where swapping its worst member for the best non-member no longer improves the sum.
    for m in members:
        inside = np.isin(np.arange(12), m)
        gain = matrix[:, m].sum(axis=1)
        worst = m[np.argmin(2 * gain[m] - np.diag(matrix)[m])]
        outside = np.flatnonzero(~inside)
        best = outside[np.argmax(2 * gain[outside] + np.diag(matrix)[outside])]
        assert detection.submatrix_sum(matrix, np.append(m[m != worst], best)) <= detection.submatrix_sum(matrix, m) + 1e-9
    with pytest.raises(ValueError, match="size"):
        detection.local_search(matrix, 12, 5, np.random.default_rng(0))


def test_penalised_diagonal_and_symmetrise():
    raw = np.arange(9.0).reshape(3, 3)
    sym = detection.symmetrise(raw)
    np.testing.assert_allclose(sym, [[0, 2, 4], [2, 0, 6], [4, 6, 0]])
    np.testing.assert_allclose(np.diag(detection.penalised(sym, 2)), [-4, -16 / 3, -20 / 3])
    np.testing.assert_allclose(np.diag(detection.penalised(sym, 2, penalty=0.5)), [-2, -8 / 3, -10 / 3])
    np.testing.assert_allclose(detection.penalised(sym, 2) - np.diag(np.diag(detection.penalised(sym, 2))), sym)
    # Objective: the within-group sum of the symmetrised matrix (= of the raw matrix, off the diagonal), penalised.
    raw = np.random.default_rng(1).normal(size=(30, 30))
    members = np.array([1, 4, 9, 20])
    block = raw[np.ix_(members, members)]
    direct = block.sum() - np.trace(block) - detection.symmetrise(raw)[members].sum() * 4 / 30
    assert detection.submatrix_sum(detection.penalised(detection.symmetrise(raw), 4), members) == pytest.approx(direct)


def planted_matrix(n: int = 300, block: int = 20, seed: int = 0, help: float = 0.06
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A train-set datamodel matrix with a block of mutually supporting examples, and some "helpful" examples that
    raise every margin alike (large row sums, no group of their own)."""
    generator = np.random.default_rng(seed)
    weight = generator.normal(scale=0.02, size=(n, n))
    poisons = np.sort(generator.choice(n, block, replace=False))
    weight[np.ix_(poisons, poisons)] += generator.uniform(0.05, 0.15, size=(block, block))
    helpful = np.setdiff1d(np.arange(n), poisons)[:15]
    weight[helpful] += help
    weight[np.ix_(helpful, helpful)] -= help / 2                    # symmetrised: 0.03 to everyone, each other included
    return weight, poisons, helpful


def test_search_and_spectral_find_a_planted_block_the_correction_holds_back_helpful_examples():
    weight, poisons, helpful = planted_matrix(help=0.0)
    score, frequency, runs = detection.search_scores(weight, [10, 20, 40], 30, np.random.default_rng(0))
    flagged = detection.flag(score, len(poisons))
    np.testing.assert_array_equal(flagged, poisons)
    assert set(frequency) == {10, 20, 40} and frequency[10].sum() == pytest.approx(10)
    metrics = detection.detection_metrics(score, flagged, poisons)
    assert metrics["precision"] == metrics["recall"] == metrics["average_precision"] == 1.0
    assert set(runs[20]["best_members"].tolist()) == set(poisons.tolist())
    # Beyond the block's size, the uncorrected search fills up with the helpful examples; the correction holds
    # them back (penalty 2 cancels uniform support: selected about as often as any clean example).
    spectral, _ = detection.spectral_scores(detection.symmetrise(weight))
    assert detection.detection_metrics(spectral, detection.flag(spectral, 20), poisons)["recall"] >= 0.9
    weight, poisons, helpful = planted_matrix()
    sym = detection.symmetrise(weight)
    plain, _ = detection.local_search(detection.penalised(sym, 40, 0.0), 40, 30, np.random.default_rng(0))
    assert all(np.isin(helpful, m).all() and np.isin(poisons, m).all() for m in plain)
    exact, _ = detection.local_search(detection.penalised(sym, 40, 2.0), 40, 30, np.random.default_rng(0))
    assert np.isin(exact, helpful).mean() < 0.1                 # of 40 members: 15 would be 0.375


def test_detection_metrics_by_hand_and_without_poisons():
    score = np.array([0.9, 0.8, 0.1, 0.7, 0.0, 0.5])
    flagged = detection.flag(score, 3)
    np.testing.assert_array_equal(flagged, [0, 1, 3])
    metrics = detection.detection_metrics(score, flagged, np.array([1, 5]))
    assert metrics["precision"] == pytest.approx(1 / 3) and metrics["recall"] == 0.5
    # Ranking 0, 1, 3, 5, 2, 4: hits at ranks 2 and 4 -> AP = (1/2 + 2/4) / 2.
    assert metrics["average_precision"] == pytest.approx(0.5)
    precision, recall = detection.precision_recall_curve(score, np.array([1, 5]))
    np.testing.assert_allclose(precision[:4], [0, 1 / 2, 1 / 3, 2 / 4])
    np.testing.assert_allclose(recall[:4], [0, 0.5, 0.5, 1.0])
    none = detection.detection_metrics(score, flagged, np.zeros(0, dtype=np.int64))
    assert none["precision"] is None and none["recall"] is None and none["average_precision"] is None
    assert detection.n_flagged(1200, 0.06) == 72 and detection.n_flagged(10, 0.001) == 1


def test_attack_stats_count_margins_above_zero():
    margins = np.array([[1.0, -1.0, 2.0, 0.5, -0.5], [1.0, 1.0, -2.0, -0.5, -0.5]])
    stats = detection.attack_stats(margins, np.array([0, 1]), np.array([2, 3, 4]), has_attack=True)
    assert stats["clean_accuracy"]["per_seed"] == [0.5, 1.0]
    assert stats["attack_success_rate"]["per_seed"] == pytest.approx([2 / 3, 0.0])
    assert detection.attack_stats(margins, np.array([0]), np.array([2]), has_attack=False)["attack_success_rate"] is None


# ---------------------------------------------------------------- the rule end to end


def test_run_attack_succeeds_and_removing_the_flagged_poisons_matches_the_oracle(digits, tmp_path, one_thread):
    """Planted poisons, datamodels that make them a perfect block: the flagged set is the poison set, so retraining
    without it gives exactly the oracle's models (same seeds); the attack works on the full poisoned set."""
    backdoored, info = backdoor.plant(digits, PLANT, seed=0)
    data.save(backdoored, tmp_path / "data.npz", tmp_path / "data.json", {"backdoor": info})
    n = digits.n_train
    weight = np.random.default_rng(3).normal(scale=0.01, size=(n, n)).astype(np.float32)
    weight[np.ix_(info["poisoned"], info["poisoned"])] += 0.2
    zeros = np.zeros(n, dtype=np.float32)
    fit.write(fit.Datamodels(weight=weight, bias=zeros, weight_std=weight, bias_std=zeros, lam=zeros, mu=zeros + 0.5,
                             sigma=zeros + 0.5, n_models=np.full(n, 100, dtype=np.int64),
                             converged=np.ones(n, dtype=bool), target_train_index=np.arange(n, dtype=np.int64)),
              tmp_path / "dm.parquet", tmp_path / "features.parquet")
    settings = {**PLANT, **DETECT, "flag_fraction": 20 / n}
    out = {name: str(tmp_path / name) for name in ("scores.parquet", "summary.json", "detection.png", "attack.png")}
    detection.run(str(tmp_path / "dm.parquet"), str(tmp_path / "data.npz"), str(tmp_path / "data.json"), 0.5,
                  settings, RECIPE, 0, 1, *out.values())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["flagged"] == info["poisoned"]
    assert summary["detection"]["search"]["precision"] == summary["detection"]["search"]["recall"] == 1.0
    sets = summary["retraining"]["sets"]
    assert sets["flagged"]["attack_success_rate"] == sets["oracle"]["attack_success_rate"]
    assert sets["full"]["attack_success_rate"]["mean"] > sets["oracle"]["attack_success_rate"]["mean"] + 0.4
    assert sets["random"]["n_removed"] == 20 and summary["n_models_trained"] == 4 * DETECT["n_seeds"]
    table = pq.read_table(tmp_path / "scores.parquet").to_pandas()
    assert table["poisoned"].sum() == 20 and (table.loc[table["poisoned"], "original_label"] != 0).all()
    assert table["flagged"].sum() == 20 and sorted(table["rank"]) == list(range(1, n + 1))
    assert (tmp_path / "detection.png").stat().st_size > 0 and (tmp_path / "attack.png").stat().st_size > 0
