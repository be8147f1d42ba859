"""Snakemake script: load and split the data set (and plant near-duplicates if configured)."""

from datamodels_pipeline import data, runlog

log = runlog.setup(snakemake.log[0])
cfg = snakemake.params.data
location = snakemake.config["data"]  # data.root and data.download (not params: moving the files reruns nothing)
plant = cfg["plant_duplicates"]
dataset = data.prepare(cfg["name"], cfg["n_train"], cfg["targets"], snakemake.params.seed, cfg["n_test"],
                       n_planted=plant["n"], plant_noise=plant["noise"], root=location.get("root", "resources"),
                       download=location.get("download", True), path=cfg.get("path"),
                       image_shape=cfg.get("image_shape"))
data.save(dataset, snakemake.output.data, snakemake.output.info, {"name": cfg["name"], "targets": cfg["targets"]})
log.info("%s: %d training examples, %d targets, %d planted near-duplicates", cfg["name"], dataset.n_train,
         dataset.n_targets, dataset.n_planted)
