"""Configuration validation: one clear message naming the offending key.

The JSON schema in ``workflow/schemas/config.schema.yaml`` checks types, ranges
and unknown keys; :func:`validate` fills in defaults and adds the checks a schema
cannot express (relations between keys, and between keys and the data set), one
function per section. The workflow calls it once, when Snakemake parses it
(``workflow/rules/common.smk``), so a bad value fails before any job runs; the
stages do not check their settings again. It also resolves the defaults that
depend on the data set (``applications.unlearning.forget_class: auto``) and
merges ModelDiff's algorithm B (:func:`other_recipe`).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .reference_libraries import peer_version

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
DATASET_SPLITS: dict[str, tuple[int, int | None]] = {
    # data.name: (examples of the pool S is drawn from, test examples; None: the rest of the pool, a random split)
    "digits": (1797, None),
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "cifar2": (10000, 2000),
}
DATASET_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar2": 2}
"""Classes (labels 0 .. n - 1) of the named data sets; a file's are read from its labels."""
IMAGE_SIDE = {"digits": 8, "mnist": 28, "fashion_mnist": 28, "cifar10": 32, "cifar2": 32}
"""Smallest image side (height or width) of the named data sets."""
FORGET_CLASS = 8
"""``applications.unlearning.forget_class: auto``: this class when the data set has it, else its last class."""


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
    """The configuration schema as a dict (a fresh copy; the file is parsed once per version of it)."""
    path = Path(path).resolve()
    stat = path.stat()
    return copy.deepcopy(_parsed_schema(path, stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=4)
def _parsed_schema(path: Path, mtime_ns: int, size: int) -> dict:
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def validate(config: dict, schema: dict | None = None) -> dict:
    """Return a validated copy of ``config`` with defaults filled in (and data-dependent defaults resolved).

    Raises ConfigError naming the first offending key (the most specific
    error when several schema branches fail).
    """
    schema = load_schema() if schema is None else schema
    config = _validated_recipe(config, schema)
    _check_applications(config, schema)
    return config


def _validated_recipe(config: dict, schema: dict) -> dict:
    """The schema, the learner's keys, the defaults and the checks of every section but ``applications``."""
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(f"invalid config key '{_key(error.absolute_path)}': {error.message}")
    _check_learner_keys(config, schema)
    config = copy.deepcopy(config)
    _fill_defaults(config, schema, config["model"]["name"])
    _check_data(config["data"])
    _check_subsets(config)
    _check_train(config["train"])
    _check_fit(config)
    return config


def _check_subsets(config: dict) -> None:
    """Chunks within the budget; every alpha gives subsets that are neither empty nor the whole training set."""
    subsets, data = config["subsets"], config["data"]
    if subsets["models_per_chunk"] > subsets["n_models"]:
        raise ConfigError(
            f"invalid config key 'subsets.models_per_chunk': {subsets['models_per_chunk']} is larger than "
            f"the budget subsets.n_models = {subsets['n_models']}"
        )
    for i, alpha in enumerate(subsets["alphas"]):
        if not 0 < round(alpha * data["n_train"]) < data["n_train"]:
            raise ConfigError(f"invalid config key 'subsets.alphas[{i}]': {alpha} gives empty or full subsets of {data['n_train']} examples")


def _check_train(train: dict) -> None:
    """The one-cycle schedule peaks before the last epoch."""
    if train.get("schedule") == "one_cycle" and not train["peak_epoch"] < train["epochs"]:
        raise ConfigError(f"invalid config key 'train.peak_epoch': the one-cycle schedule must peak before the last "
                          f"epoch, but {train['peak_epoch']} is not below train.epochs = {train['epochs']}")


def _check_fit(config: dict) -> None:
    """The validation split leaves at least two models on each side."""
    subsets = config["subsets"]
    n_val = round(config["fit"]["val_fraction"] * subsets["n_models"])
    if not 2 <= n_val <= subsets["n_models"] - 2:
        raise ConfigError(f"invalid config key 'fit.val_fraction': leaves {n_val} of {subsets['n_models']} models for validation")
    _check_learning_curve(config)


def _check_learning_curve(config: dict) -> None:
    """Every learning-curve point fits on enough models to keep about two for its lambda's validation."""
    n_models, val_fraction = config["subsets"]["n_models"], config["fit"]["val_fraction"]
    for i, fraction in enumerate(config["evaluate"]["learning_curve"]):
        rows = max(2, int(round(fraction * n_models)))
        n_val = round(val_fraction * rows)
        if rows < n_models and not 2 <= n_val <= rows - 2:
            raise ConfigError(f"invalid config key 'evaluate.learning_curve[{i}]': {fraction} of subsets.n_models = "
                              f"{n_models} is {rows} models, which leaves about {n_val} for fit.val_fraction's "
                              f"validation split (at least 2 on each side)")


def _check_applications(config: dict, schema: dict) -> None:
    """Each application's section against the run's data, recipe and budget (one function per application)."""
    _check_counterfactuals(config)
    _check_embeddings(config["applications"]["embeddings"], config["data"])
    _check_data_selection(config)
    _check_backdoor(config)
    _check_modeldiff(config, schema)
    _check_unlearning(config)
    _check_attribution(config)


def _check_counterfactuals(config: dict) -> None:
    """Every removal size leaves training examples."""
    data = config["data"]
    largest_k = max(config["applications"]["counterfactuals"]["k"])
    if largest_k >= data["n_train"]:
        raise ConfigError(f"invalid config key 'applications.counterfactuals.k': removing {largest_k} examples leaves "
                          f"no training set of data.n_train = {data['n_train']}")


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


def dataset_classes(data: dict) -> list[int]:
    """The class labels of the ``data`` section's data set (a file's: those of the pool S is drawn from)."""
    if data["name"] != "file":
        return list(range(DATASET_CLASSES[data["name"]]))
    return list(_file_classes(str(data["path"]), Path(data["path"]).stat().st_mtime_ns))


@lru_cache(maxsize=8)
def _file_classes(path: str, mtime_ns: int) -> tuple[int, ...]:
    from .data import file_pool_labels

    try:
        return tuple(sorted(int(c) for c in set(file_pool_labels(path).tolist())))
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(f"invalid config key 'data.path': cannot read the labels of '{path}' ({error})") from None


def _class_of_the_data(key: str, value: int, data: dict) -> None:
    classes = dataset_classes(data)
    if value not in classes:
        shown = f"{classes[0]} to {classes[-1]}" if classes == list(range(classes[0], classes[-1] + 1)) else classes
        raise ConfigError(f"invalid config key '{key}': {value} is not a class of data set {data['name']} "
                          f"(classes {shown})")


def n_test_targets(data: dict) -> int:
    """Number of test targets (not training examples) the ``data`` section gives."""
    return 0 if data["targets"] == "train" else n_targets({**data, "targets": "test"})


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


def _check_data_selection(config: dict) -> None:
    """Distinct selection sizes inside the training set; a target class of the data; both target halves non-empty."""
    key, settings, data = "applications.data_selection", config["applications"]["data_selection"], config["data"]
    n_train = data["n_train"]
    sizes = [int(round(f * n_train)) for f in settings["fractions"]]
    if any(not 1 <= k <= n_train - 1 for k in sizes) or len(set(sizes)) != len(sizes):
        raise ConfigError(f"invalid config key '{key}.fractions': {settings['fractions']} give sizes {sizes} of "
                          f"data.n_train = {n_train}; each must be a distinct size in [1, {n_train - 1}]")
    if settings["target_class"] is not None:
        _class_of_the_data(f"{key}.target_class", settings["target_class"], data)
    elif data["targets"] != "train":
        n_test = n_test_targets(data)
        n_holdout = int(round(settings["holdout_fraction"] * n_test))
        if not 1 <= n_holdout <= n_test - 1:
            raise ConfigError(f"invalid config key '{key}.holdout_fraction': {settings['holdout_fraction']} holds out "
                              f"{n_holdout} of the {n_test} test targets; both halves need at least one")


def _check_backdoor(config: dict) -> None:
    """The target class is a class of the data; the trigger fits the images; search sizes and the flagged share fit
    the training set."""
    key, settings, data = "applications.backdoor", config["applications"]["backdoor"], config["data"]
    n_train = data["n_train"]
    _class_of_the_data(f"{key}.target_class", settings["target_class"], data)
    if settings["n_poison"] >= n_train:
        raise ConfigError(f"invalid config key '{key}.n_poison': {settings['n_poison']} poisoned examples of "
                          f"data.n_train = {n_train} (they are drawn among the examples not of target_class)")
    side = IMAGE_SIDE.get(data["name"])
    shape = data.get("image_shape")
    if side is None and shape:
        side = min(shape[-2:]) if len(shape) > 1 else None
        if len(shape) == 1 and settings["trigger_size"] ** 2 > shape[0]:
            raise ConfigError(f"invalid config key '{key}.trigger_size': {settings['trigger_size']}^2 features do not "
                              f"fit examples of {shape[0]} features (data.image_shape)")
    if side is not None and settings["trigger_size"] > side:
        raise ConfigError(f"invalid config key '{key}.trigger_size': {settings['trigger_size']} is larger than the "
                          f"images ({side} pixels on their shorter side)")
    sizes = settings["sizes"]
    if any(size >= n_train for size in sizes):
        raise ConfigError(f"invalid config key '{key}.sizes': {sizes} must be submatrix sizes below "
                          f"data.n_train = {n_train}")
    flagged = int(round(settings["flag_fraction"] * n_train))
    if not 1 <= flagged <= n_train - 1:
        raise ConfigError(f"invalid config key '{key}.flag_fraction': {settings['flag_fraction']} flags {flagged} of "
                          f"data.n_train = {n_train} examples")


def _check_unlearning(config: dict) -> None:
    """Resolves ``forget_class: auto``; the forget class is a class of the data; the forget set and the retained
    sample fit the training set; there are test targets to evaluate on."""
    key, settings, data = "applications.unlearning", config["applications"]["unlearning"], config["data"]
    n_train = data["n_train"]
    if settings["forget_class"] == "auto":
        classes = dataset_classes(data)
        settings["forget_class"] = FORGET_CLASS if FORGET_CLASS in classes else classes[-1]
    elif settings["forget_class"] is not None:
        _class_of_the_data(f"{key}.forget_class", settings["forget_class"], data)
    if settings["forget_size"] >= n_train:
        raise ConfigError(f"invalid config key '{key}.forget_size': {settings['forget_size']} leaves no retained "
                          f"training example of data.n_train = {n_train}")
    if settings["n_retain"] > n_train - settings["forget_size"]:
        raise ConfigError(f"invalid config key '{key}.n_retain': {settings['n_retain']} is more than the "
                          f"{n_train - settings['forget_size']} training examples outside the forget set")


def _check_attribution(config: dict) -> None:
    """TracIn's checkpoints are epochs of the run's training; reference libraries named explicitly are installed."""
    key, settings = "applications.attribution", config["applications"]["attribution"]
    libraries = settings["peers"]["libraries"]
    if libraries != "auto":
        missing = [library for library in libraries if peer_version(library) is None]
        if missing:
            raise ConfigError(f"invalid config key '{key}.peers.libraries': {missing} not installed (pip install -e "
                              ".[peers], or libraries: auto to skip what is not installed)")
    tracin, epochs = settings["tracin"], config["train"].get("epochs")
    if tracin["n_models"] and tracin["checkpoints"] is not None and epochs is not None:
        if any(not 1 <= int(e) <= epochs for e in tracin["checkpoints"]):
            raise ConfigError(f"invalid config key '{key}.tracin.checkpoints': {tracin['checkpoints']} must be epochs "
                              f"in [1, train.epochs = {epochs}]")


# ------------------------------------------------------------------------------------------------ ModelDiff
MODELDIFF = "applications.modeldiff"
DEFAULT_OTHER = {"model": {"name": "logistic"}}


def _merge(base: dict, override: dict) -> dict:
    """``override`` merged onto ``base`` key by key (nested dictionaries too); neither is modified."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def other_recipe(config: dict, schema: dict | None = None, allow_same: bool = False) -> dict:
    """ModelDiff's algorithm B: ``applications.modeldiff.other``'s ``model`` and ``train`` merged key by key onto
    the run's.

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
        raise ConfigError(f"invalid config key '{MODELDIFF}.other.{unknown[0]}': only model and train can be overridden")
    learner = (other.get("model") or {}).get("name", config["model"]["name"])
    merged = {}
    for section in ("model", "train"):
        properties = schema["properties"][section]["properties"]
        kept = {key: value for key, value in (config.get(section) or {}).items()
                if learner in properties.get(key, {}).get("x-learners", [learner])}
        merged[section] = _merge(kept, other.get(section) or {})
    candidate = {**copy.deepcopy(config), **merged}
    try:
        validated = _validated_recipe(candidate, schema)
    except ConfigError as error:
        raise ConfigError(f"invalid config key '{MODELDIFF}.other': algorithm B's recipe (the run's model and train "
                          f"with {MODELDIFF}.other merged onto them) is not valid: {error}") from None
    recipe = {"model": validated["model"], "train": validated["train"]}
    if not allow_same and is_own_recipe(recipe, config, schema):
        raise ConfigError(f"invalid config key '{MODELDIFF}.other': {other!r} gives the run's own recipe, so there is "
                          "nothing to compare; change model.name or a model/train key")
    return recipe


def is_own_recipe(recipe: dict, config: dict, schema: dict | None = None) -> bool:
    """Whether ``recipe`` (algorithm B) is the run's own validated model and train sections."""
    own = _validated_recipe(config, load_schema() if schema is None else schema)
    return recipe == {"model": own["model"], "train": own["train"]}


def _check_modeldiff(config: dict, schema: dict) -> None:
    """Algorithm B's recipe is valid; sizes fit the training set, the targets and the run's models."""
    key, settings, data, subsets = MODELDIFF, config["applications"]["modeldiff"], config["data"], config["subsets"]
    other_recipe(config, schema, allow_same=True)
    if settings["n_remove"] >= data["n_train"]:
        raise ConfigError(f"invalid config key '{key}.n_remove': removing {settings['n_remove']} examples leaves no "
                          f"training set of data.n_train = {data['n_train']}")
    targets = n_targets(data)
    if settings["n_components"] > min(targets, data["n_train"]):
        raise ConfigError(f"invalid config key '{key}.n_components': {settings['n_components']} directions of "
                          f"{targets} targets and {data['n_train']} training examples")
    if settings["n_group"] > targets:
        raise ConfigError(f"invalid config key '{key}.n_group': {settings['n_group']} of {targets} targets")
    n_models = settings["n_models"]
    if n_models is not None:
        if n_models > subsets["n_models"]:
            raise ConfigError(f"invalid config key '{key}.n_models': {n_models} is more than the run's "
                              f"subsets.n_models = {subsets['n_models']}")
        n_val = round(config["fit"]["val_fraction"] * n_models)
        if not 2 <= n_val <= n_models - 2:
            raise ConfigError(f"invalid config key '{key}.n_models': {n_models} models leave {n_val} for "
                              f"fit.val_fraction's validation split")
