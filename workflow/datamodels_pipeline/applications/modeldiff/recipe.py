"""ModelDiff's algorithm B and settings, at parse time without torch.

Algorithm B's recipe is ``applications.modeldiff.other`` merged key by key onto
the run's ``model`` and ``train`` sections and validated like the run's own
(:func:`other_recipe`); :func:`check_settings` checks the sizes a schema cannot
(they must fit the training set, the targets and the models); :func:`describe`
names a recipe in the summary and the figures.
"""

from __future__ import annotations

import copy

from ...config import ConfigError, load_schema, validate

KEY = "applications.modeldiff"
DEFAULT_OTHER = {"model": {"name": "logistic"}}


def _merge(base: dict, override: dict) -> dict:
    """``override`` merged onto ``base`` key by key (nested dictionaries too); neither is modified."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def other_recipe(config: dict, schema: dict | None = None, allow_same: bool = False) -> dict:
    """Algorithm B: ``applications.modeldiff.other``'s ``model`` and ``train`` merged key by key onto the run's.

    The run's keys that B's learner does not use (``x-learners`` in the schema,
    e.g. ``model.hidden`` when B is ``logistic``) are dropped unless ``other``
    gives them; the merged recipe is then validated like the run's own (defaults
    of B's learner filled in). Raises ConfigError naming ``applications.modeldiff.other``,
    also when B is the run's own recipe unless ``allow_same`` (the workflow then leaves
    ModelDiff out of ``rule all`` instead of failing the whole run).
    """
    schema = load_schema() if schema is None else schema
    other = config.get("applications", {}).get("modeldiff", {}).get("other", DEFAULT_OTHER)
    unknown = sorted(set(other) - {"model", "train"})
    if unknown:
        raise ConfigError(f"invalid config key '{KEY}.other.{unknown[0]}': only model and train can be overridden")
    learner = (other.get("model") or {}).get("name", config["model"]["name"])
    merged = {}
    for section in ("model", "train"):
        properties = schema["properties"][section]["properties"]
        kept = {key: value for key, value in (config.get(section) or {}).items()
                if learner in properties.get(key, {}).get("x-learners", [learner])}
        merged[section] = _merge(kept, other.get(section) or {})
    candidate = {**copy.deepcopy(config), **merged}
    try:
        validated = validate(candidate, schema)
    except ConfigError as error:
        raise ConfigError(f"invalid config key '{KEY}.other': algorithm B's recipe (the run's model and train with "
                          f"{KEY}.other merged onto them) is not valid: {error}") from None
    recipe = {"model": validated["model"], "train": validated["train"]}
    if not allow_same and is_own_recipe(recipe, config, schema):
        raise ConfigError(f"invalid config key '{KEY}.other': {other!r} gives the run's own recipe, so there is "
                          "nothing to compare; change model.name or a model/train key")
    return recipe


def is_own_recipe(recipe: dict, config: dict, schema: dict | None = None) -> bool:
    """Whether ``recipe`` (algorithm B) is the run's own validated model and train sections."""
    own = validate(copy.deepcopy(config), load_schema() if schema is None else schema)
    return recipe == {"model": own["model"], "train": own["train"]}


def check_settings(config: dict) -> None:
    """Relations a schema cannot express: sizes must fit the training set, targets and models (ConfigError)."""
    from ...config import n_targets

    settings, data, subsets = config["applications"]["modeldiff"], config["data"], config["subsets"]
    if settings["n_remove"] >= data["n_train"]:
        raise ConfigError(f"invalid config key '{KEY}.n_remove': removing {settings['n_remove']} examples leaves no "
                          f"training set of data.n_train = {data['n_train']}")
    targets = n_targets(data)
    if settings["n_components"] > min(targets, data["n_train"]):
        raise ConfigError(f"invalid config key '{KEY}.n_components': {settings['n_components']} directions of "
                          f"{targets} targets and {data['n_train']} training examples")
    if settings["n_group"] > targets:
        raise ConfigError(f"invalid config key '{KEY}.n_group': {settings['n_group']} of {targets} targets")
    n_models = settings["n_models"]
    if n_models is not None:
        if n_models > subsets["n_models"]:
            raise ConfigError(f"invalid config key '{KEY}.n_models': {n_models} is more than the run's "
                              f"subsets.n_models = {subsets['n_models']}")
        n_val = round(config["fit"]["val_fraction"] * n_models)
        if not 2 <= n_val <= n_models - 2:
            raise ConfigError(f"invalid config key '{KEY}.n_models': {n_models} models leave {n_val} for "
                              f"fit.val_fraction's validation split")


def describe(recipe: dict, reference: dict) -> str:
    """Short name of a recipe: the learner, and the keys where it differs from ``reference``."""
    parts = []
    for section in ("model", "train"):
        for key, value in sorted(recipe[section].items()):
            if key != "name" and key != "device" and reference[section].get(key) != value:
                parts.append(f"{key}={value}")
    name = recipe["model"]["name"]
    return f"{name} ({', '.join(parts)})" if parts else name
