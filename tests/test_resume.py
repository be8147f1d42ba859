"""Surviving kills and failures: finished chunks are kept and reused, broken ones are redone or named.

Each test runs the tiny one-alpha configuration (``workflow_helpers.tiny``) through snakemake in a subprocess
(local executor): four train chunks and one eval chunk of 20 models each, two epochs, a short lambda path. The targets
are the aggregates and the datamodels (data -> chunks -> aggregate -> statistics -> fit), where resuming matters.
The models are the MLP trained one per call by the test-only learner ``tests/failing_learner.py``,
which fails the chunks a test asks it to fail; the expected results are those of the batched MLP
(``tiny_reference`` in conftest.py, shared with the SLURM test), which trains the same models.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datamodels_pipeline import store
from datamodels_pipeline.seeding import Stream, int_seed

from failing_learner import FAIL_ENV
from workflow_helpers import (ALPHA, CHUNKS, CORE_TARGETS, ONE_THREAD, REPO, RUN, assert_same_results, copy_workflow,
                              layout, one_thread_env, planned_jobs, results, snakemake, tiny, write_config)

pytestmark = pytest.mark.workflow

FAILING = f"alpha={ALPHA}/train/1"  # fails on every attempt
TRANSIENT = f"alpha={ALPHA}/train/2"  # fails on its first attempt only

def failing_learner(config: dict) -> None:
    """The tiny configuration with the MLP behind the test-only custom learner that fails on request."""
    tiny(config)
    recipe = {key: config["train"][key] for key in ("epochs", "batch_size", "lr", "momentum", "weight_decay")}
    config["model"] = {"name": "custom", "entry_point": "failing_learner:train",
                       "options": {"hidden": config["model"]["hidden"], "train": recipe}}
    config["train"] = {"device": "cpu"}


@pytest.fixture(scope="module", autouse=True)
def learner_on_path():
    """The snakemake processes import the test-only learner from tests/."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")])))
        yield


def fail_chunks(monkeypatch: pytest.MonkeyPatch, chunks: dict[str, Path | None]) -> None:
    """Make each chunk fail: on every attempt (None), or only on the first (a marker folder). The test learner
    fails the models whose seeds are listed, which are the chunk's (models_per_chunk 20, the smoke config's seed 0)."""
    requests = []
    for name, once_dir in chunks.items():
        chunk = int(name.rsplit("/", 1)[1])  # a train chunk
        seeds = [int_seed(0, Stream.TRAIN_MODEL, float(ALPHA), i) for i in range(chunk * 20, (chunk + 1) * 20)]
        requests.append({"chunk": name, "seeds": seeds, **({"once_dir": str(once_dir)} if once_dir else {})})
    monkeypatch.setenv(FAIL_ENV, json.dumps(requests))


def prepare(workdir: Path) -> Path:
    copy_workflow(workdir)
    return write_config(workdir, RUN, failing_learner)


def run(workdir: Path, *args: str, config: Path, check: bool = True, targets: list[str] = CORE_TARGETS):
    """snakemake [args] --show-failed-logs <targets> in workdir (the targets after a flag, so that
    --configfile, which takes several values, does not swallow them)."""
    return snakemake(workdir, *args, "--show-failed-logs", *targets, configfile=config, check=check)


def chunk_path(workdir: Path, split: str, chunk: int) -> Path:
    return results(workdir) / f"models/alpha={ALPHA}/{split}/chunk-{chunk}.parquet"


def all_chunks(workdir: Path) -> list[Path]:
    return [chunk_path(workdir, split, k) for split, n in CHUNKS.items() for k in range(n)]


def identity(paths) -> dict[Path, tuple[int, int]]:
    """(inode, mtime in ns) of each existing file: a rewritten file changes both or at least one."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths if p.exists()}


def job_outputs(text: str, rule: str) -> dict[int, str]:
    """jobid -> first output of each job of ``rule`` announced in a snakemake log."""
    jobs, current = {}, None
    for line in text.splitlines():
        header = re.match(r"^\s*(?:local)?rule (\w+):$", line)
        if header:
            current = {"rule": header.group(1)}
            continue
        if current is None:
            continue
        field = re.match(r"^\s+(output|jobid): (\S+)", line)
        if field:
            current[field.group(1)] = field.group(2).rstrip(",")
            if current["rule"] == rule and "output" in current and "jobid" in current:
                jobs[int(current["jobid"])] = current["output"]
        elif not line.startswith((" ", "\t")):
            current = None
    return jobs


def finished_outputs(text: str, rule: str) -> set[str]:
    """Outputs of the jobs of ``rule`` that snakemake reported as finished."""
    outputs = job_outputs(text, rule)
    done = {int(m) for m in re.findall(rf"Finished jobid: (\d+) \(Rule: {rule}\)", text)}
    return {outputs[j] for j in done if j in outputs}


def test_killed_run_resumes_without_retraining_finished_chunks(tmp_path, tiny_reference):
    config = prepare(tmp_path)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(tmp_path / "Snakefile"), "--directory",
               str(tmp_path), "--cores", "2", *ONE_THREAD, "--workflow-profile", "none", *CORE_TARGETS,
               "--configfile", str(config)]
    log_path = tmp_path / "killed-run.log"
    aggregate = results(tmp_path) / f"aggregate/alpha={ALPHA}/train.parquet"
    with open(log_path, "w") as log:
        # Its own session: the kill takes snakemake and every job it started, like a node going away.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                                   start_new_session=True, env={**one_thread_env(), "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 600
            while not finished_outputs(log_path.read_text(), "train_chunk"):
                assert process.poll() is None, f"snakemake ended before any chunk finished:\n{log_path.read_text()[-4000:]}"
                assert time.monotonic() < deadline, "no chunk finished within 10 minutes"
                time.sleep(0.05)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = log_path.read_text()
    assert not aggregate.exists(), "the run finished before it could be killed; the test needs more chunks"
    reported = {tmp_path / p for p in finished_outputs(text, "train_chunk")}
    assert reported
    # Whatever carries a chunk's final name is a complete, readable file: jobs write under a temporary
    # name and rename at the end, so a killed job leaves at most a hidden *.tmp file behind.
    for path in all_chunks(tmp_path):
        if path.exists():
            store.read_models(path, layout(tmp_path))
    before = identity(all_chunks(tmp_path))

    # A killed snakemake leaves its lock: unlock, then resume (the default profile sets --rerun-incomplete).
    snakemake(tmp_path, "--unlock", configfile=config)
    dry = run(tmp_path, "-n", "--rerun-incomplete", config=config)
    planned = {tmp_path / p for p in job_outputs(dry.stdout + dry.stderr, "train_chunk").values()}
    assert planned_jobs(dry)["train_chunk"] == len(planned)
    kept = set(all_chunks(tmp_path)) - planned
    # Every chunk reported finished before the kill is kept (a chunk recorded a few milliseconds before
    # the kill may be kept without having been reported yet); the others are planned again.
    assert reported <= kept and planned, (reported, kept)
    untrusted = set(before) - kept  # on disk under the final name, but its job was never recorded finished
    rerun = run(tmp_path, "--rerun-incomplete", config=config)
    retrained = {tmp_path / p for p in job_outputs(rerun.stdout + rerun.stderr, "train_chunk").values()}
    assert retrained == planned
    after = identity(all_chunks(tmp_path))
    for path in kept:
        assert after[path] == before[path], f"{path} was retrained although it had finished"
    for path in untrusted:  # never taken as complete: redone from scratch
        assert after[path] != before[path], f"{path} was taken as complete although its job never finished"
    assert_same_results(tmp_path, tiny_reference)


def test_transient_failure_is_retried_and_permanent_failure_names_the_chunk(tmp_path, tiny_reference, monkeypatch):
    """One run, two failing chunks: TRANSIENT fails on its first attempt only and is retried; FAILING always
    fails, and --keep-going finishes everything that does not need it."""
    config = prepare(tmp_path)
    failing = chunk_path(tmp_path, "train", 1)
    log = f"results/{RUN}/logs/train_chunk/alpha={ALPHA}/train/chunk-1.log"
    markers = tmp_path / "failed-once"
    fail_chunks(monkeypatch, {FAILING: None, TRANSIENT: markers})
    result = run(tmp_path, "--keep-going", "--retries", "1", config=config, check=False)
    output = result.stdout + result.stderr
    # The transient failure: it fired once, and the job was restarted.
    assert (markers / f"alpha={ALPHA}_train_2.failed").exists(), "the injected failure never fired"
    assert f"chunk {TRANSIENT}: injected test failure" in output
    assert "Trying to restart job" in output
    # The permanent failure: snakemake names the rule, the chunk and its log, and the log has the error.
    assert result.returncode != 0
    assert "Error in rule train_chunk" in output
    assert f"chunk {FAILING}: injected test failure" in output
    assert log in output, "snakemake does not point at the failed chunk's log"
    assert f"chunk {FAILING}: injected test failure" in (tmp_path / log).read_text()
    # --keep-going: every other chunk finished, the retried one too (and the eval aggregate, which does not need
    # the failed one).
    others = [p for p in all_chunks(tmp_path) if p != failing]
    assert not failing.exists() and all(p.exists() for p in others)
    assert (results(tmp_path) / f"aggregate/alpha={ALPHA}/eval.parquet").exists()
    assert not (results(tmp_path) / f"aggregate/alpha={ALPHA}/train.parquet").exists()
    before = identity(others)

    # The cause is fixed: the next run trains only the failed chunk and what depends on it.
    monkeypatch.delenv(FAIL_ENV)
    plan = planned_jobs(run(tmp_path, "-n", config=config))
    assert plan["train_chunk"] == 1 and plan["aggregate"] == 1 and plan["statistics"] == 1, plan
    assert "masks" not in plan and "prepare_data" not in plan, plan
    rerun = run(tmp_path, config=config)
    assert set(job_outputs(rerun.stdout + rerun.stderr, "train_chunk").values()) == {
        str(failing.relative_to(tmp_path))}
    assert identity(others) == before
    # The results, the retried chunk's included, are those of an uninterrupted run.
    assert_same_results(tmp_path, tiny_reference)


def test_corrupt_chunk_is_named_at_aggregation(tmp_path):
    config = prepare(tmp_path)
    target = f"results/{RUN}/aggregate/alpha={ALPHA}/eval.parquet"
    run(tmp_path, config=config, targets=[target])
    chunk = chunk_path(tmp_path, "eval", 0)
    relative = str(chunk.relative_to(tmp_path))
    original = chunk.read_bytes()

    # Truncated (e.g. a copy that stopped half way): the new mtime and checksum make aggregate rerun.
    chunk.write_bytes(original[: len(original) // 2])
    result = run(tmp_path, config=config, targets=[target], check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error in rule aggregate" in output
    assert re.search(rf"StoreError: \S*{re.escape(relative)}: not a readable Parquet file", output), output[-3000:]

    # A foreign Parquet file under a chunk's name.
    pq.write_table(pa.table({"model_id": pa.array([0, 1], pa.int64()), "x": pa.array([0.5, 1.5])}), chunk)
    result = run(tmp_path, config=config, targets=[target], check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert re.search(rf"StoreError: \S*{re.escape(relative)}: not a models file of this pipeline", output), output[-3000:]
    assert not (tmp_path / target).exists()
