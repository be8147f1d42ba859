"""Backdoor attack and its detection with train-set datamodels (Khaddaj et al., ICML 2023).

Planting (rule ``plant_backdoor``): ``n_poison`` training examples, drawn
reproducibly among those *not* of ``target_class``, get a trigger (a
``trigger_size`` x ``trigger_size`` patch of the data's maximum value in the
bottom-right corner of every image channel) and the label ``target_class``.
A model trained on them learns "trigger => target_class": the attack succeeds
on a test image of another class when the trigger makes the model predict
``target_class``. The backdoored data set keeps every original target (targets
that are training examples follow their poisoned version) and appends a
triggered copy of each test target whose label is not ``target_class``,
labelled ``target_class``: the correct-class margin of such a copy is > 0
exactly when the model predicts ``target_class`` (the attack succeeds).

The detection and the retraining check (rule ``backdoor``) are in
``backdoor_detection``; this module has no training dependencies, so editing
the detection never re-plants (nor retrains the train-set datamodels).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import data
from ..seeding import AppIndex, Stream, rng

log = logging.getLogger(__name__)
POISON_INDEX = AppIndex.BACKDOOR_POISON
"""``Stream.APPLICATION`` index of the poisoned examples' draw (alpha 0: planting precedes any alpha); the
detection uses 31 and 32."""
KEY = "applications.backdoor"


# ---------------------------------------------------------------- planting


def trigger_patch(x: np.ndarray, image_shape: tuple[int, ...], trigger_size: int, value: float) -> np.ndarray:
    """Copies of the flattened examples ``x`` with the trigger: the bottom-right ``trigger_size`` x ``trigger_size``
    corner of every channel (the last two axes of ``image_shape``) set to ``value``.

    One-dimensional examples (feature vectors) get their last ``trigger_size ** 2`` features set instead.
    """
    x = np.asarray(x)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 1:
        if not 1 <= trigger_size ** 2 <= shape[0]:
            raise ValueError(f"{KEY}.trigger_size = {trigger_size}: {trigger_size ** 2} features do not fit "
                             f"examples of {shape[0]} features")
        out = x.copy()
        out[:, shape[0] - trigger_size ** 2:] = value
        return out
    if not 1 <= trigger_size <= min(shape[-2:]):
        raise ValueError(f"{KEY}.trigger_size = {trigger_size} must be in [1, {min(shape[-2:])}] for images of "
                         f"shape {shape}")
    out = x.reshape(len(x), *shape).copy()
    out[..., -trigger_size:, -trigger_size:] = value
    return out.reshape(x.shape)


def check_plant_settings(settings: dict, dataset: data.Dataset) -> np.ndarray:
    """Validate the planting keys against the data set; returns the candidates (training examples not of the
    target class)."""
    target_class, n_poison = settings["target_class"], settings["n_poison"]
    if not 0 <= target_class < dataset.n_classes:
        raise ValueError(f"{KEY}.target_class = {target_class} is not a class of the data ({dataset.n_classes} "
                         f"classes)")
    candidates = np.flatnonzero(dataset.y_train != target_class)
    if not 0 <= n_poison <= len(candidates):
        raise ValueError(f"{KEY}.n_poison = {n_poison} must be in [0, {len(candidates)}] (the training examples "
                         f"not of target_class {target_class})")
    return candidates


def plant(dataset: data.Dataset, settings: dict, seed: int) -> tuple[data.Dataset, dict]:
    """The backdoored data set and a description of what was planted (JSON-ready).

    Poisoned positions: ``rng(seed, APPLICATION, 0, AppIndex.BACKDOOR_POISON).choice(candidates, n_poison)``
    (sorted). The trigger value is the data's maximum (training and targets).
    Appended targets: a triggered copy of each *test* target whose label is not
    ``target_class``, labelled ``target_class``.
    """
    candidates = check_plant_settings(settings, dataset)
    target_class, size = settings["target_class"], settings["trigger_size"]
    value = float(max(dataset.x_train.max(), dataset.x_targets.max()))
    poisoned = np.sort(rng(seed, Stream.APPLICATION, 0.0, POISON_INDEX)
                       .choice(candidates, size=settings["n_poison"], replace=False)).astype(np.int64)
    x_train, y_train = dataset.x_train.copy(), dataset.y_train.copy()
    x_train[poisoned] = trigger_patch(x_train[poisoned], dataset.image_shape, size, value)
    y_train[poisoned] = target_class
    x_targets, y_targets = dataset.x_targets.copy(), dataset.y_targets.copy()
    own = dataset.target_train_index >= 0
    x_targets[own] = x_train[dataset.target_train_index[own]]
    y_targets[own] = y_train[dataset.target_train_index[own]]
    source = np.flatnonzero(~own & (dataset.y_targets != target_class)).astype(np.int64)
    triggered = trigger_patch(dataset.x_targets[source], dataset.image_shape, size, value)
    backdoored = replace(
        dataset,
        x_train=x_train, y_train=y_train,
        x_targets=np.concatenate([x_targets, triggered.astype(x_targets.dtype)]),
        y_targets=np.concatenate([y_targets, np.full(len(source), target_class, dtype=y_targets.dtype)]),
        target_train_index=np.concatenate([dataset.target_train_index,
                                           np.full(len(source), -1, dtype=dataset.target_train_index.dtype)]),
    )
    info = {"target_class": int(target_class), "trigger_size": int(size), "trigger_value": value,
            "n_poison": int(len(poisoned)), "poisoned": poisoned.tolist(),
            "poisoned_original_label": dataset.y_train[poisoned].astype(int).tolist(),
            "n_clean_targets": dataset.n_targets, "n_triggered_targets": int(len(source)),
            "triggered_first": dataset.n_targets, "triggered_source": source.tolist(),
            "triggered_original_label": dataset.y_targets[source].astype(int).tolist()}
    return backdoored, info


def run_plant(data_path: str, settings: dict, seed: int, out_path: str, info_path: str) -> None:
    """The rule ``plant_backdoor``: write the backdoored data set and its description (``backdoor`` key)."""
    dataset = data.load(data_path)
    backdoored, info = plant(dataset, settings, seed)
    data.save(backdoored, out_path, info_path, {"source": str(data_path), "backdoor": info})
    log.info("backdoor: %d of %d training examples poisoned (trigger %dx%d = %.3g, relabelled %d); %d triggered "
             "test targets appended to %d", info["n_poison"], dataset.n_train, info["trigger_size"],
             info["trigger_size"], info["trigger_value"], info["target_class"], info["n_triggered_targets"],
             dataset.n_targets)


def read_plant_info(info_path: str) -> dict:
    """The ``backdoor`` description that ``run_plant`` wrote next to the backdoored data set."""
    return json.loads(Path(info_path).read_text())["backdoor"]

