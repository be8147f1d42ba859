"""Snakemake script: ModelDiff of one alpha's datamodels (residual PCA both ways), checked by retraining A and B."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import modeldiff

log = runlog.setup(snakemake.log[0])
modeldiff.run(
    own_datamodels_path=snakemake.input.own_datamodels,
    other_datamodels_path=snakemake.input.other_datamodels,
    fit_info_path=snakemake.input.info,
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.settings,
    recipe=snakemake.params.recipe,
    other=snakemake.params.other,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    table_path=snakemake.output.table,
    loadings_path=snakemake.output.loadings,
    summary_path=snakemake.output.summary,
    variance_path=snakemake.output.variance,
    examples_path=snakemake.output.examples,
    check_path=snakemake.output.check,
)
