"""Stream encoding shared by the RTL, its memory files and the co-simulation: a beat holds ``lanes`` elements,
element ``l`` in bits ``[l*b, (l+1)*b)``; signed types are two's complement, BIPOLAR -1/+1 is the bit 0/1."""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType


def codes(values: np.ndarray, dt: DataType) -> np.ndarray:
    """Element values -> unsigned bit codes (uint64) of ``dt.bitwidth()`` bits."""
    v = np.asarray(values).astype(np.int64)
    if dt.name == "BIPOLAR":
        v = (v + 1) // 2
    return (v & ((1 << dt.bitwidth()) - 1)).astype(np.uint64)


def values(code: np.ndarray, dt: DataType) -> np.ndarray:
    """Unsigned bit codes -> element values (int64)."""
    c = np.asarray(code).astype(np.int64)
    b = dt.bitwidth()
    if dt.name == "BIPOLAR":
        return 2 * c - 1
    if dt.signed():
        return np.where(c >= (1 << (b - 1)), c - (1 << b), c)
    return c


def beats_hex(x: np.ndarray, dt: DataType, lanes: int, bits: int | None = None) -> list[str]:
    """Rows of ``lanes`` elements -> one hex string per beat (``bits`` per element, default the type's)."""
    b = bits or dt.bitwidth()
    c = codes(np.asarray(x).reshape(-1, lanes), dt)
    width = lanes * b
    digits = max(1, -(-width // 4))
    out = []
    for row in c:
        word = 0
        for lane in range(lanes - 1, -1, -1):
            word = (word << b) | int(row[lane])
        out.append(format(word, f"0{digits}x"))
    return out


def hex_beats(lines: list[str], dt: DataType, lanes: int) -> np.ndarray:
    """Hex beats -> (beats, lanes) element values."""
    b = dt.bitwidth()
    mask = (1 << b) - 1
    words = [int(h, 16) for h in lines]
    c = np.array([[(w >> (lane * b)) & mask for lane in range(lanes)] for w in words], dtype=np.int64)
    return values(c.reshape(-1, lanes), dt)


def signed_bits(lo: int, hi: int) -> int:
    """Bits of a two's complement type holding [lo, hi]."""
    b = 1
    while not (-(1 << (b - 1)) <= lo and hi <= (1 << (b - 1)) - 1):
        b += 1
    return b
