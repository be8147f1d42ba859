"""Train-set datamodels: own reproducible models, margins on the training examples, the paper's exclusion rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datamodels_pipeline import data, fit, learners, masks
from datamodels_pipeline.applications import train_set_datamodels, train_set_models
from datamodels_pipeline.seeding import Stream, int_seed

RECIPE = {"model": {"name": "mlp", "hidden": [8]},
          "train": {"epochs": 3, "batch_size": 16, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "device": "cpu"}}
FIT = {"n_lambdas": 6, "lambda_eps": 0.01, "val_fraction": 0.2, "tol": 1e-4, "max_iter": 200, "patience": 3,
       "device": "cpu"}


@pytest.fixture(scope="module")
def dataset() -> data.Dataset:
    return data.prepare("digits", n_train=40, targets="test", seed=0, n_test=10)


def test_margins_are_those_of_model_i_on_its_own_subset_and_extend_with_more_models(dataset, one_thread):
    mask, margins = train_set_models.train_set_margins(dataset, RECIPE, 6, 0.5, seed=3)
    assert mask.shape == margins.shape == (6, dataset.n_train)
    assert (mask.sum(axis=1) == 20).all()
    # Model 4 is a pure function of (seed, alpha, 4): its own subset stream and its own torch seed.
    subset = masks.draw_subset(3, "train_set", 0.5, 4, dataset.n_train)
    np.testing.assert_array_equal(np.flatnonzero(mask[4]), subset)
    alone = learners.train(RECIPE, dataset.x_train, dataset.y_train, subset[None],
                           [int_seed(3, Stream.TRAIN_SET_MODEL, 0.5, 4)], dataset.x_train, dataset.y_train)
    np.testing.assert_allclose(margins[4], alone.margins[0], rtol=1e-4, atol=1e-4)
    # Not the main run's training masks, and a smaller bank is a prefix of a larger one.
    assert not np.array_equal(subset, masks.draw_subset(3, "train", 0.5, 4, dataset.n_train))
    fewer_mask, fewer = train_set_models.train_set_margins(dataset, RECIPE, 4, 0.5, seed=3)
    np.testing.assert_array_equal(fewer_mask, mask[:4])
    np.testing.assert_allclose(fewer, margins[:4], rtol=1e-5, atol=1e-5)


def test_each_training_example_is_fit_on_the_models_that_exclude_it(dataset, one_thread, tmp_path):
    """The two rules' work: train and write the models, then read them back and fit."""
    data.save(dataset, tmp_path / "dataset.npz", tmp_path / "dataset.json", {})
    train_set_models.run_models(str(tmp_path / "dataset.npz"), 0.5, {"n_models": 30}, RECIPE, 1, 1,
                                    str(tmp_path / "models.parquet"))
    paths = [str(tmp_path / name) for name in ("datamodels.parquet", "features.parquet", "fit.json")]
    train_set_datamodels.run(str(tmp_path / "dataset.npz"), str(tmp_path / "models.parquet"), 0.5, FIT, 1, 1, *paths)
    datamodels = fit.read(paths[0])
    assert datamodels.weight.shape == (dataset.n_train, dataset.n_train)
    np.testing.assert_array_equal(datamodels.target_train_index, np.arange(dataset.n_train))
    mask, margins = train_set_models.train_set_margins(dataset, RECIPE, 30, 0.5, seed=1)
    np.testing.assert_array_equal(datamodels.n_models, (~mask).sum(axis=0))
    info = json.loads(Path(paths[2]).read_text())
    assert info["n_models_trained"] == 30 and info["n_targets"] == dataset.n_train and info["train_seconds"] >= 0
    direct, _ = train_set_datamodels.fit_train_set(mask, margins, 0.5, 1, FIT)
    np.testing.assert_allclose(datamodels.weight, direct.weight, atol=1e-5)
