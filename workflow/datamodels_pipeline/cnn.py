"""The ``cnn`` learner: a small convolutional network, many models trained together with ``torch.func.vmap``.

Per block a 3×3 convolution (padding 1), ReLU and 2×2 max-pooling (while the
image is at least 2 pixels high and wide); then one linear layer on the
flattened features. Suited to 8×8 digits, 28×28 (MNIST-like) and 32×32 (CIFAR)
images with any number of channels. No BatchNorm, so a chunk's models are
stepped together (``image_training.train_vmapped``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .image_training import (FlatImageNetwork, ImageData, ImageRecipe, ModelFactory, channel_layout, fit_one,
                             train_vmapped)
from .protocol import MARGINS, TORCH_MODULE, Checkpoint, Learner, TrainData, TrainResult

DEFAULT_CHANNELS = (16, 32)


def small_cnn(in_channels: int, height: int, width: int, channels: Sequence[int], n_classes: int) -> nn.Sequential:
    """The network for ``[*, in_channels, height, width]`` images."""
    layers: list[nn.Module] = []
    for out_channels in channels:
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
        if min(height, width) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        in_channels = out_channels
    layers += [nn.Flatten(), nn.Linear(in_channels * height * width, n_classes)]
    return nn.Sequential(*layers)


def factory(model: dict, image_shape: Sequence[int], n_classes: int) -> ModelFactory:
    """Builds the config's CNN (``model.channels``) for this data set's images."""
    channels, height, width = channel_layout(image_shape)
    widths = tuple(model.get("channels", DEFAULT_CHANNELS))
    return lambda: small_cnn(channels, height, width, widths, n_classes)


class CNN(Learner):
    """Learner ``cnn`` (see the module docstring): margins from the models of a chunk stepped together with
    ``vmap``; networks (``torch_module``) trained one at a time with the same draws (``image_training.fit_one``),
    on flattened rows, standardised, their outputs averaged with the flip when ``train.tta_flip``."""

    capabilities = frozenset({MARGINS, TORCH_MODULE})
    features_description = "flattened features of the last convolutional block"

    @property
    def recipe(self) -> ImageRecipe:
        return ImageRecipe.from_config(self.train)

    @property
    def epochs(self) -> int:
        return self.recipe.epochs

    @property
    def weight_decay(self) -> float:
        return self.recipe.weight_decay

    def _images(self, data: TrainData) -> ImageData:
        return ImageData.from_arrays(data.x_train, data.y_train, data.x_targets, data.y_targets, data.image_shape,
                                     torch.device(data.device), self.recipe.normalize)

    def train_models(self, data: TrainData, subsets: np.ndarray, seeds: Sequence[int]) -> TrainResult:
        images = self._images(data)
        return train_vmapped(factory(self.model, data.image_shape, images.n_classes), self.recipe, images, subsets,
                             seeds)

    def train_networks(self, data: TrainData, subsets: np.ndarray, seeds: Sequence[int],
                       epochs: Sequence[int] | None = None) -> list[list[Checkpoint]]:
        recipe, images = self.recipe, self._images(data)
        wanted = {recipe.epochs} if epochs is None else {int(e) for e in epochs}
        if not wanted or min(wanted) < 1 or max(wanted) > recipe.epochs:
            raise ValueError(f"checkpoint epochs must lie in [1, {recipe.epochs}] (train.epochs), got {sorted(wanted)}")
        build = factory(self.model, data.image_shape, images.n_classes)
        layout = channel_layout(data.image_shape)
        trained = []
        for subset, seed in zip(np.asarray(subsets), seeds):
            checkpoints: list[Checkpoint] = []

            def keep(epoch: int, model: nn.Module, lr: float) -> None:
                if epoch in wanted:
                    network = FlatImageNetwork(copy.deepcopy(model), layout, images.mean, images.std, recipe.tta_flip)
                    checkpoints.append(Checkpoint(epoch=epoch, lr=lr, model=network.eval()))

            fit_one(build, recipe, images, torch.as_tensor(subset, dtype=torch.int64), int(seed), keep)
            trained.append(checkpoints)
        return trained

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with the recipe's label smoothing (``train.label_smoothing``)."""
        return F.cross_entropy(logits, labels, label_smoothing=self.recipe.label_smoothing)

    def features(self, network: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return network.features(x)
