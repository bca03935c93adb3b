"""Per-layer models: the cycle model of one HW layer's stream behaviour.

Execution is the op class's own ``execute`` (the reference executor's, vectorised over frames), and the op's
step layout (``HWOp.step_layout``, :mod:`onebit.export.dataflow.layout`) says which of its ``period`` steps
per frame read which input beat and write which output beat; this module adds only timing. A step that reads
waits until its beat has arrived; a step that writes waits until the output FIFO has room; a step that waits
stalls every later step (nothing runs ahead). Only the steps that read or write (the *events*) are stored; the
others are implied by the gaps between event positions. So the step time of event ``e`` is the max-plus
recurrence

    T[e] = max(lb[e], T[e-1] + pos[e] - pos[e-1])  =  pos[e] + cummax(max(lb - pos, 0))[e]

(``lb``: the latest of its read-arrival and write-credit times), vectorised over all frames at once.

A beat written at step ``t`` reaches the next layer's input ``latency = 1 + pipeline depth`` cycles later: the
step that writes reserves room in the output FIFO, the beat leaves the layer's output pipeline ``depth`` cycles
later (``HWOp.pipeline_depth``, the depth of onebit's RTL) and the FIFO offers it one cycle after that. The RTL
runs exactly these step machines, so its cycles equal the model's (co-simulation checks every beat's time on
every edge). StreamingFIFO is not a layer here: the network folds it into its edge as a buffer of ``depth``
beats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from onebit.errors import UnsupportedError
from onebit.export.dataflow.base import HWOp

#: cycles from a step that writes a beat to the first step of the consumer that can read it (no pipeline)
LATENCY = 1
#: "minus infinity" for times (int64, far from overflow when cycles are added)
NEG = -(1 << 60)


@dataclass
class LayerModel:
    """The cycle model of one layer (see the module docstring); ``op`` is the dataflow op it times.

    ``pos``: step positions (within one frame) of the events, strictly increasing; ``reads[i]``: for the i-th
    stream input, the event that reads each of its beats (per frame); ``writes``: the event that writes each
    output beat (per frame). ``period``: steps per frame.
    """

    op: HWOp
    period: int
    pos: np.ndarray
    reads: list[np.ndarray]
    writes: np.ndarray
    latency: int = LATENCY
    _tiled: dict = field(default_factory=dict, repr=False)

    # ----- what the layer is ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.op.name

    @property
    def op_type(self) -> str:
        return self.op.onnx_node.op_type

    @property
    def events(self) -> int:
        return len(self.pos)

    def in_beats(self, i: int = 0) -> int:
        return len(self.reads[i])

    @property
    def out_beats(self) -> int:
        return len(self.writes)

    def execute(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Bit-exact execution over a batch of frames: the op's own (reference executor's) ``execute``."""
        return self.op.execute(inputs)

    def exp_cycles(self) -> int:
        """FINN's cycles per frame (the op's ``exp_cycles``)."""
        return int(self.op.exp_cycles())

    # ----- stream behaviour of one unstalled frame -------------------------------------------------------
    def fill_beats(self, i: int = 0) -> int:
        """Input beats read (on input ``i``) before the first output beat leaves."""
        return int(np.searchsorted(self.reads[i], self.writes[0], side="right")) if self.out_beats else 0

    def fill_cycles(self) -> int:
        """Cycles from the frame's first step until its first output beat reaches the next layer, unstalled."""
        return int(self.pos[self.writes[0]]) + self.latency

    def rates(self) -> dict:
        """Average beats per cycle on each input and on the output over an unstalled frame."""
        return {"in": [round(self.in_beats(i) / self.period, 6) for i in range(len(self.reads))],
                "out": round(self.out_beats / self.period, 6)}

    def summary(self) -> dict:
        return {"period": self.period, "exp_cycles": self.exp_cycles(), "fill_cycles": self.fill_cycles(),
                "fill_beats": self.fill_beats() if self.reads else 0, "in_beats": [len(r) for r in self.reads],
                "out_beats": self.out_beats, **{f"rate_{k}": v for k, v in self.rates().items()}}

    # ----- timing over N frames ------------------------------------------------------------------------
    def tiled(self, n: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """(pos, reads, writes) for ``n`` back-to-back frames (event indices and step positions global)."""
        if n not in self._tiled:
            ne = self.events
            frame = np.arange(n, dtype=np.int64)[:, None]
            pos = (frame * self.period + self.pos[None]).ravel()
            reads = [(frame * ne + r[None]).ravel() for r in self.reads]
            writes = (frame * ne + self.writes[None]).ravel()
            self._tiled = {n: (pos, reads, writes)}  # keep one frame count: the arrays can be large
        return self._tiled[n]

    def lower_bounds(self, n: int, arrivals: list[np.ndarray], credit: np.ndarray | None):
        """(lb_in, lb_out) per event: the latest arrival of a beat it reads, the credit of the beat it writes."""
        pos, reads, writes = self.tiled(n)
        lb_in = np.full(len(pos), NEG, dtype=np.int64)
        for k, (idx, arr) in enumerate(zip(reads, arrivals)):
            lb_in[idx] = arr if k == 0 else np.maximum(lb_in[idx], arr)
        lb_out = None
        if credit is not None:
            lb_out = np.full(len(pos), NEG, dtype=np.int64)
            lb_out[writes] = credit
        return lb_in, lb_out

    def times(self, n: int, arrivals: list[np.ndarray], credit: np.ndarray | None = None) -> np.ndarray:
        """Step time of every event over ``n`` frames, given the arrival time of every input beat (one array
        per stream input, ``n * in_beats`` long) and the earliest time each output beat may be written
        (``credit``, ``n * out_beats`` long; None: the output never blocks)."""
        pos, _, _ = self.tiled(n)
        lb_in, lb_out = self.lower_bounds(n, arrivals, credit)
        x = lb_in if lb_out is None else np.maximum(lb_in, lb_out, out=lb_in)
        x -= pos
        np.maximum(x, 0, out=x)
        np.maximum.accumulate(x, out=x)
        x += pos
        return x


# ----- events of one frame -----------------------------------------------------------------------------------
def _events(period: int, read_pos: list[np.ndarray], write_pos: np.ndarray, name: str) -> tuple:
    """Merge the read and write step positions of one frame into events."""
    arrays = [np.asarray(p, dtype=np.int64) for p in (*read_pos, write_pos)]
    for p in arrays:
        if len(p) and (np.any(np.diff(p) <= 0) or p[0] < 0 or p[-1] >= period):
            raise AssertionError(f"{name}: step positions must be strictly increasing within the period")
    if all(len(p) == len(arrays[0]) and np.array_equal(p, arrays[0]) for p in arrays[1:]):
        idx = np.arange(len(arrays[0]), dtype=np.int64)  # every event reads and writes (1:1 streaming layers)
        return arrays[0], [idx] * len(read_pos), idx
    total = sum(len(p) for p in arrays)
    if period <= 8 * total:  # a step bitmap is cheaper than sorting
        mark = np.zeros(period, dtype=bool)
        for p in arrays:
            mark[p] = True
        pos = np.flatnonzero(mark).astype(np.int64)
        rank = np.cumsum(mark, dtype=np.int64) - 1
        return pos, [rank[p] for p in arrays[:-1]], rank[arrays[-1]]
    c = np.sort(np.concatenate(arrays))
    pos = c[np.concatenate([[True], c[1:] != c[:-1]])]
    return pos, [np.searchsorted(pos, p) for p in arrays[:-1]], np.searchsorted(pos, arrays[-1])


def layer_model(op: HWOp, model=None) -> LayerModel:
    """The cycle model of ``op`` (any dataflow layer but StreamingFIFO, which the network folds into edges);
    ``model`` (the graph) gives the threshold counts that set the RTL's pipeline depths."""
    kind = op.onnx_node.op_type
    layout = op.step_layout()
    period, read_pos, write_pos = layout.period, layout.reads, layout.writes
    ins = [op.input_beats(i) for i in op.stream_inputs()]
    if [len(r) for r in read_pos] != ins or len(write_pos) != op.output_beats():
        raise UnsupportedError(f"node {op.name} ({kind}): its folding gives {ins} input and {op.output_beats()} "
                               f"output beats per frame, which its stream layout cannot produce; check PE/SIMD")
    pos, reads, writes = _events(int(period), read_pos, write_pos, op.name)
    return LayerModel(op, int(period), pos, reads, writes, LATENCY + op.pipeline_depth(model))
