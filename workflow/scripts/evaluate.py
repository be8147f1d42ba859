"""Snakemake script: score the datamodels of one alpha on held-out models."""

from datamodels_pipeline import evaluate, runlog

log = runlog.setup(snakemake.log[0])
evaluate.run(
    datamodels_path=snakemake.input.datamodels,
    statistics_path=snakemake.input.statistics,
    eval_path=snakemake.input.eval,
    repeat_path=snakemake.input.repeat or None,
    repeated_masks=snakemake.params.repeated_masks,
    seeds_per_mask=snakemake.params.seeds_per_mask,
    info_path=snakemake.input.info,
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    metrics_path=snakemake.output.metrics,
    per_target_path=snakemake.output.per_target,
    scatter_path=snakemake.output.scatter,
    histogram_path=snakemake.output.histogram,
)
