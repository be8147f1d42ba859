"""Snakemake script: sum the training models of one alpha (and the learning curve's prefixes) in one pass."""

from datamodels_pipeline import runlog, statistics

log = runlog.setup(snakemake.log[0])
statistics.run(
    models_path=snakemake.input.models,
    info_path=snakemake.input.info,
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    val_fraction=snakemake.params.val_fraction,
    seed=snakemake.params.seed,
    fractions=snakemake.params.fractions,
    device=snakemake.params.device,
    threads=snakemake.threads,
    output_path=snakemake.output[0],
)
