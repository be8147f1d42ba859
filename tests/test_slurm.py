"""The workflow on a real SLURM cluster through profiles/slurm gives the results of a local run.

The cluster is the single-node one that tests/slurm/start_slurm.sh brings up on this machine (CI runs it
from .ci/run; the fixture below runs it again, which is a no-op when SLURM already answers). The
compute node is this machine, so jobs share the file system and the Python environment, as nodes of a
real cluster share them over a network file system. Skipped only when SLURM is not installed here or
cannot be started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_helpers import (ALPHA, COARSE_CHUNKS, CORE_TARGETS, ONE_THREAD, REPO, RUN, assert_same_results,
                              copy_workflow, one_thread_env, results, snakemake, tiny_coarse, write_config)

# The core pipeline up to the datamodels, and one application that retrains models. Evaluation and the other
# applications run locally in the smoke DAG: on SLURM they would differ only in their resource requests, which this
# test sets for every rule.
TARGETS = [*CORE_TARGETS, f"results/{RUN}/applications/counterfactuals/alpha={ALPHA}/summary.json"]
# Three sbatch jobs, one after the other: prepare_data, every chunk (masks + train_chunk, the profile's group, here
# with all three chunks in one submission), and every later job (`groups`, docs/cluster.md). The plugin polls at 2,
# 12, 22... s after each submission, so one sbatch job per rule job (seven levels, the five chunks queued two at a
# time on the node's two CPUs) spent about two minutes of this test waiting on the poll.
GROUPS = ["--groups", "masks=chunk", "train_chunk=chunk", *(f"{rule}=after_training" for rule in (
    "aggregate", "statistics", "fit_datamodels", "merge_datamodels", "counterfactuals")),
    # Two components after training: the eval aggregate (a target, read by no other job here), and all the rest.
    "--group-components", f"chunk={sum(COARSE_CHUNKS.values())}", "after_training=2"]

pytestmark = pytest.mark.workflow
START = REPO / "tests" / "slurm" / "start_slurm.sh"


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    missing = [p for p in ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged") if shutil.which(p) is None]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} not found); install slurmctld slurmd "
                    "slurm-client munge (as .ci/run does) to run this test")
    pytest.importorskip("snakemake_executor_plugin_slurm")
    started = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        pytest.skip(f"SLURM could not be started by {START.relative_to(REPO)} "
                    f"(exit {started.returncode}): {started.stderr.strip()[-1500:]}")
    partitions = subprocess.run(["sinfo", "--noheader", "--format", "%P"], capture_output=True, text=True, check=True)
    assert "debug" in partitions.stdout, partitions.stdout


def test_slurm_run_equals_local_run(tmp_path, slurm_cluster, tiny_reference):
    # The tiny configuration in chunks of 40, as the tiny_reference fixture of conftest.py runs it locally without any
    # profile, submitted to SLURM as three levels of sbatch jobs (GROUPS).
    cluster = copy_workflow(tmp_path / "slurm")
    shutil.copytree(REPO / "profiles" / "slurm", cluster / "profiles" / "slurm")
    config = write_config(cluster, RUN, tiny_coarse)
    venv_bin = str(Path(sys.executable).parent)
    env = {**one_thread_env(), "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    rules = snakemake(cluster, "--list-rules", configfile=config).stdout.split()
    assert "train_chunk" in rules, rules
    memory = [f"{rule}:mem_mb=1000" for rule in rules]
    command = [
        # The targets first: options that take several values (--set-resources) would swallow them.
        sys.executable, "-m", "snakemake", *TARGETS, "--snakefile", str(cluster / "Snakefile"), "--directory", str(cluster),
        "--workflow-profile", "profiles/slurm", "--configfile", str(config),
        # Site-specific settings of this test cluster: no accounting database, partition "debug".
        "--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "2",
        "--default-resources", "slurm_partition=debug", "runtime=10", "mem_mb=500",
        # Small requests so that every job fits the one node; one thread per job, as the local run. --cores: the
        # group job asks for at most the node's two CPUs (its parallel jobs beyond that run in series).
        "--set-resources", *memory, *ONE_THREAD, *GROUPS, "--cores", "2",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=cluster, env=env, timeout=1500)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"SLURM run failed:\n{output[-8000:]}"
    assert "Using workflow specific profile profiles/slurm" in output
    assert "has been submitted with SLURM jobid" in output
    assert output.count("has been submitted with SLURM jobid") == 3, output[-8000:]
    assert "Falling back to 'sacct'" not in output
    train_log = results(cluster) / f"logs/train_chunk/alpha={ALPHA}/train/chunk-0.log"
    assert "models in" in train_log.read_text()

    assert_same_results(cluster, tiny_reference)
