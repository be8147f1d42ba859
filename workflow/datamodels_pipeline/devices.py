"""Pick the torch device a config asks for."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve(name: str) -> torch.device:
    """``auto`` means CUDA when available; ``cuda`` without a GPU is an error, not a silent fallback."""
    import torch  # imported by the caller that computes on the device (importing this module stays cheap)

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("the config asks for device 'cuda' but torch sees no CUDA device on this machine")
    return torch.device(name)
