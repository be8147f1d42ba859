"""Reference implementations beside ours (applications.attribution.peers): dattri's TRAK and influence functions
against ours on tiny networks, the skipped rows without the extra, and the config section."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from datamodels_pipeline import config, reference_libraries
from datamodels_pipeline.applications import attribution_methods as am
from datamodels_pipeline.applications.attribution import peers
from datamodels_pipeline.config import ConfigError

from conftest import REPO

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_problem(n: int, seed: int, d: int = 4, classes: int = 3):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=generator, dtype=torch.float64) * 1.5
    y = torch.arange(n) % classes
    return centres[y] + torch.randn(n, d, generator=generator, dtype=torch.float64), y


def trained(model: nn.Module, x, y, weight_decay: float = 0.0, steps: int = 300) -> nn.Module:
    """Full-batch gradient descent on the mean cross-entropy (plus weight decay), float64."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5, weight_decay=weight_decay)
    for _ in range(steps):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model


def network(hidden: int | None, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers = [nn.Linear(4, 3)] if hidden is None else [nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3)]
    return nn.Sequential(*layers).double()


needs_dattri = pytest.mark.skipif(importlib.util.find_spec("dattri") is None,
                                  reason="the optional extra: pip install -e .[peers]")


@needs_dattri
def test_dattri_influence_equals_ours_when_the_hessian_is_positive_definite():
    """Logistic regression with weight decay: H is positive definite, our eigenvalue floor at a tiny damping changes
    nothing, and dattri's H + (weight decay) I is our Hessian: the two implementations agree to rounding."""
    x, y = tiny_problem(60, seed=1)
    x_targets, y_targets = tiny_problem(7, seed=2)
    decay, fit_rows = 0.05, np.arange(0, 60, 2)
    model = trained(network(None, seed=0), x[fit_rows], y[fit_rows], decay)
    ours, inverse = am.influence_scores(model, x, y, fit_rows, x_targets, y_targets, 3, damping=1e-12,
                                        weight_decay=decay)
    assert inverse.n_clamped == 0
    theirs = peers.dattri_influence_scores(model, x, y, fit_rows, x_targets, y_targets, regularization=decay)
    assert theirs.shape == ours.shape == (60, 7)
    np.testing.assert_allclose(theirs, ours, rtol=1e-6, atol=1e-9 * np.abs(ours).max())


@needs_dattri
def test_dattri_influence_on_an_mlp_is_ours_with_a_shift_instead_of_a_floor():
    """A small MLP's Hessian has negative eigenvalues: dattri adds its regularization (H + lambda I), we raise the
    eigenvalues below the damping to it. dattri matches the shift computed from our Hessian and gradients, and
    differs from our floor."""
    x, y = tiny_problem(50, seed=3)
    x_targets, y_targets = tiny_problem(6, seed=4)
    model = trained(network(6, seed=5), x, y, steps=40)
    flat, rows, lam = am.FlatModel(model), np.arange(50), 0.05
    h = am.hessian(flat, x, y)
    assert torch.linalg.eigvalsh(h).min() < 0
    g_loss = am.per_example_grads(flat, x, am.onehot_labels(y, 3).double(), am.loss_output)
    g_f = am.per_example_grads(flat, x_targets, am.onehot_labels(y_targets, 3).double(), am.margin_output)
    shifted = am.influence_from_grads(torch.linalg.inv(h + lam * torch.eye(len(h), dtype=h.dtype)), g_loss, g_f, 50)
    theirs = peers.dattri_influence_scores(model, x, y, rows, x_targets, y_targets, regularization=lam)
    np.testing.assert_allclose(theirs, shifted, rtol=1e-5, atol=1e-8 * np.abs(shifted).max())
    floored, _ = am.influence_scores(model, x, y, rows, x_targets, y_targets, 3, damping=lam)
    assert not np.allclose(theirs, floored, rtol=1e-2)


@needs_dattri
def test_dattri_trak_equals_ours_when_the_projection_is_invertible():
    """With proj_dim = n_params (and more training examples), Phi (Phi^T Phi)^-1 Phi_t^T does not depend on the
    projection nor on dattri's gradient scaling: dattri's TRAK and ours agree to float32 rounding, ensemble and Q
    included."""
    x, y = tiny_problem(40, seed=6)
    x_targets, y_targets = tiny_problem(5, seed=7)
    models = [trained(network(None, seed=s), x[s::2], y[s::2], steps=60) for s in (0, 1)]
    n_params = am.FlatModel(models[0]).n_params
    kernels, probabilities = [], []
    for s, model in enumerate(models):
        projection = am.gaussian_projection(n_params, n_params, seed=s).double()
        kernels.append(am.trak_kernel_scores(am.trak_features(model, x, y, 3, projection),
                                             am.trak_features(model, x_targets, y_targets, 3, projection)))
        probabilities.append(am.correct_class_probability(model, x, y))
    ours = am.trak_scores(kernels, probabilities)
    theirs = peers.dattri_trak_scores(models, x, y, x_targets, y_targets, proj_dim=n_params, seed=3)
    assert theirs.shape == ours.shape == (40, 5)
    np.testing.assert_allclose(theirs, ours, rtol=1e-3, atol=1e-4 * np.abs(ours).max())


def test_missing_library_gives_null_rows_with_the_install_hint(monkeypatch):
    monkeypatch.setattr(peers, "peer_version", lambda library: None)
    settings = {"peers": {"libraries": "auto", "trak_ensemble": None, "trak_proj_dim": [128]}}
    rows = peers.peer_rows(None, settings, None, np.arange(3))
    assert [r.method for r in rows] == ["dattri_trak", "dattri_influence"]
    assert all(r.lds is None and "pip install -e .[peers]" in r.note for r in rows)
    assert peers.peer_rows(None, {"peers": {**settings["peers"], "libraries": []}}, None, np.arange(3)) == []


BASE = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())  # a valid config (the smoke run's)


def _with(**peer_settings) -> dict:
    return {**BASE, "applications": {"attribution": {"peers": peer_settings}}}


def test_config_section_defaults_versions_and_explicit_libraries(monkeypatch):
    defaults = config.validate(_with())["applications"]["attribution"]["peers"]
    assert defaults == {"libraries": "auto", "trak_ensemble": None, "trak_proj_dim": [128]}
    installed = importlib.util.find_spec("dattri") and importlib.metadata.version("dattri")
    assert reference_libraries.peer_versions({"peers": defaults}) == {"dattri": installed or None}
    assert reference_libraries.peer_versions({"peers": {**defaults, "libraries": []}}) == {}
    if installed:
        config.validate(_with(libraries=["dattri"]))
    for wrong in ("all", ["traker"], ["dattri", "dattri"]):
        with pytest.raises(ConfigError, match="peers.libraries"):
            config.validate(_with(libraries=wrong))
    monkeypatch.setattr(config, "peer_version", lambda library: None)  # as imported by config.py
    with pytest.raises(ConfigError, match="peers.libraries.*not installed"):
        config.validate(_with(libraries=["dattri"]))
    config.validate(_with(libraries="auto"))  # auto: null rows with the install hint
