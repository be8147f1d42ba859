"""Snakemake script: plant a backdoor (trigger patch, relabelled) in part of the prepared training set."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import backdoor

log = runlog.setup(snakemake.log[0])
backdoor.run_plant(
    data_path=snakemake.input.data,
    settings=snakemake.params.settings,
    seed=snakemake.params.seed,
    out_path=snakemake.output.data,
    info_path=snakemake.output.info,
)
