"""Snakemake script: merge the fit blocks of one alpha into datamodels.parquet, features.parquet and fit.json."""

from datamodels_pipeline import fit, runlog

log = runlog.setup(snakemake.log[0])
fit.merge(
    block_paths=list(snakemake.input.blocks),
    statistics_path=snakemake.input.statistics,
    settings=snakemake.params.fit,
    alpha=float(snakemake.wildcards.alpha),
    datamodels_path=snakemake.output.datamodels,
    features_path=snakemake.output.features,
    fit_info_path=snakemake.output.info,
)
