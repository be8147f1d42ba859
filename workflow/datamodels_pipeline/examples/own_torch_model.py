"""Example: your own torch network with every application (unlearning and gradient-based attribution included).

A two-layer network with tanh (not one of the built-in learners), in one file. Use it with::

    model:
      name: custom
      entry_point: datamodels_pipeline.examples.own_torch_model:TanhNet
      options: {hidden: 32, epochs: 20, lr: 0.1}

(``config/examples/own_torch_model.yaml``). ``TorchLearner`` trains it with minibatch SGD (``model.options``:
epochs, batch_size, lr, momentum, weight_decay, nesterov), stores its margins, and hands its trained networks to
unlearning and to TRAK, influence functions, TracIn and representation similarity. See docs/own-model.md.
"""

from __future__ import annotations

from torch import nn

from datamodels_pipeline.torch_learner import TorchLearner


class TanhNet(TorchLearner):
    """Flattened examples -> ``options.hidden`` tanh units -> logits."""

    def network(self, n_features: int, n_classes: int, image_shape: tuple[int, ...]) -> nn.Module:
        hidden = int(self.options.get("hidden", 32))
        return nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, n_classes))
