"""Train-set datamodels: how each training example's presence moves the margin of every *training* example.

The main run's datamodels explain its targets (usually test examples). Some
applications need the square ``[n_train, n_train]`` matrix instead: backdoor
detection searches it for the strongest group of mutually supporting training
examples, and unlearning predicts the forget set's own margins from it. The
``train_set_models`` rule trains ``n_models`` models on random alpha-subsets of the
training set (``applications.train_set_models``); this module fits one lasso
datamodel per training example on the models whose subset excludes it (the paper's
rule, as ``fit`` does for train-set targets).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .. import data, fit, store
from .train_set_models import layout
from ..atomic import atomic_output

log = logging.getLogger(__name__)
def fit_train_set(mask: np.ndarray, margins: np.ndarray, alpha: float, seed: int, fit_settings: dict
                  ) -> tuple[fit.Datamodels, dict]:
    """Fit the train-set datamodels of trained models; returns them and a description."""
    datamodels, info = fit.fit(mask, margins, np.arange(mask.shape[1], dtype=np.int64),
                               fit.FitSettings.from_config(fit_settings), seed, alpha)
    info = {"alpha": alpha, "n_models_trained": len(mask), "mean_margin": float(margins.mean()),
            "mean_accuracy_on_own_examples": float((margins > 0).mean()), **info}
    return datamodels, info


def run(data_path: str, models_path: str, alpha: float, fit_settings: dict, seed: int, threads: int,
        datamodels_path: str, features_path: str, info_path: str) -> None:
    """The fit rule: fit and write the train-set datamodels of one (prepared or modified) data set's models."""
    import torch

    torch.set_num_threads(max(1, threads))
    dataset = data.load(data_path)
    models = store.read_models(models_path, layout(dataset, alpha))
    if models.diverged.any():
        raise ValueError(f"{models_path}: {int(models.diverged.sum())} train-set models diverged "
                         f"(non-finite margins); check the recipe")
    datamodels, info = fit_train_set(models.mask, models.margins, alpha, seed, fit_settings)
    info["train_seconds"] = store.file_metadata(models_path)["train_seconds"]
    fit.write(datamodels, datamodels_path, features_path)
    with atomic_output(info_path) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=2) + "\n")
