"""SGDR: cosine annealing with warm restarts (Loshchilov & Hutter), periods in epochs, stepped per batch.

Stateless: the learning rate is a function of the fractional epoch, so resuming needs only the step count.
"""

from __future__ import annotations

import math

from onebit.errors import ConfigError


def sgdr_periods(epochs: int, first: int = 2, mult: int = 2) -> list[int]:
    """Doubling periods (2, 4, 8, ...) until they cover ``epochs``; the last one may be cut short."""
    for name, value in (("first", first), ("mult", mult)):
        if value < 1:
            raise ConfigError(f"{name}: expected an integer >= 1, got {value}", param=name)
    periods, total = [], 0
    while total < epochs:
        periods.append(first * mult ** len(periods))
        total += periods[-1]
    return periods


def parse_periods(text: str) -> list[int]:
    """``"2,4,8,16"`` -> ``[2, 4, 8, 16]``."""
    try:
        periods = [int(p) for p in text.split(",")]
    except ValueError:  # also an empty entry ("1,,2"): a typo, not a period to skip
        periods = []
    if not periods or min(periods) < 1:
        raise ConfigError(f"sgdr: expected comma-separated positive epoch counts like 2,4,8,16, got {text!r}",
                          param="sgdr")
    return periods


class SGDR:
    """Learning rate at fractional epoch ``t``: ``lr_min + (lr_max - lr_min) * (1 + cos(pi * t_i / T_i)) / 2``."""

    def __init__(self, lr_max: float, periods: list[int], lr_min: float = 0.0):
        self.lr_max, self.lr_min, self.periods = lr_max, lr_min, list(periods)

    def lr_at(self, epoch: float) -> float:
        start = 0
        for period in self.periods:
            if epoch < start + period:
                frac = (epoch - start) / period
                return self.lr_min + (self.lr_max - self.lr_min) * 0.5 * (1.0 + math.cos(math.pi * frac))
            start += period
        return self.lr_min

    def restarts(self) -> list[int]:
        """Epochs at which a new period begins (the first is 0)."""
        out, start = [], 0
        for period in self.periods:
            out.append(start)
            start += period
        return out
