"""The ``custom`` learner: the user's own learner class or training function, named by ``model.entry_point``.

``model.entry_point`` is ``"package.module:name"`` (the module must be
importable by the Python that runs the workflow: installed, or on PYTHONPATH).

A **class** must subclass ``protocol.Learner``; it is the learner (built from the
config's ``model`` and ``train`` sections; its settings are ``model.options``), with
the capabilities it declares. ``torch_learner.TorchLearner`` is the base class for
a torch network: the user writes one method that builds the ``nn.Module``, and the
network gets every application (see ``datamodels_pipeline/examples/own_torch_model.py``
and docs/own-model.md).

A **function** returns margins only (the applications that need the trained
network are left out). It is called once per model, with keyword arguments only::

    function(train_indices=..., seed=..., device=..., x_train=..., y_train=...,
             x_targets=..., y_targets=..., image_shape=..., options=...)

- ``train_indices``: int64 ``[m]``, the positions in ``x_train`` of the model's subset;
- ``seed``: int, the model's seed (use it for every random choice of the model);
- ``device``: ``"cpu"`` or ``"cuda"`` (``train.device``, with ``auto`` resolved);
- ``x_train``, ``y_train``, ``x_targets``, ``y_targets``: the prepared data set's
  NumPy arrays (features or flattened images, float; integer labels);
- ``image_shape``: tuple, the shape of one image (``()`` or the feature count for
  non-image data); ``options``: a copy of the config's ``model.options`` dict.

It returns the correct-class margins ``[n_targets]`` or the logits
``[n_targets, n_classes]`` on the targets (NumPy array or tensor; from logits
the pipeline takes ``outputs.correct_class_margin``), optionally as a pair
``(output, train_accuracy)`` with its accuracy on its own subset (else NaN).
A target counts as correct when its margin is positive (or its logit the largest).
See ``datamodels_pipeline/examples/sklearn_logistic.py``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from functools import reduce

import numpy as np

from .protocol import MARGINS, Learner, TrainData, TrainResult

ARGUMENTS = ("train_indices", "seed", "device", "x_train", "y_train", "x_targets", "y_targets", "image_shape",
             "options")


class EntryPointError(ValueError):
    """``model.entry_point`` cannot be loaded, or its function breaks the contract; the message names the key."""


def load(entry_point: str) -> Callable:
    """The function named by ``"package.module:function"`` (the function may be a dotted attribute path)."""
    module_name, sep, attribute = entry_point.partition(":")
    if not sep or not module_name or not attribute:
        raise EntryPointError(f"model.entry_point {entry_point!r} is not of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise EntryPointError(f"model.entry_point {entry_point!r}: cannot import module {module_name!r} "
                              f"({error})") from error
    try:
        function = reduce(getattr, attribute.split("."), module)
    except AttributeError as error:
        raise EntryPointError(f"model.entry_point {entry_point!r}: module {module_name!r} "
                              f"has no {attribute!r}") from error
    if isinstance(function, type):
        if not issubclass(function, Learner):
            raise EntryPointError(f"model.entry_point {entry_point!r} is a class but not a subclass of "
                                  "datamodels_pipeline.protocol.Learner")
        return function
    if not callable(function):
        raise EntryPointError(f"model.entry_point {entry_point!r} is not callable")
    try:
        inspect.signature(function).bind(**dict.fromkeys(ARGUMENTS))
    except TypeError as error:
        raise EntryPointError(f"model.entry_point {entry_point!r} must accept the keyword arguments "
                              f"{', '.join(ARGUMENTS)} ({error})") from error
    except ValueError:  # no signature to inspect (some builtins): the call itself will tell
        pass
    return function


def margins_of(output: object, y_targets: np.ndarray, entry_point: str) -> tuple[np.ndarray, bool]:
    """(float32 margins ``[n_targets]``, whether each target is correct) from a returned margin or logit array."""
    if hasattr(output, "detach"):  # a torch tensor
        output = output.detach().float().cpu().numpy()
    array = np.asarray(output, dtype=np.float32)
    n_targets = len(y_targets)
    if array.shape == (n_targets,):
        return array, array > 0
    if array.ndim == 2 and array.shape[0] == n_targets and array.shape[1] > int(y_targets.max()):
        import torch

        from .outputs import correct_class_margin

        logits = torch.from_numpy(array)
        margins = correct_class_margin(logits, torch.as_tensor(y_targets, dtype=torch.int64)).numpy()
        return margins, array.argmax(axis=1) == y_targets
    raise EntryPointError(f"model.entry_point {entry_point!r} returned an array of shape {array.shape}; expected "
                          f"margins [{n_targets}] or logits [{n_targets}, n_classes] with n_classes > "
                          f"{int(y_targets.max())} (the largest target label)")


def _entry_point(model: dict) -> str:
    entry_point = model.get("entry_point")
    if not entry_point:
        raise EntryPointError("model.name 'custom' needs model.entry_point ('package.module:name')")
    return entry_point


class Custom(Learner):
    """A user's training function (margins only); a user's ``Learner`` class stands in for it (``resolve``)."""

    capabilities = frozenset({MARGINS})

    @classmethod
    def resolve(cls, model: dict) -> type[Learner]:
        loaded = load(_entry_point(model))
        return loaded if isinstance(loaded, type) else cls

    def train_models(self, data: TrainData, subsets: np.ndarray, seeds: Sequence[int]) -> TrainResult:
        """One call of the user's function per model."""
        entry_point = _entry_point(self.model)
        function = load(entry_point)
        options = self.options
        x_train, y_train, x_targets, y_targets = data.x_train, data.y_train, data.x_targets, data.y_targets
        margins, train_accuracy, target_accuracy = [], [], []
        for subset, seed in zip(np.asarray(subsets), seeds):
            returned = function(train_indices=subset.astype(np.int64), seed=int(seed), device=data.device,
                                x_train=x_train, y_train=y_train, x_targets=x_targets, y_targets=y_targets,
                                image_shape=tuple(data.image_shape), options=dict(options))
            accuracy = np.nan
            if isinstance(returned, tuple):
                if len(returned) != 2:
                    raise EntryPointError(f"model.entry_point {entry_point!r} returned a tuple of {len(returned)} "
                                          "items; expected (margins or logits, train_accuracy)")
                returned, accuracy = returned
            model_margins, correct = margins_of(returned, y_targets, entry_point)
            margins.append(model_margins)
            train_accuracy.append(float(accuracy))
            target_accuracy.append(float(np.mean(correct)))
        return TrainResult(margins=np.stack(margins).astype(np.float32),
                           train_accuracy=np.asarray(train_accuracy, dtype=np.float32),
                           target_accuracy=np.asarray(target_accuracy, dtype=np.float32))
