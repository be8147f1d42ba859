"""The ``resnet9`` learner: the paper's CIFAR-10 ResNet-9 (KakaoBrain / FFCV) with its training recipe.

Layers (``w`` = 64 × ``model.width``): conv-BN-ReLU C→w; conv-BN-ReLU w→2w (5×5,
stride 2); residual block of two conv-BN-ReLU 2w; conv-BN-ReLU 2w→4w and 2×2
max-pooling; residual block of two conv-BN-ReLU 4w; conv-BN-ReLU 4w→2w (no
padding); adaptive max-pooling; linear 2w→classes without bias; × 0.2. At
width 1 and 10 classes it has 2,274,880 parameters, as in the paper. The recipe
(``image_training.ImageRecipe`` defaults) is SGD with momentum 0.9 and weight
decay 5e-4, batch 512, 24 epochs, one-cycle learning rate peaking at 0.5 at
epoch 5, label smoothing 0.1, flip + translate(2) + cutout(4), bf16 autocast and
channels_last on CUDA, outputs averaged over the image and its horizontal flip.
The models of a chunk train one after the other in the job's process, on data
kept on the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .image_training import ImageData, ImageRecipe, ModelFactory, channel_layout, train_sequential
from .protocol import MARGINS, Learner, TrainData, TrainResult

MIN_IMAGE_SIDE = 11
"""Smallest height and width the network's strides and unpadded last convolution allow."""


def conv_bn(c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """``x + block(x)``."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class Scale(nn.Module):
    """Multiplies by a constant (the paper's ``Mul(0.2)`` on the logits)."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def resnet9(in_channels: int, n_classes: int, width: float = 1.0, scale: float = 0.2) -> nn.Sequential:
    """The network; ``width`` multiplies every layer's channels (1.0 is the paper's)."""
    w1, w2, w4 = (max(1, round(c * width)) for c in (64, 128, 256))
    return nn.Sequential(
        conv_bn(in_channels, w1),
        conv_bn(w1, w2, kernel_size=5, stride=2, padding=2),
        Residual(nn.Sequential(conv_bn(w2, w2), conv_bn(w2, w2))),
        conv_bn(w2, w4),
        nn.MaxPool2d(2),
        Residual(nn.Sequential(conv_bn(w4, w4), conv_bn(w4, w4))),
        conv_bn(w4, w2, padding=0),
        nn.AdaptiveMaxPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(w2, n_classes, bias=False),
        Scale(scale),
    )


def factory(model: dict, image_shape: Sequence[int], n_classes: int) -> ModelFactory:
    """Builds the config's ResNet-9 (``model.width``) for this data set's images."""
    channels, height, width = channel_layout(image_shape)
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ValueError(f"model.name 'resnet9' needs images of at least {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} pixels; "
                         f"this data set's are {height}×{width} (use model.name 'cnn')")
    return lambda: resnet9(channels, n_classes, float(model.get("width", 1.0)))


class ResNet9(Learner):
    """Learner ``resnet9`` (see the module docstring): the models of a chunk one after the other."""

    capabilities = frozenset({MARGINS})

    def train_models(self, data: TrainData, subsets: np.ndarray, seeds: Sequence[int]) -> TrainResult:
        settings = ImageRecipe.from_config(self.train)
        device = torch.device(data.device)
        images = ImageData.from_arrays(data.x_train, data.y_train, data.x_targets, data.y_targets, data.image_shape,
                                       device, settings.normalize)
        cudnn = torch.backends.cudnn
        # Fixed input shapes: let cuDNN pick its fastest kernels, for this training only (the flag is process-wide).
        with cudnn.flags(enabled=cudnn.enabled, benchmark=device.type == "cuda", deterministic=cudnn.deterministic,
                         allow_tf32=cudnn.allow_tf32):
            return train_sequential(factory(self.model, data.image_shape, images.n_classes), settings, images,
                                    subsets, seeds)
