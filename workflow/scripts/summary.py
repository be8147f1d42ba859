"""Snakemake script: the run's summary table and digest."""

from datamodels_pipeline import runlog, summary

log = runlog.setup(snakemake.log[0])
summary.run(
    run_name=snakemake.params.run,
    alphas=snakemake.params.alphas,
    metrics=list(snakemake.input.metrics),
    curves=list(snakemake.input.curves),
    fits=list(snakemake.input.fits),
    integrity=list(snakemake.input.integrity),
    info_path=snakemake.input.info,
    markdown_path=snakemake.output.markdown,
    table_path=snakemake.output.table,
)
