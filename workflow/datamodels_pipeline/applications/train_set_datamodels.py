"""Train-set datamodels: how each training example's presence moves the margin of every *training* example.

The main run's datamodels explain its targets (usually test examples). Some
applications need the square ``[n_train, n_train]`` matrix instead: backdoor
detection searches it for the strongest group of mutually supporting training
examples, and unlearning predicts the forget set's own margins from it. This
module trains ``n_models`` models on random alpha-subsets of the training set
(their own mask and model streams, ``Stream.TRAIN_SET_MASK`` and
``Stream.TRAIN_SET_MODEL``, apart from the main run's), records each model's
margin on every training example, and fits one lasso datamodel per training
example on the models whose subset excludes it (the paper's rule, as ``fit``
does for train-set targets).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from .. import data, devices, fit, learners, masks
from ..atomic import atomic_output
from ..seeding import Stream, int_seed

log = logging.getLogger(__name__)
TRAIN_BATCH = 1000
"""Models trained per ``learners.train`` call (bounds the memory of the recorded margins' intermediates)."""


def train_set_margins(dataset: data.Dataset, recipe: dict, n_models: int, alpha: float, seed: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(mask ``[n_models, n_train]`` bool, margins ``[n_models, n_train]`` on the training examples).

    Model i trains on ``masks.draw_subset(seed, "train_set", alpha, i, n_train)``
    with torch seed ``int_seed(seed, TRAIN_SET_MODEL, alpha, i)``: a pure
    function of (seed, alpha, i), so a larger ``n_models`` extends a smaller one.
    """
    n_train = dataset.n_train
    subsets = masks.draw_subsets(seed, "train_set", alpha, range(n_models), n_train)
    seeds = [int_seed(seed, Stream.TRAIN_SET_MODEL, alpha, i) for i in range(n_models)]
    device = devices.resolve(recipe["train"].get("device", "cpu"))
    margins = np.empty((n_models, n_train), dtype=np.float32)
    for start in range(0, n_models, TRAIN_BATCH):
        stop = min(start + TRAIN_BATCH, n_models)
        result = learners.train(recipe, dataset.x_train, dataset.y_train, subsets[start:stop], seeds[start:stop],
                                dataset.x_train, dataset.y_train, device=device, image_shape=dataset.image_shape)
        margins[start:stop] = result.margins
    return masks.to_mask(subsets, n_train), margins


def fit_train_set(dataset: data.Dataset, recipe: dict, n_models: int, alpha: float, seed: int,
                  fit_settings: dict) -> tuple[fit.Datamodels, dict]:
    """Train the models and fit the train-set datamodels; returns them and a description."""
    start = time.perf_counter()
    mask, margins = train_set_margins(dataset, recipe, n_models, alpha, seed)
    trained = time.perf_counter() - start
    log.info("train-set datamodels: %d models trained in %.1f s", n_models, trained)
    datamodels, info = fit.fit(mask, margins, np.arange(dataset.n_train, dtype=np.int64),
                               fit.FitSettings(**fit_settings), seed, alpha)
    info = {"alpha": alpha, "n_models_trained": n_models, "train_seconds": round(trained, 1),
            "mean_margin": float(margins.mean()), "mean_accuracy_on_own_examples": float((margins > 0).mean()),
            **info}
    return datamodels, info


def run(data_path: str, alpha: float, settings: dict, recipe: dict, fit_settings: dict, seed: int, threads: int,
        datamodels_path: str, features_path: str, info_path: str) -> None:
    """The rule's work: fit and write the train-set datamodels of one (prepared or modified) data set."""
    import torch

    torch.set_num_threads(max(1, threads))
    dataset = data.load(data_path)
    datamodels, info = fit_train_set(dataset, recipe, settings["n_models"], alpha, seed, fit_settings)
    fit.write(datamodels, datamodels_path, features_path)
    with atomic_output(info_path) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=2) + "\n")
