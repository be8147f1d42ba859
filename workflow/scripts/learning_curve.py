"""Snakemake script: LDS against the number of training models."""

from datamodels_pipeline import learning_curve, runlog

log = runlog.setup(snakemake.log[0])
learning_curve.run(
    statistics_path=snakemake.input.statistics,
    train_path=snakemake.input.train,
    eval_path=snakemake.input.eval,
    info_path=snakemake.input.info,
    data_path=snakemake.input.data,
    metrics_path=snakemake.input.datamodels_metrics,
    alpha=float(snakemake.wildcards.alpha),
    fractions=snakemake.params.fractions,
    settings=snakemake.params.fit,
    threads=snakemake.threads,
    curve_path=snakemake.output.curve,
    plot_path=snakemake.output.plot,
)
