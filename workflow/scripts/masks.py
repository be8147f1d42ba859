"""Snakemake script: draw the subsets of one chunk of models."""

import json
from pathlib import Path

import numpy as np

from datamodels_pipeline import masks, runlog, store

log = runlog.setup(snakemake.log[0])
info = json.loads(Path(snakemake.input.info).read_text())
alpha, split = float(snakemake.wildcards.alpha), snakemake.wildcards.split
first, stop = snakemake.params.models
ids = np.arange(first, stop)
subsets = masks.draw_subsets(snakemake.params.seed, split, alpha, ids, info["n_train"], snakemake.params.repeated_masks)
store.write_masks(snakemake.output[0], ids, masks.to_mask(subsets, info["n_train"]), {"alpha": alpha, "split": split})
log.info("alpha=%s %s models %d..%d: subsets of %d of %d", alpha, split, first, stop - 1, subsets.shape[1], info["n_train"])
