"""Run the workflow in a subprocess on a private copy of the workflow code."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

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


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, check: bool = True,
              timeout: int = 900) -> subprocess.CompletedProcess:
    """``python -m snakemake`` in workdir with its own Snakefile; output captured."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(workdir / "Snakefile"),
               "--directory", str(workdir), "--cores", "2", "--workflow-profile", "none"]
    if configfile is not None:
        command += ["--configfile", str(configfile)]
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, cwd=workdir)
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
