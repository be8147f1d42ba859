"""The learning algorithms, selected by the config's ``model.name``, behind one entry point.

:func:`train` trains one model per (subset, seed) pair with the configured
learner and returns every model's correct-class margin on every target; the
``train_chunk`` stage and the applications' retraining both call it. Each
learner is a :class:`protocol.Learner` found through ``protocol.REGISTRY``:

============  ==========================================================================
``mlp``       MLP with ReLU, many models stepped together (``training.train_batched``)
``logistic``  multinomial logistic regression: the same trainer without hidden layers
``cnn``       small CNN for images, many models stepped together with ``torch.func.vmap``
``resnet9``   the paper's ResNet-9 and CIFAR recipe, the models one after the other
``custom``    the user's learner class or function named by ``model.entry_point`` (see ``custom``)
============  ==========================================================================

This module imports torch only when a model trains (the workflow reads the capabilities of the mlp and logistic
learners, :class:`MLP`, when it is parsed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import protocol
from .protocol import TORCH_MODULE, MARGINS, Checkpoint, Learner, TrainData, TrainResult

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from . import training

LEARNERS = protocol.REGISTRY
"""name -> ``module:Class`` (``protocol.REGISTRY``), imported only when that learner trains."""

__all__ = ["LEARNERS", "MLP", "TrainResult", "TrainData", "mlp_recipe", "train", "train_on"]


def mlp_recipe(recipe: dict) -> training.Recipe:
    """The batched trainer's Recipe from the config's ``model`` and ``train`` sections (mlp and logistic)."""
    from . import training

    model, train = recipe["model"], recipe["train"]
    hidden = tuple(model.get("hidden", training.Recipe.hidden)) if model["name"] == "mlp" else ()
    return training.Recipe(hidden=hidden, epochs=train["epochs"], batch_size=train["batch_size"], lr=train["lr"],
                           momentum=train["momentum"], weight_decay=train["weight_decay"],
                           nesterov=train.get("nesterov", False))


class MLP(Learner):
    """mlp and logistic: flattened inputs; margins from ``training.train_batched`` (many models stepped together),
    networks from the same trainer with an epoch hook, or one network from ``training.train_module``."""

    capabilities = frozenset({MARGINS, TORCH_MODULE})

    @property
    def recipe(self) -> training.Recipe:
        return mlp_recipe({"model": self.model, "train": self.train})

    @property
    def features_description(self) -> str:  # type: ignore[override]
        return "hidden activations" if self.recipe.hidden else "inputs (logistic regression)"

    def train_models(self, data: TrainData, subsets: np.ndarray, seeds: Sequence[int]) -> TrainResult:
        import torch

        from . import training

        x_train, x_targets = data.x_train, data.x_targets
        return training.train_batched(
            torch.from_numpy(x_train.reshape(len(x_train), -1)), torch.from_numpy(data.y_train), subsets, seeds,
            self.recipe, torch.from_numpy(x_targets.reshape(len(x_targets), -1)), torch.from_numpy(data.y_targets),
            device=data.device,
        )

    def _tensors(self, data: TrainData) -> tuple[Any, Any]:
        import torch

        return torch.from_numpy(data.flat(data.x_train)), torch.from_numpy(data.y_train.astype(np.int64))

    def train_networks(self, data: TrainData, subsets: np.ndarray, seeds: Sequence[int],
                       epochs: Sequence[int] | None = None) -> list[list[Checkpoint]]:
        """The batched trainer's models (on the CPU), copied out at the end of the requested epochs."""
        from . import training

        x, y = self._tensors(data)
        recipe = self.recipe
        return training.train_with_checkpoints(x, y, np.asarray(subsets), list(seeds), recipe, data.n_classes,
                                               [recipe.epochs] if epochs is None else epochs)

    def train_network(self, data: TrainData, subset: np.ndarray, seed: int) -> nn.Module:
        """One network with the plain PyTorch loop (``training.train_module``) on ``data.device``."""
        from . import training

        x, y = self._tensors(data)
        return training.train_module(x, y, np.asarray(subset), int(seed), self.recipe, data.n_classes, data.device)


def train_on(recipe: dict, data: TrainData, subsets: np.ndarray, seeds: Sequence[int]) -> TrainResult:
    """Train ``len(seeds)`` models with the learner ``recipe["model"]["name"]`` on ``data``; model k sees
    ``data.x_train[subsets[k]]`` and its randomness comes only from ``seeds[k]``."""
    learner = protocol.learner(recipe)
    if len(seeds) != len(subsets):
        raise ValueError(f"{len(seeds)} seeds for {len(subsets)} subsets")
    return learner.train_models(data, np.asarray(subsets), list(seeds))


def train(recipe: dict, x_train: np.ndarray, y_train: np.ndarray, subsets: np.ndarray, seeds: Sequence[int],
          x_targets: np.ndarray, y_targets: np.ndarray, device: Any = "cpu",
          image_shape: Sequence[int] | None = None) -> TrainResult:
    """:func:`train_on` with the arrays spelled out.

    ``recipe`` is ``{"model": config["model"], "train": config["train"]}``;
    ``subsets`` int ``[K, m]``; ``image_shape`` is the shape of one example (default: ``x_train.shape[1:]``).
    Returns margins ``[K, n_targets]`` and accuracies ``[K]`` (float32).
    """
    data = TrainData(x_train, y_train, x_targets, y_targets, None if image_shape is None else tuple(image_shape),
                     str(device))
    return train_on(recipe, data, subsets, seeds)
