"""Test-only ``custom`` learner: the MLP, one model per call, and a failure wherever the environment asks for one.

The resume tests select it with ``model.name: custom`` and ``model.entry_point: failing_learner:train`` (with
``tests/`` on ``PYTHONPATH``); ``model.options`` holds the MLP's ``hidden`` widths and its ``train`` recipe.
``FAIL_ENV`` is unset in a normal run. Set to a JSON list of ``{"chunk": NAME, "seeds": [...], "once_dir": DIR}``,
every model whose seed is listed raises RuntimeError naming the chunk before it trains (so the chunk's job fails);
with ``once_dir`` it fails only on the first attempt, leaving a marker file there (a transient failure).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from datamodels_pipeline import learners

FAIL_ENV = "DATAMODELS_TEST_FAIL"


def fail_if_asked(seed: int) -> None:
    for request in json.loads(os.environ.get(FAIL_ENV, "[]")):
        if seed not in request["seeds"]:
            continue
        if request.get("once_dir"):
            marker = Path(request["once_dir"]) / f"{request['chunk'].replace('/', '_')}.failed"
            if marker.exists():
                continue
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        raise RuntimeError(f"chunk {request['chunk']}: injected test failure")


def train(train_indices: np.ndarray, seed: int, device: str, x_train: np.ndarray, y_train: np.ndarray,
          x_targets: np.ndarray, y_targets: np.ndarray, image_shape: tuple[int, ...], options: dict
          ) -> tuple[np.ndarray, float]:
    fail_if_asked(seed)
    recipe = {"model": {"name": "mlp", "hidden": options["hidden"]}, "train": options["train"]}
    result = learners.train(recipe, x_train, y_train, train_indices[None, :], [seed], x_targets, y_targets,
                            device=device)
    return result.margins[0], float(result.train_accuracy[0])
