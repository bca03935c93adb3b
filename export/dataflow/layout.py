"""The step layout of a dataflow layer: the per-frame step sequence that the simulator times and the RTL runs.

Every layer is an **in-order step machine**, as FINN's HLS/RTL layers are: per frame it runs ``period`` steps,
one per clock cycle when nothing stalls. Some steps read one beat from a stream input, some write one beat to
the output stream(s), some do both, the rest only compute. A layout gives the period and, per frame, the step
at which each input beat is read and each output beat is written.

An op's ``exp_cycles()`` is its layout's period, so the period is known at once; the position arrays (millions
of steps for a WRN-20-10 layer) are built only when asked for (the simulator and the RTL need them, the folding
search does not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


def steps(n: int, start: int = 0) -> np.ndarray:
    """Step positions ``start .. start + n - 1``."""
    return np.arange(start, start + n, dtype=np.int64)


@dataclass
class StepLayout:
    """``period`` steps per frame; ``positions()`` builds ``(reads, writes)``: for each stream input the step
    that reads each of its beats, and the step that writes each output beat, strictly increasing."""

    period: int
    positions: Callable[[], tuple[list[np.ndarray], np.ndarray]] = field(repr=False)
    _built: tuple | None = field(default=None, repr=False)

    def _positions(self) -> tuple[list[np.ndarray], np.ndarray]:
        if self._built is None:
            reads, writes = self.positions()
            self._built = ([np.asarray(r, dtype=np.int64) for r in reads], np.asarray(writes, dtype=np.int64))
        return self._built

    @property
    def reads(self) -> list[np.ndarray]:
        return self._positions()[0]

    @property
    def writes(self) -> np.ndarray:
        return self._positions()[1]


def one_to_one(beats: int, inputs: int = 1) -> StepLayout:
    """Step k reads beat k of every input and writes output beat k."""
    return StepLayout(beats, lambda: ([steps(beats)] * inputs, steps(beats)))
