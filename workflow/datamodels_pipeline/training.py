"""Train many small models on training subsets, many at once in one process.

``train_batched`` stacks the weights of K MLPs as ``[K, fan_out, fan_in]``
tensors and runs each SGD step for all of them with a few batched matrix
products and a hand-written backward pass, so the per-step Python, dispatch
and autograd overhead is paid once for many models.  Model k draws its
initialisation and minibatch order only from its own generator, so its result
does not depend on which models share its batch and matches ``train_single``
(the plain one-model loop) up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datamodels_pipeline.outputs import correct_class_margin
from datamodels_pipeline.protocol import Checkpoint, TrainResult  # noqa: F401 (TrainResult: re-exported)

CPU_CACHE_BYTES_PER_THREAD = 4 * 2**20
"""Working-set budget per torch thread of the models stepped together on CPU:
far beyond it the batched products fall out of cache and run about 30% slower,
far below it the per-step overhead is shared by too few models."""


@dataclass(frozen=True)
class Recipe:
    """The learning algorithm: architecture and optimisation hyper-parameters."""

    hidden: tuple[int, ...] = (64,)
    """MLP hidden widths; ``()`` means multinomial logistic regression."""
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False


EpochHook = Callable[[int, int, list[torch.Tensor], float], None]
"""Called after every epoch as ``hook(first_model, epoch, stacked_params, lr)``: the stacked parameters
``[W1, b1, ...]`` of models ``first_model, first_model + 1, ...`` (one cache-sized chunk) after ``epoch`` (from 1);
for methods that need the networks themselves (checkpoints, gradients), not only their margins."""


def _layer_widths(x_train: torch.Tensor, y_train: torch.Tensor, y_targets: torch.Tensor,
                  recipe: Recipe) -> list[int]:
    """Input, hidden and output widths; the classes are those seen in train or targets."""
    n_classes = int(max(y_train.max(), y_targets.max())) + 1
    return [x_train.shape[1], *recipe.hidden, n_classes]


def _linear_init(fan_in: int, fan_out: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``nn.Linear``'s default weight ``[fan_out, fan_in]`` and bias, drawn from ``generator``."""
    weight = nn.init.kaiming_uniform_(torch.empty(fan_out, fan_in), a=math.sqrt(5), generator=generator)
    bound = 1 / math.sqrt(fan_in)
    bias = nn.init.uniform_(torch.empty(fan_out), -bound, bound, generator=generator)
    return weight, bias


def _init_params(widths: list[int], generators: Sequence[torch.Generator], device: torch.device) -> list[torch.Tensor]:
    """Stacked ``[W1, b1, W2, b2, ...]``: W ``[K, fan_out, fan_in]`` and b ``[K, fan_out, 1]``."""
    per_model = [
        [t for fan_in, fan_out in zip(widths, widths[1:]) for t in _linear_init(fan_in, fan_out, g)]
        for g in generators
    ]
    stacked = [torch.stack(tensors) for tensors in zip(*per_model)]
    return [(p if p.dim() == 3 else p.unsqueeze(-1)).to(device) for p in stacked]


def _forward(params: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """Activations ``[x, h1, ..., logits]`` of the stacked MLPs, each ``[K, width, B]``.

    Features-by-examples layout: the few classes then are the rows of the
    output layer's products and the softmax runs over a strided dimension,
    both several times faster on CPU than with examples as rows.
    """
    activations = [x]
    for i in range(0, len(params), 2):
        z = torch.baddbmm(params[i + 1], params[i], activations[-1])
        activations.append(z if i + 2 == len(params) else z.clamp_min_(0))
    return activations


def _backward(params: list[torch.Tensor], activations: list[torch.Tensor], onehot: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of the sum over models of each model's mean cross-entropy.

    Hand-written because autograd's bookkeeping costs more than the small
    batched products themselves; ``onehot`` is ``[K, n_classes, B]``.
    """
    delta = torch.softmax(activations[-1], dim=1).sub_(onehot).div_(onehot.shape[-1])
    grads: list[torch.Tensor] = []
    for layer in reversed(range(len(params) // 2)):
        inputs = activations[layer]
        grads += [delta.sum(dim=2, keepdim=True), torch.bmm(delta, inputs.transpose(1, 2))]
        if layer > 0:
            # ReLU's backward as autograd computes it: zero where the activation is zero.
            delta = torch.ops.aten.threshold_backward(torch.bmm(params[2 * layer].transpose(1, 2), delta), inputs, 0)
    return grads[::-1]


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-model accuracy from logits ``[K, C, n]`` and labels ``[K, n]`` or ``[n]``.

    An example is correct when its true logit is the largest: argmax accuracy
    up to exact ties, and far cheaper than argmax over a few classes on CPU.
    """
    labels = labels.expand(logits.shape[0], logits.shape[2]).unsqueeze(1)
    return (logits.gather(1, labels) >= logits.amax(1, keepdim=True)).float().mean((1, 2))


def _result(logits_train: torch.Tensor, y_train: torch.Tensor, logits_targets: torch.Tensor,
            y_targets: torch.Tensor) -> TrainResult:
    """Margins and accuracies from logits ``[K, C, m]`` (own subsets) and ``[K, C, T]`` (targets)."""
    return TrainResult(
        margins=correct_class_margin(logits_targets.transpose(1, 2), y_targets).float().cpu().numpy(),
        train_accuracy=_accuracy(logits_train, y_train).cpu().numpy(),
        target_accuracy=_accuracy(logits_targets, y_targets).cpu().numpy(),
    )


def _models_per_chunk(widths: list[int], batch_size: int) -> int:
    """How many models' parameters, gradients, momenta and activations fit the CPU cache budget."""
    n_params = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(widths, widths[1:]))
    n_activations = batch_size * (widths[0] + 3 * sum(widths[1:]))
    budget = CPU_CACHE_BYTES_PER_THREAD * torch.get_num_threads()
    return max(1, budget // (4 * (3 * n_params + n_activations)))


def _train_chunk(x_train: torch.Tensor, y_train: torch.Tensor, onehot_train: torch.Tensor, subsets: torch.Tensor,
                 seeds: Sequence[int], recipe: Recipe, widths: list[int], x_targets: torch.Tensor,
                 y_targets: torch.Tensor, on_epoch_end: EpochHook | None = None, first: int = 0) -> TrainResult:
    """Train the models of one chunk (models ``first, first + 1, ...``) together; tensors are on the training device."""
    n_models, m = subsets.shape
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    params = _init_params(widths, generators, x_train.device)
    optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    for epoch in range(1, recipe.epochs + 1):
        permutations = torch.stack([torch.randperm(m, generator=g) for g in generators])
        order = subsets.gather(1, permutations.to(subsets.device))
        for start in range(0, m, recipe.batch_size):
            index = order[:, start:start + recipe.batch_size]
            activations = _forward(params, F.embedding(index, x_train).transpose(1, 2))
            onehot = F.embedding(index, onehot_train).transpose(1, 2)
            for param, grad in zip(params, _backward(params, activations, onehot)):
                param.grad = grad
            optimizer.step()
        if on_epoch_end is not None:
            on_epoch_end(first, epoch, params, float(optimizer.param_groups[0]["lr"]))

    with torch.inference_mode():
        logits_train = _forward(params, F.embedding(subsets, x_train).transpose(1, 2))[-1]
        logits_targets = _forward(params, x_targets.T.expand(n_models, *x_targets.T.shape))[-1]
        return _result(logits_train, y_train[subsets], logits_targets, y_targets)


def train_batched(x_train: torch.Tensor, y_train: torch.Tensor, subsets: np.ndarray, seeds: Sequence[int],
                  recipe: Recipe, x_targets: torch.Tensor, y_targets: torch.Tensor,
                  device: str | torch.device = "cpu", on_epoch_end: EpochHook | None = None) -> TrainResult:
    """Train ``len(seeds)`` models at once; model k trains on ``x_train[subsets[k]]``.

    ``subsets`` is int ``[K, m]`` (fixed-size subsets); model k's initial
    weights and per-epoch permutations of its m examples come only from a
    generator seeded with ``seeds[k]``.  On CPU the models are stepped in
    cache-sized chunks, elsewhere all together; results do not depend on it.
    ``on_epoch_end`` (see :data:`EpochHook`) sees each chunk's parameters after every epoch.
    """
    device = torch.device(device)
    if len(seeds) != len(subsets):
        raise ValueError(f"{len(seeds)} seeds for {len(subsets)} subsets")
    widths = _layer_widths(x_train, y_train, y_targets, recipe)
    chunk = _models_per_chunk(widths, recipe.batch_size) if device.type == "cpu" else len(seeds)
    x_train, y_train = x_train.to(device), y_train.to(device)
    onehot_train = F.one_hot(y_train, widths[-1]).to(x_train.dtype)
    subsets_t = torch.as_tensor(subsets, dtype=torch.int64, device=device)
    x_targets, y_targets = x_targets.to(device), y_targets.to(device)
    results = [
        _train_chunk(x_train, y_train, onehot_train, subsets_t[start:start + chunk], seeds[start:start + chunk],
                     recipe, widths, x_targets, y_targets, on_epoch_end, start)
        for start in range(0, len(seeds), chunk)
    ]
    return TrainResult.concatenate(results)


def linear_from(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """An ``nn.Linear`` holding copies of ``weight`` ``[fan_out, fan_in]`` and ``bias`` ``[fan_out]``."""
    linear = nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return linear


def train_module(x_train: torch.Tensor, y_train: torch.Tensor, subset: np.ndarray, seed: int, recipe: Recipe,
                 n_classes: int, device: str | torch.device = "cpu") -> nn.Sequential:
    """Train one MLP with the plain PyTorch loop and return it (for methods that need the network itself).

    Model ``seed`` of ``train_batched`` with the same subset and recipe is the
    same network up to float rounding: same initial weights, same minibatches.
    """
    generator = torch.Generator().manual_seed(int(seed))
    widths = [x_train.shape[1], *recipe.hidden, n_classes]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        layers += [linear_from(*_linear_init(fan_in, fan_out, generator)), nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    x_train, y_train = x_train.to(device), y_train.to(device)
    subset_t = torch.as_tensor(subset, dtype=torch.int64)

    for _ in range(recipe.epochs):
        order = subset_t[torch.randperm(len(subset_t), generator=generator)].to(device)
        for start in range(0, len(order), recipe.batch_size):
            index = order[start:start + recipe.batch_size]
            loss = F.cross_entropy(model(x_train[index]), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


def train_single(x_train: torch.Tensor, y_train: torch.Tensor, subset: np.ndarray, seed: int, recipe: Recipe,
                 x_targets: torch.Tensor, y_targets: torch.Tensor,
                 device: str | torch.device = "cpu") -> TrainResult:
    """Train one model with the plain PyTorch loop (the reference for ``train_batched``).

    Same recipe and the same draws from a generator seeded with ``seed``, so
    it matches ``train_batched``'s model with that seed and subset.
    """
    n_classes = _layer_widths(x_train, y_train, y_targets, recipe)[-1]
    model = train_module(x_train, y_train, subset, seed, recipe, n_classes, device)
    with torch.inference_mode():
        own = torch.as_tensor(subset, dtype=torch.int64, device=device)
        x_train, y_train = x_train.to(device), y_train.to(device)
        logits_train, logits_targets = model(x_train[own]), model(x_targets.to(device))
        return _result(logits_train.T[None], y_train[own], logits_targets.T[None], y_targets.to(device))


def _to_sequential(params: Sequence[torch.Tensor], k: int) -> nn.Sequential:
    """Model k of the batched trainer's stacked ``[W1, b1, W2, b2, ...]`` as an ``nn.Sequential`` (a copy)."""
    layers: list[nn.Module] = []
    for i in range(0, len(params), 2):
        layers += [linear_from(params[i][k].detach(), params[i + 1][k, :, 0].detach()), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def train_with_checkpoints(x_train: torch.Tensor, y_train: torch.Tensor, subsets: np.ndarray, seeds: Sequence[int],
                           recipe: Recipe, n_classes: int, epochs: Sequence[int]) -> list[list[Checkpoint]]:
    """Train ``len(seeds)`` networks together, keeping each one's copy at the end of every epoch in ``epochs``.

    ``train_batched`` with an epoch hook, so model k at the last epoch is
    ``train_module``'s network with that seed and subset up to float
    rounding, at the cost the pipeline's own models are trained at. ``subsets`` is
    int ``[K, m]`` (fixed-size rows); returns per model its checkpoints in epoch order.
    """
    wanted = set(int(e) for e in epochs)
    if not wanted or min(wanted) < 1 or max(wanted) > recipe.epochs:
        raise ValueError(f"checkpoint epochs must lie in [1, {recipe.epochs}] (applications.attribution.tracin."
                         f"checkpoints), got {sorted(wanted)}")
    if len(seeds) != len(subsets):
        raise ValueError(f"{len(seeds)} seeds for {len(subsets)} subsets")
    saved: list[list[Checkpoint]] = [[] for _ in seeds]

    def keep(first: int, epoch: int, params: list[torch.Tensor], lr: float) -> None:
        if epoch in wanted:
            for k in range(params[0].shape[0]):
                saved[first + k].append(Checkpoint(epoch=epoch, lr=lr, model=_to_sequential(params, k)))

    # The targets only size the output layer here: one example of the last class gives n_classes outputs.
    last_class = torch.tensor([n_classes - 1], dtype=y_train.dtype)
    train_batched(x_train, y_train, np.asarray(subsets), list(seeds), recipe, x_train[:1], last_class,
                           on_epoch_end=keep)
    return saved


def train_networks(x_train: torch.Tensor, y_train: torch.Tensor, subsets: np.ndarray, seeds: Sequence[int],
                   recipe: Recipe, n_classes: int) -> list[nn.Sequential]:
    """The final networks of :func:`train_with_checkpoints` (``train_module``'s, trained together)."""
    trained = train_with_checkpoints(x_train, y_train, subsets, seeds, recipe, n_classes, [recipe.epochs])
    return [checkpoints[-1].model for checkpoints in trained]
