"""Snakemake script: check and merge every chunk of one (alpha, split)."""

from datamodels_pipeline import aggregate, runlog

log = runlog.setup(snakemake.log[0])
aggregate.run(
    chunk_paths=list(snakemake.input.chunks),
    info_path=snakemake.input.info,
    alpha=float(snakemake.wildcards.alpha),
    split=snakemake.wildcards.split,
    n_models=snakemake.params.n_models,
    output_path=snakemake.output.models,
    integrity_path=snakemake.output.integrity,
)
