"""Shared fixtures: one run of the smoke DAG, small synthetic model tables."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock

from datamodels_pipeline import masks, store

from workflow_helpers import CORE_TARGETS, RUN, copy_workflow, snakemake, tiny_coarse, write_config

REPO = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # several workers on two cores: one thread each (workflow jobs: --max-threads 1)


# pytest-xdist (pyproject.toml: --dist loadscope --no-loadscope-reorder) hands out scopes of tests, each to one
# worker, in the order of the test collection: a scope is a test file, or a test class (test_learners.py has one per
# learner run, so that different workers make the runs at once). The scopes whose runs take longest go first; the
# rest fill in as workers free up. A worker gets its next scope while two tests of its current one are still to
# run, so the SLURM test (one test, mostly waiting on its cluster) is followed by short ones.
FIRST = ["test_workflow.py", "test_learners.py::TestLogisticRun", "test_learners.py::TestOwnTorchModelRun",
         "test_resume.py", "test_slurm.py", "test_datasets.py", "test_config.py", "test_learners.py::TestCnnRun",
         "test_learners.py::TestCustomRun", "test_learners.py::TestLearnerEdits", "test_api.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {f"tests/{scope}": position for position, scope in enumerate(FIRST)}
    # xdist's scope of a test: its node id without the last part (test_x.py::test_f[a] -> test_x.py).
    items.sort(key=lambda item: rank.get(item.nodeid.rsplit("::", 1)[0], len(FIRST)))


def run_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """``make(workdir)`` once per test session, also across pytest-xdist workers (a file lock in the session's
    common temporary folder: a worker that needs the run while another makes it waits for it)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' basetemps are popen-gw<N> under one folder
    workdir, done = root / name, root / f"{name}.complete"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(workdir, ignore_errors=True)  # what a failed attempt left
            make(workdir)
            done.touch()
    return workdir


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole DAG of config/smoke.yaml, run once in a private copy of the workflow and shared by every test
    that reads its outputs (tests that edit the copy's code put it back, and only dry-run it meanwhile)."""
    return run_once(tmp_path_factory, "smoke", _smoke_run)


def _smoke_run(workdir: Path) -> None:
    copy_workflow(workdir)
    snakemake(workdir, configfile=write_config(workdir, "smoke"))


def _tiny_run(workdir: Path) -> None:
    copy_workflow(workdir)
    snakemake(workdir, "--show-failed-logs", *CORE_TARGETS, configfile=write_config(workdir, RUN, tiny_coarse))


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted local run of the tiny configuration in chunks of 40 (the MLP learner), up to what
    ``workflow_helpers.assert_same_results`` compares: the expected results of the resume and SLURM tests, which
    only read it."""
    return run_once(tmp_path_factory, "tiny-reference", _tiny_run)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny products: one thread is fastest, and immune to other load on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def layout() -> store.Layout:
    return store.Layout(n_train=20, n_targets=3, subset_size=10, fingerprint="f" * 64)


def make_models(layout: store.Layout, ids: list[int], seed: int = 0) -> store.Models:
    """Models with real fixed-size subsets and random margins."""
    subsets = masks.draw_subsets(seed, "train", layout.subset_size / layout.n_train, ids, layout.n_train)
    generator = np.random.default_rng(seed)
    k = len(ids)
    return store.Models(
        model_id=np.asarray(ids, dtype=np.int64), mask=masks.to_mask(subsets, layout.n_train),
        margins=generator.normal(size=(k, layout.n_targets)).astype(np.float32),
        train_accuracy=np.ones(k, np.float32), target_accuracy=np.full(k, 0.5, np.float32),
        diverged=np.zeros(k, bool),
    )
