"""Snakemake script: algorithm B's datamodels on B's models (and A's on the same models)."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import modeldiff

log = runlog.setup(snakemake.log[0])
modeldiff.run_datamodels(
    models_path=snakemake.input.models,
    other_models_path=snakemake.input.other_models,
    info_path=snakemake.input.info,
    data_path=snakemake.input.data,
    own_datamodels_path=snakemake.input.own_datamodels,
    own_features_path=snakemake.input.own_features,
    own_fit_path=snakemake.input.own_fit,
    alpha=float(snakemake.wildcards.alpha),
    fit_settings=snakemake.params.fit,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    other_datamodels_out=snakemake.output.other_datamodels,
    other_features_out=snakemake.output.other_features,
    own_datamodels_out=snakemake.output.own_datamodels,
    own_features_out=snakemake.output.own_features,
    fit_info_out=snakemake.output.info,
)
