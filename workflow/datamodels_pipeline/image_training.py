"""Train image classifiers (the ``cnn`` and ``resnet9`` learners) on training subsets.

Two ways to train the K models of a chunk, with exactly the same random draws:

- :func:`train_vmapped` steps many models together: their parameters are stacked
  ``[K, ...]`` and one ``torch.func.vmap(torch.func.grad(...))`` call computes
  every model's gradient on its own minibatch (models without buffers, e.g. the
  small CNN);
- :func:`train_sequential` trains one ``nn.Module`` after the other with plain
  autograd (ResNet-9, whose BatchNorm keeps running statistics; also the
  reference the batched trainer is tested against).

Model k's initial parameters come from torch's global generator, forked and
seeded with a seed derived from ``seeds[k]``; its minibatch order and its
augmentation from a ``torch.Generator`` seeded with a second derived seed. So a
model's result depends only on its seed and subset, not on its neighbours.
Images are ``[n, C, H, W]``; they are standardised per channel with the mean
and standard deviation of the whole training set S (a fixed preprocessing of the
data, like the paper's CIFAR constants).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap
from torch.optim.lr_scheduler import LambdaLR

from . import augment
from .augment import Augmentation
from .outputs import correct_class_margin
from .protocol import TrainResult

SCHEDULES = ("constant", "one_cycle")
EVAL_EXAMPLES = 2048
"""Examples per forward pass when computing outputs (summed over the models of a vmapped group)."""
ModelFactory = Callable[[], nn.Module]


@dataclass(frozen=True)
class ImageRecipe:
    """Optimisation and augmentation of the image learners; the defaults are the paper's ResNet-9 recipe."""

    epochs: int = 24
    batch_size: int = 512
    lr: float = 0.5
    """Peak learning rate of the one-cycle schedule (the constant one of ``constant``)."""
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "one_cycle"
    """``one_cycle``: linear from 0 up to ``lr`` at ``peak_epoch``, then down to 0 at the end, per step."""
    peak_epoch: float = 5.0
    label_smoothing: float = 0.1
    augment: Augmentation = Augmentation(flip=True, translate=2, cutout=4)
    tta_flip: bool = True
    """Outputs are the mean logits of the image and its horizontal flip."""
    drop_last: bool = True
    """Skip each epoch's last incomplete minibatch (never the only one)."""
    normalize: bool = True
    mixed_precision: bool = True
    """bf16 autocast when training on CUDA."""
    channels_last: bool = True
    """channels_last memory format on CUDA (sequentially trained models)."""
    parallel_models: int = 32
    """Models stepped together by the vmapped trainer."""

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.schedule == "one_cycle" and not 0 < self.peak_epoch < self.epochs:
            raise ValueError(f"train.peak_epoch = {self.peak_epoch} must lie strictly between 0 and "
                             f"train.epochs = {self.epochs}")

    @classmethod
    def from_config(cls, train: dict) -> ImageRecipe:
        """The recipe from a config's ``train`` section; keys it leaves out keep the defaults above."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in train.items() if key in known}
        if isinstance(values.get("augment"), dict):
            values["augment"] = Augmentation(**values["augment"])
        return cls(**values)


def lr_factor(recipe: ImageRecipe, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of ``recipe.lr`` at each optimiser step, for ``torch.optim.lr_scheduler.LambdaLR``.

    One-cycle is the paper's triangle, ``np.interp(step, [0, peak, end], [0, 1, 0])``
    with ``peak = peak_epoch * steps_per_epoch`` and ``end = epochs * steps_per_epoch``.
    """
    if recipe.schedule == "constant":
        return lambda step: 1.0
    points = [0.0, recipe.peak_epoch * steps_per_epoch, float(recipe.epochs * steps_per_epoch)]
    return lambda step: float(np.interp(step, points, [0.0, 1.0, 0.0]))


def steps_per_epoch(subset_size: int, recipe: ImageRecipe) -> int:
    """Minibatches per epoch; ``drop_last`` skips an incomplete last batch unless it is the only one."""
    full, rest = divmod(subset_size, recipe.batch_size)
    return max(1, full) if recipe.drop_last else full + (rest > 0)


def derived_seeds(seed: int) -> tuple[int, int]:
    """Two independent seeds from one model seed: (initialisation, data order and augmentation)."""
    init, data = np.random.SeedSequence(int(seed)).generate_state(2, dtype=np.uint64)
    return int(init), int(data)


def init_model(factory: ModelFactory, seed: int) -> nn.Module:
    """Build a model with torch's default initialisation, drawn from a forked global generator seeded ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def channel_layout(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) of an image shape: ``(H, W)`` is one channel, ``(C, H, W)`` is channels first."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return shape
    raise ValueError(f"image learners need 2-D (H, W) or 3-D (C, H, W) images; the data set's image_shape is {shape}")


@dataclass
class ImageData:
    """The prepared data on the training device: raw images ``[n, C, H, W]`` and per-channel statistics."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_targets: torch.Tensor
    y_targets: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    n_classes: int

    @classmethod
    def from_arrays(cls, x_train: np.ndarray, y_train: np.ndarray, x_targets: np.ndarray, y_targets: np.ndarray,
                    image_shape: Sequence[int], device: torch.device, normalize: bool) -> ImageData:
        layout = channel_layout(image_shape)
        train = torch.as_tensor(np.asarray(x_train), dtype=torch.float32).reshape(len(x_train), *layout)
        targets = torch.as_tensor(np.asarray(x_targets), dtype=torch.float32).reshape(len(x_targets), *layout)
        if normalize:
            mean = train.mean(dim=(0, 2, 3))
            std = train.std(dim=(0, 2, 3)).clamp_min(1e-8)
        else:
            mean, std = torch.zeros(layout[0]), torch.ones(layout[0])
        labels = torch.as_tensor(y_train, dtype=torch.int64)
        target_labels = torch.as_tensor(y_targets, dtype=torch.int64)
        n_classes = int(max(labels.max(), target_labels.max())) + 1
        return cls(train.to(device), labels.to(device), targets.to(device), target_labels.to(device),
                   mean.to(device), std.to(device), n_classes)

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised images; ``x`` is ``[..., C, H, W]``."""
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)


def _autocast(recipe: ImageRecipe, device: torch.device) -> contextlib.AbstractContextManager:
    if recipe.mixed_precision and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _epoch(subset: torch.Tensor, generator: torch.Generator, recipe: ImageRecipe, data: ImageData
           ) -> list[tuple[torch.Tensor, augment.Draws | None]]:
    """One epoch's minibatches of one model: (training indices, augmentation draws), on the data's device."""
    m = len(subset)
    order = subset[torch.randperm(m, generator=generator)].to(data.device)
    draws = None
    if recipe.augment.active:
        draws = augment.draw(recipe.augment, m, data.x_train.shape[2], data.x_train.shape[3], generator).to(data.device)
    batch = recipe.batch_size
    return [(order[s * batch:(s + 1) * batch], None if draws is None else draws[s * batch:(s + 1) * batch])
            for s in range(steps_per_epoch(m, recipe))]


def _inputs(data: ImageData, index: torch.Tensor, draws: augment.Draws | None, recipe: ImageRecipe) -> torch.Tensor:
    """Augmented, standardised training images ``[len(index), C, H, W]``."""
    x = data.x_train[index]
    if draws is not None:
        x = augment.apply(x, draws, recipe.augment, fill=data.mean)
    return data.normalise(x)


def _logits(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, recipe: ImageRecipe) -> torch.Tensor:
    """float32 logits of standardised images, averaged with their horizontal flip when ``tta_flip``."""
    logits = forward(x).float()
    if recipe.tta_flip:
        logits = (logits + forward(x.flip(-1)).float()) / 2
    return logits


def _summary(logits_own: torch.Tensor, y_own: torch.Tensor, logits_targets: torch.Tensor, y_targets: torch.Tensor
             ) -> TrainResult:
    """TrainResult from logits ``[K, m, C]`` on the models' own subsets and ``[K, T, C]`` on the targets."""
    return TrainResult(
        margins=correct_class_margin(logits_targets, y_targets).float().cpu().numpy(),
        train_accuracy=(logits_own.argmax(-1) == y_own).float().mean(-1).cpu().numpy(),
        target_accuracy=(logits_targets.argmax(-1) == y_targets).float().mean(-1).cpu().numpy(),
    )


def _optimizer(params: Sequence[torch.Tensor], recipe: ImageRecipe, n_steps: int) -> tuple[torch.optim.SGD, LambdaLR]:
    optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                                nesterov=recipe.nesterov)
    return optimizer, LambdaLR(optimizer, lr_factor(recipe, n_steps))


def _memory_format(recipe: ImageRecipe, device: torch.device) -> torch.memory_format:
    return torch.channels_last if recipe.channels_last and device.type == "cuda" else torch.contiguous_format


def fit_one(factory: ModelFactory, recipe: ImageRecipe, data: ImageData, subset: torch.Tensor, seed: int,
            on_epoch_end: Callable[[int, nn.Module, float], None] | None = None) -> nn.Module:
    """Train one model with autograd on ``data.x_train[subset]`` and return it (in eval mode).

    ``on_epoch_end(epoch, model, lr)`` sees the model after every epoch (from 1) and the learning rate of the
    epoch's last step.
    """
    device = data.device
    memory_format = _memory_format(recipe, device)
    subset = torch.as_tensor(subset, dtype=torch.int64)
    init_seed, data_seed = derived_seeds(seed)
    model = init_model(factory, init_seed).to(device=device, memory_format=memory_format)
    generator = torch.Generator().manual_seed(data_seed)
    optimizer, scheduler = _optimizer(list(model.parameters()), recipe, steps_per_epoch(len(subset), recipe))
    model.train()
    for epoch in range(1, recipe.epochs + 1):
        for index, draws in _epoch(subset, generator, recipe, data):
            x = _inputs(data, index, draws, recipe).contiguous(memory_format=memory_format)
            with _autocast(recipe, device):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), data.y_train[index], label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr = float(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        if on_epoch_end is not None:
            model.eval()
            on_epoch_end(epoch, model, lr)
            model.train()
    return model.eval()


class FlatImageNetwork(nn.Module):
    """An image network on the prepared data set's flattened rows: ``[n, C*H*W]`` -> logits (one example ``[d]``
    -> ``[C]``, as ``vmap`` hands it in), standardised with the training set's statistics, and averaged with the
    horizontal flip when ``tta_flip`` (as the learner's margins are)."""

    def __init__(self, net: nn.Module, layout: Sequence[int], mean: torch.Tensor, std: torch.Tensor,
                 tta_flip: bool) -> None:
        super().__init__()
        self.net, self.layout, self.tta_flip = net, tuple(int(s) for s in layout), tta_flip
        self.register_buffer("mean", mean.detach().clone().view(1, -1, 1, 1))
        self.register_buffer("std", std.detach().clone().view(1, -1, 1, 1))

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(-1, *self.layout) - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = self._images(x)
        logits = self.net(images)
        if self.tta_flip:
            logits = (logits + self.net(images.flip(-1))) / 2
        return logits[0] if x.ndim == 1 else logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The activations feeding the last layer (the net is an ``nn.Sequential``)."""
        out = self.net[:-1](self._images(x))
        return out[0] if x.ndim == 1 else out


def train_sequential(factory: ModelFactory, recipe: ImageRecipe, data: ImageData, subsets: np.ndarray,
                     seeds: Sequence[int]) -> TrainResult:
    """Train the models one after the other with autograd (any module, BatchNorm included)."""
    if len(seeds) != len(subsets):
        raise ValueError(f"{len(seeds)} seeds for {len(subsets)} subsets")
    device = data.device
    memory_format = _memory_format(recipe, device)
    subsets_t = torch.as_tensor(np.asarray(subsets), dtype=torch.int64)
    results = []
    for subset, seed in zip(subsets_t, seeds):
        model = fit_one(factory, recipe, data, subset, seed)

        def forward(x: torch.Tensor) -> torch.Tensor:
            with _autocast(recipe, device):
                return model(x.contiguous(memory_format=memory_format))

        with torch.inference_mode():
            own = subset.to(device)
            logits_own = torch.cat([_logits(forward, data.normalise(data.x_train[own[s:s + EVAL_EXAMPLES]]), recipe)
                                    for s in range(0, len(own), EVAL_EXAMPLES)])
            logits_targets = torch.cat([_logits(forward, data.normalise(data.x_targets[s:s + EVAL_EXAMPLES]), recipe)
                                        for s in range(0, len(data.x_targets), EVAL_EXAMPLES)])
            results.append(_summary(logits_own[None], data.y_train[own], logits_targets[None], data.y_targets))
    return TrainResult.concatenate(results)


def train_vmapped(factory: ModelFactory, recipe: ImageRecipe, data: ImageData, subsets: np.ndarray,
                  seeds: Sequence[int]) -> TrainResult:
    """Train the models ``parallel_models`` at a time, stepped together with ``torch.func.vmap``.

    Each step draws every model's minibatch (its own order and augmentation),
    evaluates all models' gradients with one vmapped ``grad`` of
    ``functional_call``, and updates the stacked parameters with one SGD step
    (element-wise, so each model gets exactly its own update).
    """
    if len(seeds) != len(subsets):
        raise ValueError(f"{len(seeds)} seeds for {len(subsets)} subsets")
    group = recipe.parallel_models
    subsets_t = torch.as_tensor(np.asarray(subsets), dtype=torch.int64)
    return TrainResult.concatenate([_train_group(factory, recipe, data, subsets_t[s:s + group], seeds[s:s + group])
                         for s in range(0, len(seeds), group)])


def _train_group(factory: ModelFactory, recipe: ImageRecipe, data: ImageData, subsets: torch.Tensor,
                 seeds: Sequence[int]) -> TrainResult:
    """Train one group of models together (``subsets`` is a ``[K, m]`` tensor)."""
    device, (n_models, m) = data.device, subsets.shape
    seed_pairs = [derived_seeds(seed) for seed in seeds]
    models = [init_model(factory, init_seed) for init_seed, _ in seed_pairs]
    params, buffers = stack_module_state(models)
    if buffers:
        raise ValueError("the vmapped trainer needs models without buffers (no BatchNorm); train them sequentially")
    names = list(params)
    stacked = [param.detach().to(device) for param in params.values()]
    template = models[0].to(device)
    generators = [torch.Generator().manual_seed(data_seed) for _, data_seed in seed_pairs]
    optimizer, scheduler = _optimizer(stacked, recipe, steps_per_epoch(m, recipe))

    def loss(params: tuple[torch.Tensor, ...], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(template, dict(zip(names, params)), (x,))
        return F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)

    gradients = vmap(grad(loss))
    for _ in range(recipe.epochs):
        epochs = [_epoch(subset, g, recipe, data) for subset, g in zip(subsets, generators)]
        for batches in zip(*epochs):
            index = torch.stack([i for i, _ in batches])                                        # [K, B]
            draws = None if batches[0][1] is None else augment.concatenate([d for _, d in batches])
            x = _inputs(data, index.reshape(-1), draws, recipe).reshape(*index.shape, *data.x_train.shape[1:])
            with _autocast(recipe, device):
                grads = gradients(tuple(stacked), x, data.y_train[index])
            for param, gradient in zip(stacked, grads):
                param.grad = gradient
            optimizer.step()
            scheduler.step()

    def forward(params: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
        return functional_call(template, dict(zip(names, params)), (x,))

    params = tuple(stacked)
    own_forward = partial(vmap(forward), params)                        # model k on its examples x[k]
    shared_forward = partial(vmap(forward, in_dims=(0, None)), params)  # every model on the same x
    step = max(1, EVAL_EXAMPLES // n_models)
    own = subsets.to(device)
    with torch.inference_mode(), _autocast(recipe, device):
        logits_own = torch.cat([_logits(own_forward, data.normalise(data.x_train[own[:, s:s + step]]), recipe)
                                for s in range(0, m, step)], dim=1)
        logits_targets = torch.cat([_logits(shared_forward, data.normalise(data.x_targets[s:s + step]), recipe)
                                    for s in range(0, len(data.x_targets), step)], dim=1)
    return _summary(logits_own, data.y_train[own], logits_targets, data.y_targets)
