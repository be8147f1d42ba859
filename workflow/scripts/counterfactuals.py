"""Snakemake script: counterfactual removals of one alpha's datamodels, verified by retraining."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import counterfactuals

log = runlog.setup(snakemake.log[0])
counterfactuals.run(
    datamodels_path=snakemake.input.datamodels,
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.settings,
    recipe=snakemake.params.recipe,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    table_path=snakemake.output.table,
    summary_path=snakemake.output.summary,
    scatter_path=snakemake.output.scatter,
    curve_path=snakemake.output.curve,
)
