"""Snakemake script: data selection (DsDm) with one alpha's datamodels, verified by training on the selections."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import data_selection

log = runlog.setup(snakemake.log[0])
data_selection.run(
    datamodels_path=snakemake.input.datamodels,
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.settings,
    recipe=snakemake.params.recipe,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    table_path=snakemake.output.table,
    summary_path=snakemake.output.summary,
    curve_path=snakemake.output.curve,
)
