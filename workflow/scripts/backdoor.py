"""Snakemake script: backdoor detection from one alpha's train-set datamodels, checked by retraining."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import backdoor_detection

log = runlog.setup(snakemake.log[0])
backdoor_detection.run(
    datamodels_path=snakemake.input.datamodels,
    data_path=snakemake.input.data,
    data_info_path=snakemake.input.info,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.settings,
    recipe=snakemake.params.recipe,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    table_path=snakemake.output.table,
    summary_path=snakemake.output.summary,
    detection_path=snakemake.output.detection,
    attack_path=snakemake.output.attack,
)
