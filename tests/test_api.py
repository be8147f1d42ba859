"""The Python API for a finished run (``datamodels_pipeline.open_run``), on the smoke run."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

import datamodels_pipeline
from datamodels_pipeline import data, fit

from conftest import REPO

pytestmark = pytest.mark.workflow
ALPHAS = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())["subsets"]["alphas"]  # in config order


@pytest.fixture(scope="module")
def run_dir(smoke_run):
    return smoke_run / "results" / "smoke"


@pytest.fixture(scope="module")
def run(run_dir):
    return datamodels_pipeline.open_run(run_dir)


def test_alphas_weights_and_biases_are_the_stored_datamodels(run, run_dir):
    assert run.alphas == sorted(ALPHAS)
    for alpha in ALPHAS:
        stored = fit.read(run_dir / "datamodels" / f"alpha={alpha:g}" / "datamodels.parquet")
        for key in (alpha, f"{alpha:g}"):
            np.testing.assert_array_equal(run[key].weight, stored.weight)
            np.testing.assert_array_equal(run[key].bias, stored.bias)
    assert run.info == json.loads((run_dir / "data" / "dataset.json").read_text())
    if len(ALPHAS) > 1:
        with pytest.raises(ValueError, match="name one"):
            run.datamodels()
    else:
        assert run.datamodels() is run[ALPHAS[0]]
    with pytest.raises(KeyError, match="alpha 0.75"):
        run[0.75]


def test_predict_is_mask_times_weight_plus_bias(run):
    dm = run[ALPHAS[0]]
    masks = np.random.default_rng(0).random((5, dm.n_train)) < 0.5
    expected = masks.astype(np.float64) @ dm.weight.astype(np.float64) + dm.bias
    np.testing.assert_allclose(dm.predict(masks), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dm.predict(masks[2]), expected[2], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="boolean"):
        dm.predict(masks.astype(np.float32))
    with pytest.raises(ValueError, match=f"\\[{dm.n_train}\\]"):
        dm.predict(masks[:, :-1])


def test_top_examples_follow_the_weights(run, run_dir):
    dm, dataset = run[ALPHAS[0]], data.load(run_dir / "data" / "dataset.npz")
    target = int(np.argmax((dm.weight != 0).sum(axis=0)))  # the target with the most non-zero weights
    weight = dm.weight[:, target]
    top = dm.top(target, k=4)
    order = np.argsort(-weight, kind="stable")
    np.testing.assert_array_equal(top.positive.index, order[:4][weight[order[:4]] > 0])
    order = np.argsort(weight, kind="stable")
    np.testing.assert_array_equal(top.negative.index, order[:4][weight[order[:4]] < 0])
    assert len(top.positive.index) and len(top.negative.index)
    np.testing.assert_array_equal(top.positive.weight, weight[top.positive.index])
    np.testing.assert_array_equal(top.negative.label, dataset.y_train[top.negative.index])
    assert top.label == dataset.y_targets[target]
    with pytest.raises(IndexError, match="target"):
        dm.top(dm.n_targets)


def test_removal_effect_is_minus_the_sum_of_the_weights(run):
    dm = run[ALPHAS[-1]]
    removed = [3, 17, 42, 99]
    assert dm.removal_effect(7, removed) == pytest.approx(-dm.weight[removed, 7].sum(), abs=1e-6)
    np.testing.assert_allclose(dm.removal_effect([7, 8, 9], removed), -dm.weight[removed][:, [7, 8, 9]].sum(axis=0),
                               atol=1e-6)
    # the same as the change of the prediction when the examples leave a full mask
    full = np.ones(dm.n_train, dtype=bool)
    reduced = full.copy()
    reduced[removed] = False
    assert dm.removal_effect(7, removed) == pytest.approx(dm.predict(reduced)[7] - dm.predict(full)[7], abs=1e-4)
    with pytest.raises(ValueError, match="distinct"):
        dm.removal_effect(7, [3, 3])


def test_metrics_and_summary_are_the_run_files(run, run_dir):
    for alpha in run.alphas:
        metrics = json.loads((run_dir / "evaluation" / f"alpha={alpha:g}" / "metrics.json").read_text())
        assert run.metrics(alpha) == metrics == run[alpha].metrics
    rows = run.summary()
    assert [row["alpha"] for row in rows] == ALPHAS
    assert rows[0]["n_train_models"] == run.metrics(ALPHAS[0])["n_train_models"]
    assert rows[0]["lds"] == pytest.approx(run.metrics(ALPHAS[0])["lds"], abs=1e-4)


def test_pandas_frames(run):
    pytest.importorskip("pandas")
    dm = run[ALPHAS[0]]
    weights = dm.weights_frame()
    assert weights.shape == dm.weight.shape and weights.index.name == "train_index"
    np.testing.assert_array_equal(weights.to_numpy(), dm.weight)
    targets = dm.targets_frame()
    np.testing.assert_array_equal(targets["bias"].to_numpy(), dm.bias)
    np.testing.assert_array_equal(targets["label"].to_numpy(), run.dataset.y_targets)


def test_importing_the_package_stays_cheap():
    code = ("import sys, datamodels_pipeline; assert callable(datamodels_pipeline.open_run); "
            "print(sorted(m for m in ('torch', 'matplotlib', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_reading_datamodels_and_sums_needs_no_torch():
    """The stages that only read datamodels and the statistics' sums (evaluate, merge_datamodels, a learning curve of
    the full set) start without torch: the solver (lasso_path) and the statistics pass import it when they run."""
    code = ("import sys; from datamodels_pipeline import evaluate, fit, learning_curve, statistics; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
