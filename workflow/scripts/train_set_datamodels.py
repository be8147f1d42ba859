"""Snakemake script: fit the train-set datamodels of one data-set variant and alpha from their models."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import train_set_datamodels

log = runlog.setup(snakemake.log[0])
train_set_datamodels.run(
    data_path=snakemake.input.data,
    models_path=snakemake.input.models,
    alpha=float(snakemake.wildcards.alpha),
    fit_settings=snakemake.params.fit,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    datamodels_path=snakemake.output.datamodels,
    features_path=snakemake.output.features,
    info_path=snakemake.output.info,
)
