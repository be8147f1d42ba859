"""Example ``custom`` learner: scikit-learn's multinomial LogisticRegression.

Use it with::

    model:
      name: custom
      entry_point: datamodels_pipeline.examples.sklearn_logistic:train
      options: {C: 1.0, max_iter: 200}

The contract (see ``datamodels_pipeline.custom``): the pipeline calls
``train(...)`` once per model with the keyword arguments below and stores the
correct-class margin of what it returns on every target; masks, chunks,
storage, fitting, evaluation and the applications are the pipeline's.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression


def train(train_indices: np.ndarray, seed: int, device: str, x_train: np.ndarray, y_train: np.ndarray,
          x_targets: np.ndarray, y_targets: np.ndarray, image_shape: tuple[int, ...], options: dict
          ) -> tuple[np.ndarray, float]:
    """Fit on ``x_train[train_indices]``; return the logits ``[n_targets, n_classes]`` and the train accuracy.

    ``options``: ``C`` (inverse L2 strength, default 1.0) and ``max_iter`` (default
    200). ``device`` is unused (scikit-learn runs on the CPU), and so are
    ``y_targets`` and ``image_shape``; ``seed`` seeds the solver (lbfgs itself is
    deterministic). A class missing from the subset gets, on every target, the
    lowest logit of the classes present, so it is never predicted.
    """
    x = x_train[train_indices].reshape(len(train_indices), -1)
    y = y_train[train_indices]
    model = LogisticRegression(C=float(options.get("C", 1.0)), max_iter=int(options.get("max_iter", 200)),
                               random_state=seed % 2**32)
    model.fit(x, y)
    scores = model.decision_function(x_targets.reshape(len(x_targets), -1))
    if scores.ndim == 1:  # two classes present: decision_function gives the score of classes_[1]
        scores = np.stack([-scores / 2, scores / 2], axis=1)
    n_classes = int(max(y_train.max(), y_targets.max())) + 1
    logits = np.repeat(scores.min(axis=1, keepdims=True), n_classes, axis=1)
    logits[:, model.classes_] = scores
    return logits, float(model.score(x, y))
