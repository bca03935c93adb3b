"""Batched, reproducible training augmentation after McDonnell's 1-bit Wide ResNet recipe.

Per image: an optional random horizontal flip, a random integer translation of up to
``shift`` pixels in x and y whose uncovered border is filled with uniform random pixels,
and an optional cutout square filled with uniform random pixels. All randomness comes from
the caller's ``torch.Generator``, drawn in a fixed order, so one generator state gives one result.
"""

from __future__ import annotations

import torch

CIFAR_CUTOUT = 18
CIFAR_SHIFT = 4
CIFAR_SIZE = 32


def default_cutout(image_hw: int) -> int:
    """Cutout side for an image of side ``image_hw``.

    18 for 32x32 (the seeds' CIFAR recipe), scaled as round(18/32*H) for larger images. Below 32 pixels
    a quarter of the side: on the 8x8 digits a 4x4 cutout (a quarter of the image) cost the tiny net
    several points, 2x2 cost nothing.
    """
    _check_positive_size(image_hw)
    if image_hw < CIFAR_SIZE:
        return max(1, round(image_hw / 4))
    return max(1, round(CIFAR_CUTOUT * image_hw / CIFAR_SIZE))


def default_shift(image_hw: int) -> int:
    """Largest translation for an image of side ``image_hw``: 4 for 32x32, max(1, round(4*H/32))."""
    _check_positive_size(image_hw)
    return max(1, round(CIFAR_SHIFT * image_hw / CIFAR_SIZE))


def _check_positive_size(image_hw: int) -> None:
    if image_hw < 1:
        raise ValueError(f"image side must be at least 1 pixel, got {image_hw}")


def augment(
    x: torch.Tensor, generator: torch.Generator, *, hflip: bool, shift: int = 4, cutout: int = 0
) -> torch.Tensor:
    """Return an augmented copy of the float batch ``x`` (N, C, H, W) with values in [0, 1].

    ``generator`` must live on ``x.device``. Random draws happen in this order, each only when
    its step is enabled: flip coins (N,), shifts (N, 2), shift fill (N, C, H, W), cutout
    centres (N, 2), cutout fill (N, C, H, W). With ``hflip=False, shift=0, cutout=0`` the
    result equals ``x``.
    """
    _check_batch(x, shift, cutout)
    out = x.clone()
    if hflip:
        out = random_hflip(out, generator)
    if shift > 0:
        out = random_shift(out, generator, shift)
    if cutout > 0:
        out = random_cutout(out, generator, cutout)
    return out


def _check_batch(x: torch.Tensor, shift: int, cutout: int) -> None:
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"augment expects a float batch (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if shift < 0 or cutout < 0:
        raise ValueError(f"shift and cutout must be >= 0, got shift={shift}, cutout={cutout}")


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_shift(x: torch.Tensor, generator: torch.Generator, shift: int) -> torch.Tensor:
    """Translate each image by integers (dy, dx) in [-shift, shift]; fill the uncovered border with noise."""
    n, _, h, w = x.shape
    offsets = torch.randint(-shift, shift + 1, (n, 2), generator=generator, device=x.device)
    noise = uniform_like(x, generator)
    rows = torch.arange(h, device=x.device)[None, :] - offsets[:, :1]  # (N, H) source row of each output row
    cols = torch.arange(w, device=x.device)[None, :] - offsets[:, 1:]  # (N, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (N, H, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indexing around the channel slice yields (N, H, W, C).
    moved = x[batch, :, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]].permute(0, 3, 1, 2)
    return torch.where(inside[:, None], moved, noise)


def random_cutout(x: torch.Tensor, generator: torch.Generator, size: int) -> torch.Tensor:
    """Replace a size x size square at a random centre of each image (clipped at borders) with noise."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1), generator=generator, device=x.device)
    cx = torch.randint(0, w, (n, 1), generator=generator, device=x.device)
    noise = uniform_like(x, generator)
    top, left = cy - size // 2, cx - size // 2
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top) & (rows < top + size)  # (N, H)
    in_cols = (cols >= left) & (cols < left + size)  # (N, W)
    square = in_rows[:, :, None] & in_cols[:, None, :]
    return torch.where(square[:, None], noise, x)


def uniform_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform [0, 1) values with the shape, dtype and device of ``x``."""
    return torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
