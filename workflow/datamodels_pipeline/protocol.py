"""The learner protocol: what every learning algorithm provides, what it may provide, and the registry of learners.

A learner is a small class (after Kronfluence's ``Task``). Built from the config's ``model`` and ``train``
sections, it **must** provide

- :meth:`Learner.train_models`: train one model per (subset, seed) pair on :class:`TrainData` and return every
  model's correct-class margin on every target and its accuracies (:class:`TrainResult`);

and it **may** provide a trainable torch network, declared by ``"torch_module"`` in its ``capabilities``:

- :meth:`Learner.train_networks`: train networks on subsets with seeds and return each one as an ``nn.Module``
  mapping flattened examples ``[n, d]`` (the prepared data set's rows) to logits ``[n, n_classes]``, at the end of
  the requested epochs (TracIn's checkpoints), with the learning rate then;
- :meth:`Learner.loss` (default cross-entropy), :attr:`Learner.weight_decay`, :attr:`Learner.epochs` and
  :meth:`Learner.features` (penultimate-layer activations) for fine-tuning and per-example gradients.

The applications that need only margins run with every learner; unlearning (it fine-tunes the trained network)
and attribution (TRAK, influence functions, TracIn and representation similarity take the network apart) need
``torch_module`` (:data:`APPLICATION_NEEDS`): ``rule all`` leaves them out for the other learners.

:data:`REGISTRY` maps each ``model.name`` to a lazily imported ``module:Class``, so a run imports only its own
learner's module (the rules add that module's file to the training code fingerprint). This module imports
neither torch nor any learner: the workflow reads a learner's capabilities when it is parsed.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

MARGINS = "margins"
"""Capability every learner has: margins and accuracies of many models (``train_models``)."""
TORCH_MODULE = "torch_module"
"""Capability of learners that also return their trained torch network (``train_networks``, ``loss``)."""
APPLICATION_NEEDS = {"unlearning": TORCH_MODULE, "attribution": TORCH_MODULE}
"""The applications that need more than margins, and the capability each needs."""

REGISTRY: dict[str, str] = {
    "mlp": "datamodels_pipeline.learners:MLP",
    "logistic": "datamodels_pipeline.learners:MLP",
    "cnn": "datamodels_pipeline.cnn:CNN",
    "resnet9": "datamodels_pipeline.resnet9:ResNet9",
    "custom": "datamodels_pipeline.custom:Custom",
}
"""``model.name`` -> ``module:Class``, imported only when that learner is used."""


@dataclass
class TrainResult:
    """What the pipeline keeps of K trained models."""

    margins: np.ndarray
    """float32 ``[K, n_targets]``: correct-class margin of each model on each target."""
    train_accuracy: np.ndarray
    """float32 ``[K]``: accuracy of each model on its own training subset."""
    target_accuracy: np.ndarray
    """float32 ``[K]``: accuracy of each model on the targets."""

    @staticmethod
    def concatenate(results: Sequence[TrainResult]) -> TrainResult:
        """The models of several results, in order."""
        return TrainResult(**{f.name: np.concatenate([getattr(r, f.name) for r in results]) for f in fields(TrainResult)})


@dataclass(frozen=True)
class TrainData:
    """What a learner trains on: the prepared arrays, the shape of one example, the device and the classes.

    ``x_train`` ``[n_train, ...]`` and ``x_targets`` ``[n_targets, ...]`` (features or flattened images, float),
    integer labels; ``n_classes`` defaults to one more than the largest label of either.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_targets: np.ndarray
    y_targets: np.ndarray
    image_shape: tuple[int, ...] | None = None
    """The shape of one example (default: ``x_train.shape[1:]``)."""
    device: str = "cpu"
    n_classes: int = 0

    def __post_init__(self) -> None:
        for name in ("x_train", "y_train", "x_targets", "y_targets"):
            object.__setattr__(self, name, np.asarray(getattr(self, name)))
        shape = tuple(self.x_train.shape[1:]) if self.image_shape is None else tuple(int(s) for s in self.image_shape)
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "device", str(self.device))
        if not self.n_classes:
            top = max(int(self.y_train.max(initial=0)), int(self.y_targets.max(initial=0)))
            object.__setattr__(self, "n_classes", top + 1)

    @classmethod
    def of(cls, dataset: Any, device: Any = "cpu", x_targets: np.ndarray | None = None,
           y_targets: np.ndarray | None = None) -> TrainData:
        """A prepared ``data.Dataset`` (its targets, or the given points instead) on ``device``."""
        return cls(dataset.x_train, dataset.y_train, dataset.x_targets if x_targets is None else x_targets,
                   dataset.y_targets if y_targets is None else y_targets, tuple(dataset.image_shape), str(device),
                   int(dataset.n_classes))

    @property
    def n_features(self) -> int:
        """Length of one flattened example."""
        return int(np.prod(self.x_train.shape[1:], dtype=np.int64))

    def flat(self, x: np.ndarray) -> np.ndarray:
        """float32 ``[n, n_features]``: the examples as the networks of ``train_networks`` take them."""
        return np.ascontiguousarray(np.asarray(x).reshape(len(x), -1), dtype=np.float32)


@dataclass
class Checkpoint:
    """A network at the end of an epoch, and the learning rate of that epoch's last step."""

    epoch: int
    lr: float
    model: nn.Module


class Learner:
    """Base class of the learners (see the module docstring); subclasses set ``capabilities`` and override the
    methods their capabilities promise."""

    capabilities: ClassVar[frozenset[str]] = frozenset({MARGINS})

    def __init__(self, model: dict, train: dict) -> None:
        self.model, self.train = dict(model), dict(train)

    @classmethod
    def resolve(cls, model: dict) -> type[Learner]:
        """The class that trains for this ``model`` section (``custom`` answers the user's class)."""
        return cls

    @property
    def name(self) -> str:
        return str(self.model.get("name", type(self).__name__))

    @property
    def options(self) -> dict:
        """The config's ``model.options`` (the settings of a user's learner)."""
        return dict(self.model.get("options") or {})

    # ------------------------------------------------------------------ required
    def train_models(self, data: TrainData, subsets: np.ndarray, seeds: Sequence[int]) -> TrainResult:
        """Train ``len(seeds)`` models, model k on ``data.x_train[subsets[k]]`` with randomness only from
        ``seeds[k]``; margins ``[K, n_targets]`` and accuracies ``[K]`` (float32)."""
        raise NotImplementedError(f"learner {self.name!r} does not implement train_models")

    # ------------------------------------------------------------------ torch_module
    def train_networks(self, data: TrainData, subsets: np.ndarray, seeds: Sequence[int],
                       epochs: Sequence[int] | None = None) -> list[list[Checkpoint]]:
        """Per model, its network at the end of each epoch in ``epochs`` (default: the last), in epoch order.

        Each network maps flattened examples ``[n, d]`` (or one example ``[d]``) to logits; the model with a
        seed and subset is ``train_models``'s model with them (up to float rounding).
        """
        raise NotImplementedError(f"learner {self.name!r} does not provide its torch network "
                                  f"(capabilities {sorted(self.capabilities)})")

    def train_network(self, data: TrainData, subset: np.ndarray, seed: int) -> nn.Module:
        """One trained network on ``data.device`` (the last checkpoint of ``train_networks``)."""
        network = self.train_networks(data, np.asarray(subset)[None], [int(seed)])[0][-1].model
        return network.to(data.device)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss, a mean over the batch (default: cross-entropy)."""
        import torch.nn.functional as F

        return F.cross_entropy(logits, labels)

    @property
    def weight_decay(self) -> float:
        """The L2 coefficient of the training objective (influence functions' Hessian)."""
        return float(self.train.get("weight_decay", 0.0))

    @property
    def epochs(self) -> int:
        """Epochs of training (TracIn's default checkpoints are spaced over them)."""
        return int(self.train.get("epochs", 1))

    def features(self, network: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The activations feeding the last layer (representation similarity): ``network[:-1](x)`` for an
        ``nn.Sequential``, ``network.features(x)`` for a module that defines it."""
        import torch
        from torch import nn

        with torch.no_grad():
            if hasattr(network, "features"):
                return network.features(x)
            if isinstance(network, nn.Sequential):
                return network[:-1](x)
        raise TypeError(f"learner {self.name!r}: representation similarity needs an nn.Sequential network or one "
                        "with a features(x) method")

    features_description: ClassVar[str] = "penultimate-layer activations"


def load_object(spec: str) -> Any:
    """The attribute named by ``"package.module:attribute"`` (the attribute may be dotted)."""
    module, _, attribute = spec.partition(":")
    value: Any = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def learner_class(model: dict) -> type[Learner]:
    """The class of ``model.name`` (for ``custom``, the class that wraps or is the user's entry point)."""
    name = model["name"]
    if name not in REGISTRY:
        raise ValueError(f"model.name {name!r} is not one of {sorted(REGISTRY)}")
    return load_object(REGISTRY[name]).resolve(model)


def learner(recipe: dict) -> Learner:
    """The learner of a recipe ``{"model": config["model"], "train": config["train"]}``."""
    return learner_class(recipe["model"])(recipe["model"], recipe.get("train", {}))


def capabilities(model: dict) -> frozenset[str]:
    """The declared capabilities of ``model.name``'s learner."""
    return frozenset(learner_class(model).capabilities)


def module_of(name: str) -> str:
    """The module that holds ``model.name``'s learner (``datamodels_pipeline.cnn``)."""
    if name not in REGISTRY:
        raise ValueError(f"model.name {name!r} is not one of {sorted(REGISTRY)}")
    return REGISTRY[name].partition(":")[0]


def applications_left_out(model: dict, applications: Sequence[str]) -> dict[str, str]:
    """Of ``applications``, those the learner cannot run, with the capability each lacks."""
    have = capabilities(model)
    return {a: APPLICATION_NEEDS[a] for a in applications if a in APPLICATION_NEEDS and APPLICATION_NEEDS[a] not in have}


def left_out_message(model: dict, left_out: dict[str, str]) -> str:
    """The log line of the workflow's default target when it leaves applications out (:func:`applications_left_out`)."""
    return (f"rule all leaves out {', '.join(left_out)}: they need the trained torch network (capability "
            f"{sorted(set(left_out.values()))}), which model.name {model['name']!r} does not provide (capabilities "
            f"{sorted(capabilities(model))})")


def require(learner_: Learner, capability: str, application: str) -> None:
    """ValueError naming ``model.name`` when the learner lacks a capability an application needs."""
    if capability not in learner_.capabilities:
        raise ValueError(f"model.name {learner_.name!r}: the {application} application needs a learner with the "
                         f"{capability!r} capability (its trained torch network); this learner declares "
                         f"{sorted(learner_.capabilities)}")
