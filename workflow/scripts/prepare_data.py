"""Snakemake script: load and split the data set."""

from datamodels_pipeline import data, runlog

log = runlog.setup(snakemake.log[0])
cfg = snakemake.params.data
dataset = data.prepare(cfg["name"], cfg["n_train"], cfg["targets"], snakemake.params.seed, cfg["n_test"])
data.save(dataset, snakemake.output.data, snakemake.output.info, {"name": cfg["name"], "targets": cfg["targets"]})
log.info("%s: %d training examples, %d targets", cfg["name"], dataset.n_train, dataset.n_targets)
