"""The streamed sufficient statistics, the fit from them, the target-sharded fit and the learning-curve prefixes."""

import json

import numpy as np
import pytest

from datamodels_pipeline import data, evaluate, fit, masks, statistics, store

P, ALPHA, M = 40, 0.5, 600
INDEX = np.array([-1, -1, -1, 5, 9])  # three test targets, then two training examples as targets


def _models(ids, seed=0):
    """Fixed-size subsets; outputs linear in the mask with a few large weights, plus noise."""
    mask = masks.to_mask(masks.draw_subsets(seed, "train", ALPHA, ids, P), P)
    generator = np.random.default_rng(seed)
    truth = np.zeros((P, len(INDEX)))
    truth[:6] = generator.normal(size=(6, len(INDEX)))
    outputs = mask @ truth + 1.0 + 0.3 * generator.normal(size=(len(ids), len(INDEX)))
    return mask, outputs.astype(np.float32)


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """A prepared-data pair, a train aggregate of M models written as 3 row groups, and its statistics folder."""
    folder = tmp_path_factory.mktemp("run")
    generator = np.random.default_rng(1)
    dataset = data.Dataset(x_train=generator.normal(size=(P, 3)).astype(np.float32), y_train=np.zeros(P, np.int64),
                           x_targets=generator.normal(size=(len(INDEX), 3)).astype(np.float32),
                           y_targets=np.zeros(len(INDEX), np.int64), target_train_index=INDEX, image_shape=(3,))
    data.save(dataset, folder / "dataset.npz", folder / "dataset.json", {})
    info = json.loads((folder / "dataset.json").read_text())
    layout = store.layout_for(info, ALPHA)
    mask, outputs = _models(range(M))
    with store.ModelsWriter(folder / "train.parquet", layout, {}) as writer:
        for rows in np.array_split(np.arange(M), 3):
            writer.write(store.Models(rows.astype(np.int64), mask[rows], outputs[rows], np.ones(len(rows), np.float32),
                                      np.ones(len(rows), np.float32), np.zeros(len(rows), bool)))
    statistics.run(str(folder / "train.parquet"), str(folder / "dataset.json"), str(folder / "dataset.npz"), ALPHA,
                   val_fraction=0.2, seed=3, fractions=[0.25, 0.5, 1.0], device="cpu", threads=1,
                   output_path=str(folder / "statistics"))
    return folder, mask, outputs


def _direct(mask, outputs, rows):
    """The sums of the module docstring by a dense computation over the given rows."""
    x, y = mask[rows].astype(np.float64), outputs[rows].astype(np.float64)
    keep = np.ones_like(y)
    own = INDEX >= 0
    keep[:, own] = 1 - x[:, INDEX[own]]
    return {"n": len(x), "xsum": x.sum(0), "gram": x.T @ x, "n_kept": keep.sum(0), "ysum": (keep * y).sum(0),
            "yy": (keep * y * y).sum(0), "xy": (keep * y).T @ x}


def _assert_sums(sums, expected):
    assert sums.n == expected["n"]
    for name in ("xsum", "gram", "n_kept", "ysum", "yy", "xy"):
        np.testing.assert_allclose(np.asarray(getattr(sums, name)), expected[name], rtol=1e-6, atol=1e-5, err_msg=name)


def test_streamed_statistics_equal_a_direct_dense_computation(run_files):
    folder, mask, outputs = run_files
    stats = statistics.load(folder / "statistics" / statistics.ALL)
    is_val = statistics.validation_rows(M, 0.2, 3, ALPHA)
    assert is_val.sum() == 120
    _assert_sums(stats.all, _direct(mask, outputs, np.arange(M)))
    _assert_sums(stats.val, _direct(mask, outputs, np.flatnonzero(is_val)))
    fit_rows = stats.fit
    expected = _direct(mask, outputs, np.flatnonzero(~is_val))
    np.testing.assert_allclose(fit_rows.gram[:], expected["gram"])
    np.testing.assert_allclose(fit_rows.xy, expected["xy"], rtol=1e-6, atol=1e-5)


def test_prefix_snapshots_are_the_sums_of_the_first_rows(run_files):
    folder, mask, outputs = run_files
    found = statistics.prefixes(folder / "statistics")
    assert [rows for rows, _ in found] == [150, 300]
    is_val = statistics.validation_rows(M, 0.2, 3, ALPHA)
    for rows, path in found:
        stats = statistics.load(path)
        _assert_sums(stats.all, _direct(mask, outputs, np.arange(rows)))
        _assert_sums(stats.val, _direct(mask, outputs, np.flatnonzero(is_val[:rows])))
    assert statistics.prefix_sizes(M, [0.25, 0.5, 1.0]) == [150, 300]
    assert statistics.prefix_sizes(3, [0.1, 1.0]) == [2]


def test_in_memory_and_streamed_statistics_agree(run_files):
    folder, mask, outputs = run_files
    stats = statistics.load(folder / "statistics" / statistics.ALL)
    memory = statistics.from_arrays(mask, outputs, INDEX, statistics.validation_rows(M, 0.2, 3, ALPHA))
    for part in ("all", "val"):
        for name in ("xsum", "gram", "n_kept", "ysum", "yy", "xy"):
            np.testing.assert_allclose(np.asarray(getattr(getattr(stats, part), name)),
                                       getattr(getattr(memory, part), name), rtol=1e-6, atol=1e-5)


def _fit_blocks(folder, settings, out):
    blocks = fit.n_blocks(len(INDEX), settings.get("targets_per_job"))
    paths = []
    for block in range(blocks):
        paths.append(str(out / f"block-{block}.parquet"))
        fit.run_block(str(folder / "statistics"), str(folder / "train.parquet"), str(folder / "dataset.json"), ALPHA,
                      settings, block, threads=1, output_path=paths[-1])
    fit.merge(paths, str(folder / "statistics"), settings, ALPHA, str(out / "datamodels.parquet"),
              str(out / "features.parquet"), str(out / "fit.json"))
    return fit.read(out / "datamodels.parquet", out / "features.parquet"), json.loads((out / "fit.json").read_text())


SETTINGS = {"n_lambdas": 15, "lambda_eps": 1e-3, "val_fraction": 0.2, "tol": 1e-7, "max_iter": 5000, "patience": 3,
            "device": "cpu", "train_targets": "exact", "targets_per_job": None}


def test_sharded_fit_equals_unsharded_and_the_in_memory_fit(run_files, tmp_path, one_thread):
    folder, mask, outputs = run_files
    whole, whole_info = _fit_blocks(folder, SETTINGS, tmp_path / "one")
    sharded, sharded_info = _fit_blocks(folder, {**SETTINGS, "targets_per_job": 2}, tmp_path / "three")
    assert sharded_info["n_blocks"] == 3 and whole_info["n_blocks"] == 1
    memory, _ = fit.fit(mask, outputs, INDEX, fit.FitSettings.from_config(SETTINGS), seed=3, alpha=ALPHA)
    for other in (sharded, memory):
        np.testing.assert_allclose(other.lam, whole.lam, rtol=1e-5)  # the same point of the lambda path
        np.testing.assert_allclose(other.weight_std, whole.weight_std, atol=1e-4)
        np.testing.assert_allclose(other.bias, whole.bias, atol=1e-3)
        np.testing.assert_array_equal(other.n_models, whole.n_models)
    np.testing.assert_allclose(whole.mu, mask.mean(0), atol=1e-7)
    np.testing.assert_allclose(whole.sigma, mask.std(0), atol=1e-6)
    assert whole.n_models.tolist() == [M, M, M, M - mask[:, 5].sum(), M - mask[:, 9].sum()]
    assert whole_info["n_models"] == M and whole_info["n_targets"] == len(INDEX)
    # the fit's measured CPU seconds (the attribution leaderboard's fitting cost): the blocks' sum
    assert whole_info["cpu_seconds"] > 0 and sharded_info["cpu_seconds"] > 0


def test_shared_gram_train_targets_stay_close_to_exact(run_files, tmp_path, one_thread):
    folder, *_ = run_files
    exact, _ = _fit_blocks(folder, SETTINGS, tmp_path / "exact")
    shared, info = _fit_blocks(folder, {**SETTINGS, "train_targets": "shared_gram"}, tmp_path / "shared")
    assert info["train_targets"] == "shared_gram"
    np.testing.assert_allclose(shared.weight[:, :3], exact.weight[:, :3], atol=1e-4)  # test targets: the same
    for t in (3, 4):
        assert shared.weight[INDEX[t], t] == 0
        assert np.corrcoef(shared.weight[:, t], exact.weight[:, t])[0, 1] > 0.98


def test_empirical_influence_from_sums_equals_the_dense_form(run_files):
    folder, mask, outputs = run_files
    stats = statistics.load(folder / "statistics" / statistics.ALL)
    keep = np.ones(outputs.shape, bool)
    keep[:, 3:] = ~mask[:, INDEX[3:]]
    dense_w, dense_b = evaluate.empirical_influence(mask, outputs, keep)
    w, b = evaluate.empirical_influence_from_sums(stats.all, INDEX)
    np.testing.assert_allclose(w, dense_w, atol=1e-5)
    np.testing.assert_allclose(b, dense_b, rtol=1e-4)  # the dense form sums float32 outputs in float32


def test_accumulate_checks_the_row_count():
    mask, outputs = _models(range(10))
    with pytest.raises(ValueError, match="expected 12"):
        list(statistics.accumulate([(mask, outputs)], P, INDEX, np.zeros(12, bool)))
    with pytest.raises(ValueError, match="more than the 8 rows"):
        list(statistics.accumulate([(mask, outputs)], P, INDEX, np.zeros(8, bool)))


def test_learning_curve_prefix_fit_is_blocked_and_uses_the_prefix_rows(run_files, one_thread):
    from datamodels_pipeline import learning_curve

    folder, mask, outputs = run_files
    layout = store.layout_for(json.loads((folder / "dataset.json").read_text()), ALPHA)
    (rows, path), = [found for found in statistics.prefixes(folder / "statistics") if found[0] == 300]
    settings = fit.FitSettings.from_config(SETTINGS)
    whole = learning_curve.fit_prefix(path, str(folder / "train.parquet"), layout, rows, settings)
    blocked = learning_curve.fit_prefix(path, str(folder / "train.parquet"), layout, rows,
                                        fit.FitSettings.from_config({**SETTINGS, "targets_per_job": 2}))
    is_val = statistics.validation_rows(M, 0.2, 3, ALPHA)[:rows]  # the full fit's validation models among them
    memory = statistics.from_arrays(mask[:rows], outputs[:rows], INDEX, is_val,
                                    {"alpha": ALPHA, "seed": 3, "val_fraction": 0.2, "n_models_total": M})
    result, _ = fit.fit_targets(memory, settings, rows=lambda: (mask[:rows], outputs[:rows]))
    for other in (blocked.weight_std, result["w"]):
        np.testing.assert_allclose(other, whole.weight_std, atol=1e-4)
    assert whole.n_models[0] == rows
