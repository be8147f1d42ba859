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
DATASET_SIZES = {"digits": 1797}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def _key(path: Any) -> str:
    parts = []
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".") or "<top level>"


def _fill_defaults(config: dict, schema: dict) -> None:
    for name, sub in schema.get("properties", {}).items():
        if name not in config and "default" in sub:
            config[name] = copy.deepcopy(sub["default"])
        if isinstance(config.get(name), dict):
            _fill_defaults(config[name], sub)


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
    config = copy.deepcopy(config)
    _fill_defaults(config, schema)
    subsets, data = config["subsets"], config["data"]
    if subsets["models_per_chunk"] > subsets["n_models"]:
        raise ConfigError(
            f"invalid config key 'subsets.models_per_chunk': {subsets['models_per_chunk']} is larger than "
            f"the budget subsets.n_models = {subsets['n_models']}"
        )
    size = DATASET_SIZES[data["name"]]
    if data["n_train"] >= size:
        raise ConfigError(f"invalid config key 'data.n_train': {data['n_train']} leaves no test examples in {data['name']} ({size} examples)")
    for i, alpha in enumerate(subsets["alphas"]):
        if not 0 < round(alpha * data["n_train"]) < data["n_train"]:
            raise ConfigError(f"invalid config key 'subsets.alphas[{i}]': {alpha} gives empty or full subsets of {data['n_train']} examples")
    n_val = round(config["fit"]["val_fraction"] * subsets["n_models"])
    if not 2 <= n_val <= subsets["n_models"] - 2:
        raise ConfigError(f"invalid config key 'fit.val_fraction': leaves {n_val} of {subsets['n_models']} models for validation")
    return config
