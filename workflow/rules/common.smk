# Configuration validation and the helpers every rule file uses. Kept cheap and
# deterministic: cluster jobs re-parse it.
import functools
import importlib.util
import math
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from datamodels_pipeline import codegraph, protocol, sizing
from datamodels_pipeline.config import ConfigError, n_targets, validate
from datamodels_pipeline.reference_libraries import peer_versions

try:
    _validated = validate(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(_validated)

RUN = f"results/{config['run']}"
ALPHAS = [f"{alpha:g}" for alpha in config["subsets"]["alphas"]]
SPLIT_SIZES = {"train": config["subsets"]["n_models"], "eval": config["subsets"]["n_eval_models"]}
# Repeated held-out models (evaluate.seeds_per_mask): the split "repeat" trains the first REPEATED_MASKS held-out masks
# again with SEEDS_PER_MASK - 1 more seeds each; the noise ceiling and the seed-averaged LDS come from them.
SEEDS_PER_MASK = config["evaluate"]["seeds_per_mask"]
REPEATED_MASKS = min(config["evaluate"]["repeated_masks"], SPLIT_SIZES["eval"]) if SEEDS_PER_MASK > 1 else 0
if REPEATED_MASKS:
    SPLIT_SIZES["repeat"] = REPEATED_MASKS * (SEEDS_PER_MASK - 1)
SPLITS = list(SPLIT_SIZES)
CHUNK = config["subsets"]["models_per_chunk"]
# Sizes that set the fit's job count and every data-path job's memory (workflow/datamodels_pipeline/sizing.py).
N_TRAIN = config["data"]["n_train"]
N_TARGETS = n_targets(config["data"])
FIT_BLOCK_TARGETS = min(N_TARGETS, config["fit"]["targets_per_job"] or N_TARGETS)
N_FIT_BLOCKS = -(-N_TARGETS // FIT_BLOCK_TARGETS)
# Fit jobs with training-example targets under fit.train_targets: exact hold every model's dense mask.
EXACT_TRAIN_TARGETS = config["fit"]["train_targets"] == "exact" and config["data"]["targets"] != "test"
FIT_BLOCK_MB = sizing.fit_block_mb(
    N_TRAIN,
    FIT_BLOCK_TARGETS,
    SPLIT_SIZES["train"],
    exact_train_targets=EXACT_TRAIN_TARGETS,
)
PACKAGE = Path(workflow.basedir) / "workflow" / "datamodels_pipeline"
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
ENV = "../../envs/datamodels.yaml"


wildcard_constraints:
    alpha=r"0\.[0-9]+",
    split="train|eval|repeat",
    chunk=r"\d+",
    block=r"\d+",


def code(script, *files):
    """What a rule's code means: a fingerprint of its script and every package module it imports (transitively),
    docstrings, comments and formatting ignored (workflow/datamodels_pipeline/codegraph.py), plus ``files``
    (learner modules loaded by name, a custom entry point). A param, so only a semantic edit reruns the rule."""
    return codegraph.fingerprint([SCRIPTS / f"{script}.py", *files], root=PACKAGE)


def entry_point_files(model=None, key="model"):
    """The source file of a custom learner's entry_point module (default: the run's), so that editing it retrains."""
    model = config["model"] if model is None else model
    if model["name"] != "custom":
        return []
    entry_point = model["entry_point"]
    module_name = entry_point.partition(":")[0]
    try:
        spec = importlib.util.find_spec(module_name)
    except ImportError as error:
        spec, reason = None, f" ({error})"
    else:
        reason = ""
    if spec is None:
        raise WorkflowError(
            f"{key}.entry_point {entry_point!r}: module {module_name!r} is not importable by this "
            f"Python{reason}; install it or put its folder on PYTHONPATH"
        )
    return [spec.origin] if spec.origin and spec.origin.endswith(".py") else []


# The learner module loaded by name at run time (protocol.REGISTRY), and a custom entry point's file: rules that
# train add them to their code fingerprint, so editing the run's learner retrains and editing another does not.
def learner_files(model=None, key="model"):
    model = config["model"] if model is None else model
    parts = protocol.module_of(model["name"]).split(".")[1:]
    return [PACKAGE.joinpath(*parts).with_suffix(".py")] + entry_point_files(model, key)


LEARNER_FILES = learner_files()


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


def repeated_masks(wildcards):
    """Held-out masks repeated, for the split "repeat" only (so the other splits' params never change with it)."""
    return REPEATED_MASKS if wildcards.split == "repeat" else 0


def repeat_aggregate():
    """Input: the repeated held-out models' aggregate of an alpha; nothing when the run has none."""
    return (lambda wildcards: f"{RUN}/aggregate/alpha={wildcards.alpha}/repeat.parquet") if REPEATED_MASKS else []


def model_count(wildcards):
    return SPLIT_SIZES[wildcards.split]


def recipe():
    """The learning algorithm as plain values (a change retrains every chunk)."""
    return {"model": config["model"], "train": config["train"]}


def data_file(wildcards):
    """data.path when data.name is file: editing the user's data reruns the pipeline."""
    return [config["data"]["path"]] if config["data"]["name"] == "file" else []


# The applications this run can have: unlearning and attribution take the trained network apart, so they need a
# learner that provides it (its declared capabilities, datamodels_pipeline/protocol.py), and ModelDiff needs an
# algorithm B other than the run's own (applications.modeldiff.other). Asked by the default target's input function
# only, so only where that target is planned: reading the capabilities imports the learner's module (torch), which a
# run of other targets, and every job of a cluster run (each parses this file again), need not pay for.
@functools.cache
def run_applications():
    left_out = protocol.applications_left_out(config["model"], APPLICATION_RULES)
    if left_out:
        logger.warning(protocol.left_out_message(config["model"], left_out))
    return [name for name in APPLICATION_RULES if name not in left_out and (name != "modeldiff" or MODELDIFF_APPLIES)]
