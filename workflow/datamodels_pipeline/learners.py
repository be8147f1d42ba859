"""The learning algorithms, selected by the config's ``model.name``, behind one entry point.

:func:`train` trains one model per (subset, seed) pair with the configured
learner and returns every model's correct-class margin on every target; the
``train_chunk`` stage and the applications' retraining both call it.

============  ==========================================================================
``mlp``       MLP with ReLU, many models stepped together (``training.train_batched``)
``logistic``  multinomial logistic regression: the same trainer without hidden layers
``cnn``       small CNN for images, many models stepped together with ``torch.func.vmap``
``resnet9``   the paper's ResNet-9 and CIFAR recipe, the models one after the other
``custom``    the user's function named by ``model.entry_point`` (see ``custom``)
============  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

import importlib

from . import training
from .training import TrainResult


class Learner(Protocol):
    def __call__(self, recipe: dict, x_train: np.ndarray, y_train: np.ndarray, subsets: np.ndarray,
                 seeds: Sequence[int], x_targets: np.ndarray, y_targets: np.ndarray, device: torch.device,
                 image_shape: Sequence[int]) -> TrainResult: ...


def mlp_recipe(recipe: dict) -> training.Recipe:
    """The batched trainer's Recipe from the config's ``model`` and ``train`` sections (mlp and logistic)."""
    model, train = recipe["model"], recipe["train"]
    hidden = tuple(model.get("hidden", training.Recipe.hidden)) if model["name"] == "mlp" else ()
    return training.Recipe(hidden=hidden, epochs=train["epochs"], batch_size=train["batch_size"], lr=train["lr"],
                           momentum=train["momentum"], weight_decay=train["weight_decay"],
                           nesterov=train.get("nesterov", False))


def _train_mlp(recipe: dict, x_train: np.ndarray, y_train: np.ndarray, subsets: np.ndarray, seeds: Sequence[int],
               x_targets: np.ndarray, y_targets: np.ndarray, device: torch.device, image_shape: Sequence[int]
               ) -> TrainResult:
    """mlp and logistic: flattened inputs, ``training.train_batched``."""
    return training.train_batched(
        torch.from_numpy(x_train.reshape(len(x_train), -1)), torch.from_numpy(y_train), subsets, seeds,
        mlp_recipe(recipe), torch.from_numpy(x_targets.reshape(len(x_targets), -1)), torch.from_numpy(y_targets),
        device=device,
    )


LEARNERS: dict[str, str] = {
    "mlp": f"{__name__}:_train_mlp",
    "logistic": f"{__name__}:_train_mlp",
    "cnn": f"{__package__}.cnn:train",
    "resnet9": f"{__package__}.resnet9:train",
    "custom": f"{__package__}.custom:train",
}
"""name -> ``module:function``, imported only when that learner trains (so a run's code is only its learner's)."""


def learner(name: str) -> Learner:
    """The training function of a learner name."""
    if name not in LEARNERS:
        raise ValueError(f"model.name {name!r} is not one of {sorted(LEARNERS)}")
    module, _, function = LEARNERS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def train(recipe: dict, x_train: np.ndarray, y_train: np.ndarray, subsets: np.ndarray, seeds: Sequence[int],
          x_targets: np.ndarray, y_targets: np.ndarray, device: str | torch.device = "cpu",
          image_shape: Sequence[int] | None = None) -> TrainResult:
    """Train ``len(seeds)`` models with the learner ``recipe["model"]["name"]``; model k sees ``x_train[subsets[k]]``.

    ``recipe`` is ``{"model": config["model"], "train": config["train"]}``;
    ``subsets`` int ``[K, m]``; model k's randomness comes only from ``seeds[k]``.
    ``image_shape`` is the shape of one example (default: ``x_train.shape[1:]``).
    Returns margins ``[K, n_targets]`` and accuracies ``[K]`` (float32).
    """
    train_models = learner(recipe["model"]["name"])
    if len(seeds) != len(subsets):
        raise ValueError(f"{len(seeds)} seeds for {len(subsets)} subsets")
    shape = tuple(x_train.shape[1:]) if image_shape is None else tuple(int(s) for s in image_shape)
    return train_models(recipe, np.asarray(x_train), np.asarray(y_train), np.asarray(subsets), list(seeds),
                          np.asarray(x_targets), np.asarray(y_targets), torch.device(device), shape)
