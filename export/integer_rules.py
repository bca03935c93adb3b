"""The rule for each QONNX op of the integer lowering (:func:`onebit.export.integer.to_integer_graph`), one small
function per op; ``RULES`` (op type -> rule), at the end, lists them.

Weights: a Quant/BipolarQuant of a constant (optionally divided or multiplied by a constant) is an integer
tensor times a scale; the scale moves to the output. A Conv/Gemm bias (float, or quantized) is a per-channel
float Add that starts the output's chain. Elementwise float ops are deferred to the next quantizer, whose
thresholds absorb them (:mod:`onebit.export.integer_thresholds`).
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.util.basic import qonnx_make_model

from onebit.errors import UnsupportedError
from onebit.export.integer_lowering import IntTensor, IntWeight, Lowering, dtype_for
from onebit.export.integer_thresholds import find_thresholds, quant_params

#: float elementwise ops an integer tensor may pass through before its next quantizer
CHAIN_OPS = {"Mul", "Div", "Add", "Sub", "BatchNormalization", "Relu", "Identity", "Clip"}


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def lower_quant(low: Lowering, node):
    src = node.input[0]
    const = low.const(src)
    if const is not None or isinstance(low.values.get(src), IntWeight):
        lower_weight_quant(low, node, const if const is not None else low.values[src])
        return
    if src in [i.name for i in low.src.graph.input] and src not in low.values:  # (else: an integer input)
        lower_input_quant(low, node)
        return
    x = low.int_input(node)
    th = find_thresholds(low, x, node)
    out_dt = DataType["BIPOLAR"] if node.op_type == "BipolarQuant" else dtype_for(th.lo.min(), th.hi.max())
    t_name = low.add_init(f"{node.name}_thresholds", th.values)
    out = low.emit("MultiThreshold", [x.name, t_name], "act", domain="qonnx.custom_op.general",
                   out_dtype=out_dt.name, out_scale=th.step, out_bias=th.bias, data_layout="NCHW")
    low.dtypes[out] = out_dt
    low.set_int(node.output[0], IntTensor(out, th.scale, th.lo, th.hi, low.shape(node.output[0])))


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


def lower_conv(low: Lowering, node):
    x = low.integer_input(node, 0)
    w = low.weight_input(node, 1)
    attrs = _attrs(node)
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedError(f"node {node.name} (Conv): auto_pad; expected explicit pads")
    group = int(attrs.get("group", 1))
    cout, cin_g = w.values.shape[0], w.values.shape[1]
    groups_in = np.arange(cout) // (cout // group)
    x_scale, sign = _input_scale(node, x, per_channel=True)
    wv = w.values * sign.reshape(group, cin_g)[groups_in].reshape(cout, cin_g, *([1] * (w.values.ndim - 2)))
    w_name = low.add_init(f"{node.name}_W", wv, DataType["BIPOLAR"] if set(np.unique(wv)) <= {-1.0, 1.0}
                          else dtype_for(wv.min(), wv.max()))
    out = low.emit("Conv", [x.name, w_name], "conv", **attrs)
    # Per output channel: sum over (input channel of its group, kernel taps) of w * x.
    # Zero padding adds zeros to the window, so each input's range is widened to include 0.
    lo_in = np.minimum(x.per_channel(x.lo).astype(np.float64), 0)
    hi_in = np.maximum(x.per_channel(x.hi).astype(np.float64), 0)
    w_pos = np.maximum(wv, 0).reshape(cout, cin_g, -1).sum(axis=2)  # (cout, cin_g)
    w_neg = np.minimum(wv, 0).reshape(cout, cin_g, -1).sum(axis=2)
    lo_g = lo_in.reshape(group, cin_g)[groups_in]  # (cout, cin_g)
    hi_g = hi_in.reshape(group, cin_g)[groups_in]
    lo_out = (w_pos * lo_g + w_neg * hi_g).sum(axis=1)
    hi_out = (w_pos * hi_g + w_neg * lo_g).sum(axis=1)
    scale = (x_scale * np.asarray(w.scale, np.float32)).astype(np.float32)
    result = IntTensor(out, scale.reshape(-1), lo_out, hi_out, low.shape(node.output[0]))
    low.set_int(node.output[0], _with_bias(low, node, result, 2, 1.0))


def _input_scale(node, x: IntTensor, per_channel: bool) -> tuple[np.float32, np.ndarray]:
    """The one scale of a matrix product's input and its per-channel signs (a quantizer whose input decreases
    with its integers outputs minus its code: the sign goes into the weights, which stay +-1 if they were).
    ``per_channel``: refuse per-channel positive scales (else the first one is the scale)."""
    s = np.asarray(x.scale, np.float32).reshape(-1)
    if np.all(s > 0) and (s.size == 1 or not per_channel):
        return s[0], np.ones(x.channels, np.float32)
    if np.all(s > 0) or s.size not in (1, x.channels) or np.any(np.abs(s) != np.abs(s[0])) or s[0] == 0:
        raise UnsupportedError(f"node {node.name} ({node.op_type}): per-channel input scale "
                               f"{s[:3].tolist()}...; expected one scale")
    return np.abs(s[0]), np.broadcast_to(np.where(s < 0, -1.0, 1.0).astype(np.float32), (x.channels,))


def lower_matmul(low: Lowering, node):
    x = low.integer_input(node, 0)
    attrs = _attrs(node)
    w = low.weight_input(node, 1)
    wv = w.values.T if attrs.get("transB", 0) else w.values  # (in, out)
    x_scale, sign = _input_scale(node, x, per_channel=False)
    wv = wv * sign.reshape(-1, 1)
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0:
        raise UnsupportedError(f"node {node.name} ({node.op_type}): transA or alpha != 1; expected x @ W (+ bias)")
    w_name = low.add_init(f"{node.name}_W", wv, DataType["BIPOLAR"] if set(np.unique(wv)) <= {-1.0, 1.0}
                          else dtype_for(wv.min(), wv.max()))
    out = low.emit("MatMul", [x.name, w_name], "matmul")
    lo_in = np.broadcast_to(np.asarray(x.lo, np.float64).reshape(-1), (wv.shape[0],))
    hi_in = np.broadcast_to(np.asarray(x.hi, np.float64).reshape(-1), (wv.shape[0],))
    lo_out, hi_out = _range_matmul(lo_in, hi_in, wv.T, 0)
    scale = (x_scale * np.asarray(w.scale, np.float32)).reshape(-1)
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


def lower_maxpool(low: Lowering, node):
    x = low.linear_input(node, positive=True)
    out = low.emit("MaxPool", [x.name], "maxpool", **_attrs(node))
    low.set_int(node.output[0], IntTensor(out, x.scale, x.lo, x.hi, low.shape(node.output[0])))


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


Rule = Callable[[Lowering, onnx.NodeProto], None]
#: op type -> its rule
RULES: dict[str, Rule] = {
    "Quant": lower_quant, "BipolarQuant": lower_quant,
    "Mul": lower_scale, "Div": lower_scale,
    **{op: lower_chain for op in sorted(CHAIN_OPS - {"Mul", "Div", "Add"})},
    "Add": lower_add,
    "Conv": lower_conv, "MatMul": lower_matmul, "Gemm": lower_matmul,
    "AveragePool": lower_avgpool, "MaxPool": lower_maxpool,
    "GlobalAveragePool": lower_global_pool, "ReduceMean": lower_global_pool,
    "Pad": lower_pad, "Flatten": lower_reshape, "Reshape": lower_reshape,
}
