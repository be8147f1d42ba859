"""ModelDiff's settings key and the names of recipes.

Algorithm B's recipe (``applications.modeldiff.other`` merged key by key onto the run's ``model`` and ``train``)
is merged, and the settings checked, by ``config.validate`` when Snakemake parses the workflow
(``config.other_recipe``); :func:`describe` names a recipe in the summary and the figures.
"""

from __future__ import annotations

KEY = "applications.modeldiff"


def describe(recipe: dict, reference: dict) -> str:
    """Short name of a recipe: the learner, and the keys where it differs from ``reference``."""
    parts = []
    for section in ("model", "train"):
        for key, value in sorted(recipe[section].items()):
            if key != "name" and key != "device" and reference[section].get(key) != value:
                parts.append(f"{key}={value}")
    name = recipe["model"]["name"]
    return f"{name} ({', '.join(parts)})" if parts else name
