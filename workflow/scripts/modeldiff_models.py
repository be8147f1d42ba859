"""Snakemake script: train algorithm B on the run's training subsets (same model seeds as A's)."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import modeldiff_training

log = runlog.setup(snakemake.log[0])
modeldiff_training.run_other_models(
    models_path=snakemake.input.models,
    info_path=snakemake.input.info,
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.settings,
    other=snakemake.params.other,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    output_path=snakemake.output[0],
)
