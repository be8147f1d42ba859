"""Snakemake script: train-test leakage, every (test target, training example) pair ranked by datamodel weight."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import leakage

log = runlog.setup(snakemake.log[0])
leakage.run(
    datamodels_path=snakemake.input.datamodels,
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.settings,
    table_path=snakemake.output.table,
    summary_path=snakemake.output.summary,
    figure_path=snakemake.output.figure,
)
