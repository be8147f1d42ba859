"""The models of the train-set datamodels (rule ``train_set_models``): training only.

Apart from ``train_set_datamodels`` (the fit) so that the training rule's code is only what trains: an edit
of the fit never retrains these models. Model i trains on its own subset stream and torch seed
(``Stream.TRAIN_SET_MASK``, ``Stream.TRAIN_SET_MODEL``), apart from the main run's, and records its margin on
every training example.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .. import data, devices, learners, masks, store
from ..protocol import TrainData
from ..seeding import Stream, int_seed

log = logging.getLogger(__name__)
TRAIN_BATCH = 1000
"""Models trained per ``learners.train_on`` call (bounds the memory of the recorded margins' intermediates)."""


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
        result = learners.train_on(recipe, TrainData.of(dataset, device, dataset.x_train, dataset.y_train),
                                   subsets[start:stop], seeds[start:stop])
        margins[start:stop] = result.margins
    return masks.to_mask(subsets, n_train), margins


def layout(dataset: data.Dataset, alpha: float) -> store.Layout:
    """The models file layout of train-set models: every training example is a target."""
    return store.Layout(n_train=dataset.n_train, n_targets=dataset.n_train,
                        subset_size=masks.subset_size(dataset.n_train, alpha), fingerprint=data.fingerprint(dataset))


def run_models(data_path: str, alpha: float, settings: dict, recipe: dict, seed: int, threads: int,
               models_path: str) -> None:
    """The training rule: train the models and write them (margins on every training example), training only."""
    import torch

    torch.set_num_threads(max(1, threads))
    dataset = data.load(data_path)
    n_models = settings["n_models"]
    start = time.perf_counter()
    mask, margins = train_set_margins(dataset, recipe, n_models, alpha, seed)
    trained = time.perf_counter() - start
    log.info("train-set datamodels: %d models trained in %.1f s", n_models, trained)
    diverged = ~np.isfinite(margins).all(axis=1)
    nan = np.full(n_models, np.nan, np.float32)
    store.write_models(models_path, store.Models(np.arange(n_models), mask, margins, nan, nan, diverged),
                       layout(dataset, alpha), {"alpha": alpha, "train_seconds": round(trained, 1)})
