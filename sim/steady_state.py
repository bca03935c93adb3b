"""Steady state: when the schedule has provably become periodic, so later frames follow exactly.

Once the last ``q`` simulated frames are the ``q`` before them shifted by ``d`` cycles in every layer (and
the source did not hold them back), every later frame is the frame ``q`` before it shifted by ``d``: the
simulation extends the rest exactly instead of simulating it (:func:`steady_shift`).
"""

from __future__ import annotations

import numpy as np

from onebit.sim.network import Network
from onebit.sim.schedule import Schedule


def reach(net: Network) -> int:
    """How many frames back a frame's constraints reach: one (the previous step), or more through the credits
    of FIFOs that hold a frame or more."""
    return max([1] + [-(-e.depth // e.beats) for e in net.internal_edges if e.depth is not None and e.beats])


def steady_shift(s: Schedule, max_period: int = 4) -> tuple[int, int] | None:
    """``(q, d)`` if the last ``q`` simulated frames are exactly the ``q`` before them shifted by ``d`` cycles,
    event for event in every layer, and the source did not hold them back (``d`` equals the source's beats
    over ``q`` frames, or no read of those frames' input beats waited for its arrival). Then every later frame
    is the frame ``q`` before it shifted by ``d``: its constraints are that frame's, shifted (the same step
    layouts; the frames its credits reach back to (:func:`reach`) are checked too), except the source's
    arrivals, which shift by fewer cycles and so bind nowhere. The smallest such ``q`` <= ``max_period``; None
    if there is none."""
    n, net = s.n, s.net
    src = next(e for e in net.edges if e.producer is None)
    r = reach(net)
    for q in range(1, max_period + 1):
        w = max(q, r)  # the frames the next one depends on must repeat, not just the last q
        if n < w + q:
            break
        d = None
        for i, lm in enumerate(net.layers):
            t = s.step_times[i].reshape(n, lm.events)
            diff = t[n - w:] - t[n - w - q:n - q]
            if d is None:
                d = int(diff.flat[0])
            if np.any(diff != d):
                d = None
                break
        if d is None or d < q * src.beats:
            continue
        if d > q * src.beats:
            reads = s.edge_reads[src.index].reshape(n, -1)[n - q:]
            arrival = np.arange((n - q) * src.beats, n * src.beats, dtype=np.int64).reshape(q, -1)
            if np.any(reads == arrival):
                continue
        return q, d
    return None

