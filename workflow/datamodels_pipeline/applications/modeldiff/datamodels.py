"""ModelDiff's datamodels (``rule modeldiff_datamodels``): algorithm B's fit on B's models, and A's on the same models.

B's models come from ``rule modeldiff_models`` (``applications.modeldiff_training``);
B's datamodels are fit on them with the run's fit settings, and A's datamodels are
the run's own (copied) when every model is used, else refit on exactly B's models
(the non-diverged ones), so that both algorithms are compared on the same models.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from ... import data, fit, store
from ...atomic import atomic_output

log = logging.getLogger(__name__)


def _copy(source: str, destination: str) -> None:
    with atomic_output(destination) as tmp:
        shutil.copyfile(source, tmp)


def run_datamodels(models_path: str, other_models_path: str, info_path: str, data_path: str, own_datamodels_path: str,
                   own_features_path: str, own_fit_path: str, alpha: float, fit_settings: dict, seed: int,
                   threads: int, other_datamodels_out: str, other_features_out: str, own_datamodels_out: str,
                   own_features_out: str, fit_info_out: str) -> None:
    """Fit B's datamodels on B's models, and write A's datamodels on exactly the same models: the run's own when
    every model is used, else refit."""
    torch.set_num_threads(max(1, threads))
    layout = store.layout_for(json.loads(Path(info_path).read_text()), alpha)
    other_models = store.read_models(other_models_path, layout)
    trained = store.file_metadata(other_models_path)
    n, n_run = len(other_models), trained["n_models_run"]
    models = store.read_models(models_path, layout).select(np.arange(n))
    if not np.array_equal(models.model_id, other_models.model_id):
        raise ValueError(f"{other_models_path}: B's models are not the run's first {n} training models")
    dataset = data.load(data_path)
    diverged = other_models.diverged
    keep = ~diverged
    if diverged.any():
        log.warning("algorithm B diverged on %d of %d models; both algorithms are fit on the other %d",
                    int(diverged.sum()), n, int(keep.sum()))
    fit_settings = fit.FitSettings.from_config(fit_settings)
    margins, accuracy = other_models.margins, other_models.target_accuracy
    other_fit, other_info = fit.fit(models.mask[keep], margins[keep], dataset.target_train_index, fit_settings,
                                    seed, alpha)
    fit.write(other_fit, other_datamodels_out, other_features_out)
    refit = bool(n < n_run or diverged.any())
    if refit:
        own_models, own_info = fit.fit(models.mask[keep], models.margins[keep], dataset.target_train_index,
                                       fit_settings, seed, alpha)
        fit.write(own_models, own_datamodels_out, own_features_out)
    else:
        _copy(own_datamodels_path, own_datamodels_out)
        _copy(own_features_path, own_features_out)
        own_info = json.loads(Path(own_fit_path).read_text())
    summary = {
        "alpha": alpha, "n_models_run": n_run, "n_models_used": int(keep.sum()), "n_diverged_other": int(diverged.sum()),
        "own": {"refit": refit, "mean_target_accuracy": float(models.target_accuracy[keep].mean()),
                "mean_margin": float(models.margins[keep].mean()), "fit": own_info},
        "other": {"recipe": trained.get("recipe"), "mean_target_accuracy": float(accuracy[keep].mean()),
                  "mean_margin": float(margins[keep].mean()), "train_seconds": trained["train_seconds"],
                  "train_cpu_seconds": trained["train_cpu_seconds"],
                  "models_per_second": round(n / max(trained["train_seconds"], 1e-9), 1), "fit": other_info},
    }
    with atomic_output(fit_info_out) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
