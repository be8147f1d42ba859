"""Snakemake script: fit the datamodels of one alpha."""

from datamodels_pipeline import fit, runlog

log = runlog.setup(snakemake.log[0])
fit.run(
    models_path=snakemake.input.models,
    info_path=snakemake.input.info,
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.fit,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    datamodels_path=snakemake.output.datamodels,
    features_path=snakemake.output.features,
    fit_info_path=snakemake.output.info,
)
