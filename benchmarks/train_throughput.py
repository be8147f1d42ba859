"""Models per second of ``train_batched`` against plain one-model-at-a-time loops.

Two plain baselines, both with the same recipe: the tutorial loop most users
write (``DataLoader(TensorDataset(...), shuffle=True)``), and the leaner loop
that indexes tensors directly (``train_single``, which also replays the
batched trainer's seeds, so ``max_margin_diff`` shows both trained the same
models). ``ratio`` is against the DataLoader loop, ``ratio_vs_indexed_loop``
against the lean one.

On scikit-learn's digits (first 1,200 examples train, the other 597 are the
targets, subsets of alpha = 0.5), with the same torch thread count for both.
The first ``--models-single`` models of the batched call are the ones the
plain loop trains, so ``max_margin_diff`` checks that both trained the same
models.  Prints one JSON line; ``*_cpu_s`` (process CPU time) and the load
average tell whether other work on the machine distorted the wall-clock rates
(with more threads than idle cores, OpenMP's waiting makes them collapse).

    python benchmarks/train_throughput.py [--models-batched 500] [--models-single 20] [--threads 1] [--epochs 20]
                                          [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from datamodels_pipeline.seeding import Stream, int_seed, rng  # noqa: E402
from datamodels_pipeline.training import Recipe, TrainResult, train_batched, train_single  # noqa: E402

N_TRAIN = 1200
ALPHA = 0.5
T = TypeVar("T")


def timed(run: Callable[[], T], repeats: int) -> tuple[T, float, float]:
    """``run``'s result and its fastest wall-clock seconds of ``repeats``, with that run's CPU seconds."""
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = run()
        best = min(best, (time.perf_counter() - start, time.process_time() - start_cpu))
    return result, *best


def train_dataloader_loop(x_train: torch.Tensor, y_train: torch.Tensor, subset: np.ndarray, seed: int,
                          recipe: Recipe, x_targets: torch.Tensor, y_targets: torch.Tensor) -> float:
    """The loop of the PyTorch tutorials for one model; returns its target accuracy."""
    torch.manual_seed(seed)
    widths = [x_train.shape[1], *recipe.hidden, int(y_train.max()) + 1]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    index = torch.as_tensor(subset)
    loader = DataLoader(TensorDataset(x_train[index], y_train[index]), batch_size=recipe.batch_size, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum)
    for _ in range(recipe.epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    with torch.no_grad():
        return float((model(x_targets).argmax(dim=1) == y_targets).float().mean())


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-batched", type=int, default=500)
    parser.add_argument("--models-single", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1, help="time each side this often and keep the fastest")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)
    x_train, y_train, x_targets, y_targets = x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]
    n_models = max(args.models_batched, args.models_single)
    size = int(ALPHA * N_TRAIN)
    subsets = np.stack([rng(args.seed, Stream.TRAIN_MASK, ALPHA, k).choice(N_TRAIN, size, replace=False)
                        for k in range(n_models)])
    seeds = [int_seed(args.seed, Stream.TRAIN_MODEL, ALPHA, k) for k in range(n_models)]
    recipe = Recipe(hidden=(64,), epochs=args.epochs, batch_size=64, lr=0.1, momentum=0.9)

    def batched() -> TrainResult:
        return train_batched(x_train, y_train, subsets[:args.models_batched], seeds[:args.models_batched], recipe,
                             x_targets, y_targets)

    def single() -> list[TrainResult]:
        return [train_single(x_train, y_train, subsets[k], seeds[k], recipe, x_targets, y_targets)
                for k in range(args.models_single)]

    def dataloader_loop() -> list[float]:
        return [train_dataloader_loop(x_train, y_train, subsets[k], seeds[k], recipe, x_targets, y_targets)
                for k in range(args.models_single)]

    # One-off costs (lazy imports in torch.optim, BLAS set-up) stay out of both timings.
    warm_up = Recipe(epochs=1)
    train_batched(x_train, y_train, subsets[:2], seeds[:2], warm_up, x_targets, y_targets)
    train_single(x_train, y_train, subsets[0], seeds[0], warm_up, x_targets, y_targets)
    train_dataloader_loop(x_train, y_train, subsets[0], seeds[0], warm_up, x_targets, y_targets)
    together, batched_s, batched_cpu_s = timed(batched, args.repeats)
    alone, single_s, single_cpu_s = timed(single, args.repeats)
    loader_accuracy, loader_s, _ = timed(dataloader_loop, args.repeats)

    batched_rate, single_rate = args.models_batched / batched_s, args.models_single / single_s
    loader_rate = args.models_single / loader_s
    shared = min(args.models_batched, args.models_single)
    report = {
        "batched_models_per_s": round(batched_rate, 2),
        "dataloader_loop_models_per_s": round(loader_rate, 2),
        "indexed_loop_models_per_s": round(single_rate, 2),
        "ratio": round(batched_rate / loader_rate, 2),
        "ratio_vs_indexed_loop": round(batched_rate / single_rate, 2),
        "batched_target_accuracy": round(float(together.target_accuracy.mean()), 4),
        "dataloader_loop_target_accuracy": round(float(np.mean(loader_accuracy)), 4),
        "indexed_loop_target_accuracy": round(float(np.mean([r.target_accuracy[0] for r in alone])), 4),
        "max_margin_diff": float(max(np.abs(together.margins[k] - alone[k].margins[0]).max() for k in range(shared))),
        "threads": args.threads,
        "epochs": args.epochs,
        "models_batched": args.models_batched,
        "models_single": args.models_single,
        "repeats": args.repeats,
        "batched_s": round(batched_s, 3),
        "indexed_loop_s": round(single_s, 3),
        "dataloader_loop_s": round(loader_s, 3),
        "batched_cpu_s": round(batched_cpu_s, 3),
        "indexed_loop_cpu_s": round(single_cpu_s, 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
