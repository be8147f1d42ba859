"""Datamodels pipeline: train many models on random subsets, fit a sparse linear
datamodel per target example, evaluate and apply it.

Each module does one job and is importable without Snakemake; the workflow's
scripts under ``workflow/scripts`` are thin wrappers around these functions.
"""

import importlib

__version__ = "0.1.0"

__all__ = ["open_run"]


def __getattr__(name: str):
    """``open_run`` is imported on first use, so ``import datamodels_pipeline`` stays cheap."""
    if name == "open_run":  # by name, so no rule's code fingerprint (codegraph) takes in the API's modules
        return importlib.import_module(f"{__name__}.api").open_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
