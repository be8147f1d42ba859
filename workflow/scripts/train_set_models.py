"""Snakemake script: train the train-set models of one data-set variant and alpha (margins on every training example)."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import train_set_models

log = runlog.setup(snakemake.log[0])
train_set_models.run_models(
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.settings,
    recipe=snakemake.params.recipe,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    models_path=snakemake.output[0],
)
