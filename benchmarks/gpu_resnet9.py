"""Models per hour of the ResNet-9 recipe (``model.name: resnet9`` with the schema's default recipe) on one GPU.

Synthetic CIFAR-shaped data (no data set is downloaded): a pool of ``2 * n_train``
random 3×32×32 images with 10 random classes, each model trained on its own random
subset of ``n_train`` images (α = 0.5 of 50,000 by default: 25,000 images, 24
epochs) and evaluated on ``--n-targets`` target images, through ``learners.train``
exactly as a ``train_chunk`` job does. A first ``--warmup`` model (cuDNN's kernel
search, allocator growth) is timed apart. Prints one JSON line with the throughput
next to the paper's anchor: about 17 s per α = 0.5 model on one A100, i.e. about
210 models per hour (``comparable_to_paper`` says whether the run is that setting); the goal on one
H100 is 720 models per hour.

    python benchmarks/gpu_resnet9.py [--models 5] [--epochs 24] [--n-train 25000] [--n-targets 10000]
                                     [--device cuda] [--warmup 1] [--width 1.0]

Smoke run on a CPU: ``--device cpu --models 1 --epochs 1 --n-train 512 --n-targets 64 --warmup 0``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from datamodels_pipeline import learners  # noqa: E402
from datamodels_pipeline.config import validate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PAPER_SECONDS_PER_MODEL = 17.0
PAPER_MODELS_PER_HOUR = 210
GOAL_MODELS_PER_HOUR = 720
N_CLASSES = 10


def recipe(device: str, epochs: int | None, width: float) -> dict:
    """The validated ``{"model", "train"}`` of resnet9 with the schema's defaults (the paper's recipe)."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["model"] = {"name": "resnet9", "width": width}
    config["train"] = {"device": "cpu" if device == "cpu" else "cuda"}
    if epochs is not None:
        config["train"]["epochs"] = epochs
        config["train"]["peak_epoch"] = min(5, epochs / 2)
    checked = validate(config)
    return {"model": checked["model"], "train": checked["train"]}


def synthetic(n_train: int, n_targets: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A pool of 2 * n_train random images in [0, 1] (flattened 3×32×32), random labels, and the targets."""
    generator = np.random.default_rng(seed)
    x = generator.random((2 * n_train, 3 * 32 * 32), dtype=np.float32)
    y = generator.integers(0, N_CLASSES, size=2 * n_train)
    x_targets = generator.random((n_targets, 3 * 32 * 32), dtype=np.float32)
    y_targets = generator.integers(0, N_CLASSES, size=n_targets)
    return x, y, x_targets, y_targets


def train_models(settings: dict, arrays: tuple[np.ndarray, ...], n_models: int, n_train: int, device: str,
                 first_seed: int) -> float:
    """Seconds to train ``n_models`` models (one call, as one chunk), each on its own random subset."""
    x, y, x_targets, y_targets = arrays
    generator = np.random.default_rng(first_seed)
    subsets = np.stack([generator.choice(len(x), n_train, replace=False) for _ in range(n_models)])
    start = time.perf_counter()
    result = learners.train(settings, x, y, subsets, list(range(first_seed, first_seed + n_models)), x_targets,
                            y_targets, device=device, image_shape=(3, 32, 32))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    assert np.isfinite(result.margins).all()
    return elapsed


def comparable(device: str, n_train: int, epochs: int, width: float) -> bool:
    """Whether the run is the anchor's setting (a GPU, 25,000 images, 24 epochs, the full-width ResNet-9)."""
    return device.startswith("cuda") and n_train == 25000 and epochs == 24 and width == 1.0


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=5, help="models timed (after the warm-up)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per model (default: the recipe's 24)")
    parser.add_argument("--n-train", type=int, default=25000, help="images per model (alpha 0.5 of CIFAR-10)")
    parser.add_argument("--n-targets", type=int, default=10000, help="target images whose margins are recorded")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--warmup", type=int, default=1, help="models trained first and timed apart")
    parser.add_argument("--width", type=float, default=1.0, help="model.width (1.0 is the paper's ResNet-9)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no GPU (use --device cpu for a smoke run)")

    settings = recipe(args.device, args.epochs, args.width)
    arrays = synthetic(args.n_train, args.n_targets)
    warmup_s = train_models(settings, arrays, args.warmup, args.n_train, args.device, 10_000) if args.warmup else 0.0
    seconds = train_models(settings, arrays, args.models, args.n_train, args.device, 0)
    per_model = seconds / args.models
    models_per_hour = 3600 / per_model
    print(json.dumps({
        "benchmark": "gpu_resnet9",
        "device": args.device,
        "gpu": device_name(args.device),
        "models": args.models,
        "n_train": args.n_train,
        "n_targets": args.n_targets,
        "epochs": settings["train"]["epochs"],
        "batch_size": settings["train"]["batch_size"],
        "mixed_precision": settings["train"]["mixed_precision"],
        "channels_last": settings["train"]["channels_last"],
        "seconds_per_model": round(per_model, 3),
        "models_per_hour": round(models_per_hour, 1),
        "warmup_seconds": round(warmup_s, 2),
        "paper_anchor": {"gpu": "A100", "seconds_per_model": PAPER_SECONDS_PER_MODEL,
                         "models_per_hour": PAPER_MODELS_PER_HOUR},
        "ratio_to_paper": round(models_per_hour / PAPER_MODELS_PER_HOUR, 3),
        "comparable_to_paper": comparable(args.device, args.n_train, settings["train"]["epochs"], args.width),
        "goal_models_per_hour_h100": GOAL_MODELS_PER_HOUR,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
