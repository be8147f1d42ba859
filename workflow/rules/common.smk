# Configuration validation and the helpers every rule file uses. Kept cheap and
# deterministic: cluster jobs re-parse it.
import math
from pathlib import Path

from snakemake.exceptions import WorkflowError

from datamodels_pipeline.config import ConfigError, validate

try:
    _validated = validate(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(_validated)

RUN = f"results/{config['run']}"
ALPHAS = [f"{alpha:g}" for alpha in config["subsets"]["alphas"]]
SPLIT_SIZES = {"train": config["subsets"]["n_models"], "eval": config["subsets"]["n_eval_models"]}
CHUNK = config["subsets"]["models_per_chunk"]
PACKAGE = Path(workflow.basedir) / "workflow" / "datamodels_pipeline"
ENV = "../../envs/datamodels.yaml"


wildcard_constraints:
    alpha=r"0\.[0-9]+",
    split="train|eval",
    chunk=r"\d+",


def modules(*names):
    """Package modules a stage depends on: editing them reruns that stage only."""
    return [str(PACKAGE / f"{name}.py") for name in sorted(set(names) | {"__init__", "atomic", "runlog"})]


def n_chunks(split):
    return math.ceil(SPLIT_SIZES[split] / CHUNK)


def chunk_models(wildcards):
    """[first, stop) model ids of one chunk: a function of the chunk index only."""
    first = int(wildcards.chunk) * CHUNK
    return [first, min(first + CHUNK, SPLIT_SIZES[wildcards.split])]


def chunk_files(stage):
    """Input function: every chunk file of one (alpha, split) for a stage."""

    def files(wildcards):
        return expand(
            f"{RUN}/{stage}/alpha={wildcards.alpha}/{wildcards.split}/chunk-{{chunk}}.parquet",
            chunk=range(n_chunks(wildcards.split)),
        )

    return files


def model_count(wildcards):
    return SPLIT_SIZES[wildcards.split]


def recipe():
    """The learning algorithm as plain values (a change retrains every chunk)."""
    return {"model": config["model"], "train": config["train"]}
