"""``TorchLearner``: a user's own ``nn.Module`` as a learner, with every application.

Subclass it and write one method, :meth:`TorchLearner.network`, that builds the untrained network for the data
set; the pipeline trains it (plain minibatch SGD, one model after the other), stores its margins, and gives its
trained networks to unlearning and to the gradient-based attribution methods. Name the class in the config::

    model:
      name: custom
      entry_point: my_package.my_module:MyNet
      options: {epochs: 20, lr: 0.1}

The network takes flattened examples ``[n, n_features]`` (the prepared data set's rows, float32) and returns
logits ``[n, n_classes]``; reshape inside it for images (``nn.Unflatten(1, image_shape)``). The optimisation
settings are ``model.options`` (:data:`DEFAULTS`), and the loss :meth:`TorchLearner.loss` (cross-entropy unless
overridden). Model k draws its initial weights from torch's generator seeded with a seed derived from
``seeds[k]``, and its minibatch order from a second one: nothing else, so it does not depend on its neighbours.
See ``datamodels_pipeline/examples/own_torch_model.py`` and docs/own-model.md.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .outputs import correct_class_margin
from .protocol import MARGINS, TORCH_MODULE, Checkpoint, Learner, TrainData, TrainResult

DEFAULTS = {"epochs": 20, "batch_size": 64, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False}
"""The optimisation settings a ``model.options`` key overrides."""


class FlatNetwork(nn.Module):
    """A network on flattened examples: ``[n, d]`` -> logits ``[n, C]``, and one example ``[d]`` -> ``[C]`` (as
    ``torch.func.vmap`` hands it in for per-example gradients)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def _apply_to(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(x[None])[0] if x.ndim == 1 else module(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply_to(self.net, x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The activations feeding the last layer (an ``nn.Sequential`` net's, or the net's own ``features``)."""
        if hasattr(self.net, "features"):
            return self._apply_to(self.net.features, x)
        if isinstance(self.net, nn.Sequential):
            return self._apply_to(self.net[:-1], x)
        raise TypeError("representation similarity needs an nn.Sequential network or one with a features(x) method")


def derived_seeds(seed: int) -> tuple[int, int]:
    """Two independent seeds from one model seed: (initialisation, minibatch order)."""
    init, order = np.random.SeedSequence(int(seed)).generate_state(2, dtype=np.uint64)
    return int(init), int(order)


class TorchLearner(Learner):
    """Base class of a user's torch network (see the module docstring): override :meth:`network`."""

    capabilities = frozenset({MARGINS, TORCH_MODULE})

    def network(self, n_features: int, n_classes: int, image_shape: tuple[int, ...]) -> nn.Module:
        """The untrained network: flattened examples ``[n, n_features]`` -> logits ``[n, n_classes]``."""
        raise NotImplementedError(f"{type(self).__name__} must define network(n_features, n_classes, image_shape)")

    def setting(self, key: str) -> object:
        """``model.options[key]``, else :data:`DEFAULTS`."""
        return self.options.get(key, DEFAULTS[key])

    @property
    def epochs(self) -> int:
        return int(self.setting("epochs"))

    @property
    def weight_decay(self) -> float:
        return float(self.setting("weight_decay"))

    def build(self, data: TrainData, seed: int) -> FlatNetwork:
        """The untrained network, its initial weights drawn from torch's generator seeded with ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return FlatNetwork(self.network(data.n_features, data.n_classes, tuple(data.image_shape)))

    def train_networks(self, data: TrainData, subsets: np.ndarray, seeds: Sequence[int],
                       epochs: Sequence[int] | None = None) -> list[list[Checkpoint]]:
        """Each model trained alone with minibatch SGD; copies at the end of the requested epochs (default: the last)."""
        n_epochs = self.epochs
        wanted = {n_epochs} if epochs is None else {int(e) for e in epochs}
        if not wanted or min(wanted) < 1 or max(wanted) > n_epochs:
            raise ValueError(f"checkpoint epochs must lie in [1, {n_epochs}] (model.options.epochs), got {sorted(wanted)}")
        if len(seeds) != len(subsets):
            raise ValueError(f"{len(seeds)} seeds for {len(subsets)} subsets")
        device = torch.device(data.device)
        x = torch.from_numpy(data.flat(data.x_train)).to(device)
        y = torch.from_numpy(data.y_train.astype(np.int64)).to(device)
        batch_size, lr = int(self.setting("batch_size")), float(self.setting("lr"))
        trained = []
        for subset, seed in zip(np.asarray(subsets), seeds):
            init_seed, order_seed = derived_seeds(seed)
            model = self.build(data, init_seed).to(device)
            generator = torch.Generator().manual_seed(order_seed)
            optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(self.setting("momentum")),
                                        weight_decay=self.weight_decay, nesterov=bool(self.setting("nesterov")))
            rows = torch.as_tensor(subset, dtype=torch.int64)
            checkpoints = []
            model.train()
            for epoch in range(1, n_epochs + 1):
                order = rows[torch.randperm(len(rows), generator=generator)].to(device)
                for start in range(0, len(order), batch_size):
                    index = order[start:start + batch_size]
                    loss = self.loss(model(x[index]), y[index])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                if epoch in wanted:
                    checkpoints.append(Checkpoint(epoch=epoch, lr=lr, model=copy.deepcopy(model).eval()))
            trained.append(checkpoints)
        return trained

    def train_models(self, data: TrainData, subsets: np.ndarray, seeds: Sequence[int]) -> TrainResult:
        """Margins and accuracies of the networks of :meth:`train_networks`."""
        device = torch.device(data.device)
        x = torch.from_numpy(data.flat(data.x_train)).to(device)
        y = torch.from_numpy(data.y_train.astype(np.int64)).to(device)
        x_targets = torch.from_numpy(data.flat(data.x_targets)).to(device)
        y_targets = torch.from_numpy(data.y_targets.astype(np.int64)).to(device)
        margins, train_accuracy, target_accuracy = [], [], []
        for checkpoints, subset in zip(self.train_networks(data, subsets, seeds), np.asarray(subsets)):
            model = checkpoints[-1].model
            with torch.inference_mode():
                own = torch.as_tensor(subset, dtype=torch.int64, device=device)
                logits_own, logits_targets = model(x[own]).float(), model(x_targets).float()
                margins.append(correct_class_margin(logits_targets, y_targets).cpu().numpy())
                train_accuracy.append(float((logits_own.argmax(-1) == y[own]).float().mean()))
                target_accuracy.append(float((logits_targets.argmax(-1) == y_targets).float().mean()))
        return TrainResult(margins=np.stack(margins).astype(np.float32),
                           train_accuracy=np.asarray(train_accuracy, dtype=np.float32),
                           target_accuracy=np.asarray(target_accuracy, dtype=np.float32))
