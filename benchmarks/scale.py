"""Scaling of the data path: memory that does not grow with the number of models.

Writes a synthetic store (|S| = 5,000 training examples, 500 targets; every target's output is a
planted sparse linear function of the subset mask plus noise) in chunk files, then runs the
aggregate, statistics and fit stages (``aggregate.run``, ``statistics.run``, ``fit.run_block`` +
``fit.merge``), each in its own process, at several model counts. Prints one JSON line per size
(peak resident memory in MB of the stage's own work, after its imports, and seconds per stage, and the mean per-target correlation of the
fitted weights with the planted ones), then a final line with

* ``memory_ratio``: max over stages of peak memory at the largest size / at the smallest (goal <= 1.25);
* ``time_linearity``: statistics seconds per model at the largest size / at the smallest (goal <= 1.2);
* ``weight_correlation``: at the largest size (goal >= 0.9).

    python benchmarks/scale.py                       # 10,000 / 40,000 / 160,000 models (about 15 min on 2 cores)
    python benchmarks/scale.py --models 2000 8000    # a quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ALPHA = 0.5
CHUNK = 10_000

STAGE = r"""
import json, sys, time
import torch
from datamodels_pipeline import aggregate, fit, statistics
args = json.loads(sys.argv[1])
stage = args.pop("stage")
# Peak resident memory of the stage itself: reset the high-water mark after the imports (Linux >= 4.0), read it after.
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
start = time.perf_counter()
if stage == "aggregate":
    aggregate.run(**args)
elif stage == "statistics":
    statistics.run(**args)
else:
    fit.run_block(args["statistics"], args["models"], args["info"], args["alpha"], args["settings"], 0,
                  args["threads"], args["block"])
    fit.merge([args["block"]], args["statistics"], args["settings"], args["alpha"], args["datamodels"],
              args["features"], args["fit_info"])
seconds = time.perf_counter() - start
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024}))
"""


def write_store(folder: Path, n_models: int, p: int, n_targets: int, seed: int = 0) -> np.ndarray:
    """Data-set files and chunk files of n_models; returns the planted raw weights [p, T]."""
    from datamodels_pipeline import data, store

    generator = np.random.default_rng(seed)
    dataset = data.Dataset(x_train=np.zeros((p, 1), np.float32), y_train=np.zeros(p, np.int64),
                           x_targets=np.zeros((n_targets, 1), np.float32), y_targets=np.zeros(n_targets, np.int64),
                           target_train_index=np.full(n_targets, -1, np.int64), image_shape=(1,))
    data.save(dataset, folder / "dataset.npz", folder / "dataset.json", {})
    layout = store.layout_for(json.loads((folder / "dataset.json").read_text()), ALPHA)
    truth = np.zeros((p, n_targets), np.float32)
    for t in range(n_targets):  # 20 influential examples per target
        truth[generator.choice(p, 20, replace=False), t] = generator.normal(scale=1.0, size=20)
    for k, first in enumerate(range(0, n_models, CHUNK)):
        ids = np.arange(first, min(n_models, first + CHUNK))
        keys = generator.random((len(ids), p), dtype=np.float32)
        mask = np.zeros((len(ids), p), bool)
        np.put_along_axis(mask, np.argpartition(keys, layout.subset_size, axis=1)[:, :layout.subset_size], True, 1)
        margins = mask.astype(np.float32) @ truth + 2.0 * generator.normal(size=(len(ids), n_targets)).astype(np.float32)
        ones = np.ones(len(ids), np.float32)
        store.write_models(folder / f"chunk-{k}.parquet", store.Models(ids, mask, margins, ones, ones,
                                                                        np.zeros(len(ids), bool)), layout, {})
    return truth


def stage(args: dict) -> dict:
    result = subprocess.run([sys.executable, "-c", STAGE, json.dumps(args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"stage {args['stage']} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(n_models: int, p: int, n_targets: int, threads: int, root: Path) -> dict:
    from datamodels_pipeline import fit

    folder = root / f"m{n_models}"
    folder.mkdir()
    start = time.perf_counter()
    truth = write_store(folder, n_models, p, n_targets)
    write_seconds = time.perf_counter() - start
    chunks = sorted(folder.glob("chunk-*.parquet"), key=lambda path: int(path.stem.split("-")[1]))
    common = {"info_path": str(folder / "dataset.json"), "alpha": ALPHA}
    settings = {"n_lambdas": 30, "lambda_eps": 1e-3, "val_fraction": 0.1, "tol": 1e-4, "max_iter": 1000,
                "patience": 3, "device": "cpu", "targets_per_job": None, "train_targets": "exact"}
    out = {"n_models": n_models, "n_train": p, "n_targets": n_targets, "write_seconds": round(write_seconds, 1)}
    for name, args in [
        ("aggregate", {"chunk_paths": [str(c) for c in chunks], "split": "train", "n_models": n_models,
                       "output_path": str(folder / "train.parquet"),
                       "integrity_path": str(folder / "train.integrity.json"), **common}),
        ("statistics", {"models_path": str(folder / "train.parquet"), "data_path": str(folder / "dataset.npz"),
                        "val_fraction": 0.1, "seed": 0, "fractions": [1.0], "device": "cpu", "threads": threads,
                        "output_path": str(folder / "statistics"), **common}),
        ("fit", {"statistics": str(folder / "statistics"), "models": str(folder / "train.parquet"),
                 "info": common["info_path"], "alpha": ALPHA, "settings": settings, "threads": threads,
                 "block": str(folder / "block-0.parquet"), "datamodels": str(folder / "datamodels.parquet"),
                 "features": str(folder / "features.parquet"), "fit_info": str(folder / "fit.json")}),
    ]:
        result = stage({"stage": name, **args})
        out[f"{name}_peak_mb"] = round(result["peak_mb"], 1)
        out[f"{name}_seconds"] = round(result["seconds"], 1)
    weight = fit.read(folder / "datamodels.parquet").weight
    correlations = [np.corrcoef(weight[:, t], truth[:, t])[0, 1] for t in range(n_targets)]
    out["weight_correlation"] = round(float(np.nanmean(correlations)), 4)
    for path in folder.glob("chunk-*.parquet"):
        path.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, nargs="+", default=[10_000, 40_000, 160_000])
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-targets", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="datamodels-scale-") as root:
        for n_models in sorted(args.models):
            rows.append(measure(n_models, args.n_train, args.n_targets, args.threads, Path(root)))
            print(json.dumps(rows[-1]), flush=True)
    small, large = rows[0], rows[-1]
    memory_ratio = max(large[f"{s}_peak_mb"] / small[f"{s}_peak_mb"] for s in ("aggregate", "statistics", "fit"))
    linearity = (large["statistics_seconds"] / large["n_models"]) / (small["statistics_seconds"] / small["n_models"])
    print(json.dumps({"memory_ratio": round(memory_ratio, 3), "time_linearity": round(linearity, 3),
                      "weight_correlation": large["weight_correlation"],
                      "goals": {"memory_ratio": 1.25, "time_linearity": 1.2, "weight_correlation": 0.9},
                      "met": memory_ratio <= 1.25 and linearity <= 1.2 and large["weight_correlation"] >= 0.9}))


if __name__ == "__main__":
    main()
