"""Snakemake script: train one chunk of models together and store their margins."""

from datamodels_pipeline import runlog, train_chunk

log = runlog.setup(snakemake.log[0])
train_chunk.run(
    data_path=snakemake.input.data,
    info_path=snakemake.input.info,
    masks_path=snakemake.input.masks,
    output_path=snakemake.output[0],
    alpha=float(snakemake.wildcards.alpha),
    split=snakemake.wildcards.split,
    chunk=int(snakemake.wildcards.chunk),
    recipe=snakemake.params.recipe,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    repeated_masks=snakemake.params.repeated_masks,
)
