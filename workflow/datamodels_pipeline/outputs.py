"""Model outputs recorded per target example."""

from __future__ import annotations

import torch


def correct_class_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logit of the true class minus the largest other logit (the paper's output).

    ``logits`` has shape ``[..., n_examples, n_classes]`` and ``labels`` shape
    ``[n_examples]``; the result has shape ``[..., n_examples]``.
    """
    index = labels.reshape((1,) * (logits.dim() - 2) + (-1, 1)).expand(*logits.shape[:-1], 1)
    correct = logits.gather(-1, index).squeeze(-1)
    others = logits.scatter(-1, index, float("-inf"))
    return correct - others.amax(dim=-1)
