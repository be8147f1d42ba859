"""The learners behind ``model.name``: each learns, the CNN's batched trainer matches the plain loop,
ResNet-9 follows the paper's recipe, custom entry points load or fail clearly, and the config checks."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.datasets import load_digits

from datamodels_pipeline import augment, cnn, custom, data, devices, image_training, learners, masks, resnet9, store
from datamodels_pipeline import protocol, training
from datamodels_pipeline.outputs import correct_class_margin
from datamodels_pipeline.config import ConfigError, validate
from datamodels_pipeline.image_training import Augmentation, ImageData, ImageRecipe
from datamodels_pipeline.seeding import Stream, int_seed

from test_datasets import write_cifar
from conftest import run_once
from workflow_helpers import REPO, copy_workflow, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.usefixtures("one_thread")

N_TRAIN = 600
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
SKLEARN_ENTRY_POINT = "datamodels_pipeline.examples.sklearn_logistic:train"
OWN_TORCH_ENTRY_POINT = "datamodels_pipeline.examples.own_torch_model:TanhNet"


@pytest.fixture(scope="module")
def digits() -> Arrays:
    """Digits in [0, 1] as the prepared data set stores them: 600 training examples, 300 targets."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:N_TRAIN + 300], y[N_TRAIN:N_TRAIN + 300]


def subsets(n_models: int, size: int, n: int = N_TRAIN, seed: int = 0) -> np.ndarray:
    generator = np.random.default_rng(seed)
    return np.stack([generator.choice(n, size, replace=False) for _ in range(n_models)])


def filled(name: str, model: dict | None = None, train: dict | None = None) -> dict:
    """The validated ``{"model", "train"}`` recipe of the default config with another learner."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["model"] = {"name": name, **(model or {})}
    config["train"] = {"device": "cpu", **(train or {})}
    checked = validate(config)
    return {"model": checked["model"], "train": checked["train"]}


# --- mlp and logistic: the existing batched trainer, unchanged --------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "logistic"])
def test_mlp_and_logistic_are_the_batched_trainer(digits: Arrays, name: str) -> None:
    x_train, y_train, x_targets, y_targets = digits
    recipe = filled(name, train={"epochs": 2})
    chosen = subsets(3, 300)
    result = learners.train(recipe, x_train, y_train, chosen, [1, 2, 3], x_targets, y_targets, image_shape=(8, 8))
    expected = training.train_batched(torch.from_numpy(x_train), torch.from_numpy(y_train), chosen, [1, 2, 3],
                                      training.Recipe(hidden=(64,) if name == "mlp" else (), epochs=2),
                                      torch.from_numpy(x_targets), torch.from_numpy(y_targets))
    for field in ("margins", "train_accuracy", "target_accuracy"):
        np.testing.assert_array_equal(getattr(result, field), getattr(expected, field))


# --- the protocol: the torch network of the learners that provide it ------------------------------------------

def test_the_mlp_learners_networks_are_todays_trainers(digits: Arrays) -> None:
    """mlp's networks through the protocol are bit for bit those unlearning and attribution trained before it:
    ``training.train_module`` (one network) and ``training.train_with_checkpoints`` (many, with checkpoints)."""
    x_train, y_train, x_targets, y_targets = digits
    recipe = filled("mlp", {"hidden": [16]}, {"epochs": 3, "weight_decay": 1e-3})
    learner = protocol.learner(recipe)
    assert protocol.TORCH_MODULE in learner.capabilities and learner.epochs == 3 and learner.weight_decay == 1e-3
    data = protocol.TrainData(x_train, y_train, x_targets, y_targets, (8, 8))
    x, y, mlp = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.int64)), learners.mlp_recipe(recipe)
    chosen = subsets(2, 200)
    reference = training.train_module(x, y, chosen[0], 5, mlp, 10)
    for p, q in zip(learner.train_network(data, chosen[0], 5).parameters(), reference.parameters()):
        assert torch.equal(p, q)
    networks = learner.train_networks(data, chosen, [5, 6], epochs=[1, 3])
    expected = training.train_with_checkpoints(x, y, chosen, [5, 6], mlp, 10, [1, 3])
    for got, want in zip(networks, expected):
        assert [(c.epoch, c.lr) for c in got] == [(c.epoch, c.lr) for c in want]
        for c, d in zip(got, want):
            assert all(torch.equal(p, q) for p, q in zip(c.model.parameters(), d.model.parameters()))
    logits = torch.randn(5, 10)
    labels = torch.arange(5)
    assert torch.equal(learner.loss(logits, labels), torch.nn.functional.cross_entropy(logits, labels))


@pytest.mark.parametrize("tta_flip", [False, True])
def test_the_cnn_learners_networks_give_its_margins(digits: Arrays, tta_flip: bool) -> None:
    """cnn's networks (one at a time, on flattened rows) are its vmapped models: same margins up to rounding."""
    x_train, y_train, x_targets, y_targets = digits
    recipe = filled("cnn", {"channels": [4, 8]}, {"epochs": 3, "batch_size": 32, "lr": 0.1, "peak_epoch": 1,
                                                    "tta_flip": tta_flip, "parallel_models": 2})
    learner = protocol.learner(recipe)
    data = protocol.TrainData(x_train, y_train, x_targets, y_targets, (8, 8))
    chosen, seeds = subsets(2, 150), [3, 4]
    margins = learner.train_models(data, chosen, seeds).margins
    networks = learner.train_networks(data, chosen, seeds, epochs=[2, 3])
    x = torch.from_numpy(data.flat(x_targets))
    for k, checkpoints in enumerate(networks):
        assert [c.epoch for c in checkpoints] == [2, 3] and all(c.lr > 0 for c in checkpoints)
        with torch.no_grad():
            logits = checkpoints[-1].model(x)
            one = checkpoints[-1].model(x[0])
        own = correct_class_margin(logits, torch.from_numpy(y_targets)).numpy()
        np.testing.assert_allclose(own, margins[k], rtol=0, atol=1e-4)
        torch.testing.assert_close(one, logits[0])
    assert learner.features(networks[0][-1].model, x[:3]).shape == (3, 8 * 2 * 2)


def test_the_own_torch_model_example_config() -> None:
    """config/examples/own_torch_model.yaml: the default run with the package's own-nn.Module example."""
    config = validate(yaml.safe_load((REPO / "config/examples/own_torch_model.yaml").read_text()))
    default = validate(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    assert config["model"]["entry_point"] == OWN_TORCH_ENTRY_POINT
    assert protocol.capabilities(config["model"]) == {protocol.MARGINS, protocol.TORCH_MODULE}
    assert {k: v for k, v in config.items() if k not in ("run", "model", "train")} == \
        {k: v for k, v in default.items() if k not in ("run", "model", "train")}


def test_a_learner_without_the_network_says_so(digits: Arrays) -> None:
    learner = protocol.learner(filled("custom", {"entry_point": SKLEARN_ENTRY_POINT}))
    assert learner.capabilities == {protocol.MARGINS}
    with pytest.raises(NotImplementedError, match="does not provide its torch network"):
        learner.train_networks(protocol.TrainData(*digits), subsets(1, 10), [0])
    with pytest.raises(ValueError, match="model.name 'custom'.*unlearning.*torch_module"):
        protocol.require(learner, protocol.TORCH_MODULE, "unlearning")


# --- every learner learns digits -------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "model", "threshold"), [
    ("mlp", {}, 0.8),
    ("logistic", {}, 0.75),
    ("cnn", {}, 0.8),
    ("custom", {"entry_point": SKLEARN_ENTRY_POINT, "options": {"C": 1.0}}, 0.8),
])
def test_learners_beat_chance_on_digits(digits: Arrays, name: str, model: dict, threshold: float) -> None:
    x_train, y_train, x_targets, y_targets = digits
    result = learners.train(filled(name, model), x_train, y_train, subsets(3, 300), [7, 8, 9], x_targets, y_targets,
                            image_shape=(8, 8))
    assert result.margins.shape == (3, len(y_targets)) and result.margins.dtype == np.float32
    assert np.isfinite(result.margins).all()
    assert result.target_accuracy.shape == result.train_accuracy.shape == (3,)
    assert result.target_accuracy.min() > threshold  # chance is 0.1
    assert result.train_accuracy.mean() >= result.target_accuracy.mean()
    np.testing.assert_allclose(result.target_accuracy, (result.margins > 0).mean(axis=1), atol=1e-6)


def test_unknown_learner_is_an_error(digits: Arrays) -> None:
    with pytest.raises(ValueError, match="model.name 'svm'"):
        learners.train({"model": {"name": "svm"}, "train": {}}, *digits[:2], subsets(1, 10), [0], *digits[2:])


# --- cnn: batched (vmap) == one model alone --------------------------------------------------------------------

CNN_RECIPES = {
    # Every knob of the paper's recipe (digits are not mirror-symmetric, so it learns them poorly in 5 epochs).
    "paper_knobs": ImageRecipe(epochs=5, batch_size=32, lr=0.1, weight_decay=5e-4, schedule="one_cycle", peak_epoch=1,
                               label_smoothing=0.1, augment=Augmentation(flip=True, translate=1, cutout=2),
                               tta_flip=True, drop_last=False, parallel_models=4),
    # A recipe for digits: no mirroring.
    "digits": ImageRecipe(epochs=10, batch_size=32, lr=0.2, weight_decay=5e-4, schedule="one_cycle", peak_epoch=2,
                          label_smoothing=0.1, augment=Augmentation(translate=1, cutout=2), tta_flip=False,
                          drop_last=True, parallel_models=4),
}


def cnn_data(digits: Arrays) -> ImageData:
    return ImageData.from_arrays(*digits, (8, 8), torch.device("cpu"), normalize=True)


@pytest.mark.parametrize("recipe", CNN_RECIPES)
def test_cnn_batched_matches_each_model_alone(digits: Arrays, recipe: str) -> None:
    """Same seeds and subsets: the vmapped models equal the plain autograd loop, model by model."""
    images, factory = cnn_data(digits), cnn.factory({"channels": [8, 16]}, (8, 8), 10)
    chosen, seeds = subsets(3, 250), [11, 22, 33]                     # 250 = 7 full batches and a partial one
    batched = image_training.train_vmapped(factory, CNN_RECIPES[recipe], images, chosen, seeds)
    for k in range(3):
        alone = image_training.train_sequential(factory, CNN_RECIPES[recipe], images, chosen[k:k + 1],
                                                seeds[k:k + 1])
        np.testing.assert_allclose(batched.margins[k], alone.margins[0], rtol=0, atol=1e-4)
        np.testing.assert_allclose(batched.train_accuracy[k], alone.train_accuracy[0], atol=1 / 250)
        np.testing.assert_allclose(batched.target_accuracy[k], alone.target_accuracy[0], atol=1 / 300)
    assert batched.target_accuracy.min() > (0.7 if recipe == "digits" else 0.15)  # chance is 0.1


def test_cnn_model_ignores_its_neighbours(digits: Arrays) -> None:
    images, factory = cnn_data(digits), cnn.factory({}, (8, 8), 10)
    chosen, seeds = subsets(3, 100), [4, 5, 6]
    recipe = ImageRecipe(epochs=1, batch_size=32, schedule="constant", lr=0.05, parallel_models=2)  # groups of 2 and 1
    together = image_training.train_vmapped(factory, recipe, images, chosen, seeds)
    alone = image_training.train_vmapped(factory, recipe, images, chosen[2:], seeds[2:])
    np.testing.assert_allclose(together.margins[2], alone.margins[0], rtol=0, atol=1e-5)
    assert not np.allclose(together.margins[0], together.margins[1])


@pytest.mark.parametrize("image_shape", [(28, 28), (3, 32, 32), (1, 8, 8)])
def test_cnn_takes_grey_and_colour_images(image_shape: tuple[int, ...]) -> None:
    generator = np.random.default_rng(0)
    x = generator.random((20, int(np.prod(image_shape))), dtype=np.float32)
    y = np.arange(20) % 4
    recipe = filled("cnn", train={"epochs": 1, "batch_size": 8})
    result = learners.train(recipe, x, y, subsets(2, 10, n=20), [0, 1], x[:5], y[:5], image_shape=image_shape)
    assert result.margins.shape == (2, 5) and np.isfinite(result.margins).all()


def test_image_learners_need_image_shapes() -> None:
    with pytest.raises(ValueError, match="image_shape is \\(64,\\)"):
        image_training.channel_layout((64,))
    with pytest.raises(ValueError, match="at least 11"):
        resnet9.factory({}, (8, 8), 10)


# --- resnet9: the paper's network and recipe ------------------------------------------------------------------

def test_resnet9_is_the_papers_network() -> None:
    model = resnet9.resnet9(3, 10)
    assert sum(p.numel() for p in model.parameters()) == 2_274_880
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet9_defaults_are_the_papers_recipe() -> None:
    recipe = filled("resnet9")
    assert recipe["model"] == {"name": "resnet9", "width": 1.0}
    settings = ImageRecipe.from_config(recipe["train"])
    assert settings == ImageRecipe()  # the schema's resnet9 defaults and the dataclass agree
    assert (settings.epochs, settings.batch_size, settings.lr, settings.peak_epoch) == (24, 512, 0.5, 5)
    assert (settings.momentum, settings.weight_decay, settings.label_smoothing) == (0.9, 5e-4, 0.1)
    assert settings.augment == Augmentation(flip=True, translate=2, cutout=4)
    assert settings.schedule == "one_cycle" and settings.tta_flip and settings.drop_last
    assert settings.mixed_precision and settings.channels_last


def test_one_cycle_schedule_peaks_at_epoch_5_and_ends_at_0() -> None:
    """The scheduler the trainers use, stepped like them: 25,000 examples (alpha 0.5 of CIFAR-10), batch 512."""
    recipe = ImageRecipe()
    steps = image_training.steps_per_epoch(25_000, recipe)
    assert steps == 48  # 25,000 // 512 with drop_last
    optimizer, scheduler = image_training._optimizer([torch.zeros(1, requires_grad=True)], recipe, steps)
    lrs = []
    for _ in range(24 * steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    lrs = np.array(lrs)
    peak = 5 * steps
    assert lrs[0] == 0 and lrs[peak] == pytest.approx(0.5) and lrs.argmax() == peak
    np.testing.assert_allclose(lrs[:peak + 1], 0.5 * np.arange(peak + 1) / peak, atol=1e-12)        # linear up
    np.testing.assert_allclose(lrs[peak:], 0.5 * (24 * steps - np.arange(peak, 24 * steps)) / (19 * steps),
                               atol=1e-12)                                                          # linear down to 0
    assert image_training.lr_factor(ImageRecipe(schedule="constant"), steps)(100) == 1.0
    assert image_training.steps_per_epoch(100, recipe) == 1                # never drops the only batch
    assert image_training.steps_per_epoch(1030, ImageRecipe(drop_last=False)) == 3


def test_resnet9_trains_tiny_on_cpu() -> None:
    """Two models, one epoch, 16 images of 32×32 at 1/8 width: seconds on a CPU."""
    generator = np.random.default_rng(0)
    x = generator.random((16, 3, 32, 32), dtype=np.float32)
    y = np.arange(16) % 10
    recipe = filled("resnet9", {"width": 0.125}, {"epochs": 1, "schedule": "constant"})
    result = learners.train(recipe, x, y, subsets(2, 12, n=16), [1, 2], x[:6], y[:6])
    assert result.margins.shape == (2, 6) and np.isfinite(result.margins).all()
    assert not np.allclose(result.margins[0], result.margins[1])


def test_resnet9_learns_an_easy_task() -> None:
    """Two classes told apart by the red channel: the recipe (scaled down) learns it."""
    generator = np.random.default_rng(0)
    y = generator.integers(0, 2, 192)
    x = generator.normal(size=(192, 3, 16, 16)).astype(np.float32)
    x[y == 1, 0] += 1.0
    recipe = filled("resnet9", {"width": 0.125}, {"epochs": 4, "batch_size": 32, "peak_epoch": 1, "lr": 0.2})
    result = learners.train(recipe, x[:128], y[:128], subsets(2, 96, n=128), [1, 2], x[128:], y[128:])
    assert result.target_accuracy.min() > 0.8  # chance is 0.5


def test_resnet9_is_reproducible_from_its_seed() -> None:
    generator = np.random.default_rng(1)
    x = generator.random((16, 3, 16, 16), dtype=np.float32)
    y = np.arange(16) % 2
    recipe = filled("resnet9", {"width": 0.125}, {"epochs": 1, "batch_size": 8, "peak_epoch": 0.5})
    chosen = subsets(2, 12, n=16)
    first = learners.train(recipe, x, y, chosen, [3, 4], x, y)
    second = learners.train(recipe, x, y, chosen[1:], [4], x, y)
    np.testing.assert_allclose(first.margins[1], second.margins[0], rtol=0, atol=1e-6)


# --- augmentation and test-time flip ---------------------------------------------------------------------------

def test_augmentation_per_example() -> None:
    x = torch.arange(2 * 2 * 5 * 5, dtype=torch.float32).reshape(2, 2, 5, 5)
    fill = torch.tensor([-1.0, -2.0])
    flip = augment.Draws(torch.tensor([True, False]), None, None)
    out = augment.apply(x, flip, Augmentation(flip=True), fill)
    torch.testing.assert_close(out[0], x[0].flip(-1))
    torch.testing.assert_close(out[1], x[1])

    pad = 2  # shift (2, 2) is no move; (0, 4) moves the content down by 2 and left by 2
    shift = augment.Draws(None, torch.tensor([[2, 2], [0, 4]]), None)
    out = augment.apply(x, shift, Augmentation(translate=pad), fill)
    torch.testing.assert_close(out[0], x[0])
    expected = torch.zeros(2, 5, 5)
    expected[:, 2:, :3] = x[1, :, :3, 2:]
    torch.testing.assert_close(out[1], expected)

    cut = augment.Draws(None, None, torch.tensor([[0, 0], [3, 1]]))
    out = augment.apply(x, cut, Augmentation(cutout=2), fill)
    inside = torch.zeros(2, 5, 5, dtype=torch.bool)
    inside[0, :2, :2] = True
    inside[1, 3:5, 1:3] = True
    for n in range(2):
        for c in range(2):
            assert (out[n, c][inside[n]] == fill[c]).all()
            torch.testing.assert_close(out[n, c][~inside[n]], x[n, c][~inside[n]])


def test_augmentation_draws_come_from_the_generator() -> None:
    settings = Augmentation(flip=True, translate=3, cutout=4)
    first = augment.draw(settings, 4000, 32, 32, torch.Generator().manual_seed(5))
    again = augment.draw(settings, 4000, 32, 32, torch.Generator().manual_seed(5))
    for a, b in zip((first.flip, first.shift, first.corner), (again.flip, again.shift, again.corner)):
        torch.testing.assert_close(a, b)
    assert 0.45 < first.flip.float().mean() < 0.55
    assert first.shift.min() == 0 and first.shift.max() == 6           # offsets 0..2*padding
    assert first.corner.min() == 0 and first.corner.max() == 32 - 4    # the square lies inside the image


def test_test_time_flip_averages_the_image_and_its_mirror() -> None:
    weight = torch.randn(3, 2 * 4 * 4)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ weight.T

    x = torch.randn(5, 2, 4, 4)
    torch.testing.assert_close(image_training._logits(forward, x, ImageRecipe(tta_flip=True)),
                               (forward(x) + forward(x.flip(-1))) / 2)
    torch.testing.assert_close(image_training._logits(forward, x, ImageRecipe(tta_flip=False)), forward(x))


# --- custom entry points ---------------------------------------------------------------------------------------

def margins_only(train_indices, seed, device, x_train, y_train, x_targets, y_targets, image_shape, options):
    """A custom learner returning margins and no train accuracy: + scale for even targets, - for odd."""
    return np.where(np.arange(len(x_targets)) % 2 == 0, 1.0, -1.0) * options["scale"] + 0 * seed


def wrong_shape(**kwargs):
    return np.zeros((3, 3, 3))


def too_few_arguments(train_indices, seed):
    return np.zeros(1)


def test_custom_margins_without_train_accuracy(digits: Arrays) -> None:
    recipe = {"model": {"name": "custom", "entry_point": "test_learners:margins_only", "options": {"scale": 2.0}},
              "train": {"device": "cpu"}}
    result = learners.train(recipe, *digits[:2], subsets(2, 50), [0, 1], *digits[2:])
    np.testing.assert_array_equal(result.margins[0, :4], [2, -2, 2, -2])
    np.testing.assert_allclose(result.target_accuracy, 0.5)
    assert np.isnan(result.train_accuracy).all()


def test_custom_logits_give_correct_class_margins(digits: Arrays) -> None:
    x_train, y_train, x_targets, y_targets = digits
    chosen = subsets(1, 200)
    recipe = filled("custom", {"entry_point": SKLEARN_ENTRY_POINT})
    result = learners.train(recipe, x_train, y_train, chosen, [3], x_targets, y_targets)
    from datamodels_pipeline.examples.sklearn_logistic import train
    logits, accuracy = train(chosen[0], 3, "cpu", x_train, y_train, x_targets, y_targets, (8, 8), {})
    top_other = np.where(np.eye(10, dtype=bool)[y_targets], -np.inf, logits).max(axis=1)
    np.testing.assert_allclose(result.margins[0], logits[np.arange(len(y_targets)), y_targets] - top_other, rtol=1e-5)
    assert result.train_accuracy[0] == pytest.approx(accuracy)


@pytest.mark.parametrize(("entry_point", "message"), [
    ("no_colon_here", "not of the form 'package.module:function'"),
    ("no_such_package.module:train", "cannot import module 'no_such_package.module'"),
    ("datamodels_pipeline.examples.sklearn_logistic:nope", "has no 'nope'"),
    ("datamodels_pipeline.examples.sklearn_logistic:np", "is not callable"),
    ("test_learners:too_few_arguments", "must accept the keyword arguments"),
    ("test_learners:wrong_shape", r"returned an array of shape \(3, 3, 3\)"),
])
def test_bad_entry_points_name_the_key(digits: Arrays, entry_point: str, message: str) -> None:
    recipe = {"model": {"name": "custom", "entry_point": entry_point, "options": {}}, "train": {"device": "cpu"}}
    with pytest.raises(custom.EntryPointError, match=re.escape(f"model.entry_point {entry_point!r}") + f".*{message}"):
        learners.train(recipe, *digits[:2], subsets(1, 20), [0], *digits[2:])


# --- config: learner-specific keys and defaults, device --------------------------------------------------------

def test_learner_defaults() -> None:
    assert filled("mlp")["model"] == {"name": "mlp", "hidden": [64]}
    assert filled("logistic")["model"] == {"name": "logistic"}
    cnn_recipe = filled("cnn")
    assert cnn_recipe["model"] == {"name": "cnn", "channels": [16, 32]}
    assert cnn_recipe["train"]["schedule"] == "constant" and cnn_recipe["train"]["augment"] == {
        "flip": False, "translate": 0, "cutout": 0}
    assert filled("custom", {"entry_point": SKLEARN_ENTRY_POINT})["train"] == {"device": "cpu"}
    partial = filled("resnet9", train={"augment": {"flip": False}, "lr": 0.4})["train"]
    assert partial["augment"] == {"flip": False, "translate": 2, "cutout": 4} and partial["lr"] == 0.4


@pytest.mark.parametrize(("name", "model", "train", "key", "message"), [
    ("cnn", {"hidden": [8]}, {}, "model.hidden", "not used by model.name 'cnn'"),
    ("logistic", {"hidden": [8]}, {}, "model.hidden", "not used by model.name 'logistic'"),
    ("mlp", {"width": 2}, {}, "model.width", "only by resnet9"),
    ("mlp", {}, {"label_smoothing": 0.1}, "train.label_smoothing", "only by cnn, resnet9"),
    ("cnn", {}, {"channels_last": True}, "train.channels_last", "only by resnet9"),
    ("custom", {"entry_point": "a.b:c"}, {"epochs": 3}, "train.epochs", "put its settings in model.options"),
    ("custom", {}, {}, "model", "'entry_point' is a required property"),
    ("custom", {"entry_point": "a.b"}, {}, "model.entry_point", "does not match"),
    ("resnet9", {}, {"epochs": 4}, "train.peak_epoch", "not below train.epochs = 4"),
    ("resnet9", {}, {"augment": {"mirror": True}}, "train.augment", "'mirror' was unexpected"),
    ("svm", {}, {}, "model.name", "is not one of"),
])
def test_bad_learner_keys_name_the_key(name: str, model: dict, train: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid config key '{key}'.*{message}"):
        filled(name, model, train)


def test_shipped_default_is_unchanged() -> None:
    config = validate(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    assert config["model"] == {"name": "mlp", "hidden": [64]}
    assert config["train"] == {"epochs": 20, "batch_size": 64, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
                               "device": "cpu", "nesterov": False}


def test_device_auto_and_cuda() -> None:
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.resolve("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="asks for device 'cuda'"):
            devices.resolve("cuda")
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for device in ("auto", "cpu", "cuda"):
        validate(copy.deepcopy(config) | {"train": {"device": device}})
    with pytest.raises(ConfigError, match="invalid config key 'train.device'"):
        validate(config | {"train": {"device": "tpu"}})


# --- the smoke DAG with other learners (snakemake in a subprocess) ---------------------------------------------

ALPHA = 0.5
WORKFLOW_LEARNERS = {
    "logistic": {"model": {}},
    "cnn": {"model": {"channels": [8, 16]}},
    "custom": {"model": {"entry_point": SKLEARN_ENTRY_POINT, "options": {"max_iter": 100}}, "train": {"device": "cpu"}},
    # The package's example of a user's own nn.Module: it gets unlearning and every attribution method too.
    "own-torch-model": {"model": {"name": "custom", "entry_point": OWN_TORCH_ENTRY_POINT,
                                  "options": {"hidden": 32, "epochs": 4, "batch_size": 32, "lr": 0.1}},
                        "train": {"device": "cpu"}},
}
NETWORK_APPLICATIONS = {"own-torch-model": ["unlearning", "attribution"]}
"""The runs that also make the applications that take the trained network apart."""


def model_name(run: str) -> str:
    return WORKFLOW_LEARNERS[run]["model"].get("name", run)


def write_own_data(path: Path, roll: int = 0) -> None:
    """Digits as a user's .npz file: the last 297 are the test examples (split 1); ``roll`` shifts the labels."""
    x, y = load_digits(return_X_y=True)
    split = (np.arange(len(y)) >= 1500).astype(np.int64)
    np.savez(path, x=(x / 16).astype(np.float32), y=np.roll(y, roll), split=split)


def reduced(name: str, own_data: Path, **train: object) -> Callable[[dict], None]:
    """The smoke config with 40 + 20 models (a chunk each) and a one-point learning curve, with the learner ``name``:
    digits' test targets at one alpha, except for logistic, which reads the .npz file ``own_data`` (n_train 200,
    n_test 60, targets both) at two alphas (the one run of several alphas in the tests), and cnn, which reads tiny
    CIFAR-2 files in torchvision's format (80 training and 30 test cats and dogs of random pixels, targets both; see
    ``make_learner_run``), for two epochs."""

    def edit(config: dict) -> None:
        config["run"] = f"learner-{name}"
        config["data"]["targets"] = "test"
        if name == "logistic":
            config["data"] = {"name": "file", "path": str(own_data), "image_shape": [8, 8], "n_train": 200,
                              "n_test": 60, "targets": "both", "plant_duplicates": {"n": 3, "noise": 0.05}}
        if name == "cnn":
            config["data"] = {"name": "cifar2", "download": False, "n_train": 80, "n_test": 30, "targets": "both",
                              "plant_duplicates": {"n": 3, "noise": 0.05}}
            del config["applications"]["unlearning"]["forget_class"]  # the smoke config's 8: auto, a class of CIFAR-2
        config["model"] = {"name": model_name(name), **WORKFLOW_LEARNERS[name]["model"]}
        config["train"] = {**WORKFLOW_LEARNERS[name].get("train", config["train"]), **train}
        if name == "cnn":
            config["train"]["epochs"] = 2
        config["subsets"].update(alphas=ALPHAS[name], n_models=40, n_eval_models=20, models_per_chunk=40)
        config["fit"]["targets_per_job"] = 1000  # one fit job
        config["evaluate"].update(learning_curve=[1.0], seeds_per_mask=1)  # no repeated held-out models
        # The counterfactuals retrain with the learner: 1 + 2 x 1 x 3 removal sets, one seed each (the smoke run
        # and test_applications.py check their numbers at the smoke size).
        config["applications"]["counterfactuals"].update(COUNTERFACTUALS)
        # Unlearning's datamodel matching needs train-set datamodels: 40 models (TorchLearner trains one at a time).
        config["applications"]["train_set_datamodels"]["n_models"] = 40
        # Our attribution methods only: the smoke run has dattri's rows (test_workflow.py).
        config["applications"]["attribution"]["peers"] = {"libraries": []}

    return edit


ALPHAS = {"logistic": [ALPHA, 0.25], "cnn": [ALPHA], "custom": [ALPHA], "own-torch-model": [ALPHA]}
COUNTERFACTUALS = {"n_targets": 2, "k": [2], "n_seeds": 1}


def targets(run: str) -> list[str]:
    """The logistic run (two alphas): everything up to the summary; the other runs up to the evaluation (the learning
    curve and the summary read only the aggregates and the evaluation, whatever the learner). All: the counterfactuals
    (which retrain with the learner); for a learner that provides its torch network, unlearning and attribution too."""
    name = run.removeprefix("learner-")
    applications = ["counterfactuals", *NETWORK_APPLICATIONS.get(name, [])]
    core = "summary.md" if name == "logistic" else f"evaluation/alpha={ALPHA:g}/metrics.json"
    return [f"results/{run}/{core}", *(f"results/{run}/applications/{a}/alpha={ALPHA:g}/summary.json"
                                       for a in applications)]


CIFAR_PATCH = '''"""Test only: torchvision's CIFAR loader accepts the tiny test files (not the real md5 sums)."""
import importlib.abc
import importlib.util
import os
import sys


class _PatchCifar(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "torchvision.datasets.cifar":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _PatchCifar())
'''


@contextlib.contextmanager
def learner_env(workdir: Path) -> Iterator[None]:
    """The Snakemake processes of a run with tiny CIFAR files get the sitecustomize that lifts torchvision's md5 check
    on their PYTHONPATH (the test files are not the real ones)."""
    patch = workdir / "sitecustomize"
    with pytest.MonkeyPatch.context() as monkeypatch:
        if patch.exists():
            monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(patch), os.environ.get("PYTHONPATH")])))
        yield


def make_learner_run(name: str, workdir: Path) -> None:
    """The workflow in its own folder, with the user's .npz file (logistic) or tiny CIFAR-10 files in resources/ (cnn,
    no download; the md5 check is lifted in the Snakemake processes only, by a sitecustomize on their PYTHONPATH), and
    the reduced DAG of the learner run there."""
    copy_workflow(workdir)
    write_own_data(workdir / "own.npz")
    if name == "cnn":
        write_cifar(workdir / "resources", per_batch=100, n_test=150)  # 100 training and 30 test cats and dogs
        (workdir / "sitecustomize").mkdir()
        (workdir / "sitecustomize" / "sitecustomize.py").write_text(CIFAR_PATCH)
    config = write_config(workdir, f"learner-{name}", reduced(name, workdir / "own.npz"))
    with learner_env(workdir):
        snakemake(workdir, "--show-failed-logs", *targets(f"learner-{name}"), configfile=config)


@pytest.fixture(scope="session")
def learner_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``learner_run(name)``: the folder of that learner's run, made once per test session (each run in a folder of
    its own, so that pytest-xdist workers make them at the same time: one test class per run below)."""
    return lambda name: run_once(tmp_path_factory, f"learner-{name}", functools.partial(make_learner_run, name))


def config_of(workdir: Path, name: str) -> Path:
    return workdir / "config" / f"learner-{name}.yaml"


def check_learner_run(workdir: Path, name: str) -> None:
    """The reduced DAG ran with the learner: its evaluation, counterfactuals, logs and stored margins."""
    base = workdir / "results" / f"learner-{name}"
    for alpha in ALPHAS[name]:
        metrics = json.loads((base / f"evaluation/alpha={alpha:g}/metrics.json").read_text())
        assert metrics["n_train_models"] == 40 and metrics["n_eval_models"] == 20
        assert np.isfinite(metrics["lds"])
        if name != "cnn":  # the tiny CIFAR-2 files are random pixels
            assert metrics["mean_target_accuracy_eval_models"] > 0.5
    if name == "logistic":
        assert "LDS" in (base / "summary.md").read_text()
    counterfactuals = json.loads((base / f"applications/counterfactuals/alpha={ALPHA:g}/summary.json").read_text())
    n_sets = COUNTERFACTUALS["n_targets"] * len(COUNTERFACTUALS["k"]) * 3
    assert counterfactuals["n_models_trained"] == COUNTERFACTUALS["n_seeds"] * (1 + n_sets)
    log = (base / f"logs/train_chunk/alpha={ALPHA:g}/train/chunk-0.log").read_text()
    assert "40 models in" in log and f", {model_name(name)} on cpu" in log

    # The stored margins are those of the learner, recomputed here from the stored data and masks (the last alpha's).
    config = validate(yaml.safe_load(config_of(workdir, name).read_text()))
    dataset = data.load(base / "data/dataset.npz")
    info = json.loads((base / "data/dataset.json").read_text())
    alpha = ALPHAS[name][-1]
    stored = store.read_models(base / f"models/alpha={alpha:g}/train/chunk-0.parquet", store.layout_for(info, alpha))
    seeds = [int_seed(config["seed"], Stream.TRAIN_MODEL, alpha, int(i)) for i in stored.model_id]
    again = learners.train({"model": config["model"], "train": config["train"]}, dataset.x_train, dataset.y_train,
                           masks.to_subsets(stored.mask), seeds, dataset.x_targets, dataset.y_targets,
                           image_shape=dataset.image_shape)
    np.testing.assert_allclose(stored.margins, again.margins, rtol=0, atol=1e-5)
    np.testing.assert_allclose(stored.target_accuracy, again.target_accuracy, atol=1e-6)
    if name == "cnn":  # CIFAR-2 read from torchvision's files: two classes, channels first
        assert info["name"] == "cifar2" and info["n_classes"] == 2 and info["image_shape"] == [3, 32, 32]
        assert info["n_train"] == 80 and info["n_targets"] == 110
    if name in NETWORK_APPLICATIONS:
        check_network_applications(base)


def check_network_applications(base: Path) -> None:
    """Unlearning fine-tuned the learner's networks, and every attribution method scored them."""
    unlearned = json.loads((base / f"applications/unlearning/alpha={ALPHA:g}/summary.json").read_text())
    assert unlearned["methods"] == ["original", "finetune", "dmm", "oracle_matching"]
    for method in unlearned["methods"]:
        assert np.isfinite(unlearned["groups"]["forget"]["methods"][method]["margin_error"])
    attributed = json.loads((base / f"applications/attribution/alpha={ALPHA:g}/summary.json").read_text())
    assert attributed["skipped"] == {}
    scored = {row["method"] for row in attributed["rows"] if row["lds"] is not None and np.isfinite(row["lds"])}
    assert {"influence_function", "tracin", "trak", "representation_similarity", "datamodels"} <= scored
    assert attributed["details"]["representation_similarity"]["features"] == "penultimate-layer activations"


# One class per learner run: pytest-xdist (--dist loadscope) gives a class's tests to one worker, one after the other,
# and the runs to different workers at once (tests/conftest.py orders them).
@pytest.mark.workflow
class TestLogisticRun:
    """The logistic learner's run reads the user's .npz file at two alphas; the last test edits that file."""

    def test_smoke_dag_runs_with_the_learner(self, learner_run: Callable[[str], Path]) -> None:
        check_learner_run(learner_run("logistic"), "logistic")

    def test_gpu_is_requested_for_cuda_only(self, learner_run: Callable[[str], Path]) -> None:
        workdir = learner_run("logistic")
        for device, gpus in (("cuda", 1), ("auto", 0), ("cpu", 0)):
            config = write_config(workdir, f"gpu-{device}", reduced("logistic", workdir / "own.npz", device=device))
            chunk = f"results/learner-logistic/models/alpha={ALPHA:g}/train/chunk-0.parquet"
            dry_run = snakemake(workdir, "-n", "--force", "--show-failed-logs", chunk, configfile=config)
            assert re.search(rf"resources: .*\bgpu={gpus}\b", dry_run.stdout), dry_run.stdout

    def test_smoke_dag_runs_on_an_npz_file(self, learner_run: Callable[[str], Path]) -> None:
        """The logistic learner's run reads the user's .npz file (moved here from test_datasets.py to share the run)."""
        workdir = learner_run("logistic")
        config = config_of(workdir, "logistic")
        run = "results/learner-logistic"
        info = json.loads((workdir / run / "data/dataset.json").read_text())
        assert info["name"] == "file" and info["n_train"] == 200 and info["n_targets"] == 260
        assert info["image_shape"] == [8, 8]
        metrics = json.loads((workdir / run / f"evaluation/alpha={ALPHA:g}/metrics.json").read_text())
        assert np.isfinite(metrics["lds"]) and metrics["mean_target_accuracy_eval_models"] > 0.5

        # The file is an input: editing it reruns the pipeline from prepare_data. The original is put back after, with
        # its modification time, so that the run stays up to date for the other tests.
        own = workdir / "own.npz"
        original, stat = own.read_bytes(), own.stat()
        try:
            time.sleep(1)
            write_own_data(own, roll=1)
            dry_run = snakemake(workdir, "-n", f"{run}/summary.md", configfile=config)
            assert planned_jobs(dry_run)["prepare_data"] == 1 and str(own) in dry_run.stdout
        finally:
            own.write_bytes(original)
            os.utime(own, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert planned_jobs(snakemake(workdir, "-n", f"{run}/summary.md", configfile=config)) == {}


@pytest.mark.workflow
class TestCnnRun:
    """The CNN learner's run reads tiny CIFAR-2 files in torchvision's format."""

    def test_smoke_dag_runs_with_the_learner(self, learner_run: Callable[[str], Path]) -> None:
        check_learner_run(learner_run("cnn"), "cnn")


@pytest.mark.workflow
class TestCustomRun:
    """The scikit-learn example, a learner that returns margins only."""

    def test_smoke_dag_runs_with_the_learner(self, learner_run: Callable[[str], Path]) -> None:
        check_learner_run(learner_run("custom"), "custom")

    def test_rule_all_leaves_the_network_applications_out_for_a_margins_only_learner(self, tmp_path: Path) -> None:
        """The scikit-learn example returns margins only: rule all plans the applications that need only margins and
        leaves unlearning and attribution out, with one log line saying why; the own torch model gets them."""
        workdir = copy_workflow(tmp_path)
        log_line = "rule all leaves out unlearning, attribution: they need the trained torch network"
        plans = {}
        for name in ("custom", "own-torch-model"):
            edit = reduced(name, workdir / "own.npz")

            def planned(config: dict, edit=edit, name=name) -> None:  # a run of its own: nothing of it is made yet
                edit(config)
                config["run"] = f"plan-{name}"

            config = write_config(workdir, f"plan-{name}", planned)
            dry_run = snakemake(workdir, "-n", "--show-failed-logs", configfile=config)
            plans[name] = (planned_jobs(dry_run), (dry_run.stdout + dry_run.stderr).count(log_line))
        jobs, lines = plans["custom"]
        assert lines == 1 and "unlearning" not in jobs and "attribution" not in jobs
        assert {"counterfactuals", "leakage", "data_selection", "backdoor", "modeldiff"} <= set(jobs)
        jobs, lines = plans["own-torch-model"]
        assert lines == 0 and jobs["unlearning"] == 1 and jobs["attribution"] == 1


@pytest.mark.workflow
class TestOwnTorchModelRun:
    """The package's example of a user's own nn.Module: it gets unlearning and every attribution method too."""

    def test_smoke_dag_runs_with_the_learner(self, learner_run: Callable[[str], Path]) -> None:
        check_learner_run(learner_run("own-torch-model"), "own-torch-model")


@pytest.mark.workflow
class TestLearnerEdits:
    """Edits the learner modules in the cnn and custom runs' folders (only this test edits them; their classes' other
    tests only read the runs' results and use the installed package, so they may run at the same time)."""

    def test_editing_a_learner_retrains_only_its_runs(self, learner_run: Callable[[str], Path]) -> None:
        """The run's learner module is part of its training code fingerprint; another learner's is not."""

        def plan(name: str) -> dict[str, int]:
            workdir = learner_run(name)
            with learner_env(workdir):
                return planned_jobs(snakemake(workdir, "-n", "--show-failed-logs", *targets(f"learner-{name}"),
                                              configfile=config_of(workdir, name)))

        for module, retrained, untouched in (("image_training.py", "cnn", "custom"), ("custom.py", "custom", "cnn")):
            paths = [learner_run(name) / "workflow/datamodels_pipeline" / module for name in (retrained, untouched)]
            original = paths[0].read_text()
            try:
                for path in paths:
                    path.write_text(original + "\n# a comment: no new code\n")
                assert plan(retrained) == {}, module
                for path in paths:
                    path.write_text(original + "\n_EDIT = 1\n")
                jobs = plan(retrained)
                assert jobs["train_chunk"] == 2 and jobs["counterfactuals"] == 1, (module, jobs)
                assert plan(untouched) == {}, module
            finally:
                for path in paths:
                    path.write_text(original)

