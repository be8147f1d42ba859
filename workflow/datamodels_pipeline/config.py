"""Configuration validation: one clear message naming the offending key.

The JSON schema in ``workflow/schemas/config.schema.yaml`` checks types, ranges
and unknown keys; :func:`validate` adds the checks a schema cannot express
(relations between keys) and fills in defaults.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
DATASET_SPLITS: dict[str, tuple[int, int | None]] = {
    # data.name: (examples of the pool S is drawn from, test examples; None: the rest of the pool, a random split)
    "digits": (1797, None),
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "cifar2": (10000, 2000),
}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def _key(path: Any) -> str:
    parts = []
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".") or "<top level>"


def _fill_defaults(config: dict, schema: dict, learner: str | None = None) -> None:
    """Fill missing keys from ``default``s: first those of the ``allOf`` branches whose ``if`` holds
    (learner-specific defaults), then the general ones; keys whose ``x-learners`` leave out
    ``learner`` are not filled."""
    for branch in schema.get("allOf", []):
        if "if" in branch and jsonschema.Draft202012Validator(branch["if"]).is_valid(config):
            _fill_defaults(config, branch.get("then", {}), learner)
    for name, sub in schema.get("properties", {}).items():
        if learner not in sub.get("x-learners", [learner]):
            continue
        if name not in config and "default" in sub:
            config[name] = copy.deepcopy(sub["default"])
        if isinstance(config.get(name), dict):
            _fill_defaults(config[name], sub, learner)


def _check_learner_keys(config: dict, schema: dict) -> None:
    """Keys of ``model`` and ``train`` that the chosen learner does not use (``x-learners``) are errors."""
    learner = config["model"]["name"]
    for section in ("model", "train"):
        properties = schema["properties"][section]["properties"]
        for key in config.get(section) or {}:
            learners = properties[key].get("x-learners")
            if learners is not None and learner not in learners:
                hint = "; put its settings in model.options" if learner == "custom" and section == "train" else ""
                raise ConfigError(f"invalid config key '{section}.{key}': not used by model.name '{learner}' "
                                  f"(only by {', '.join(learners)}){hint}")


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    """The configuration schema as a dict."""
    return yaml.safe_load(Path(path).read_text())


def validate(config: dict, schema: dict | None = None) -> dict:
    """Return a validated copy of ``config`` with defaults filled in.

    Raises ConfigError naming the first offending key (the most specific
    error when several schema branches fail).
    """
    schema = load_schema() if schema is None else schema
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(f"invalid config key '{_key(error.absolute_path)}': {error.message}")
    _check_learner_keys(config, schema)
    config = copy.deepcopy(config)
    _fill_defaults(config, schema, config["model"]["name"])
    subsets, data = config["subsets"], config["data"]
    if subsets["models_per_chunk"] > subsets["n_models"]:
        raise ConfigError(
            f"invalid config key 'subsets.models_per_chunk': {subsets['models_per_chunk']} is larger than "
            f"the budget subsets.n_models = {subsets['n_models']}"
        )
    _check_data(data)
    for i, alpha in enumerate(subsets["alphas"]):
        if not 0 < round(alpha * data["n_train"]) < data["n_train"]:
            raise ConfigError(f"invalid config key 'subsets.alphas[{i}]': {alpha} gives empty or full subsets of {data['n_train']} examples")
    train = config["train"]
    if train.get("schedule") == "one_cycle" and not train["peak_epoch"] < train["epochs"]:
        raise ConfigError(f"invalid config key 'train.peak_epoch': the one-cycle schedule must peak before the last "
                          f"epoch, but {train['peak_epoch']} is not below train.epochs = {train['epochs']}")
    n_val = round(config["fit"]["val_fraction"] * subsets["n_models"])
    if not 2 <= n_val <= subsets["n_models"] - 2:
        raise ConfigError(f"invalid config key 'fit.val_fraction': leaves {n_val} of {subsets['n_models']} models for validation")
    largest_k = max(config["applications"]["counterfactuals"]["k"])
    if largest_k >= data["n_train"]:
        raise ConfigError(f"invalid config key 'applications.counterfactuals.k': removing {largest_k} examples leaves "
                          f"no training set of data.n_train = {data['n_train']}")
    _check_embeddings(config["applications"]["embeddings"], data)
    return config


def dataset_splits(data: dict) -> tuple[int, int | None]:
    """(pool size, test examples or None for a random split of the pool) of the ``data`` section's data set."""
    if data["name"] != "file":
        return DATASET_SPLITS[data["name"]]
    from .data import file_split_sizes

    path = Path(data["path"])
    if not path.is_file():
        raise ConfigError(f"invalid config key 'data.path': '{path}' is not a file (relative paths start in the "
                          f"working directory, {Path.cwd()})")
    try:
        return file_split_sizes(path)
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(f"invalid config key 'data.path': cannot read '{path}' ({error})") from None


DATA_KEYS = {name: ("root", "download") for name in ("mnist", "fashion_mnist", "cifar10", "cifar2")} | {
    "file": ("path", "image_shape"),
}
"""The data-set-specific keys of the data section, by data.name."""


def _check_data(data: dict) -> None:
    """data.n_train must leave test examples (random split) or fit in the training split (official split)."""
    pool, n_test = dataset_splits(data)
    if n_test is None and data["n_train"] >= pool:
        raise ConfigError(f"invalid config key 'data.n_train': {data['n_train']} leaves no test examples in "
                          f"{data['name']} ({pool} examples)")
    if n_test is not None and data["n_train"] > pool:
        raise ConfigError(f"invalid config key 'data.n_train': {data['n_train']} is more than the {pool} examples of "
                          f"the training split of {data['name']}")
    for key in ("root", "download", "path", "image_shape"):
        if key in data and key not in DATA_KEYS.get(data["name"], ()):
            raise ConfigError(f"invalid config key 'data.{key}': not used by data.name '{data['name']}'")


def n_targets(data: dict) -> int:
    """Number of target examples the ``data`` section gives (test targets first, then training examples)."""
    pool, n_test = dataset_splits(data)
    n_test = pool - data["n_train"] if n_test is None else n_test
    if data.get("n_test") is not None:
        n_test = min(n_test, data["n_test"])
    return {"test": n_test, "train": data["n_train"], "both": n_test + data["n_train"]}[data["targets"]]


def _check_embeddings(settings: dict, data: dict) -> None:
    """Removal and group sizes of the embeddings application must fit the training set and the targets."""
    key, intervention, targets = "applications.embeddings", settings["intervention"], n_targets(data)
    if intervention["n_remove"] >= data["n_train"]:
        raise ConfigError(f"invalid config key '{key}.intervention.n_remove': removing {intervention['n_remove']} "
                          f"examples leaves no training set of data.n_train = {data['n_train']}")
    if settings["n_components"] > min(targets, data["n_train"]):
        raise ConfigError(f"invalid config key '{key}.n_components': {settings['n_components']} principal components "
                          f"of {targets} targets and {data['n_train']} training examples")
    if settings["n_clusters"] > targets:
        raise ConfigError(f"invalid config key '{key}.n_clusters': {settings['n_clusters']} clusters of {targets} targets")
    if intervention["n_components"] > settings["n_components"]:
        raise ConfigError(f"invalid config key '{key}.intervention.n_components': {intervention['n_components']} is "
                          f"more than the {settings['n_components']} components of {key}.n_components")
    if 2 * intervention["n_group"] > targets:
        raise ConfigError(f"invalid config key '{key}.intervention.n_group': two groups of {intervention['n_group']} "
                          f"targets (aligned and opposite) need {2 * intervention['n_group']} of the {targets} targets")
