"""Threshold tables for ``onebit_thresh`` (the binary-search threshold unit used by Thresholding and MVAU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onebit.hw.encode import signed_bits
from onebit.hw.layers.base import write_mem
from onebit.export.dataflow.base import threshold_bits


def threshold_params(thresholds: np.ndarray, channels: int, in_lo: int, in_hi: int) -> dict:
    """Integer thresholds per channel (``x >= t`` on integers is ``x >= ceil(t)``), clipped to the input range
    [in_lo, in_hi + 1] (``in_hi + 1``: never reached), padded to ``2^stages - 1``; the threshold width."""
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape[0] == 1 and channels > 1:
        t = np.broadcast_to(t, (channels, t.shape[1]))
    steps = t.shape[1]
    stages = threshold_bits(steps)
    ti = np.clip(np.ceil(t), in_lo, in_hi + 1).astype(np.int64)
    pad = np.full((channels, (1 << stages) - 1 - steps), in_hi + 1, dtype=np.int64)
    table = np.concatenate([ti, pad], axis=1)
    shared = bool(np.all(table == table[:1]))
    return {"table": table[:1] if shared else table, "stages": stages, "TW": signed_bits(in_lo, in_hi + 1),
            "shared": int(shared)}


def write_threshold_memories(memdir: Path, prefix: str, table: np.ndarray, pe: int, stages: int, tw: int) -> list:
    """Stage k of lane l: for each fold f, the 2^k thresholds ``(2p+1) * 2^(stages-k-1) - 1`` of channel f*pe+l.
    A one-row (shared) table is written once, as lane 0's, with one fold."""
    channels = table.shape[0]
    nf = max(1, channels // pe)
    files = []
    for lane in range(pe if channels > 1 else 1):
        for k in range(stages):
            idx = (2 * np.arange(1 << k) + 1) * (1 << (stages - k - 1)) - 1
            words = [int(table[f * pe + lane, i]) for f in range(nf) for i in idx]
            files.append(write_mem(memdir / f"{Path(prefix).name}_p{lane:02d}_s{k:02d}.mem", words, tw))
    return files
