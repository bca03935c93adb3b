"""The base class of every dataflow (HW) layer: one class per op holds everything about it but its Verilog.

Each op is a qonnx ``CustomOp`` (so qonnx and FINN+ can execute graphs holding onebit's own ops) with
FINN's attribute names, plus what the simulator and the hardware build need:

- ``input_shapes`` / ``output_shape`` (NHWC, batch 1) and their folded forms, stream widths in bits;
- ``execute(inputs)``: bit-exact numpy over a whole batch of frames (leading axis N);
- ``step_layout()``: the per-frame step sequence of its step machine (:mod:`onebit.export.dataflow.layout`),
  which the simulator times and the RTL runs, and ``pipeline_depth()``, the cycles from a writing step to the
  beat leaving the layer; ``exp_cycles()`` (cycles per frame) is the layout's period;
- ``folding()``: the PE/SIMD attributes and what they must divide; ``resources()``: a LUT/memory estimate for
  the folding search.

Tensors are float32 containers holding integers; ``DataType`` names (qonnx) annotate them.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from onebit.errors import UnsupportedError
from onebit.export.dataflow.layout import StepLayout, one_to_one

FINN_DOMAIN = "finn.custom_op.fpgadataflow"
ONEBIT_DOMAIN = "onebit.export.dataflow.ops"


class HWOp(CustomOp):
    """Common behaviour; subclasses declare ``attrs`` and implement the shape/execute/cycle methods."""

    op_type = ""
    domain = FINN_DOMAIN
    #: op-specific FINN attributes: name -> (type, required, default)
    attrs: dict = {}

    # ----- qonnx CustomOp interface --------------------------------------------------------------------
    def get_nodeattr_types(self):
        common = {"backend": ("s", False, "fpgadataflow"), "inFIFODepths": ("ints", False, [2]),
                  "outFIFODepths": ("ints", False, [2])}
        return {**common, **self.attrs}

    def make_shape_compatible_op(self, model):
        return self.make_const_shape_op(self.output_shape())

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], self.output_dtype())

    def verify_node(self):
        return []

    def execute_node(self, context, graph):
        ins = [context[name] for name in self.onnx_node.input if name]
        outs = self.execute(ins)
        for name, value in zip(self.onnx_node.output, outs):
            context[name] = value.astype(np.float32).reshape(context[name].shape)

    def get_nodeattr(self, name):
        cache = self.__dict__.get("_attrs")
        if cache is None:
            return super().get_nodeattr(name)
        if name not in cache:
            cache[name] = super().get_nodeattr(name)
        return cache[name]

    def set_nodeattr(self, name, value):
        super().set_nodeattr(name, value)
        self.__dict__.get("_attrs", {}).pop(name, None)

    # ----- onebit interface -------------------------------------------------------------------------
    def frozen(self) -> HWOp:
        """This op, reading each attribute from the node once: for a graph nothing changes while the op is
        used (execution, simulation); qonnx reads attributes by a linear search on every call."""
        self.__dict__.setdefault("_attrs", {})
        return self

    @property
    def name(self) -> str:
        return self.onnx_node.name

    def attr(self, name):
        return self.get_nodeattr(name)

    def attr_dtype(self, name) -> DataType:
        return DataType[self.get_nodeattr(name)]

    def input_dtype(self, i: int = 0) -> DataType:
        return self.attr_dtype("inputDataType")

    def output_dtype(self) -> DataType:
        return self.attr_dtype("outputDataType")

    @abstractmethod
    def input_shapes(self) -> list[tuple]:
        """Normal (unfolded) NHWC shapes of the stream inputs, batch 1."""

    @abstractmethod
    def output_shape(self) -> tuple:
        """Normal (unfolded) NHWC shape of the output, batch 1."""

    def stream_inputs(self) -> list[int]:
        """Indices of inputs that are streams (the others are parameters: weights, thresholds)."""
        return [0]

    def fold_of_input(self, i: int = 0) -> int:
        """Elements per beat on input stream ``i`` (PE or SIMD)."""
        return self.fold_of_output()

    def fold_of_output(self) -> int:
        return int(self.attr("PE"))

    def folded_input_shape(self, i: int = 0) -> tuple:
        shape = self.input_shapes()[i]
        f = self.fold_of_input(i)
        return (*shape[:-1], shape[-1] // f, f)

    def folded_output_shape(self) -> tuple:
        shape = self.output_shape()
        f = self.fold_of_output()
        return (*shape[:-1], shape[-1] // f, f)

    def instream_width(self, i: int = 0) -> int:
        return self.fold_of_input(i) * self.input_dtype(i).bitwidth()

    def outstream_width(self) -> int:
        return self.fold_of_output() * self.output_dtype().bitwidth()

    def input_beats(self, i: int = 0) -> int:
        """Stream transfers per frame on input ``i``."""
        return int(np.prod(self.folded_input_shape(i)[1:-1]))

    def output_beats(self) -> int:
        return int(np.prod(self.folded_output_shape()[1:-1]))

    @abstractmethod
    def step_layout(self) -> StepLayout:
        """The op's step machine over one frame: its period and the steps that read and write each beat."""

    def exp_cycles(self) -> int:
        """Cycles per frame, unstalled: the step layout's period (FINN's figure for every op but LabelSelect)."""
        return int(self.step_layout().period)

    def pipeline_depth(self, model=None) -> int:
        """Cycles from a step that writes a beat to the beat leaving the layer, in onebit's RTL; 0: the step itself
        delivers it. ``model`` (the graph) holds parameter tensors some ops size their pipelines by."""
        return 0

    def one_to_one_layout(self) -> StepLayout:
        """Step k reads beat k of every stream input and writes output beat k (streaming layers)."""
        beats = self.output_beats()
        ins = [self.input_beats(i) for i in self.stream_inputs()]
        if any(b != beats for b in ins):
            raise UnsupportedError(f"node {self.name} ({self.onnx_node.op_type}): input beats {ins} differ from its "
                                   f"{beats} output beats; expected a 1:1 stream")
        return one_to_one(beats, len(ins))

    def folding(self) -> dict[str, int]:
        """Folding attribute -> the number it must divide (e.g. ``{"PE": MH, "SIMD": MW}``)."""
        return {}

    def resources(self) -> dict:
        """``{"LUT": ..., "mem_bits": ...}``: a first-order estimate used by the folding search."""
        return {"LUT": 0, "mem_bits": 0}

    @abstractmethod
    def execute(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Bit-exact outputs for a batch of frames (leading axis N). Inputs are never written in place; an
        output may be an input itself (pass-through layers)."""


def make_node(cls: type[HWOp], inputs: list[str], outputs: list[str], name: str, **attrs):
    return helper.make_node(cls.op_type, inputs, outputs, name=name, domain=cls.domain, **attrs)


def frames(x: np.ndarray, shape: tuple) -> np.ndarray:
    """View a batch as ``(N, *shape[1:])`` (the op's batch-1 shape with the frames in front)."""
    return x.reshape((-1, *shape[1:]))


def multithreshold(x: np.ndarray, thresholds: np.ndarray, bias: float, scale: float = 1.0,
                   integer: bool = False, reuse: bool = False) -> np.ndarray:
    """Channels-last thresholding: ``scale * #{t : x >= t} + bias`` with per-channel (or shared) thresholds,
    as float32. ``integer``: the caller guarantees that x holds integers (its data types say so); ``reuse``:
    x is the caller's own scratch (an accumulator), which may receive the result."""
    t = thresholds if thresholds.shape[0] > 1 else np.broadcast_to(thresholds, (x.shape[-1], thresholds.shape[1]))
    if t.shape[1] > 8 and np.all(np.diff(t, axis=1) >= 0):
        levels = _level_table(x, t, scale, bias, integer, reuse)
        if levels is not None:
            return levels
        counts = _count_sorted(x, t)
    else:
        counts = np.zeros(x.shape, dtype=np.int32)
        for j in range(t.shape[1]):  # few steps: each pass is vectorised over frames and channels
            counts += x >= t[:, j]
    return (scale * counts + bias).astype(np.float32)


def _level_table(x: np.ndarray, t: np.ndarray, scale: float, bias: float, integer: bool,
                 reuse: bool = False) -> np.ndarray | None:
    """The output levels looked up in a per-channel table over every integer in x's range, when x holds
    integers and that table is much smaller than x (the usual case: accumulators span a few thousand values);
    None otherwise. One conversion, one add and one gather over x."""
    if x.size == 0:
        return None
    lo, hi = float(x.min()), float(x.max())
    if not (-(2.0**30) < lo and hi < 2.0**30):  # int32 indices below (this also refuses inf and nan)
        return None
    span = int(hi - lo) + 1
    shared = bool(np.all(t == t[:1]))
    rows = 1 if shared else t.shape[0]
    if rows * span * 4 > min(x.size, 2**32):
        return None
    xi = x.astype(np.int32)
    if not integer and not np.array_equal(xi, x):
        return None
    values = lo + np.arange(span, dtype=np.float64)
    counts = _count_sorted(np.broadcast_to(values[:, None], (span, rows)), t[:rows]).T.ravel()  # (rows, span)
    table = (scale * counts + bias).astype(np.float32)
    offsets = -int(lo) if shared else np.arange(rows, dtype=np.int32) * span - int(lo)
    xi += offsets
    out = x if reuse and x.dtype == np.float32 and x.flags.c_contiguous else None
    return np.take(table, xi, out=out, mode="clip" if out is not None else "raise")


def _count_sorted(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``#{t_c : x >= t_c}`` for sorted per-channel thresholds with one ``searchsorted``: channel c's thresholds
    and inputs are shifted by ``c * span`` into disjoint ranges (exact: integers well below 2**53)."""
    tf = np.where(np.isfinite(t), t, np.sign(t) * 1e15).astype(np.float64)
    lo = min(float(tf.min()), float(x.min(initial=0)))
    span = max(float(tf.max()), float(x.max(initial=0))) - lo + 2.0
    offs = np.arange(t.shape[0], dtype=np.float64) * span - lo
    flat_t = (tf + offs[:, None]).ravel()
    pos = np.searchsorted(flat_t, (x.astype(np.float64) + offs), side="right")
    return pos - np.arange(t.shape[0], dtype=np.int64) * t.shape[1]


def threshold_bits(steps: int) -> int:
    """Stages of a binary search over ``steps`` sorted thresholds: the bits of a count in [0, steps]."""
    return max(1, int(steps).bit_length())


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def acc_bits_for(mw: int, ibits: int, signed: bool) -> int:
    return int(math.ceil(math.log2(max(mw, 1)) + ibits + (0 if signed else 1)))
