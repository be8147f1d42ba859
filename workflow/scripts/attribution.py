"""Snakemake script: attribution baselines (influence functions, TracIn, TRAK, representation similarity,
external score matrices) scored by LDS on the held-out models beside the datamodels, with their compute."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import attribution

log = runlog.setup(snakemake.log[0])
attribution.run(
    fit_info_path=snakemake.input.fit_info,
    train_integrity_path=snakemake.input.train_integrity,
    curve_path=snakemake.input.curve,
    metrics_path=snakemake.input.metrics,
    evaluation_per_target_path=snakemake.input.per_target,
    eval_path=snakemake.input.eval,
    info_path=snakemake.input.info,
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.settings,
    recipe=snakemake.params.recipe,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    table_path=snakemake.output.table,
    per_target_path=snakemake.output.per_target,
    summary_path=snakemake.output.summary,
    figure_path=snakemake.output.figure,
)
