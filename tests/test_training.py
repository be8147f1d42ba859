"""The batched trainer matches the plain one-model loop and learns digits."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from datamodels_pipeline import training
from datamodels_pipeline.seeding import Stream, int_seed
from datamodels_pipeline.training import Recipe, _backward, _forward, _init_params, train_batched, train_single

pytestmark = pytest.mark.usefixtures("one_thread")

N_TRAIN = 1200
ALPHA = 0.5
Digits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@pytest.fixture(scope="module")
def digits() -> Digits:
    """Digits scaled to [0, 1]: the first 1,200 examples train, the other 597 are targets."""
    x, y = load_digits(return_X_y=True)
    x_all = torch.tensor(x / 16.0, dtype=torch.float32)
    y_all = torch.tensor(y, dtype=torch.int64)
    return x_all[:N_TRAIN], y_all[:N_TRAIN], x_all[N_TRAIN:], y_all[N_TRAIN:]


def subsets_and_seeds(n_models: int, size: int) -> tuple[np.ndarray, list[int]]:
    """Random fixed-size subsets of the training set and the pipeline's per-model seeds."""
    rng = np.random.default_rng(0)
    subsets = np.stack([rng.choice(N_TRAIN, size, replace=False) for _ in range(n_models)])
    seeds = [int_seed(0, Stream.TRAIN_MODEL, ALPHA, k) for k in range(n_models)]
    return subsets, seeds


def test_backward_matches_autograd() -> None:
    generators = [torch.Generator().manual_seed(k) for k in range(3)]
    params = [p.requires_grad_() for p in _init_params([5, 7, 6, 4], generators, torch.device("cpu"))]
    x = torch.randn(3, 5, 9, generator=generators[0])
    y = torch.randint(0, 4, (3, 9), generator=generators[0])
    activations = _forward(params, x)
    F.cross_entropy(activations[-1], y, reduction="none").mean(dim=1).sum().backward()
    grads = _backward(params, [a.detach() for a in activations], F.one_hot(y, 4).float().transpose(1, 2))
    for param, grad in zip(params, grads, strict=True):
        torch.testing.assert_close(grad, param.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("recipe", [
    Recipe(epochs=3),
    Recipe(hidden=(32, 16), epochs=3, batch_size=48, lr=0.05, weight_decay=1e-3, nesterov=True),
    Recipe(hidden=(), epochs=3),
])
def test_batched_matches_single(digits: Digits, recipe: Recipe) -> None:
    x_train, y_train, x_targets, y_targets = digits
    subsets, seeds = subsets_and_seeds(3, 200)
    batched = train_batched(x_train, y_train, subsets, seeds, recipe, x_targets, y_targets)
    for k in range(3):
        single = train_single(x_train, y_train, subsets[k], seeds[k], recipe, x_targets, y_targets)
        np.testing.assert_allclose(batched.margins[k], single.margins[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(batched.train_accuracy[k], single.train_accuracy[0], atol=1 / 200)
        np.testing.assert_allclose(batched.target_accuracy[k], single.target_accuracy[0], atol=1 / 597)


def test_model_ignores_its_neighbours(digits: Digits, monkeypatch: pytest.MonkeyPatch) -> None:
    x_train, y_train, x_targets, y_targets = digits
    subsets, seeds = subsets_and_seeds(4, 200)
    recipe = Recipe(epochs=3)
    together = train_batched(x_train, y_train, subsets, seeds, recipe, x_targets, y_targets)
    alone = train_batched(x_train, y_train, subsets[2:3], seeds[2:3], recipe, x_targets, y_targets)
    np.testing.assert_allclose(together.margins[2], alone.margins[0], rtol=0, atol=1e-6)

    monkeypatch.setattr(training, "_models_per_chunk", lambda widths, batch_size: 3)
    chunked = train_batched(x_train, y_train, subsets, seeds, recipe, x_targets, y_targets)  # chunks of 3 and 1
    for name in ("margins", "train_accuracy", "target_accuracy"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(together, name), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("hidden", "threshold"), [((64,), 0.9), ((), 0.85)])
def test_learns_digits(digits: Digits, hidden: tuple[int, ...], threshold: float) -> None:
    x_train, y_train, x_targets, y_targets = digits
    subsets, seeds = subsets_and_seeds(8, int(ALPHA * N_TRAIN))
    result = train_batched(x_train, y_train, subsets, seeds, Recipe(hidden=hidden), x_targets, y_targets)
    assert result.margins.shape == (8, len(y_targets)) and result.margins.dtype == np.float32
    assert result.train_accuracy.shape == result.target_accuracy.shape == (8,)
    assert result.target_accuracy.mean() > threshold
    assert result.train_accuracy.mean() > result.target_accuracy.mean()
