"""QONNX -> integer graph: every activation tensor becomes an integer code, every quantizer a MultiThreshold.

The lowering is an abstract interpretation of the QONNX graph in topological order. Each float tensor
of the source graph is described by an :class:`IntTensor`:

    float value = chain(fl32(scale * I))

where ``I`` is an integer tensor of the new graph (with a known per-channel range), ``scale`` a float32
constant (scalar or per channel), and ``chain`` the elementwise float nodes (Mul, Div, Add, Sub,
BatchNormalization, Relu, ...) met since the last integer operation. Integer operations (Conv and MatMul
with integer weights, Add of equal scales, sum pooling, padding, reshapes) require an empty chain; a
quantizer ends the chain: ``Quant(chain(fl32(scale * I)))`` is a monotone step function of ``I`` per
channel and becomes ``MultiThreshold(I)``. Its thresholds are found by bisection over the integer range,
evaluating the *original* nodes with qonnx, so the integer graph reproduces QONNX execution exactly, ties
included, whatever the float evaluation order of the ops.

Weights: a Quant/BipolarQuant of a constant (optionally divided or multiplied by a constant) is an integer
tensor times a scale; the scale moves to the output. A Conv/Gemm bias (float, or quantized) is a per-channel
float Add that starts the output's chain. The integer graph keeps NCHW and standard ONNX ops
(Conv, MatMul, Add, Pad, MaxPool, ReduceSum, Reshape/Flatten) plus qonnx's MultiThreshold, so qonnx
executes it. The graph's output is the last integer tensor; the float nodes that turn it into the source
graph's output (``fl32(scale * I)`` and the final chain, e.g. the logits' 1/T) follow it as a float tail,
recorded in the metadata ``onebit.integer_output``.

Each op's rule is one small function in ``RULES``; anything else is refused with the node and the reason.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from onebit.errors import UnsupportedError
from onebit.export.graphs import clean

CHAIN_OPS = {"Mul", "Div", "Add", "Sub", "BatchNormalization", "Relu", "Identity", "Clip"}
QUANT_OPS = {"Quant", "BipolarQuant"}
META_OUTPUT = "onebit.integer_output"


# ----- descriptors ----------------------------------------------------------------------------------
@dataclass
class IntTensor:
    """``float = chain(fl32(scale * I))``; ``lo``/``hi`` bound ``I`` per channel (or as scalars)."""

    name: str
    scale: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    shape: list[int]
    chain: list[onnx.NodeProto] = field(default_factory=list)
    chain_input: str = ""  # the source tensor the chain starts from

    @property
    def channel_axis(self) -> int:
        return 1

    @property
    def channels(self) -> int:
        return self.shape[1] if len(self.shape) > 1 else 1

    def per_channel(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v)
        return np.broadcast_to(v.reshape(-1), (self.channels,)) if v.size in (1, self.channels) else v


@dataclass
class IntWeight:
    """A constant ``scale * W`` with integer ``W``; ``scale`` scalar or per output channel."""

    values: np.ndarray
    scale: np.ndarray


def dtype_for(lo: float, hi: float) -> DataType:
    """The smallest qonnx integer type holding [lo, hi] (BIPOLAR for {-1, +1} is chosen by the caller)."""
    lo, hi = int(np.floor(lo)), int(np.ceil(hi))
    if lo >= 0:
        bits = max(1, int(hi).bit_length())
        return DataType[f"UINT{bits}"]
    bits = 1
    while not (-(2 ** (bits - 1)) <= lo and hi <= 2 ** (bits - 1) - 1):
        bits += 1
    return DataType[f"INT{bits}"]


# ----- the lowering context ---------------------------------------------------------------------------
class Lowering:
    def __init__(self, src: ModelWrapper):
        self.src = src
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}
        self.dtypes: dict[str, DataType] = {}
        self.values: dict[str, IntTensor | IntWeight] = {}
        self.inputs: list[onnx.ValueInfoProto] = []
        self.counter = 0

    # helpers
    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}_{self.counter}"

    def const(self, name: str) -> np.ndarray | None:
        return self.src.get_initializer(name)

    def shape(self, name: str) -> list[int]:
        return list(self.src.get_tensor_shape(name))

    def emit(self, op: str, inputs: list[str], stem: str, domain: str = "", **attrs) -> str:
        out = self.fresh(stem)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_node", domain=domain, **attrs))
        return out

    def add_init(self, stem: str, value: np.ndarray, dtype: DataType | None = None) -> str:
        name = self.fresh(stem)
        self.inits[name] = np.asarray(value, dtype=np.float32) if value.dtype != np.int64 else value
        if dtype is not None:
            self.dtypes[name] = dtype
        return name

    def int_input(self, node: onnx.NodeProto, index: int = 0) -> IntTensor:
        name = node.input[index]
        v = self.values.get(name)
        if not isinstance(v, IntTensor):
            what = "a constant" if isinstance(v, IntWeight) or self.const(name) is not None else "not quantized"
            raise UnsupportedError(f"node {node.name} ({node.op_type}): input {name!r} is {what}; expected an "
                                   f"activation that a Quant node made integer")
        return v

    def integer_input(self, node: onnx.NodeProto, index: int = 0) -> IntTensor:
        """An input that must be a pure integer tensor (no float ops pending since the last quantizer)."""
        v = self.int_input(node, index)
        if v.chain:
            ops = ", ".join(f"{n.op_type} {n.name}" for n in v.chain)
            raise UnsupportedError(f"node {node.name} ({node.op_type}): input {node.input[index]!r} passed through "
                                   f"float ops ({ops}) after its quantizer; expected a Quant node in between")
        return v

    def linear_input(self, node: onnx.NodeProto, index: int = 0, positive: bool = False) -> IntTensor:
        """An input for a linear op (pooling, reshape): a pending chain of constant Mul/Div is folded into the
        scale, since such ops commute with it (exact up to float32 rounding of the scale)."""
        v = self.int_input(node, index)
        if not v.chain:
            return v
        scale = np.asarray(v.scale, np.float32).reshape(-1)
        for n in v.chain:
            k = self.const(n.input[1]) if n.op_type in ("Mul", "Div") and len(n.input) > 1 else None
            if k is None or (positive and np.any(np.asarray(k) <= 0)):
                return self.integer_input(node, index)  # raises, naming the float ops
            k = np.asarray(k, np.float32).reshape(-1)
            scale = (scale * k if n.op_type == "Mul" else scale / k).astype(np.float32)
        return IntTensor(v.name, scale, v.lo, v.hi, v.shape)

    def weight_input(self, node: onnx.NodeProto, index: int) -> IntWeight:
        name = node.input[index]
        v = self.values.get(name)
        if isinstance(v, IntWeight):
            return v
        if self.const(name) is not None:
            raise UnsupportedError(f"node {node.name} ({node.op_type}): weight {name!r} is a float constant; "
                                   f"expected a quantized weight (Quant or BipolarQuant)")
        raise UnsupportedError(f"node {node.name} ({node.op_type}): weight {name!r} is not a constant")

    def set_int(self, src_name: str, value: IntTensor) -> None:
        self.values[src_name] = value
        lo, hi = float(np.min(value.lo)), float(np.max(value.hi))
        self.dtypes.setdefault(value.name, dtype_for(lo, hi))


# ----- threshold search ---------------------------------------------------------------------------------
def quant_params(low: Lowering, node: onnx.NodeProto) -> tuple[np.ndarray, float, list[float]]:
    """(scale, zero point, achievable output codes ``y / scale``) of an activation quantizer."""
    if node.op_type == "BipolarQuant":
        scale = low.const(node.input[1])
        return np.asarray(scale, np.float32), 0.0, [-1.0, 1.0]
    scale, zp, bits = (low.const(i) for i in node.input[1:4])
    if scale is None or zp is None or bits is None:
        raise UnsupportedError(f"node {node.name} (Quant): scale, zero point and bit width must be constants")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    bits, signed, narrow = int(bits), int(attrs.get("signed", 1)), int(attrs.get("narrow", 0))
    rounding = attrs.get("rounding_mode", b"ROUND")
    rounding = rounding.decode() if isinstance(rounding, bytes) else rounding
    if rounding.upper() not in ("ROUND", "HALF_EVEN"):
        raise UnsupportedError(f"node {node.name} (Quant): rounding mode {rounding}; expected ROUND")
    if np.asarray(zp).size != 1:
        raise UnsupportedError(f"node {node.name} (Quant): per-channel zero points are not supported")
    if bits == 1 and signed:
        raise UnsupportedError(f"node {node.name} (Quant): 1-bit signed Quant; expected BipolarQuant")
    if bits > 16:  # one threshold per level: 2**bits - 1 of them per channel
        raise UnsupportedError(f"node {node.name} (Quant): a {bits}-bit activation quantizer; expected at most 16 bits")
    qmin = -(2 ** (bits - 1)) + int(narrow) if signed else 0
    qmax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1 - int(narrow)
    z = float(np.asarray(zp).reshape(-1)[0])
    if z != round(z):
        raise UnsupportedError(f"node {node.name} (Quant): non-integer zero point {z}")
    return np.asarray(scale, np.float32), z, [float(q - z) for q in range(qmin, qmax + 1)]


class ChainEvaluator:
    """Runs ``Quant(chain(fl32(scale * I)))`` with qonnx on probe values of ``I``, one row per channel."""

    def __init__(self, low: Lowering, x: IntTensor, quant: onnx.NodeProto, levels_per_channel: int):
        self.x, self.quant = x, quant
        c, n = x.channels, levels_per_channel
        self.probe_shape = [1, c, n, 1] if len(x.shape) == 4 else ([n, c] if len(x.shape) == 2 else None)
        if self.probe_shape is None:
            raise UnsupportedError(f"node {quant.name}: quantizer on a {len(x.shape)}-D tensor; expected 2-D or 4-D")
        nodes = [copy.deepcopy(n) for n in x.chain] + [copy.deepcopy(quant)]
        first = nodes[0]
        first.input[0] = "probe"
        inits = []
        for nd in nodes:
            for i in nd.input[1:]:
                v = low.const(i)
                if v is not None and i not in [t.name for t in inits]:
                    inits.append(onnx.numpy_helper.from_array(np.asarray(v), i))
        out = helper.make_tensor_value_info(quant.output[0], TensorProto.FLOAT, None)
        inp = helper.make_tensor_value_info("probe", TensorProto.FLOAT, self.probe_shape)
        graph = helper.make_graph(nodes, "chain", [inp], [out], initializer=inits)
        model = ModelWrapper(qonnx_make_model(graph, opset_imports=list(low.src.model.opset_import)))
        self.model = model.transform(InferShapes())
        scale = np.asarray(x.scale, np.float32).reshape(-1)
        self.scale = scale if scale.size == 1 else scale.reshape(-1, 1)
        self.out_scale, _, _ = None, None, None

    def codes(self, ints: np.ndarray, out_scale: np.ndarray) -> np.ndarray:
        """``ints``: (C, n) integers -> (C, n) output codes ``y / out_scale``."""
        probe = (self.scale * ints.astype(np.float32)).astype(np.float32)
        probe = probe.reshape(self.probe_shape) if len(self.probe_shape) == 4 else probe.T.copy()
        y = execute_onnx(self.model, {"probe": probe})[self.quant.output[0]]
        y = y.reshape(ints.shape[0], -1) if len(self.probe_shape) == 4 else y.T
        s = np.asarray(out_scale, np.float32).reshape(-1)
        s = s if s.size == 1 else s.reshape(-1, 1)
        return np.round(y / s)


def find_thresholds(low: Lowering, x: IntTensor, quant: onnx.NodeProto) -> tuple[np.ndarray, list[float], np.ndarray]:
    """Thresholds (C, L-1) on ``I`` at which the quantizer's code reaches each level above the lowest."""
    out_scale, _, levels = quant_params(low, quant)
    targets = np.array(levels[1:], dtype=np.float64)
    c, n = x.channels, len(targets)
    lo = np.broadcast_to(x.per_channel(x.lo).astype(np.int64).reshape(-1, 1), (c, n)).copy()
    hi = np.broadcast_to(x.per_channel(x.hi).astype(np.int64).reshape(-1, 1), (c, n)).copy()
    ev = ChainEvaluator(low, x, quant, n)
    # Monotone non-decreasing per channel? Compare the codes at both ends of the range.
    ends = ev.codes(np.concatenate([lo[:, :1], hi[:, :1]], axis=1).repeat((n + 1) // 2 + 1, axis=1)[:, :n], out_scale)
    if n >= 2 and np.any(ends[:, 0] > ends[:, 1]):
        ch = int(np.argmax(ends[:, 0] > ends[:, 1]))
        raise UnsupportedError(f"node {quant.name}: its input decreases with the integer code in channel {ch} "
                               f"(negative scale); expected a monotone increasing map")
    # Invariant: code(left) < target (left = lo - 1 stands for "below the range"); code(right) >= target.
    left, right = lo - 1, hi + 1
    while np.any(right - left > 1):
        mid = (left + right) // 2
        active = right - left > 1
        probe = np.where(active, mid, lo)
        got = ev.codes(probe, out_scale)
        reached = got >= targets.reshape(1, -1)
        right = np.where(active & reached, mid, right)
        left = np.where(active & ~reached, mid, left)
    return right.astype(np.float32), levels, out_scale


# ----- op rules ----------------------------------------------------------------------------------------
Rule = Callable[[Lowering, onnx.NodeProto], None]
RULES: dict[str, Rule] = {}


def rule(*ops: str):
    def register(f: Rule) -> Rule:
        for op in ops:
            RULES[op] = f
        return f

    return register


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


@rule("Quant", "BipolarQuant")
def lower_quant(low: Lowering, node):
    src = node.input[0]
    const = low.const(src)
    if const is not None or isinstance(low.values.get(src), IntWeight):
        lower_weight_quant(low, node, const if const is not None else low.values[src])
        return
    if src in [i.name for i in low.src.graph.input]:
        lower_input_quant(low, node)
        return
    x = low.int_input(node)
    thresholds, levels, out_scale = find_thresholds(low, x, node)
    if node.op_type == "BipolarQuant":
        out_dt, step, bias = DataType["BIPOLAR"], 2.0, -1.0
    else:
        out_dt, step, bias = dtype_for(levels[0], levels[-1]), 1.0, levels[0]
    t_name = low.add_init(f"{node.name}_thresholds", thresholds)
    out = low.emit("MultiThreshold", [x.name, t_name], "act", domain="qonnx.custom_op.general",
                   out_dtype=out_dt.name, out_scale=step, out_bias=bias, data_layout="NCHW")
    low.dtypes[out] = out_dt
    c = x.channels
    low.set_int(node.output[0], IntTensor(out, out_scale, np.full(c, levels[0]), np.full(c, levels[-1]),
                                          low.shape(node.output[0])))


def lower_input_quant(low: Lowering, node):
    scale, z, levels = quant_params(low, node)
    if node.op_type == "BipolarQuant" or z != 0:
        raise UnsupportedError(f"node {node.name}: the graph input's quantizer must have a zero point of 0 and "
                               f"at least 2 bits")
    name = node.input[0]
    shape = low.shape(name)
    dt = dtype_for(levels[0], levels[-1])
    low.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    low.dtypes[name] = dt
    c = shape[1] if len(shape) > 1 else 1
    low.set_int(node.output[0], IntTensor(name, scale, np.full(c, levels[0]), np.full(c, levels[-1]), shape))


def lower_weight_quant(low: Lowering, node, w):
    if isinstance(w, IntWeight):
        raise UnsupportedError(f"node {node.name}: a quantizer applied twice to a weight")
    if node.op_type == "BipolarQuant":
        scale = np.asarray(low.const(node.input[1]), np.float32)
        values = np.where(w >= 0, 1.0, -1.0).astype(np.float32)
    else:  # (not quant_params: its list of levels would be 2**32 long for a 32-bit bias quantizer)
        scale = low.const(node.input[1])
        if scale is None:
            raise UnsupportedError(f"node {node.name} (Quant): a weight quantizer whose scale is not a constant")
        scale = np.asarray(scale, np.float32)
        y = execute_onnx(_single_node_model(low, node), {})[node.output[0]]
        values = np.round(y / scale.reshape(_bcast(scale, y))).astype(np.float32)
    low.values[node.output[0]] = IntWeight(values, scale)


def _bcast(scale: np.ndarray, like: np.ndarray) -> tuple:
    return (-1,) + (1,) * (like.ndim - 1) if scale.size > 1 else ()


def _single_node_model(low: Lowering, node) -> ModelWrapper:
    inits = [onnx.numpy_helper.from_array(np.asarray(low.const(i)), i) for i in node.input if low.const(i) is not None]
    out = helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)
    graph = helper.make_graph([copy.deepcopy(node)], "w", [], [out], initializer=inits)
    return ModelWrapper(qonnx_make_model(graph, opset_imports=list(low.src.model.opset_import)))


@rule("Mul", "Div")
def lower_scale(low: Lowering, node):
    a, b = node.input[0], node.input[1]
    if isinstance(low.values.get(a), IntWeight) and low.const(b) is not None:
        w, k = low.values[a], np.asarray(low.const(b), np.float32)
        if k.size != 1:
            raise UnsupportedError(f"node {node.name}: weight rescaled by a non-scalar constant")
        scale = (w.scale * k if node.op_type == "Mul" else w.scale / k).astype(np.float32)
        low.values[node.output[0]] = IntWeight(w.values, scale)
        return
    lower_chain(low, node)


@rule(*(CHAIN_OPS - {"Mul", "Div"}))
def lower_chain(low: Lowering, node):
    """Elementwise float ops on an integer tensor are deferred to the next quantizer (or the output)."""
    x = low.int_input(node)
    for i in node.input[1:]:
        if i and low.const(i) is None:
            raise UnsupportedError(f"node {node.name} ({node.op_type}): operand {i!r} is not a constant; "
                                   f"expected a constant per-channel or scalar operand")
        if i and node.op_type in ("Mul", "Div", "Add", "Sub") and not _per_channel(low.const(i), x.shape):
            raise UnsupportedError(f"node {node.name} ({node.op_type}): constant of shape "
                                   f"{np.shape(low.const(i))} is not scalar or per-channel for input {x.shape}")
    chain_input = x.chain_input if x.chain else node.input[0]
    low.values[node.output[0]] = IntTensor(x.name, x.scale, x.lo, x.hi, x.shape, x.chain + [node], chain_input)


def _range_matmul(lo: np.ndarray, hi: np.ndarray, w: np.ndarray, in_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output range of ``sum_i w_i x_i`` with x_i in [lo_i, hi_i] (lo/hi per input channel)."""
    wp, wn = np.maximum(w, 0), np.minimum(w, 0)
    return wp @ lo + wn @ hi, wp @ hi + wn @ lo


def _per_channel(v: np.ndarray, shape: list[int]) -> bool:
    v = np.asarray(v)
    if v.size == 1:
        return True
    if v.ndim > len(shape):
        return False
    full = (1,) * (len(shape) - v.ndim) + v.shape
    return all(d == 1 for i, d in enumerate(full) if i != 1) and full[1] == shape[1]


@rule("Conv")
def lower_conv(low: Lowering, node):
    x = low.integer_input(node, 0)
    w = low.weight_input(node, 1)
    attrs = _attrs(node)
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedError(f"node {node.name} (Conv): auto_pad; expected explicit pads")
    group = int(attrs.get("group", 1))
    wv = w.values
    w_name = low.add_init(f"{node.name}_W", wv, DataType["BIPOLAR"] if set(np.unique(wv)) <= {-1.0, 1.0}
                          else dtype_for(wv.min(), wv.max()))
    out = low.emit("Conv", [x.name, w_name], "conv", **attrs)
    # Per output channel: sum over (input channel of its group, kernel taps) of w * x.
    cout, cin_g = wv.shape[0], wv.shape[1]
    # Zero padding adds zeros to the window, so each input's range is widened to include 0.
    lo_in = np.minimum(x.per_channel(x.lo).astype(np.float64), 0)
    hi_in = np.maximum(x.per_channel(x.hi).astype(np.float64), 0)
    groups_in = np.arange(cout) // (cout // group)
    w_pos = np.maximum(wv, 0).reshape(cout, cin_g, -1).sum(axis=2)  # (cout, cin_g)
    w_neg = np.minimum(wv, 0).reshape(cout, cin_g, -1).sum(axis=2)
    lo_g = lo_in.reshape(group, cin_g)[groups_in]  # (cout, cin_g)
    hi_g = hi_in.reshape(group, cin_g)[groups_in]
    lo_out = (w_pos * lo_g + w_neg * hi_g).sum(axis=1)
    hi_out = (w_pos * hi_g + w_neg * lo_g).sum(axis=1)
    scale = (np.asarray(x.scale, np.float32).reshape(-1)[0] * np.asarray(w.scale, np.float32)).astype(np.float32)
    if np.asarray(x.scale).size != 1:
        raise UnsupportedError(f"node {node.name} (Conv): per-channel input scale; expected one scale")
    result = IntTensor(out, scale.reshape(-1), lo_out, hi_out, low.shape(node.output[0]))
    low.set_int(node.output[0], _with_bias(low, node, result, 2, 1.0))


@rule("MatMul", "Gemm")
def lower_matmul(low: Lowering, node):
    x = low.integer_input(node, 0)
    attrs = _attrs(node)
    w = low.weight_input(node, 1)
    wv = w.values.T if attrs.get("transB", 0) else w.values  # (in, out)
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0:
        raise UnsupportedError(f"node {node.name} ({node.op_type}): transA or alpha != 1; expected x @ W (+ bias)")
    w_name = low.add_init(f"{node.name}_W", wv, DataType["BIPOLAR"] if set(np.unique(wv)) <= {-1.0, 1.0}
                          else dtype_for(wv.min(), wv.max()))
    out = low.emit("MatMul", [x.name, w_name], "matmul")
    lo_in = np.broadcast_to(np.asarray(x.lo, np.float64).reshape(-1), (wv.shape[0],))
    hi_in = np.broadcast_to(np.asarray(x.hi, np.float64).reshape(-1), (wv.shape[0],))
    lo_out, hi_out = _range_matmul(lo_in, hi_in, wv.T, 0)
    scale = (np.asarray(x.scale, np.float32).reshape(-1)[0] * np.asarray(w.scale, np.float32)).reshape(-1)
    result = IntTensor(out, scale, lo_out, hi_out, low.shape(node.output[0]))
    low.set_int(node.output[0], _with_bias(low, node, result, 2, float(attrs.get("beta", 1.0))))


def _with_bias(low: Lowering, node, result: IntTensor, index: int, beta: float) -> IntTensor:
    """A Conv/Gemm bias (a float constant, or a quantized one) is a per-channel float Add after the integer
    sum: it joins the chain, so the next quantizer's thresholds absorb it (or the float tail applies it)."""
    name = node.input[index] if len(node.input) > index and node.input[index] else None
    if name is None:
        return result
    v = low.values.get(name)
    b = np.asarray(v.values * v.scale.reshape(_bcast(v.scale, v.values)), np.float32) if isinstance(v, IntWeight) \
        else low.const(name)
    if b is None:
        raise UnsupportedError(f"node {node.name} ({node.op_type}): bias {name!r} is not a constant")
    b = (np.asarray(b, np.float32).reshape(-1) * np.float32(beta)).astype(np.float32)
    if b.size not in (1, result.channels):
        raise UnsupportedError(f"node {node.name} ({node.op_type}): bias of shape {b.shape}; expected one value per "
                               f"output channel")
    b_name = low.fresh(f"{node.name}_bias")
    low.src.set_initializer(b_name, b.reshape([1, -1] + [1] * (len(result.shape) - 2)))
    add = helper.make_node("Add", [node.output[0] + "_nobias", b_name], [node.output[0]], name=f"{node.name}_bias_add")
    result.chain = [add]
    return result


@rule("Add")
def lower_add(low: Lowering, node):
    if low.const(node.input[1]) is not None or low.const(node.input[0]) is not None:
        lower_chain(low, node)
        return
    a, b = low.int_input(node, 0), low.int_input(node, 1)
    if a.chain or b.chain or not np.array_equal(np.asarray(a.scale).reshape(-1), np.asarray(b.scale).reshape(-1)):
        raise UnsupportedError(
            f"node {node.name} (Add): inputs {node.input[0]!r} (scale {np.asarray(a.scale).reshape(-1)[:3]}) and "
            f"{node.input[1]!r} (scale {np.asarray(b.scale).reshape(-1)[:3]}) are not integers on one shared scale; "
            f"expected both quantized by quantizers with the same scale")
    out = low.emit("Add", [a.name, b.name], "add")
    low.set_int(node.output[0], IntTensor(out, a.scale, a.per_channel(a.lo) + b.per_channel(b.lo),
                                          a.per_channel(a.hi) + b.per_channel(b.hi), low.shape(node.output[0])))


@rule("AveragePool")
def lower_avgpool(low: Lowering, node):
    x = low.linear_input(node)
    attrs = _attrs(node)
    k = list(attrs["kernel_shape"])
    if any(attrs.get("pads", [0]) ) or attrs.get("ceil_mode", 0):
        raise UnsupportedError(f"node {node.name} (AveragePool): padding or ceil_mode; expected a plain pool")
    c = x.channels
    ones = low.add_init(f"{node.name}_ones", np.ones((c, 1, *k), np.float32), DataType["UINT1"])
    out = low.emit("Conv", [x.name, ones], "sumpool", kernel_shape=k, strides=list(attrs.get("strides", k)),
                   group=c, pads=[0, 0, 0, 0])
    n = int(np.prod(k))
    scale = (np.asarray(x.scale, np.float32) / np.float32(n)).astype(np.float32)
    low.set_int(node.output[0], IntTensor(out, scale, x.per_channel(x.lo) * n, x.per_channel(x.hi) * n,
                                          low.shape(node.output[0])))


@rule("MaxPool")
def lower_maxpool(low: Lowering, node):
    x = low.linear_input(node, positive=True)
    out = low.emit("MaxPool", [x.name], "maxpool", **_attrs(node))
    low.set_int(node.output[0], IntTensor(out, x.scale, x.lo, x.hi, low.shape(node.output[0])))


@rule("GlobalAveragePool", "ReduceMean")
def lower_global_pool(low: Lowering, node):
    x = low.linear_input(node)
    shape = x.shape
    if node.op_type == "ReduceMean":
        axes = low.const(node.input[1]) if len(node.input) > 1 else _attrs(node).get("axes")
        keep = int(_attrs(node).get("keepdims", 1))
        if axes is None or sorted(int(a) % len(shape) for a in np.asarray(axes).reshape(-1)) != [2, 3]:
            raise UnsupportedError(f"node {node.name} (ReduceMean): over axes {axes}; expected the spatial axes 2, 3")
    else:
        keep = 1
    axes_name = low.add_init("axes", np.array([2, 3], np.int64))
    out = low.emit("ReduceSum", [x.name, axes_name], "gsum", keepdims=keep)
    n = shape[2] * shape[3]
    scale = (np.asarray(x.scale, np.float32) / np.float32(n)).astype(np.float32)
    low.set_int(node.output[0], IntTensor(out, scale, x.per_channel(x.lo) * n, x.per_channel(x.hi) * n,
                                          low.shape(node.output[0])))


@rule("Pad")
def lower_pad(low: Lowering, node):
    x = low.integer_input(node)
    attrs = _attrs(node)
    mode = attrs.get("mode", b"constant")
    value = low.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if mode not in (b"constant", "constant") or (value is not None and float(value) != 0.0):
        raise UnsupportedError(f"node {node.name} (Pad): mode {mode!r} value {value}; expected zero padding")
    pads = low.const(node.input[1])
    p_name = low.add_init("pads", np.asarray(pads, np.int64))
    out = low.emit("Pad", [x.name, p_name], "pad", mode="constant")
    shape = low.shape(node.output[0])
    nd = len(shape)
    before, after = int(pads[1]), int(pads[nd + 1])
    c_out = shape[1]
    lo = np.concatenate([np.zeros(before), x.per_channel(x.lo), np.zeros(after)])[:c_out]
    hi = np.concatenate([np.zeros(before), x.per_channel(x.hi), np.zeros(after)])[:c_out]
    low.set_int(node.output[0], IntTensor(out, x.scale, np.minimum(lo, 0), np.maximum(hi, 0), shape))


@rule("Flatten", "Reshape")
def lower_reshape(low: Lowering, node):
    x = low.integer_input(node)
    extra = []
    for i in node.input[1:]:
        extra.append(low.add_init("shape", np.asarray(low.const(i), np.int64)))
    out = low.emit(node.op_type, [x.name, *extra], node.op_type.lower(), **_attrs(node))
    shape = low.shape(node.output[0])
    lo, hi = np.min(x.lo), np.max(x.hi)
    c = shape[1] if len(shape) > 1 else 1
    low.set_int(node.output[0], IntTensor(out, x.scale, np.full(c, lo), np.full(c, hi), shape))


# ----- driver ---------------------------------------------------------------------------------------------
def float_tail(low: Lowering, x: IntTensor, src_output: str) -> tuple[list, dict]:
    """``fl32(scale * I)`` then the pending chain: turns the integer output into the source output."""
    nodes, inits = [], {}
    scale = np.asarray(x.scale, np.float32)
    scale = scale.reshape([1, -1] + [1] * (len(x.shape) - 2)) if scale.size > 1 else scale.reshape(())
    s_name = low.fresh("output_scale")
    inits[s_name] = scale
    deq = low.fresh("dequant")
    nodes.append(helper.make_node("Mul", [x.name, s_name], [deq], name=deq + "_node"))
    prev = deq
    for n in x.chain:
        n = copy.deepcopy(n)
        n.input[0] = prev
        for i in n.input[1:]:
            if i and low.const(i) is not None:
                inits[i] = np.asarray(low.const(i))
        prev = n.output[0]
        nodes.append(n)
    if prev != src_output:
        nodes[-1].output[0] = src_output
    return nodes, inits


def to_integer_graph(qonnx_model: ModelWrapper) -> ModelWrapper:
    """Lower a (cleaned) QONNX model; raises UnsupportedError naming the first node it cannot lower."""
    src = clean(qonnx_model)
    low = Lowering(src)
    if not any(n.op_type in QUANT_OPS for n in src.graph.node):
        raise UnsupportedError("the graph has no Quant or BipolarQuant nodes: a float model; expected a "
                               "quantized (Brevitas) model")
    first_consumers = src.find_consumers(src.graph.input[0].name) or []
    for c in first_consumers:
        if c.op_type not in QUANT_OPS:
            raise UnsupportedError(f"node {c.name} ({c.op_type}) reads the float graph input "
                                   f"{src.graph.input[0].name!r} directly; expected a Quant node on the input")
    for node in src.graph.node:
        handler = RULES.get(node.op_type)
        if handler is None:
            raise UnsupportedError(f"node {node.name}: op type {node.op_type} is not supported; expected one of "
                                   f"{', '.join(sorted(RULES))}")
        handler(low, node)
    out_name = src.graph.output[0].name
    x = low.values.get(out_name)
    if not isinstance(x, IntTensor):
        raise UnsupportedError(f"graph output {out_name!r} is not derived from a quantized input")
    tail_nodes, tail_inits = float_tail(low, x, out_name)
    out_vi = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, low.shape(out_name))
    inits = [onnx.numpy_helper.from_array(v, k) for k, v in {**low.inits, **tail_inits}.items()]
    graph = helper.make_graph(low.nodes + tail_nodes, "integer", low.inputs, [out_vi], initializer=inits)
    model = ModelWrapper(qonnx_make_model(graph, opset_imports=list(src.model.opset_import)))
    for name, dt in low.dtypes.items():
        model.set_tensor_datatype(name, dt)
    meta = {"tensor": x.name, "dtype": low.dtypes[x.name].name,
            "scale": np.asarray(x.scale, np.float32).reshape(-1).tolist(),
            "tail_ops": [n.op_type for n in tail_nodes]}
    model.set_metadata_prop(META_OUTPUT, json.dumps(meta))
    model = model.transform(InferShapes())
    for name, dt in low.dtypes.items():
        model.set_tensor_datatype(name, dt)
    return model


class ToIntegerGraph(Transformation):
    """qonnx-style wrapper: ``model.transform(ToIntegerGraph())``."""

    def apply(self, model):
        return to_integer_graph(model), False


def integer_output_name(model: ModelWrapper) -> str:
    return json.loads(model.get_metadata_prop(META_OUTPUT))["tensor"]
