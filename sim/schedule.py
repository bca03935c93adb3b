"""A schedule: the event (step) times of every layer over ``n`` frames, and what is read from them.

Every layer runs its step machine in order; a step waits for the beats it reads (their write time plus the
producer's latency) and, on an edge of finite depth ``d``, for the read of the beat ``d`` before the one it
writes. :mod:`onebit.sim.solver` finds the times; this module holds them and derives from them each
frame's start and completion, each layer's busy spans and stalls, and each edge's largest occupancy.
"""

from __future__ import annotations

import numpy as np

from onebit.sim.model import NEG
from onebit.sim.network import Edge, Network


class Schedule:
    """Event times of every layer over ``n`` frames (``step_times[i]``), with the writes and reads derived from them."""

    def __init__(self, net: Network, n: int, bounded: bool):
        self.net, self.n, self.bounded = net, n, bounded
        self.step_times: list[np.ndarray | None] = [None] * len(net.layers)
        self.write_times: list[np.ndarray | None] = [None] * len(net.layers)
        self.edge_reads: dict[int, np.ndarray] = {}
        self.sweeps = 0
        self.iterations = 0
        self.converged = True

    # arrival times of a layer's input beats, and the earliest write time of its output beats
    def arrivals(self, i: int) -> list[np.ndarray]:
        out = []
        for e in self.net.in_edges[i]:
            if e.producer is None:
                out.append(np.arange(self.n * e.beats, dtype=np.int64))
            else:
                out.append(self.write_times[e.producer] + self.net.layers[e.producer].latency)
        return out

    def credit(self, i: int) -> np.ndarray | None:
        if not self.bounded:
            return None
        c = None
        for e in self.net.out_edges[i]:
            if e.depth is None or e.consumer is None:
                continue
            r = self.edge_reads[e.index]
            if e.depth >= len(r):
                continue
            cand = np.full(len(r), NEG, dtype=np.int64)
            cand[e.depth:] = r[: len(r) - e.depth] + 1
            c = cand if c is None else np.maximum(c, cand)
        return c

    def compute(self, i: int) -> bool:
        """Recompute layer ``i`` from its neighbours; returns whether its times changed."""
        lm = self.net.layers[i]
        t = lm.times(self.n, self.arrivals(i), self.credit(i))
        if self.step_times[i] is not None and np.array_equal(t, self.step_times[i]):
            return False
        self.set(i, t)
        return True

    def set(self, i: int, t: np.ndarray) -> None:
        lm = self.net.layers[i]
        _, reads, writes = lm.tiled(self.n)
        self.step_times[i] = t
        self.write_times[i] = t[writes]
        for e in self.net.in_edges[i]:
            self.edge_reads[e.index] = t[reads[e.slot]]
        for e in self.net.out_edges[i]:
            if e.consumer is None:
                self.edge_reads[e.index] = self.write_times[i] + lm.latency

    # ----- results -----------------------------------------------------------------------------------------
    def source_reads(self) -> np.ndarray:
        e = next(e for e in self.net.edges if e.producer is None)
        return self.edge_reads[e.index]

    def frame_done(self) -> np.ndarray:
        """Per frame: the cycle in which the sink takes the frame's last output beat (over all outputs)."""
        done = None
        for e in self.net.edges:
            if e.consumer is None:
                last = self.edge_reads[e.index].reshape(self.n, -1)[:, -1]
                done = last if done is None else np.maximum(done, last)
        return done

    def frame_start(self) -> np.ndarray:
        """Per frame: the cycle in which the first layer reads the frame's first input beat."""
        return self.source_reads().reshape(self.n, -1)[:, 0]

    def layer_spans(self, i: int) -> np.ndarray:
        """(n, 2): per frame, the cycle the layer's first step ran and the cycle after its last step."""
        lm = self.net.layers[i]
        t = self.step_times[i].reshape(self.n, lm.events)
        return np.stack([t[:, 0] - lm.pos[0], t[:, -1] + (lm.period - lm.pos[-1])], axis=1)

    def layer_stalls(self, i: int) -> dict:
        """Cycles the layer waited, by cause: for input (starved) or for room in an output FIFO (blocked).
        Waiting before the first frame's first step counts as neither."""
        lm = self.net.layers[i]
        pos, _, _ = lm.tiled(self.n)
        lb_in, lb_out = lm.lower_bounds(self.n, self.arrivals(i), self.credit(i))
        x = self.step_times[i] - pos
        inc = np.diff(x)
        grew = np.flatnonzero(inc > 0) + 1
        out = 0
        if lb_out is not None and len(grew):
            blocked = lb_out[grew] > lb_in[grew]
            out = int(inc[grew[blocked] - 1].sum())
        total = int(x[-1] - x[0])
        busy = self.n * lm.period
        return {"stall_in": total - out, "stall_out": out, "busy": busy,
                "utilisation": busy / (busy + total) if busy + total else 1.0, "start": int(x[0])}

    def edge_occupancy(self, e: Edge) -> int:
        """Largest number of beats on the edge just after a write: the depth it needs to never stall."""
        if e.producer is None or e.consumer is None:
            return 0
        w, r = self.write_times[e.producer], self.edge_reads[e.index]
        if not len(w):
            return 0
        cnt = np.searchsorted(r, w, side="left")
        return int(max(1, int((np.arange(1, len(w) + 1) - cnt).max())))

