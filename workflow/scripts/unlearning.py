"""Snakemake script: unlearning a forget set by datamodel matching, against retraining and plain fine-tuning."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import unlearning

log = runlog.setup(snakemake.log[0])
unlearning.run(
    datamodels_path=snakemake.input.datamodels,
    train_set_datamodels_path=snakemake.input.train_set_datamodels,
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.settings,
    recipe=snakemake.params.recipe,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    table_path=snakemake.output.table,
    summary_path=snakemake.output.summary,
    metrics_path=snakemake.output.metrics,
    scatter_path=snakemake.output.scatter,
)
