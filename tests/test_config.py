import copy

import pytest
import yaml

from datamodels_pipeline.config import ConfigError, validate

from conftest import REPO


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_shipped_configs_validate(config):
    assert validate(config)["fit"]["n_lambdas"] == 30
    validate(yaml.safe_load((REPO / "config/smoke.yaml").read_text()))


def test_defaults_are_filled(config):
    del config["fit"]["tol"]
    del config["evaluate"]
    checked = validate(config)
    assert checked["fit"]["tol"] == 1e-4
    assert checked["evaluate"]["learning_curve"] == [0.125, 0.25, 0.5, 1.0]
    assert "tol" not in config["fit"]  # the input is not modified


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["subsets"].update(alphas=[1.5]), "subsets.alphas[0]"),
        (lambda c: c["subsets"].update(alphas=[0.0]), "subsets.alphas[0]"),
        (lambda c: c["subsets"].update(n_models=0), "subsets.n_models"),
        (lambda c: c["subsets"].update(models_per_chunk=10_000), "subsets.models_per_chunk"),
        (lambda c: c["train"].update(lr="fast"), "train.lr"),
        (lambda c: c["train"].update(learning_rate=0.1), "train"),
        (lambda c: c.update(sed=1), "<top level>"),
        (lambda c: c["data"].update(n_train=5000), "data.n_train"),
        (lambda c: c["data"].update(name="imagenet"), "data.name"),
        (lambda c: c["fit"].update(val_fraction=1.0), "fit.val_fraction"),
    ],
)
def test_bad_values_name_the_key(config, edit, key):
    bad = copy.deepcopy(config)
    edit(bad)
    with pytest.raises(ConfigError, match=f"invalid config key '{key}'" .replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        validate(bad)
