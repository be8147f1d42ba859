"""Per-example random flip, translation and cutout of image batches, drawn from a model's own generator.

The augmentation of the paper's ResNet-9 recipe (FFCV's ``RandomHorizontalFlip``,
``RandomTranslate(padding)`` and ``Cutout(size)``): each example is flipped with
probability 1/2, shifted by up to ``translate`` pixels in each direction with
zero (black) padding, and gets a ``cutout``×``cutout`` square, lying inside the
image, set to the per-channel mean. torchvision's ``transforms.v2`` draws one set
of parameters per call from the global generator, so applied to a batch it moves
every image alike; here every example gets its own draw, made up front for a
whole epoch from the training model's generator, and the batch is transformed
on the device with a few tensor operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """Which augmentations are on: ``translate`` is the padding in pixels, ``cutout`` the square's side (0: off)."""

    flip: bool = False
    translate: int = 0
    cutout: int = 0

    @property
    def active(self) -> bool:
        return self.flip or self.translate > 0 or self.cutout > 0


@dataclass
class Draws:
    """Random parameters of n examples: flip ``[n]`` bool; shift and cutout corner ``[n, 2]`` (row, column)."""

    flip: torch.Tensor | None
    shift: torch.Tensor | None
    corner: torch.Tensor | None

    def __getitem__(self, index: slice) -> Draws:
        return Draws(*(None if t is None else t[index] for t in (self.flip, self.shift, self.corner)))

    def to(self, device: torch.device) -> Draws:
        return Draws(*(None if t is None else t.to(device) for t in (self.flip, self.shift, self.corner)))


def concatenate(parts: list[Draws]) -> Draws:
    """The draws of several batches, one after the other (as their examples are concatenated)."""
    return Draws(*(None if t[0] is None else torch.cat(t) for t in zip(*((d.flip, d.shift, d.corner) for d in parts))))


def draw(augmentation: Augmentation, n: int, height: int, width: int, generator: torch.Generator) -> Draws:
    """Draw the parameters of n examples from ``generator`` (CPU), in a fixed order: flip, shift, cutout."""
    flip = shift = corner = None
    if augmentation.flip:
        flip = torch.randint(0, 2, (n,), generator=generator).bool()
    if augmentation.translate > 0:
        shift = torch.randint(0, 2 * augmentation.translate + 1, (n, 2), generator=generator)
    if augmentation.cutout > 0:
        size = augmentation.cutout
        rows = torch.randint(0, max(1, height - size + 1), (n,), generator=generator)
        cols = torch.randint(0, max(1, width - size + 1), (n,), generator=generator)
        corner = torch.stack([rows, cols], dim=1)
    return Draws(flip, shift, corner)


def apply(x: torch.Tensor, draws: Draws, augmentation: Augmentation, fill: torch.Tensor) -> torch.Tensor:
    """Augment raw images ``x`` ``[n, C, H, W]`` with ``draws`` (on x's device); ``fill`` ``[C]``: cutout value."""
    n, _, height, width = x.shape
    if draws.flip is not None:
        x = torch.where(draws.flip.view(n, 1, 1, 1), x.flip(-1), x)
    if draws.shift is not None:
        pad = augmentation.translate
        padded = F.pad(x, (pad, pad, pad, pad))
        rows = draws.shift[:, :1] + torch.arange(height, device=x.device)      # [n, H]
        cols = draws.shift[:, 1:] + torch.arange(width, device=x.device)       # [n, W]
        examples = torch.arange(n, device=x.device).view(n, 1, 1)
        x = padded[examples, :, rows.unsqueeze(2), cols.unsqueeze(1)].permute(0, 3, 1, 2)  # [n, H, W, C] -> NCHW
    if draws.corner is not None:
        size = augmentation.cutout
        rows = torch.arange(height, device=x.device) - draws.corner[:, :1]    # [n, H]
        cols = torch.arange(width, device=x.device) - draws.corner[:, 1:]     # [n, W]
        inside = ((rows >= 0) & (rows < size)).unsqueeze(2) & ((cols >= 0) & (cols < size)).unsqueeze(1)
        x = torch.where(inside.unsqueeze(1), fill.view(1, -1, 1, 1).to(x.dtype), x)
    return x.contiguous()
