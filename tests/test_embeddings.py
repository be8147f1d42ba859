"""Datamodel embeddings: PCA, spectral clustering, the intervention groups and their statistics."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from datamodels_pipeline import config, data, fit
from datamodels_pipeline.applications import embeddings
from datamodels_pipeline.config import ConfigError

N_TRAIN, PER_BLOCK = 60, 12
BLOCK_A, BLOCK_B = np.arange(0, 20), np.arange(20, 40)   # training examples each block of targets depends on


def planted_weight(seed: int = 0) -> np.ndarray:
    """Weights ``[N_TRAIN, 2 * PER_BLOCK]``: targets 0-11 rely on examples 0-19, targets 12-23 on 20-39, plus noise.

    Examples 40-59 carry noise only; the blocks' scales differ by target (normalisation must remove that).
    """
    generator = np.random.default_rng(seed)
    weight = generator.normal(scale=0.05, size=(N_TRAIN, 2 * PER_BLOCK))
    weight[BLOCK_A, :PER_BLOCK] += generator.uniform(0.5, 1.5, size=(len(BLOCK_A), PER_BLOCK))
    weight[BLOCK_B, PER_BLOCK:] += generator.uniform(0.5, 1.5, size=(len(BLOCK_B), PER_BLOCK))
    return weight * generator.uniform(0.01, 10.0, size=2 * PER_BLOCK)


def test_embeddings_have_unit_norm_and_zero_columns_stay_zero():
    weight = planted_weight()
    weight[:, 3] = 0.0
    embedding = embeddings.embed(weight)
    assert embedding.shape == (2 * PER_BLOCK, N_TRAIN)
    norms = np.linalg.norm(embedding, axis=1)
    np.testing.assert_allclose(np.delete(norms, 3), 1.0)
    assert norms[3] == 0.0
    np.testing.assert_allclose(embedding[5], weight[:, 5] / np.linalg.norm(weight[:, 5]))


def test_first_component_separates_the_planted_blocks():
    components, projections, ratios = embeddings.principal_components(embeddings.embed(planted_weight()), 4)
    assert components.shape == (4, N_TRAIN) and projections.shape == (2 * PER_BLOCK, 4)
    assert ratios[0] > 0.5 and np.all(np.diff(ratios) <= 0)
    side_a, side_b = np.sign(projections[:PER_BLOCK, 0]), np.sign(projections[PER_BLOCK:, 0])
    assert len(set(side_a)) == 1 and len(set(side_b)) == 1 and side_a[0] == -side_b[0]
    # The direction loads on the two blocks' examples with opposite signs.
    assert np.sign(components[0, BLOCK_A]).tolist() == [side_a[0]] * len(BLOCK_A)
    assert np.sign(components[0, BLOCK_B]).tolist() == [side_b[0]] * len(BLOCK_B)
    with pytest.raises(ValueError, match="n_components"):
        embeddings.principal_components(embeddings.embed(planted_weight()), 2 * PER_BLOCK + 1)


def test_removal_set_at_each_end_is_the_right_block():
    components, projections, _ = embeddings.principal_components(embeddings.embed(planted_weight()), 2)
    a_sign = int(np.sign(projections[0, 0]))                 # the end block A's targets project onto
    for n_remove in (5, 15):
        at_a = embeddings.removal_set(components[0], n_remove, a_sign)
        at_b = embeddings.removal_set(components[0], n_remove, -a_sign)
        assert len(at_a) == n_remove and set(at_a) <= set(BLOCK_A)
        assert len(at_b) == n_remove and set(at_b) <= set(BLOCK_B)
        assert np.all(np.diff(a_sign * components[0, at_a]) <= 0)   # most extreme first
    for bad in (0, N_TRAIN):
        with pytest.raises(ValueError, match="n_remove"):
            embeddings.removal_set(components[0], bad, 1)


def test_affinity_is_cosine_similarity_clipped_at_zero():
    weight = np.array([[2.0, 1.0, -3.0, 0.0],
                       [0.0, 1.0, 0.0, 0.0]])                # targets (1, 0), (1, 1), (-1, 0) and all zeros
    c = 1 / np.sqrt(2)
    np.testing.assert_allclose(embeddings.affinity(embeddings.embed(weight)),
                               [[1, c, 0, 0], [c, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], atol=1e-12)


def test_spectral_clustering_recovers_the_blocks():
    weight = planted_weight()
    weight[:, 7] = 0.0                                       # an all-zero datamodel is left out
    clusters = embeddings.cluster(embeddings.embed(weight), 2, random_state=0)
    truth = np.repeat([0, 1], PER_BLOCK)
    assert clusters[7] == embeddings.NO_CLUSTER
    stats = embeddings.composition(clusters, truth)
    assert stats["adjusted_rand_index"] == pytest.approx(1.0)
    assert stats["purity"] == pytest.approx(1.0)
    assert stats["n_clustered"] == 2 * PER_BLOCK - 1 and stats["n_not_clustered"] == 1
    assert [c["size"] for c in stats["clusters"]] == [PER_BLOCK, PER_BLOCK - 1]   # ids by decreasing size
    np.testing.assert_array_equal(clusters, embeddings.cluster(embeddings.embed(weight), 2, random_state=0))
    with pytest.raises(ValueError, match="n_clusters"):
        embeddings.cluster(embeddings.embed(weight), 2 * PER_BLOCK, random_state=0)


def test_composition_against_a_hand_count():
    clusters = np.array([0, 0, 0, 1, 1, 2, -1])
    labels = np.array([5, 5, 3, 3, 3, 1, 9])
    stats = embeddings.composition(clusters, labels)
    assert stats["purity"] == pytest.approx(5 / 6)           # 2 + 2 + 1 majority members of 6 clustered
    assert stats["clusters"][0] == {"cluster": 0, "size": 3, "majority_label": 5, "majority_count": 2,
                                    "majority_fraction": pytest.approx(2 / 3), "label_counts": {"3": 1, "5": 2}}
    from sklearn.metrics import adjusted_rand_score
    assert stats["adjusted_rand_index"] == pytest.approx(adjusted_rand_score(labels[:6], clusters[:6]))


def test_relabel_by_size():
    np.testing.assert_array_equal(embeddings.relabel_by_size(np.array([4, 2, 2, 7, 7, 7, 4])), [1, 2, 2, 0, 0, 0, 1])


def test_end_groups_take_the_extreme_targets_of_the_right_sign():
    projection = np.array([0.9, -0.2, 0.5, -0.8, 0.1, -0.6, 0.3])
    eligible = np.array([0, 1, 2, 3, 4, 5])                  # target 6 is excluded
    aligned, opposite = embeddings.end_groups(projection, 1, 2, eligible)
    np.testing.assert_array_equal(aligned, [0, 2])
    np.testing.assert_array_equal(opposite, [3, 5])
    aligned, opposite = embeddings.end_groups(projection, -1, 5, eligible)
    np.testing.assert_array_equal(aligned, [3, 5, 1])        # only the negative projections
    np.testing.assert_array_equal(opposite, [0, 2, 4])


def test_group_statistics_against_a_direct_computation():
    generator = np.random.default_rng(3)
    n_seeds, n_targets = 4, 12
    change = generator.normal(size=(n_seeds, n_targets))
    correct = generator.integers(-1, 2, size=(n_seeds, n_targets)).astype(float)
    predicted = generator.normal(size=n_targets)
    groups = {"aligned": np.array([0, 3, 5]), "opposite": np.array([1, 2]), "random": np.array([4, 8, 11]),
              "all": np.arange(n_targets)}
    stats = embeddings.intervention_stats(change, correct, predicted, groups)
    for name, members in groups.items():
        per_seed = [np.mean([change[s, t] for t in members]) for s in range(n_seeds)]
        assert stats["groups"][name]["mean"] == pytest.approx(np.mean(per_seed))
        assert stats["groups"][name]["se"] == pytest.approx(np.std(per_seed, ddof=1) / 2)
        assert stats["groups"][name]["accuracy_change"] == pytest.approx(correct[:, members].mean())
        assert stats["groups"][name]["predicted_change"] == pytest.approx(predicted[members].mean())
        assert stats["groups"][name]["n"] == len(members)
    difference = [change[s, [0, 3, 5]].mean() - change[s, [1, 2]].mean() for s in range(n_seeds)]
    assert stats["aligned_minus_opposite"]["mean"] == pytest.approx(np.mean(difference))
    assert stats["aligned_minus_opposite"]["se"] == pytest.approx(np.std(difference, ddof=1) / np.sqrt(n_seeds))
    one_seed = embeddings.intervention_stats(change[:1], correct[:1], predicted, groups)
    assert one_seed["aligned_minus_random"]["se"] is None
    empty = embeddings.intervention_stats(change, correct, predicted, {**groups, "opposite": np.zeros(0, np.int64)})
    assert empty["groups"]["opposite"]["mean"] is None and empty["aligned_minus_opposite"]["mean"] is None


def test_interventions_leave_removed_training_targets_out_of_the_groups():
    weight = planted_weight()
    components, projections, _ = embeddings.principal_components(embeddings.embed(weight), 2)
    target_train_index = np.full(2 * PER_BLOCK, -1)
    target_train_index[0] = int(embeddings.removal_set(components[0], 5, int(np.sign(projections[0, 0])))[0])
    settings = {"n_components": 2, "n_remove": 5, "n_group": 4}
    records = embeddings.interventions(components, projections, settings, np.arange(2 * PER_BLOCK),
                                       target_train_index, np.random.default_rng(0))
    assert [(r["pc"], r["end"]) for r in records] == [(1, "positive"), (1, "negative"), (2, "positive"), (2, "negative")]
    for r in records:
        for name, members in r["groups"].items():
            assert not np.isin(target_train_index[members], r["removed"]).any(), name
        assert len(r["groups"]["random"]) == 4 and len(r["groups"]["all"]) in (2 * PER_BLOCK - 1, 2 * PER_BLOCK)
    first = next(r for r in records if r["pc"] == 1 and r["sign"] == np.sign(projections[0, 0]))
    assert 0 not in first["groups"]["all"]
    assert set(first["groups"]["aligned"]) <= set(range(PER_BLOCK))          # block A's targets
    assert set(first["groups"]["opposite"]) <= set(range(PER_BLOCK, 2 * PER_BLOCK))


BASE = {"run": "x", "seed": 0, "data": {"name": "digits", "n_train": 100, "n_test": 50},
        "model": {"name": "mlp"}, "subsets": {"alphas": [0.5], "n_models": 20, "n_eval_models": 5,
                                              "models_per_chunk": 10},
        "evaluate": {"learning_curve": [1.0]},  # 20 models: too few for the default curve
        "applications": {"counterfactuals": {"k": [5]}, "backdoor": {"sizes": [20, 40]}, "unlearning": {"n_retain": 20}}}


def _with(**embedding_settings) -> dict:
    return {**BASE, "applications": {**BASE["applications"], "embeddings": embedding_settings}}


def test_config_defaults_and_cross_checks():
    filled = config.validate({**_with(), "data": {"name": "digits", "n_train": 300}})
    assert filled["applications"]["embeddings"] == {
        "n_components": 10, "n_clusters": 10, "n_seeds": 5,
        "intervention": {"n_components": 2, "n_remove": 100, "n_group": 30}}
    with pytest.raises(ConfigError, match="applications.embeddings.intervention.n_remove"):
        config.validate(_with())                             # default n_remove 100 >= n_train 100
    ok = {"n_components": 4, "n_clusters": 3, "intervention": {"n_remove": 99, "n_group": 25}}
    config.validate(_with(**ok))
    for key, change in (("n_components", {"n_components": 51}), ("n_clusters", {"n_clusters": 51}),
                        ("intervention.n_group", {"intervention": {"n_remove": 10, "n_group": 26}}),
                        ("intervention.n_components", {"intervention": {"n_remove": 10, "n_components": 5}})):
        with pytest.raises(ConfigError, match=f"applications.embeddings.{key}"):
            config.validate(_with(**{**ok, **change}))
    with pytest.raises(ConfigError, match="applications.embeddings.intervention"):
        config.validate(_with(**{**ok, "intervention": {"n_remove": 10, "extra": 1}}))
    with pytest.raises(ConfigError, match="applications.embeddings.n_clusters"):
        config.validate(_with(**{**ok, "n_clusters": 1}))


def _tiny_inputs(tmp_path) -> tuple[str, str]:
    """A 60-example training set with 30 test targets and label-structured synthetic datamodels."""
    x, y, shape = data.load_digits_arrays()
    dataset = data.split_dataset(x, y, shape, n_train=N_TRAIN, targets="test", seed=0, n_test=30)
    data.save(dataset, tmp_path / "dataset.npz", tmp_path / "dataset.json", {})
    generator = np.random.default_rng(1)
    same = (dataset.y_train[:, None] == dataset.y_targets[None, :]).astype(np.float32)
    weight = (same * generator.uniform(0.5, 1.5, same.shape) + generator.normal(scale=0.05, size=same.shape))
    n = dataset.n_targets
    zeros = np.zeros(n, np.float32)
    fit.write(fit.Datamodels(weight=weight.astype(np.float32), bias=zeros, weight_std=weight.astype(np.float32),
                             bias_std=zeros, lam=zeros, mu=np.zeros(N_TRAIN, np.float32),
                             sigma=np.ones(N_TRAIN, np.float32), n_models=np.zeros(n, np.int64),
                             converged=np.ones(n, bool), target_train_index=dataset.target_train_index),
              tmp_path / "datamodels.parquet", tmp_path / "features.parquet")
    return str(tmp_path / "datamodels.parquet"), str(tmp_path / "dataset.npz")


RECIPE = {"model": {"name": "mlp", "hidden": [8]},
          "train": {"epochs": 2, "batch_size": 16, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "device": "cpu"}}
SETTINGS = {"n_components": 3, "n_clusters": 3, "n_seeds": 2,
            "intervention": {"n_components": 1, "n_remove": 10, "n_group": 5}}


def _run(tmp_path, name: str) -> dict:
    datamodels_path, data_path = _tiny_inputs(tmp_path)
    out = tmp_path / name
    out.mkdir()
    paths = {key: str(out / file) for key, file in (("table_path", "embeddings.parquet"), ("summary_path", "summary.json"),
             ("components_path", "components.png"), ("clusters_path", "clusters.png"),
             ("intervention_path", "intervention.png"))}
    embeddings.run(datamodels_path, data_path, 0.5, SETTINGS, RECIPE, seed=0, threads=1, **paths)
    return paths


def test_run_end_to_end_is_deterministic(tmp_path):
    first, second = _run(tmp_path, "a"), _run(tmp_path, "b")
    summary = json.loads(open(first["summary_path"]).read())
    again = json.loads(open(second["summary_path"]).read())
    assert summary["n_models_trained"] == 2 * (1 + 2)       # reference + two ends of one component, two seeds
    assert len(summary["explained_variance_ratio"]) == 3 and sum(summary["cluster_sizes"]) == 30
    assert [(r["pc"], r["end"]) for r in summary["interventions"]] == [(1, "positive"), (1, "negative")]
    for r in summary["interventions"]:
        assert r["n_removed"] == 10 and len(r["removed"]) == 10
        assert r["groups"]["aligned"]["mean"] is not None and r["groups"]["all"]["n"] == 30
    summary.pop("seconds"), again.pop("seconds")
    assert summary == again
    table = pq.read_table(first["table_path"]).to_pydict()
    assert set(table) >= {"target", "target_label", "pc_1", "pc_3", "cluster", "reference_margin",
                          "margin_change_pc1_positive", "margin_change_pc1_negative"}
    assert len(table["target"]) == 30
    for key in ("components_path", "clusters_path", "intervention_path"):
        assert open(first[key], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
