"""Snakemake script: fit one block of targets of one alpha from the shared statistics."""

from datamodels_pipeline import fit, runlog

log = runlog.setup(snakemake.log[0])
fit.run_block(
    statistics_path=snakemake.input.statistics,
    models_path=snakemake.input.models,
    info_path=snakemake.input.info,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.fit,
    block=int(snakemake.wildcards.block),
    threads=snakemake.threads,
    output_path=snakemake.output[0],
)
