"""Send a job's logging and warnings to its Snakemake log file."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path


def setup(path: str | Path) -> logging.Logger:
    """Log INFO and above (and Python warnings) to ``path`` and to stderr."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handlers = [logging.FileHandler(path, mode="w"), logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    logger = logging.getLogger("datamodels_pipeline")

    def log_uncaught(kind, error, trace) -> None:
        """Put a crash's traceback in the job log, where Snakemake points the user."""
        logger.critical("job failed", exc_info=(kind, error, trace))

    sys.excepthook = log_uncaught
    return logger
