"""Snakemake script: PCA and spectral clustering of one alpha's datamodel embeddings, checked by retraining."""

from datamodels_pipeline import runlog
from datamodels_pipeline.applications import embeddings

log = runlog.setup(snakemake.log[0])
embeddings.run(
    datamodels_path=snakemake.input.datamodels,
    data_path=snakemake.input.data,
    alpha=float(snakemake.wildcards.alpha),
    settings=snakemake.params.settings,
    recipe=snakemake.params.recipe,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    table_path=snakemake.output.table,
    summary_path=snakemake.output.summary,
    components_path=snakemake.output.components,
    clusters_path=snakemake.output.clusters,
    intervention_path=snakemake.output.intervention,
)
