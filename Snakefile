# Datamodels pipeline: data -> masks -> train chunks -> aggregate -> fit -> evaluate -> report.
# Every stage is one rule file under workflow/rules and one module of workflow/datamodels_pipeline.
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


rule all:
    default_target: True
    input:
        f"{RUN}/summary.md",
        lambda wildcards: expand(
            f"{RUN}/applications/{{application}}/alpha={{alpha}}/summary.json",
            application=run_applications(),
            alpha=ALPHAS,
        ),
