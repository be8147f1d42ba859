"""Run the workflow in a subprocess on a private copy of the workflow code."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from datamodels_pipeline import fit, store

REPO = Path(__file__).resolve().parents[1]


def copy_workflow(destination: Path) -> Path:
    """Copy Snakefile, workflow/, config/ and envs/ so a test may edit them."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", destination / "Snakefile")
    for folder in ("workflow", "config", "envs"):
        shutil.copytree(REPO / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def write_config(workdir: Path, name: str, edit=None) -> Path:
    """A copy of the smoke config, optionally edited, under workdir/config/<name>.yaml."""
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    if edit is not None:
        edit(config)
    path = workdir / "config" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


ONE_THREAD = ("--max-threads", "1")
"""Every job on one thread: pytest-xdist runs several workflows at once on two cores, and a job's torch and BLAS
threads then spin at each parallel region while another workflow holds the core (a tiny lasso fit took 40 s
instead of 2). Two single-threaded jobs per workflow still keep both cores busy."""


def one_thread_env() -> dict[str, str]:
    """The environment of the tests' snakemake processes: BLAS and OpenMP on one thread (Snakemake sets these for
    ``shell:`` jobs only; its ``script:`` jobs inherit them)."""
    return {**os.environ, **{k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, check: bool = True,
              timeout: int = 900) -> subprocess.CompletedProcess:
    """``python -m snakemake`` in workdir with its own Snakefile, every job on one thread; output captured."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(workdir / "Snakefile"),
               "--directory", str(workdir), "--cores", "2", *ONE_THREAD, "--workflow-profile", "none"]
    if configfile is not None:
        command += ["--configfile", str(configfile)]
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, cwd=workdir,
                            env=one_thread_env())
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table (empty when nothing is to be done)."""
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    counts.pop("total", None)
    return counts


# --- the tiny configuration of the resume and SLURM tests (tests/conftest.py runs it once: ``tiny_reference``) ---

RUN = "tiny"
ALPHA = "0.5"
CHUNKS = {"train": 4, "eval": 1}  # n_models / models_per_chunk
CORE_TARGETS = [*(f"results/{RUN}/aggregate/alpha={ALPHA}/{split}.parquet" for split in CHUNKS),
                f"results/{RUN}/datamodels/alpha={ALPHA}/datamodels.parquet"]
"""What ``assert_same_results`` compares: the aggregates and the datamodels (the core pipeline up to the fit; what
reads the datamodels does not depend on how the chunks came to be)."""


def tiny(config: dict) -> None:
    """One alpha, 80 + 20 models in chunks of 20 (no repeated held-out models), two epochs, a five-lambda path,
    test targets only."""
    config["run"] = RUN
    config["data"].update(targets="test", n_test=30)
    config["subsets"].update(alphas=[float(ALPHA)], n_models=80, n_eval_models=20, models_per_chunk=20)
    config["train"]["epochs"] = 2
    config["fit"].update(n_lambdas=5, max_iter=200)
    config["evaluate"].update(learning_curve=[1.0], seeds_per_mask=1)  # no repeated held-out models


COARSE_CHUNKS = {"train": 2, "eval": 1}


def tiny_coarse(config: dict) -> None:
    """The tiny configuration in chunks of 40 (COARSE_CHUNKS): the reference run and the SLURM run. Nothing depends on
    the chunking (a model's seed and mask come from its index), so the resume tests, in chunks of 20, compare with
    the reference too."""
    tiny(config)
    config["subsets"]["models_per_chunk"] = 40


def results(workdir: Path) -> Path:
    return workdir / "results" / RUN


def layout(workdir: Path) -> store.Layout:
    return store.layout_for(json.loads((results(workdir) / "data/dataset.json").read_text()), float(ALPHA))


def assert_same_results(actual: Path, expected: Path) -> None:
    """Aggregates: identical ids and masks (bit for bit), margins equal to float tolerance; same datamodels."""
    for split in CHUNKS:
        a_path = results(actual) / f"aggregate/alpha={ALPHA}/{split}.parquet"
        e_path = results(expected) / f"aggregate/alpha={ALPHA}/{split}.parquet"
        assert pq.read_table(a_path, columns=["mask"]).column("mask").equals(
            pq.read_table(e_path, columns=["mask"]).column("mask")), f"{split} masks differ"
        a, e = store.read_models(a_path, layout(actual)), store.read_models(e_path, layout(expected))
        np.testing.assert_array_equal(a.model_id, e.model_id)
        np.testing.assert_allclose(a.margins, e.margins, rtol=1e-5, atol=1e-5)
    a_dm = fit.read(results(actual) / f"datamodels/alpha={ALPHA}/datamodels.parquet")
    e_dm = fit.read(results(expected) / f"datamodels/alpha={ALPHA}/datamodels.parquet")
    np.testing.assert_allclose(a_dm.weight, e_dm.weight, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a_dm.bias, e_dm.bias, rtol=1e-4, atol=1e-5)
