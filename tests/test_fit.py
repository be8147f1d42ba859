import numpy as np
import pytest
from sklearn.linear_model import Lasso

from datamodels_pipeline import fit, masks, statistics


@pytest.fixture(scope="module")
def problem():
    n, p = 800, 30
    mask = masks.to_mask(masks.draw_subsets(0, "train", 0.5, range(n), p), p)
    generator = np.random.default_rng(0)
    w_true = np.zeros((p, 3))
    w_true[:5] = generator.normal(scale=1.0, size=(5, 3))
    y = mask @ w_true + 2.0 + generator.normal(scale=0.5, size=(n, 3))
    index = np.array([-1, -1, 7])
    settings = fit.FitSettings(n_lambdas=20, lambda_eps=1e-3, val_fraction=0.2, tol=1e-6, max_iter=5000)
    datamodels, info = fit.fit(mask, y.astype(np.float32), index, settings, seed=0, alpha=0.5)
    return mask, y, w_true, index, datamodels, info


def test_raw_and_standardised_units_predict_the_same(problem):
    mask, _, _, _, dm, _ = problem
    raw = mask @ dm.weight + dm.bias
    std = ((mask - dm.mu) / dm.sigma) @ dm.weight_std + dm.bias_std
    np.testing.assert_allclose(raw, std, atol=1e-4)


def test_recovers_planted_weights(problem):
    _, _, w_true, _, dm, info = problem
    assert info["n_not_converged"] == 0
    for t in range(2):
        assert np.corrcoef(dm.weight[:, t], w_true[:, t])[0, 1] > 0.98


def test_matches_sklearn_at_chosen_lambda(problem):
    mask, y, _, index, dm, _ = problem
    z = (mask - dm.mu) / dm.sigma
    for t in range(3):
        rows = np.ones(len(mask), bool) if index[t] < 0 else ~mask[:, index[t]]
        reference = Lasso(alpha=float(dm.lam[t]), tol=1e-10, max_iter=100_000).fit(z[rows], y[rows, t])
        np.testing.assert_allclose(dm.weight_std[:, t], reference.coef_, atol=3e-3)
        assert np.isclose(dm.bias_std[t], reference.intercept_, atol=3e-3)
        assert dm.n_models[t] == rows.sum()


def test_train_target_ignores_its_own_example(problem):
    mask, _, _, index, dm, _ = problem
    assert dm.weight[index[2], 2] == 0


def test_write_read_roundtrip(problem, tmp_path):
    *_, dm, _ = problem
    fit.write(dm, tmp_path / "d.parquet", tmp_path / "f.parquet")
    back = fit.read(tmp_path / "d.parquet", tmp_path / "f.parquet")
    for field in ("weight", "bias", "weight_std", "bias_std", "lam", "mu", "sigma", "n_models", "target_train_index"):
        np.testing.assert_array_equal(getattr(back, field), getattr(dm, field))


def test_few_models_on_rows_is_the_same_lasso():
    """Fewer models than half the features (the learning curve's small prefixes): every target fit on the rows
    gives the covariance form's datamodels, and scikit-learn's lasso at the chosen lambda."""
    n, p = 90, 200
    mask = masks.to_mask(masks.draw_subsets(1, "train", 0.5, range(n), p), p)
    generator = np.random.default_rng(1)
    w_true = np.zeros((p, 3))
    w_true[:4] = generator.normal(size=(4, 3))
    y = (mask @ w_true + generator.normal(scale=0.3, size=(n, 3))).astype(np.float32)
    index = np.array([-1, -1, 7])
    settings = fit.FitSettings(n_lambdas=12, lambda_eps=1e-2, val_fraction=0.2, tol=1e-6, max_iter=5000)
    is_val = statistics.validation_rows(n, 0.2, 0, 0.5)
    stats = statistics.from_arrays(mask, y, index, is_val, {"alpha": 0.5, "seed": 0, "val_fraction": 0.2, "n": n})
    on_rows, _ = fit.fit_targets(stats, settings, rows=lambda: (mask, y), few_models_on_rows=True)
    on_sums, _ = fit.fit_targets(stats, settings, rows=lambda: (mask, y))
    np.testing.assert_array_equal(on_rows["best_k"], on_sums["best_k"])
    np.testing.assert_allclose(on_rows["w"], on_sums["w"], atol=2e-3)
    np.testing.assert_allclose(on_rows["b"], on_sums["b"], atol=2e-3)
    mu, sigma = fit.standardization(stats.all.xsum, stats.all.n)
    z = (mask - mu) / sigma
    for t in range(2):  # the test targets: every row
        reference = Lasso(alpha=float(on_rows["lam"][t]), tol=1e-8, max_iter=20_000).fit(z, y[:, t])
        np.testing.assert_allclose(on_rows["w"][:, t], reference.coef_, atol=3e-3)
