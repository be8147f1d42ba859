"""The attribution table's cost estimate: the pipeline trainer's CPU seconds per model, measured by a probe.

:func:`probe_training_cost` trains ``cost_probe_models`` models on alpha-subsets
with ``learners.train_on`` on one thread (as the ``train_chunk`` jobs); the
datamodels' and empirical influence's training cost is estimated from it.
"""

from __future__ import annotations

import time

import numpy as np

from ... import data, learners, masks, protocol
from ...seeding import Stream, rng
from .settings import PROBE_INDEX


def probe_training_cost(recipe: dict, dataset: data.Dataset, alpha: float, seed: int, n_models: int) -> float:
    """CPU seconds per model of the pipeline's trainer (``learners.train_on``, one thread like the ``train_chunk``
    jobs, on the CPU) on alpha-subsets, measured on ``n_models`` models."""
    generator = rng(seed, Stream.APPLICATION, alpha, PROBE_INDEX)
    size = masks.subset_size(dataset.n_train, alpha)
    subsets = np.stack([np.sort(generator.permutation(dataset.n_train)[:size]) for _ in range(n_models)])
    seeds = [int(s) for s in generator.integers(2**62, size=n_models)]
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the train_chunk jobs
    try:
        start = time.process_time()
        learners.train_on(recipe, protocol.TrainData.of(dataset, "cpu"), subsets, seeds)
        return (time.process_time() - start) / n_models
    finally:
        torch.set_num_threads(threads)
