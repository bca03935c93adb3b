"""The base class of every dataflow (HW) layer: one class per op holds everything about it but its Verilog.

Each op is a qonnx ``CustomOp`` (so qonnx and FINN+ can execute graphs holding onebit's own ops) with
FINN's attribute names, plus what the simulator and the hardware build need:

- ``input_shapes`` / ``output_shape`` (NHWC, batch 1) and their folded forms, stream widths in bits;
- ``execute(inputs)``: bit-exact numpy over a whole batch of frames (leading axis N);
- ``step_layout()``: the per-frame step sequence of its step machine (:mod:`onebit.export.dataflow.layout`),
  which the simulator times and the RTL runs, and ``pipeline_depth()``, the cycles from a writing step to the
  beat leaving the layer; ``exp_cycles()`` (cycles per frame) is the layout's period;
- ``folding()``: the PE/SIMD attributes and what they must divide; ``resources()``: a LUT/memory estimate for
  the folding search;
- ``check(model)``: GraphError unless the node's attributes and parameter tensors are what the op declares
  (:mod:`onebit.export.dataflow.validate` checks the graph around them); every other method may assume them.

Tensors are float32 containers holding integers; ``DataType`` names (qonnx) annotate them.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np
from onnx import AttributeProto, helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from onebit.errors import GraphError, UnsupportedError
from onebit.export.dataflow.layout import StepLayout, one_to_one

FINN_DOMAIN = "finn.custom_op.fpgadataflow"
ONEBIT_DOMAIN = "onebit.export.dataflow.ops"

#: the attribute kinds of ``get_nodeattr_types`` as ONNX attribute types, and how messages call them
ATTR_KINDS = {"i": (AttributeProto.INT, "an integer"), "ints": (AttributeProto.INTS, "a list of integers"),
              "s": (AttributeProto.STRING, "a string"), "f": (AttributeProto.FLOAT, "a float"),
              "floats": (AttributeProto.FLOATS, "a list of floats")}
ATTR_TYPE_WORDS = {code: word for code, word in ATTR_KINDS.values()}
#: the widest integer a stream or parameter may hold (tensors are float32/float64 containers of integers)
MAX_BITS = 32


def is_dtype_attr(name: str) -> bool:
    """FINN's data-type attributes: ``inputDataType``, ``OutputDataType``, ``dataType``, ``lhs_dtype`` ..."""
    return name.lower().endswith(("datatype", "_dtype"))


def supported_dtype(name: str) -> DataType | None:
    """The qonnx DataType called ``name`` if onebit computes with it (an integer type of 1 to MAX_BITS bits)."""
    try:
        dt = DataType[name]
    except (KeyError, ValueError, TypeError):
        return None
    return dt if dt.is_integer() and 1 <= dt.bitwidth() <= MAX_BITS else None


class HWOp(CustomOp):
    """Common behaviour; subclasses declare ``attrs`` and implement the shape/execute/cycle methods."""

    op_type = ""
    domain = FINN_DOMAIN
    #: op-specific FINN attributes: name -> (type, required, default)
    attrs: dict = {}
    #: integer attributes (for a list: each element) that must be >= 1; ``nonnegative`` those that must be >= 0
    positive: tuple[str, ...] = ()
    nonnegative: tuple[str, ...] = ()
    #: list attributes of a fixed length: name -> length
    lengths: dict[str, int] = {}
    #: folding attribute -> what the number in ``folding()`` is, for messages ("MH")
    divides: dict[str, str] = {}

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

    # ----- validation ----------------------------------------------------------------------------------
    def fail(self, what: str, error: type = GraphError):
        raise error(f"node {self.name} ({self.onnx_node.op_type}): {what}")

    def check(self, model=None) -> None:
        """GraphError (one line, naming the node) unless the node is one this op can compute: declared attributes
        present with their types, known data types, positive counts, lists of the right length, folding that
        divides what it must, and (with ``model``) parameter tensors of the right shape and values. Each later
        step relies on the earlier ones."""
        self.check_attributes()
        self.check_numbers()
        self.check_rules()
        self.check_folding()
        self.check_ports()
        if model is not None:
            self.check_params(model)

    def check_attributes(self) -> None:
        present = {a.name: a for a in self.onnx_node.attribute}
        for name, (kind, required, _default) in self.get_nodeattr_types().items():
            a = present.get(name)
            if a is None:
                if required:
                    self.fail(f"required attribute {name} is missing")
                continue
            code, word = ATTR_KINDS.get(kind, (None, kind))
            if code is not None and a.type != code:
                self.fail(f"attribute {name} is {ATTR_TYPE_WORDS.get(a.type, 'of another type')}; expected {word}")
            if a.type == AttributeProto.STRING and not _is_utf8(a.s):
                self.fail(f"attribute {name} is not UTF-8 text")
            if kind == "s" and is_dtype_attr(name):
                value = self.attr(name)
                value = value.decode() if isinstance(value, bytes) else value
                if (value or required) and supported_dtype(value) is None:
                    self.fail(f"{name} {value!r} is not a data type onebit computes with; expected BIPOLAR, BINARY, "
                              f"TERNARY, INTn or UINTn (n <= {MAX_BITS})")

    def check_numbers(self) -> None:
        for name, length in self.lengths.items():
            n = len(self.attr(name))
            if n != length:
                self.fail(f"attribute {name} has {n} values; expected {length}")
        for names, low in ((self.positive, 1), (self.nonnegative, 0)):
            for name in names:
                value = self.attr(name)
                values = list(value) if isinstance(value, (list, tuple)) else [value]
                if isinstance(value, (list, tuple)) and not values:
                    self.fail(f"attribute {name} is empty")
                if any(v < low for v in values):
                    self.fail(f"{name} {_fmt(value)} must be {'positive' if low else 'non-negative'}")

    def check_rules(self) -> None:
        """Op-specific relations between attributes (overridden)."""

    def check_folding(self) -> None:
        for attr, bound in self.folding().items():
            value = self.attr(attr)
            if value < 1 or bound % value:
                what = self.divides.get(attr, "")
                self.fail(f"{attr} {value} must divide {what + ' ' if what else ''}{bound}", error=GraphError)

    def input_count(self) -> tuple[int, ...]:
        """How many inputs the node may have (streams, then parameters)."""
        return (len(self.stream_inputs()),)

    def output_count(self) -> int:
        return 1

    def check_ports(self) -> None:
        n_in, n_out = len(self.onnx_node.input), len(self.onnx_node.output)
        if n_in not in self.input_count():
            self.fail(f"{n_in} inputs; expected {' or '.join(map(str, self.input_count()))}")
        if n_out != self.output_count():
            self.fail(f"{n_out} outputs; expected {self.output_count()}")
        if any(not t for t in (*self.onnx_node.input, *self.onnx_node.output)):
            self.fail("an input or output has no name")

    def check_params(self, model) -> None:
        """Parameter tensors (overridden by the ops that have them): see :meth:`param`."""

    def param(self, model, index: int, what: str, shapes: list[tuple]) -> np.ndarray:
        """Input ``index``, an initializer of one of ``shapes`` (None: any size >= 1), all finite: the op's
        ``what`` (weights, thresholds)."""
        name = self.onnx_node.input[index]
        value = model.get_initializer(name)
        if value is None:
            self.fail(f"{what} {name!r} is not an initializer (a constant in the graph)")

        def fits(shape):
            return len(shape) == value.ndim and all(n == s or (s is None and n >= 1)
                                                   for n, s in zip(value.shape, shape))
        if not any(fits(s) for s in shapes):
            wanted = " or ".join("(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
                                 for shape in dict.fromkeys(shapes))
            self.fail(f"{what} {name!r} have shape {tuple(value.shape)}; expected {wanted}")
        if value.size and not np.isfinite(value.min() + value.max()):  # min/max propagate nan; one pass each
            self.fail(f"{what} {name!r} hold NaN or infinite values")
        return value

    def check_values(self, value: np.ndarray, what: str, dtype_attr: str) -> None:
        """``value`` (finite) within the data type in attribute ``dtype_attr``, integers where the type is."""
        dt = self.attr_dtype(dtype_attr)
        name = dt.name
        if not value.size:
            return
        lo, hi = float(value.min()), float(value.max())
        if name == "BIPOLAR":
            bad = not np.all(np.abs(value) == 1)
        else:
            bad = lo < dt.min() or hi > dt.max() or not np.array_equal(value, np.rint(value))
        if bad:
            self.fail(f"{what} hold values outside {dtype_attr} {name} ([{dt.min()}, {dt.max()}], integers; got "
                      f"[{lo:g}, {hi:g}])")

    def check_levels(self, steps: int) -> None:
        """Thresholding's outputs ``ActVal + [0, steps]`` (BIPOLAR: +-1 from one threshold) fit outputDataType."""
        odt = self.output_dtype()
        if odt.name == "BIPOLAR":
            if steps != 1:
                self.fail(f"{steps} thresholds per channel for a BIPOLAR output; expected 1")
            return
        lo = int(self.attr("ActVal"))
        if lo < odt.min() or lo + steps > odt.max():
            self.fail(f"ActVal {lo} plus {steps} thresholds gives outputs in [{lo}, {lo + steps}], outside "
                      f"outputDataType {odt.name} ([{odt.min()}, {odt.max()}])")

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


def _fmt(value) -> str:
    return str(list(value)) if isinstance(value, (list, tuple)) else str(value)


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


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
