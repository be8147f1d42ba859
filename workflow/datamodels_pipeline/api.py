"""Read a finished run from Python (a notebook): ``datamodels_pipeline.open_run("results/digits-mlp")``.

Per alpha, the datamodels (weights and biases, as NumPy arrays or pandas frames),
``predict`` from subset masks, the ``top`` positive and negative training examples
of a target and the predicted ``removal_effect`` of a set of training examples;
per run, the data set's labels, each alpha's evaluation metrics and the summary.

Everything is read through the pipeline's own readers (``fit.read``,
``data.load``), lazily and once. Importing this module imports neither torch
nor matplotlib; reading datamodels imports torch (through ``fit``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .applications.sampling import top_examples


@dataclass(frozen=True)
class Examples:
    """Training examples of one side of a target's datamodel: positions in S, weights and labels."""

    index: np.ndarray   # int64 [k], positions in the training set S
    weight: np.ndarray  # float32 [k]
    label: np.ndarray   # int64 [k], their labels


@dataclass(frozen=True)
class Top:
    """A target's top training examples: the largest positive weights (largest first) and the most negative."""

    target: int
    label: int
    positive: Examples
    negative: Examples


def _alpha_folder(alpha: float | str) -> str:
    """The ``alpha=<α>`` folder name the workflow writes (``f"{alpha:g}"``)."""
    return f"alpha={float(alpha):g}"


class RunDatamodels:
    """The datamodels of one alpha of a run: one linear model per target from the subset mask to the margin."""

    def __init__(self, run: Run, alpha: float):
        self.run = run
        self.alpha = alpha
        self.folder = run.path / "datamodels" / _alpha_folder(alpha)

    def __repr__(self) -> str:
        return f"RunDatamodels({str(self.run.path)!r}, alpha={self.alpha:g})"

    @cached_property
    def fitted(self):
        """The stored ``fit.Datamodels`` (raw and standardised weights, lambda, convergence, mu and sigma)."""
        from . import fit

        return fit.read(self.folder / "datamodels.parquet", self.folder / "features.parquet")

    @property
    def weight(self) -> np.ndarray:
        """float32 ``[n_train, n_targets]``, raw-mask units: column t is target t's datamodel."""
        return self.fitted.weight

    @property
    def bias(self) -> np.ndarray:
        """float32 ``[n_targets]``."""
        return self.fitted.bias

    @property
    def n_train(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_targets(self) -> int:
        return int(self.weight.shape[1])

    @property
    def metrics(self) -> dict:
        """This alpha's ``evaluation/alpha=<α>/metrics.json`` (LDS and the rest, docs/formats.md)."""
        return self.run.metrics(self.alpha)

    def _target(self, target: int) -> int:
        if not 0 <= int(target) < self.n_targets:
            raise IndexError(f"target {target} is outside [0, {self.n_targets})")
        return int(target)

    def _targets(self, targets: int | Sequence[int] | np.ndarray) -> np.ndarray:
        return np.array([self._target(t) for t in np.atleast_1d(targets)], dtype=np.int64)

    def predict(self, mask: np.ndarray) -> np.ndarray:
        """Predicted margins of every target for a boolean subset mask over S: ``mask @ weight + bias``.

        A mask ``[n_train]`` gives ``[n_targets]``; masks ``[n_models, n_train]`` give ``[n_models, n_targets]``.
        """
        from .fit import predict

        mask = np.asarray(mask)
        if mask.dtype != bool or mask.ndim not in (1, 2) or mask.shape[-1] != self.n_train:
            raise ValueError(f"mask must be boolean of shape [{self.n_train}] or [n, {self.n_train}] (one entry per "
                             f"training example), got {mask.dtype} {list(mask.shape)}")
        predicted = predict(np.atleast_2d(mask), self.weight, self.bias)
        return predicted[0] if mask.ndim == 1 else predicted

    def top(self, target: int, k: int = 10) -> Top:
        """Up to k training examples with the largest positive and the most negative weights for ``target``
        (zero weights are never listed; the same ranking as the ``similar_examples`` application)."""
        t = self._target(target)
        weight = self.weight[:, t]
        positive, negative = top_examples(weight, k)
        labels = self.run.dataset.y_train
        side = lambda i: Examples(index=i.astype(np.int64), weight=weight[i], label=labels[i].astype(np.int64))  # noqa: E731
        return Top(target=t, label=int(self.run.dataset.y_targets[t]), positive=side(positive), negative=side(negative))

    def removal_effect(self, targets: int | Sequence[int] | np.ndarray, removed: Sequence[int] | np.ndarray
                       ) -> float | np.ndarray:
        """Predicted change of the margin of ``targets`` when the training examples ``removed`` (distinct
        positions in S) are left out of a model's subset: minus the sum of their weights.

        One target gives a float, several an array in their order.
        """
        removed = np.asarray(removed, dtype=np.int64).ravel()
        if len(np.unique(removed)) != len(removed) or (removed < 0).any() or (removed >= self.n_train).any():
            raise ValueError(f"removed must be distinct training positions in [0, {self.n_train})")
        columns = self._targets(targets)
        effect = -self.weight[removed][:, columns].astype(np.float64).sum(axis=0)
        return float(effect[0]) if np.ndim(targets) == 0 else effect

    def weights_frame(self):
        """The weights as a pandas DataFrame: one row per training example (``train_index``), one column per target."""
        import pandas as pd

        frame = pd.DataFrame(self.weight, columns=pd.RangeIndex(self.n_targets, name="target"))
        frame.index.name = "train_index"
        return frame

    def targets_frame(self):
        """One row per target as a pandas DataFrame: label, bias, chosen lambda, models fit on, convergence."""
        import pandas as pd

        fitted = self.fitted
        return pd.DataFrame({"label": self.run.dataset.y_targets, "bias": fitted.bias, "lam": fitted.lam,
                             "n_models": fitted.n_models, "converged": fitted.converged,
                             "target_train_index": fitted.target_train_index},
                            index=pd.RangeIndex(self.n_targets, name="target"))


class Run:
    """A finished run's folder, ``results/<run>``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "data" / "dataset.json").is_file():
            raise FileNotFoundError(f"{self.path} is not a run folder: no data/dataset.json (run snakemake first)")
        self._datamodels: dict[float, RunDatamodels] = {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, alphas={self.alphas})"

    @cached_property
    def info(self) -> dict:
        """``data/dataset.json``: the data set's name, sizes, class count and fingerprint."""
        return json.loads((self.path / "data" / "dataset.json").read_text())

    @cached_property
    def dataset(self):
        """The prepared ``data.Dataset`` (training examples and targets, their labels)."""
        from . import data

        return data.load(self.path / "data" / "dataset.npz")

    @property
    def alphas(self) -> list[float]:
        """The alphas whose datamodels are on disk, in increasing order."""
        folders = (self.path / "datamodels").glob("alpha=*/datamodels.parquet")
        return sorted(float(p.parent.name.split("=", 1)[1]) for p in folders)

    def datamodels(self, alpha: float | str | None = None) -> RunDatamodels:
        """The datamodels of one alpha (may be left out when the run has one)."""
        if alpha is None:
            if len(self.alphas) != 1:
                raise ValueError(f"{self.path} has datamodels for alphas {self.alphas}: name one")
            alpha = self.alphas[0]
        alpha = float(alpha)
        if alpha not in self.alphas:
            raise KeyError(f"{self.path} has no datamodels for alpha {alpha:g} (it has {self.alphas})")
        return self._datamodels.setdefault(alpha, RunDatamodels(self, alpha))

    def __getitem__(self, alpha: float | str) -> RunDatamodels:
        return self.datamodels(alpha)

    def metrics(self, alpha: float | str) -> dict:
        """``evaluation/alpha=<α>/metrics.json``."""
        return json.loads((self.path / "evaluation" / _alpha_folder(alpha) / "metrics.json").read_text())

    def learning_curve(self, alpha: float | str) -> dict:
        """``evaluation/alpha=<α>/learning_curve.json``."""
        return json.loads((self.path / "evaluation" / _alpha_folder(alpha) / "learning_curve.json").read_text())

    def summary(self) -> list[dict]:
        """The rows of ``summary.tsv`` (one per alpha), numbers as numbers."""
        def value(text: str) -> int | float | str:
            for kind in (int, float):
                try:
                    return kind(text)
                except ValueError:
                    pass
            return text

        with open(self.path / "summary.tsv", newline="") as handle:
            return [{key: value(text) for key, text in row.items()} for row in csv.DictReader(handle, delimiter="\t")]


def open_run(path: str | Path) -> Run:
    """Open a finished run, e.g. ``open_run("results/digits-mlp")``; see :class:`Run` and :class:`RunDatamodels`."""
    return Run(path)
