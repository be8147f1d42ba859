import copy
import re

import numpy as np
import pytest
import yaml

from datamodels_pipeline.config import ConfigError, is_own_recipe, other_recipe, validate
from datamodels_pipeline.data import load_digits_arrays, load_file

from conftest import REPO
from workflow_helpers import copy_workflow, planned_jobs, snakemake, write_config


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


def _expect(config: dict, key: str, *words: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid config key '{re.escape(key)}'") as error:
        validate(config)
    for word in words:
        assert word in str(error.value)


def _two_class_file(tmp_path, split: bool = False) -> str:
    """A two-class data set of the user's: digits below 5 against the others, as an .npz file."""
    x, y, _ = load_digits_arrays()
    arrays = {"x": x.reshape(-1, 8, 8)[:500], "y": (y[:500] >= 5).astype(np.int64)}
    if split:
        arrays["split"] = (np.arange(500) >= 400).astype(np.int64)
    path = tmp_path / "two_classes.npz"
    np.savez(path, **arrays)
    return str(path)


# One test per cross-key check of config.py, each naming the key (the application sections are checked at parse time;
# the stages do not check their settings again).
@pytest.mark.parametrize(
    "edit, key, words",
    [
        (lambda c: c["applications"]["unlearning"].update(forget_class=42), "applications.unlearning.forget_class",
         ("42", "classes 0 to 9")),
        (lambda c: c["applications"]["unlearning"].update(forget_size=1200), "applications.unlearning.forget_size", ()),
        (lambda c: c["applications"]["unlearning"].update(n_retain=1141), "applications.unlearning.n_retain", ("1140",)),
        (lambda c: c["applications"]["backdoor"].update(target_class=10), "applications.backdoor.target_class", ()),
        (lambda c: c["applications"]["backdoor"].update(n_poison=1200), "applications.backdoor.n_poison", ()),
        (lambda c: c["applications"]["backdoor"].update(trigger_size=9), "applications.backdoor.trigger_size", ("8",)),
        (lambda c: c["applications"]["backdoor"].update(sizes=[20, 1200]), "applications.backdoor.sizes", ()),
        (lambda c: c["applications"]["backdoor"].update(flag_fraction=0.0001), "applications.backdoor.flag_fraction",
         ()),
        (lambda c: c["applications"]["data_selection"].update(fractions=[0.5, 0.5004]),
         "applications.data_selection.fractions", ()),
        (lambda c: c["applications"]["data_selection"].update(fractions=[0.0001]),
         "applications.data_selection.fractions", ()),
        (lambda c: c["applications"]["data_selection"].update(target_class=11),
         "applications.data_selection.target_class", ()),
        (lambda c: c["applications"]["data_selection"].update(holdout_fraction=0.0001),
         "applications.data_selection.holdout_fraction", ()),
        (lambda c: c["applications"]["attribution"].update(tracin={"checkpoints": [5, 21]}),
         "applications.attribution.tracin.checkpoints", ("train.epochs = 20",)),
        (lambda c: c["applications"]["modeldiff"].update(n_remove=1200), "applications.modeldiff.n_remove", ()),
        (lambda c: c["applications"]["modeldiff"].update(other={"model": {"name": "logistic", "hidden": [8]}}),
         "applications.modeldiff.other", ("model.hidden",)),
    ],
)
def test_cross_key_checks_name_the_key(config, edit, key, words):
    bad = copy.deepcopy(config)
    edit(bad)
    _expect(bad, key, *words)


def test_forget_class_auto_adapts_to_the_data_set(config, tmp_path):
    assert config["applications"]["unlearning"]["forget_class"] == "auto"
    assert validate(config)["applications"]["unlearning"]["forget_class"] == 8  # the default run's class
    two = copy.deepcopy(config)
    two["data"] = {"name": "file", "path": _two_class_file(tmp_path), "n_train": 400}
    assert validate(two)["applications"]["unlearning"]["forget_class"] == 1  # the last class
    two["data"] = {"name": "cifar2", "n_train": 1200}
    assert validate(two)["applications"]["unlearning"]["forget_class"] == 1
    two["applications"]["unlearning"]["forget_class"] = 8
    _expect(two, "applications.unlearning.forget_class", "cifar2", "classes 0 to 1")
    two["applications"]["unlearning"]["forget_class"] = None  # the whole training set
    assert validate(two)["applications"]["unlearning"]["forget_class"] is None


def test_a_file_data_sets_classes_are_read_at_parse_time(config, tmp_path):
    bad = copy.deepcopy(config)
    bad["data"] = {"name": "file", "path": _two_class_file(tmp_path, split=True), "n_train": 300}
    bad["applications"]["backdoor"]["target_class"] = 2
    _expect(bad, "applications.backdoor.target_class", "classes 0 to 1")


def test_modeldiff_other_recipe_is_merged_here(config):
    checked = validate(config)
    assert other_recipe(checked) == {"model": {"name": "logistic"}, "train": checked["train"]}
    assert not is_own_recipe(other_recipe(checked), checked)


def test_prepare_data_refuses_non_finite_features(tmp_path):
    x = np.ones((20, 3), np.float32)
    x[7, 1], x[12, 0] = np.nan, np.inf
    np.savez(tmp_path / "bad.npz", x=x, y=np.arange(20) % 2)
    with pytest.raises(ValueError, match=r"bad\.npz'.*row 7 .*non-finite.*2 of 20 rows"):
        load_file(tmp_path / "bad.npz")
    big = np.ones((20, 3), np.float64)
    big[3, 2] = 1e39  # finite in float64, infinite in float32
    np.savez(tmp_path / "big.npz", x=big, y=np.arange(20) % 2)
    with pytest.raises(ValueError, match=r"big\.npz'.*row 3 "):
        load_file(tmp_path / "big.npz")


@pytest.mark.workflow
def test_a_bad_cross_key_value_fails_the_dry_run_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path)
    bad = write_config(workdir, "bad", lambda c: c["applications"]["unlearning"].update(forget_class=42))
    result = snakemake(workdir, "-n", configfile=bad, check=False)
    assert result.returncode != 0
    assert "invalid config key 'applications.unlearning.forget_class'" in result.stdout + result.stderr
    assert "Job stats" not in result.stdout + result.stderr and not (workdir / "results").exists()


@pytest.mark.workflow
def test_a_two_class_data_set_plans_every_job_without_importing_an_application(tmp_path, monkeypatch):
    """The smoke config with its data section switched to a two-class file (forget_class left at its default)."""
    workdir = copy_workflow(tmp_path)
    path = _two_class_file(tmp_path)

    def two_classes(c):
        c["data"] = {**c["data"], "name": "file", "path": path}
        del c["applications"]["unlearning"]["forget_class"]

    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # -X importtime: every module the parse imports
    result = snakemake(workdir, "-n", configfile=write_config(workdir, "two", two_classes))
    jobs, n_alphas = planned_jobs(result), len(yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())["subsets"]["alphas"])
    assert jobs["unlearning"] == jobs["modeldiff"] == jobs["backdoor"] == n_alphas
    imported = [line for line in result.stderr.splitlines() if "import time:" in line]
    assert any("datamodels_pipeline.config" in line for line in imported)
    assert not [line for line in imported if "datamodels_pipeline.applications" in line or " torch" in line]
