# Datamodels pipeline: data -> masks -> train chunks -> aggregate -> fit -> evaluate -> report.
# Every stage is one rule file under workflow/rules and one module of workflow/datamodels_pipeline.
from snakemake.logging import logger
from snakemake.utils import min_version

min_version("9.0")


# The default configuration, unless configuration files are given with --configfile: those replace it
# (they are not merged into it, so a configuration that switches model.name inherits no keys of another learner).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/applications.smk"
include: "workflow/rules/train_set_datamodels.smk"
include: "workflow/rules/data_selection.smk"
include: "workflow/rules/backdoor.smk"
include: "workflow/rules/modeldiff.smk"
include: "workflow/rules/unlearning.smk"
include: "workflow/rules/attribution.smk"


# The applications this run can have: unlearning and attribution take the trained network apart, so they need a
# learner that provides it (its declared capabilities, datamodels_pipeline/protocol.py), and ModelDiff needs an
# algorithm B other than the run's own (applications.modeldiff.other).
LEFT_OUT = protocol.applications_left_out(config["model"], APPLICATION_RULES)
if LEFT_OUT:
    logger.warning(
        f"rule all leaves out {', '.join(LEFT_OUT)}: they need the trained torch network "
        f"(capability {sorted(set(LEFT_OUT.values()))}), which model.name {config['model']['name']!r} "
        f"does not provide (capabilities {sorted(protocol.capabilities(config['model']))})"
    )
RUN_APPLICATIONS = [
    name for name in APPLICATION_RULES if name not in LEFT_OUT and (name != "modeldiff" or MODELDIFF_APPLIES)
]


rule all:
    default_target: True
    input:
        f"{RUN}/summary.md",
        expand(
            f"{RUN}/applications/{{application}}/alpha={{alpha}}/summary.json",
            application=RUN_APPLICATIONS,
            alpha=ALPHAS,
        ),
