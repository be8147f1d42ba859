"""The ``cnn`` learner: a small convolutional network, many models trained together with ``torch.func.vmap``.

Per block a 3×3 convolution (padding 1), ReLU and 2×2 max-pooling (while the
image is at least 2 pixels high and wide); then one linear layer on the
flattened features. Suited to 8×8 digits, 28×28 (MNIST-like) and 32×32 (CIFAR)
images with any number of channels. No BatchNorm, so a chunk's models are
stepped together (``image_training.train_vmapped``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .image_training import ImageData, ImageRecipe, ModelFactory, channel_layout, train_vmapped
from .protocol import MARGINS, Learner, TrainData, TrainResult

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
    """Learner ``cnn`` (see the module docstring): the models of a chunk stepped together with ``vmap``."""

    capabilities = frozenset({MARGINS})

    def train_models(self, data: TrainData, subsets: np.ndarray, seeds: Sequence[int]) -> TrainResult:
        settings = ImageRecipe.from_config(self.train)
        images = ImageData.from_arrays(data.x_train, data.y_train, data.x_targets, data.y_targets, data.image_shape,
                                       torch.device(data.device), settings.normalize)
        return train_vmapped(factory(self.model, data.image_shape, images.n_classes), settings, images, subsets, seeds)
