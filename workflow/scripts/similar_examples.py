"""Snakemake script: the top positive- and negative-weight training examples of sampled targets."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import similar_examples

log = runlog.setup(snakemake.log[0])
similar_examples.run(
    datamodels_path=snakemake.input.datamodels,
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.settings,
    seed=snakemake.params.seed,
    table_path=snakemake.output.table,
    summary_path=snakemake.output.summary,
    grid_path=snakemake.output.grid,
)
