"""Datamodels pipeline: train many models on random subsets, fit a sparse linear
datamodel per target example, evaluate and apply it.

Each module does one job and is importable without Snakemake; the workflow's
scripts under ``workflow/scripts`` are thin wrappers around these functions.
"""

__version__ = "0.1.0"
