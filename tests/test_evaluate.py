import numpy as np
from scipy.stats import pearsonr, spearmanr

from datamodels_pipeline import evaluate


def test_lds_and_pooled_metrics_match_direct_computation():
    generator = np.random.default_rng(0)
    actual = generator.normal(size=(50, 7))
    predicted = actual + generator.normal(scale=1.5, size=actual.shape)
    predicted[:, 3] = np.round(predicted[:, 3])  # ties
    summary, per_target = evaluate.metrics(predicted, actual)
    direct = [spearmanr(predicted[:, t], actual[:, t]).statistic for t in range(7)]
    np.testing.assert_allclose(per_target, direct, atol=1e-12)
    assert np.isclose(summary["lds"], np.mean(direct))
    assert np.isclose(summary["pooled_spearman"], spearmanr(predicted.ravel(), actual.ravel()).statistic)
    assert np.isclose(summary["pooled_pearson"], pearsonr(predicted.ravel(), actual.ravel()).statistic)
    assert np.isclose(summary["mse"], np.mean((predicted - actual) ** 2))


def test_constant_prediction_counts_as_zero():
    actual = np.random.default_rng(1).normal(size=(20, 2))
    predicted = np.stack([actual[:, 0], np.zeros(20)], axis=1)
    summary, per_target = evaluate.metrics(predicted, actual)
    assert per_target[1] == 0 and summary["n_targets_constant_prediction"] == 1
    assert np.isclose(summary["lds"], 0.5)


def test_valid_pairs_restrict_each_target():
    generator = np.random.default_rng(2)
    actual = generator.normal(size=(40, 2))
    predicted = actual + generator.normal(size=actual.shape)
    valid = np.ones_like(actual, dtype=bool)
    valid[::2, 1] = False
    _, per_target = evaluate.metrics(predicted, actual, valid)
    assert np.isclose(per_target[1], spearmanr(predicted[1::2, 1], actual[1::2, 1]).statistic)


def test_empirical_influence_is_difference_of_means():
    generator = np.random.default_rng(3)
    mask = generator.random((200, 6)) < 0.5
    y = generator.normal(size=(200, 2))
    keep = np.ones_like(y, dtype=bool)
    keep[:50, 1] = False
    weight, _ = evaluate.empirical_influence(mask, y, keep)
    for j in range(6):
        assert np.isclose(weight[j, 0], y[mask[:, j], 0].mean() - y[~mask[:, j], 0].mean(), atol=1e-5)
        rows = keep[:, 1]
        assert np.isclose(weight[j, 1], y[rows & mask[:, j], 1].mean() - y[rows & ~mask[:, j], 1].mean(), atol=1e-5)
