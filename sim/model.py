"""Per-layer models: bit-exact execution and the cycle model of one HW layer's stream behaviour.

Execution is the op class's own ``execute`` (the reference executor's, vectorised over frames); this module
adds only timing. Every layer is modelled as an **in-order step machine**, as FINN's HLS/RTL layers are: per
frame it runs ``period`` steps (one step per clock cycle when nothing stalls). Some steps read one beat from
an input stream, some write one beat to the output stream(s), some do both, the rest only compute. A step
that reads waits until its beat has arrived; a step that writes waits until the output FIFO has room; a step
that waits stalls every later step (nothing runs ahead). Only the steps that read or write (the *events*)
are stored; the others are implied by the gaps between event positions. So the step time of event ``e`` is
the max-plus recurrence

    T[e] = max(lb[e], T[e-1] + pos[e] - pos[e-1])  =  pos[e] + cummax(max(lb - pos, 0))[e]

(``lb``: the latest of its read-arrival and write-credit times), vectorised over all frames at once.

Unstalled, ``period`` equals the op's ``exp_cycles()`` (FINN's formula) for every op except LabelSelect,
whose K output beats follow its last read (``period = Labels/PE + K - 1``; FINN's formula counts only the
reads). Per-op step layouts (``P`` pixels, ``cf`` channel folds, per frame):

- Thresholding, ElementwiseAdd, DuplicateStreams: read and write beat k at step k.
- ChannelPad: per pixel OutChannels/PE steps; the first NumChannels/PE also read, all write.
- FMPadding: one step per output beat; steps inside the image also read.
- ConvolutionInputGenerator (default style): ``buffer_depth()`` steps that only read (the line buffer fill),
  then per output row ``max(OW*K*cf, Stride*W*cf)`` steps, writing the row's windows from its first step
  and reading the beats that complete the next windows (Stride rows) from its first step too, in parallel
  (a window never waits for a beat read later in its own row, because K >= Stride). 1x1 kernels and ``parallel_window``: step k reads beat k and writes every output beat whose
  last input it is; 2 extra steps per frame.
- MVAU (FINN's Matrix_Vector_Activate loop): per pixel NF*SF steps; the SF steps of neuron fold 0 read the
  input vector (later folds reuse the input buffer); every SF-th step writes PE outputs.
- Pool: step k reads beat k; the last tap of a (pixel, channel fold) also writes.
- GlobalAccPool: P*cf reading steps, then cf writing steps. LabelSelect: Labels/PE reading steps, then the K
  labels, the first one in the last reading step.
- StreamingDataWidthConverter: max(in, out) beats steps; the narrow side moves one beat per step, the wide
  side's beat is read when its first part is needed (down-sizing) or written with its last part (up-sizing).
- StreamingFIFO: not a layer here; the network folds it into its edge as a buffer of ``depth`` beats.

A beat written at step ``t`` reaches the next layer's input ``latency = 1 + pipeline depth`` cycles later: the
step that writes reserves room in the output FIFO, the beat leaves the layer's output pipeline ``depth`` cycles
later and the FIFO offers it one cycle after that. The depths are those of onebit's RTL (``hw/rtl``): the
threshold units (Thresholding, MVAU with thresholds) are a binary search with one pipeline stage per output bit;
every other layer writes in the step itself (:func:`pipeline_depth`). The RTL runs exactly these step machines,
so its cycles equal the model's (co-simulation checks every beat's time on every edge).
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


# ----- per-op step layouts ----------------------------------------------------------------------------------
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


def _ar(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


def _streaming(op: HWOp):
    beats = op.output_beats()
    ins = [op.input_beats(i) for i in op.stream_inputs()]
    if any(b != beats for b in ins):
        raise UnsupportedError(f"node {op.name} ({op.onnx_node.op_type}): input beats {ins} differ from its "
                               f"{beats} output beats; expected a 1:1 stream")
    return beats, [_ar(beats)] * len(ins), _ar(beats)


def _channelpad(op: HWOp):
    p = int(np.prod(op.attr("numInputVectors")))
    pe = op.attr("PE")
    ci, co = op.attr("NumChannels") // pe, op.attr("OutChannels") // pe
    per = (np.arange(p, dtype=np.int64)[:, None] * co + _ar(ci)[None]).ravel()
    return p * co, [per], _ar(p * co)


def _fmpadding(op: HWOp):
    _, oh, ow, c = op.output_shape()
    h, w = op.attr("ImgDim")
    t, l, _, _ = op.attr("Padding")
    cf = c // op.attr("SIMD")
    r = np.arange(t, t + h, dtype=np.int64)[:, None, None]
    col = np.arange(l, l + w, dtype=np.int64)[None, :, None]
    reads = ((r * ow + col) * cf + _ar(cf)[None, None]).ravel()
    return oh * ow * cf, [reads], _ar(oh * ow * cf)


def _swg(op: HWOp):
    kh, kw = op.attr("ConvKernelDim")
    h, w = op.attr("IFMDim")
    oh, ow = op.attr("OFMDim")
    sh, sw = op.attr("Stride")
    dh, dw = op.attr("Dilation")
    cf = op.attr("IFMChannels") // op.attr("SIMD")
    n_in = h * w * cf
    if (kh == kw == 1) or op.attr("parallel_window"):
        per_win = op.output_beats() // (oh * ow)  # cf for 1x1 default style, 1 for parallel windows
        last = ((np.arange(oh, dtype=np.int64)[:, None] * sh + (kh - 1) * dh) * w
                + np.arange(ow, dtype=np.int64)[None] * sw + (kw - 1) * dw)
        if per_win == cf:
            writes = (last[..., None] * cf + _ar(cf)).ravel()
        else:
            writes = (last * cf + cf - 1).ravel()
        return n_in + 2, [_ar(n_in)], writes
    k = kh * kw
    fill = op.buffer_depth()
    row = max(ow * k * cf, sw * w * cf)
    tail = 0
    if op.attr("depthwise"):  # FINN+'s RTL replays each depthwise window once per channel fold
        row += ow * (sw - 1) * (cf - 1)
        tail = (sh - 1) * w * cf
    period = fill + oh * row + tail
    reads = [_ar(fill)]
    left = n_in - fill
    per_row = sh * w * cf
    for r in range(oh):
        take = min(per_row, left) if r < oh - 1 else left
        if take > row:  # more rows to read than the row period holds (unequal strides)
            raise UnsupportedError(f"node {op.name} (ConvolutionInputGenerator): stride {sh}x{sw} reads more "
                                   f"beats per output row than the row period holds; not modelled")
        if take:  # from the row's first step, in parallel with the writes
            reads.append(fill + r * row + _ar(take))
        left -= take
    writes = (fill + np.arange(oh, dtype=np.int64)[:, None] * row + _ar(ow * k * cf)[None]).ravel()
    return period, [np.concatenate(reads)], writes


def _mvau(op: HWOp):
    p = int(np.prod(op.attr("numInputVectors")))
    sf, nf = op.attr("MW") // op.attr("SIMD"), op.attr("MH") // op.attr("PE")
    base = np.arange(p, dtype=np.int64)[:, None] * (nf * sf)
    reads = (base + _ar(sf)[None]).ravel()
    writes = (base + (_ar(nf) * sf + sf - 1)[None]).ravel()
    return p * nf * sf, [reads], writes


def _pool(op: HWOp):
    oh, ow = op.attr("OutImgDims")
    cf = op.attr("Channels") // op.attr("PE")
    k = op.taps()
    base = np.arange(oh * ow, dtype=np.int64)[:, None] * (k * cf)
    writes = (base + (k - 1) * cf + _ar(cf)[None]).ravel()
    return oh * ow * k * cf, [_ar(oh * ow * k * cf)], writes


def _globalaccpool(op: HWOp):
    n_in, n_out = op.input_beats(), op.output_beats()
    cf = op.attr("NumChannels") // op.attr("PE")
    if n_out == n_in:  # no spatial axes: a pass-through
        return n_in + cf, [_ar(n_in)], _ar(n_in)
    return n_in + n_out, [_ar(n_in)], n_in + _ar(n_out)


def _labelselect(op: HWOp):
    vecs = int(np.prod(op.attr("numInputVectors")))
    lf, k = op.attr("Labels") // op.attr("PE"), op.attr("K")
    per = lf + k - 1
    base = np.arange(vecs, dtype=np.int64)[:, None] * per
    reads = (base + _ar(lf)[None]).ravel()
    writes = (base + lf - 1 + _ar(k)[None]).ravel()
    return vecs * per, [reads], writes


def _dwc(op: HWOp):
    n_in, n_out = op.input_beats(), op.output_beats()
    if n_in == n_out:
        return n_in, [_ar(n_in)], _ar(n_in)
    if n_in > n_out:  # up-sizing: one input beat per step; an output beat leaves with its last part
        writes = -((-(_ar(n_out) + 1) * n_in) // n_out) - 1  # ceil((j+1) * n_in / n_out) - 1
        return n_in, [_ar(n_in)], writes
    reads = (_ar(n_in) * n_out) // n_in  # down-sizing: an input beat is read when its first part is needed
    return n_out, [reads], _ar(n_out)


LAYOUTS = {
    "Thresholding": _streaming, "ElementwiseAdd": _streaming, "AddStreams": _streaming,
    "DuplicateStreams": _streaming, "ChannelPad": _channelpad, "FMPadding": _fmpadding,
    "ConvolutionInputGenerator": _swg, "MVAU": _mvau, "Pool": _pool, "GlobalAccPool": _globalaccpool,
    "LabelSelect": _labelselect, "StreamingDataWidthConverter": _dwc,
}


def threshold_bits(steps: int) -> int:
    """Stages of a binary search over ``steps`` sorted thresholds: the bits of a count in [0, steps]."""
    return max(1, int(steps).bit_length())


def threshold_steps(op: HWOp, model=None) -> int:
    """Thresholds per channel of a Thresholding or thresholded MVAU (its threshold tensor's, if ``model``)."""
    if op.onnx_node.op_type == "Thresholding":
        return int(op.attr("numSteps"))
    if model is not None and len(op.onnx_node.input) > 2:
        t = model.get_initializer(op.onnx_node.input[2])
        if t is not None:
            return int(t.shape[-1])
    return 2 ** op.output_dtype().bitwidth() - 1


def pipeline_depth(op: HWOp, model=None) -> int:
    """Cycles between a step that writes and its beat leaving the layer, in onebit's RTL."""
    kind = op.onnx_node.op_type
    if kind == "Thresholding" or (kind == "MVAU" and not op.attr("noActivation")):
        return threshold_bits(threshold_steps(op, model))
    return 0


def layer_model(op: HWOp, model=None) -> LayerModel:
    """The cycle model of ``op`` (any dataflow layer but StreamingFIFO, which the network folds into edges);
    ``model`` (the graph) gives the threshold counts that set the RTL's pipeline depths."""
    kind = op.onnx_node.op_type
    layout = LAYOUTS.get(kind)
    if layout is None:
        raise UnsupportedError(f"node {op.name}: the simulator has no cycle model for {kind}; expected one of "
                               f"{', '.join(sorted(LAYOUTS))}")
    period, read_pos, write_pos = layout(op)
    ins = [op.input_beats(i) for i in op.stream_inputs()]
    if [len(r) for r in read_pos] != ins or len(write_pos) != op.output_beats():
        raise UnsupportedError(f"node {op.name} ({kind}): its folding gives {ins} input and {op.output_beats()} "
                               f"output beats per frame, which its stream layout cannot produce; check PE/SIMD")
    pos, reads, writes = _events(int(period), read_pos, write_pos, op.name)
    return LayerModel(op, int(period), pos, reads, writes, LATENCY + pipeline_depth(op, model))
