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


def _simulated(n_masks=300, seeds=5, n_train=40, n_targets=60, seed=0):
    """Outputs = linear(mask) + Gaussian noise whose std varies by target (single-seed reliability 0.15 .. 0.9)."""
    generator = np.random.default_rng(seed)
    mask = generator.random((n_masks, n_train)) < 0.5
    weight = generator.normal(size=(n_train, n_targets))
    signal = mask.astype(np.float64) @ weight                        # f(mask): the infinite-seed mean
    reliability = np.linspace(0.15, 0.9, n_targets)
    noise_std = np.sqrt(signal.var(axis=0) * (1 - reliability) / reliability)
    margins = signal[:, None, :] + noise_std * generator.normal(size=(n_masks, seeds, n_targets))
    return mask, weight, signal, noise_std, margins.astype(np.float32), generator


def _true_ceiling(signal, noise_std, generator, draws=200):
    """The ceiling by simulation: mean Spearman of f(mask) against one seed's outputs, over many seeds."""
    total = 0.0
    for _ in range(draws):
        single = signal + noise_std * generator.normal(size=signal.shape)
        total += evaluate.spearman_columns(signal, single).mean()
    return total / draws


def test_noise_ceiling_recovers_the_known_ceiling_of_a_simulated_problem():
    mask, weight, signal, noise_std, margins, generator = _simulated()
    pearson = np.sqrt(signal.var(axis=0) / (signal.var(axis=0) + noise_std ** 2)).mean()   # analytic, Pearson
    truth = _true_ceiling(signal, noise_std, generator)                                   # Spearman, simulated
    assert abs(truth - pearson) < 0.03
    for seeds in (2, 3, 5):
        estimate = evaluate.noise_ceiling(margins[:, :seeds])
        assert abs(estimate["ceiling"].mean() - truth) < 0.02, seeds
        # Uncorrected, the mean of the other seeds is noisier than f: the leave-one-out value is biased low.
        assert estimate["leave_one_out"].mean() < truth - 0.04, seeds
        assert (estimate["ceiling_seed_averaged"] >= estimate["ceiling"] - 1e-12).all()
    # Against the mean of 5 seeds the ceiling rises as Spearman-Brown says: sqrt(5 R / (1 + 4 R)).
    reliability = signal.var(axis=0) / (signal.var(axis=0) + noise_std ** 2)
    averaged = np.sqrt(5 * reliability / (1 + 4 * reliability)).mean()
    assert abs(evaluate.noise_ceiling(margins)["ceiling_seed_averaged"].mean() - averaged) < 0.02


def test_corrected_ceiling_inverts_the_finite_seed_attenuation():
    reliability = np.array([0.1, 0.5, 0.9, 1.0])
    for seeds in (2, 3, 10):
        m = seeds - 1
        attenuated = np.sqrt(reliability * m * reliability / (1 + (m - 1) * reliability))
        np.testing.assert_allclose(evaluate.corrected_ceiling(attenuated, seeds), np.sqrt(reliability))
        np.testing.assert_allclose(evaluate.corrected_ceiling(-attenuated, seeds), -np.sqrt(reliability))
    assert evaluate.corrected_ceiling(np.array([np.nan, 0.0]), 5).tolist() == [0.0, 0.0]
    # A target whose seeds anti-correlate gets minus the correction of |r|, against 5-seed means too.
    margins = np.random.default_rng(0).normal(size=(50, 5, 2)).astype(np.float32)
    margins[:, :, 1] = margins[:, :, 0] * [1, -1, 1, -1, 1]
    result = evaluate.noise_ceiling(margins)
    assert (np.abs(result["ceiling_seed_averaged"]) <= 1).all()
    assert np.sign(result["ceiling_seed_averaged"]).tolist() == np.sign(result["ceiling"]).tolist()


def test_repeated_metrics_of_the_true_linear_model_reach_the_ceiling():
    mask, weight, signal, noise_std, margins, _ = _simulated(seed=1)
    repeated = evaluate.Repeated(evaluate.pack(mask), margins, np.ones((len(mask), margins.shape[2]), bool),
                                 mask.shape[1], 0)
    summary, per_target = evaluate.repeated_metrics(weight, np.zeros(weight.shape[1]), repeated)
    assert abs(summary["lds_fraction_of_ceiling"] - 1) < 0.03       # f itself is the best predictor
    assert abs(summary["lds_seed_averaged"] - summary["noise_ceiling_seed_averaged"]) < 0.02
    assert summary["lds_seed_averaged"] > summary["lds_single_repeated"]
    assert summary["repeated"]["n_masks"] == 300 and summary["repeated"]["seeds_per_mask"] == 5
    assert set(per_target) == {"noise_ceiling", "lds_seed_averaged", "lds_single_repeated"}
    noisy, _ = evaluate.repeated_metrics(weight + np.random.default_rng(2).normal(size=weight.shape) * 2,
                                         np.zeros(weight.shape[1]), repeated)
    assert noisy["lds_fraction_of_ceiling"] < 0.9 and noisy["noise_ceiling"] == summary["noise_ceiling"]


def test_read_repeated_pairs_eval_and_repeat_models_and_drops_incomplete_masks(tmp_path):
    import pytest

    from datamodels_pipeline import masks, store

    layout = store.Layout(n_train=20, n_targets=3, subset_size=10, fingerprint="f" * 64)
    generator = np.random.default_rng(0)
    eval_mask = masks.to_mask(masks.draw_subsets(0, "eval", 0.5, range(6), 20), 20)

    def models(ids, mask, diverged=()):
        margins = generator.normal(size=(len(ids), 3)).astype(np.float32)
        flags = np.isin(ids, diverged)
        margins[flags] = np.nan
        return store.Models(np.asarray(ids), mask, margins, np.ones(len(ids), np.float32),
                            np.ones(len(ids), np.float32), flags)

    held = models(np.arange(6), eval_mask)
    held_out = evaluate.HeldOut.from_models(held, np.full(3, -1))
    ids = np.arange(8)                                    # masks 0..3, seeds 1 and 2
    repeat = models(ids, eval_mask[masks.repeat_pairs(ids, 4)[0]], diverged=[6])  # (mask 2, seed 2) diverged
    store.write_models(tmp_path / "r.parquet", repeat.select(~repeat.diverged), layout, {})
    repeated = evaluate.read_repeated(held_out, tmp_path / "r.parquet", layout, 4, 3)
    assert repeated.n_dropped == 1 and repeated.margins.shape == (3, 3, 3)
    np.testing.assert_array_equal(repeated.margins[:, 0], held.margins[[0, 1, 3]])
    np.testing.assert_array_equal(repeated.margins[2, 2], repeat.margins[7])     # mask 3, seed 2
    np.testing.assert_array_equal(unpack_rows := masks.unpack(repeated.packed, 20), eval_mask[[0, 1, 3]])
    assert unpack_rows.shape == (3, 20)
    foreign = models(ids, eval_mask[(masks.repeat_pairs(ids, 4)[0] + 1) % 6])
    store.write_models(tmp_path / "f.parquet", foreign, layout, {})
    with pytest.raises(store.StoreError, match="held-out mask"):
        evaluate.read_repeated(held_out, tmp_path / "f.parquet", layout, 4, 3)
