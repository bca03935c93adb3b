"""Thresholds of an activation quantizer: ``Quant(chain(fl32(scale * I)))`` is a monotone step function of the
integer ``I`` per channel, so it is a MultiThreshold on ``I``. The thresholds are found by bisection over the
integer range, evaluating the *original* nodes with qonnx, so the integer graph reproduces QONNX execution exactly,
ties included, whatever the float evaluation order of the ops.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from onebit.errors import UnsupportedError
from onebit.export.integer_lowering import IntTensor, Lowering


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

    def codes(self, ints: np.ndarray, out_scale: np.ndarray) -> np.ndarray:
        """``ints``: (C, n) integers -> (C, n) output codes ``y / out_scale``."""
        probe = (self.scale * ints.astype(np.float32)).astype(np.float32)
        probe = probe.reshape(self.probe_shape) if len(self.probe_shape) == 4 else probe.T.copy()
        y = execute_onnx(self.model, {"probe": probe})[self.quant.output[0]]
        y = y.reshape(ints.shape[0], -1) if len(self.probe_shape) == 4 else y.T
        s = np.asarray(out_scale, np.float32).reshape(-1)
        s = s if s.size == 1 else s.reshape(-1, 1)
        return np.round(y / s)


@dataclass
class Thresholds:
    """A quantizer as ``MultiThreshold(I)``: output ``O = bias + step * #{t in values[c] : I >= t}``.

    In a channel whose code increases with ``I``, ``O`` is the code; in one where it decreases (a negative
    scale on the way, e.g. an input BN with a negative weight) ``O`` is minus the code, so the quantizer's
    value is ``sign * out_scale * O`` and the next matrix product folds the sign into its weights. One shared
    ``bias`` serves both kinds of channel: a channel whose own offset is higher starts with thresholds that
    every ``I`` in its range reaches, and a channel with fewer levels ends with thresholds none reaches.
    """

    values: np.ndarray  # (C, steps), ascending per channel
    sign: np.ndarray  # (C,) +1 or -1
    bias: float
    step: float
    lo: np.ndarray  # (C,) the range of O
    hi: np.ndarray
    levels: list[float]
    out_scale: np.ndarray

    @property
    def scale(self) -> np.ndarray:
        """The scale of ``O`` as an integer tensor: ``out_scale``, negated in the decreasing channels."""
        if np.all(self.sign > 0):
            return self.out_scale
        s = np.broadcast_to(np.asarray(self.out_scale, np.float32).reshape(-1), self.sign.shape)
        return (s * self.sign).astype(np.float32)


def _first_reached(ev: ChainEvaluator, sign: np.ndarray, lo: np.ndarray, hi: np.ndarray, targets: np.ndarray,
                   out_scale: np.ndarray) -> np.ndarray:
    """Per channel and target, the least ``J`` in [lo, hi] (or hi + 1) at which the code of ``I = sign * J`` reaches
    the target; the code is non-decreasing in ``J``."""
    n = len(targets)
    lo, hi = np.repeat(lo.reshape(-1, 1), n, axis=1), np.repeat(hi.reshape(-1, 1), n, axis=1)
    s = sign.reshape(-1, 1)
    # Invariant: code(left) < target (left = lo - 1 stands for "below the range"); code(right) >= target.
    left, right = lo - 1, hi + 1
    while np.any(right - left > 1):
        mid = (left + right) // 2
        active = right - left > 1
        got = ev.codes(s * np.where(active, mid, lo), out_scale)
        reached = got >= targets.reshape(1, -1)
        right = np.where(active & reached, mid, right)
        left = np.where(active & ~reached, mid, left)
    return right


def find_thresholds(low: Lowering, x: IntTensor, quant: onnx.NodeProto) -> Thresholds:
    """The quantizer ``quant`` of ``x`` as thresholds on ``x``'s integers, exact over ``x``'s whole range."""
    out_scale, _, levels = quant_params(low, quant)
    bipolar = quant.op_type == "BipolarQuant"
    step = 2.0 if bipolar else 1.0
    targets = np.array(levels[1:], dtype=np.float64)
    n = len(targets)
    lo = x.per_channel(x.lo).astype(np.int64)
    hi = x.per_channel(x.hi).astype(np.int64)
    ev = ChainEvaluator(low, x, quant, n)
    # The chain is monotone per channel; its direction is where the code is higher, at the lowest or highest I.
    code_lo = ev.codes(np.repeat(lo.reshape(-1, 1), n, axis=1), out_scale)[:, 0]
    code_hi = ev.codes(np.repeat(hi.reshape(-1, 1), n, axis=1), out_scale)[:, 0]
    sign = np.where(code_hi < code_lo, -1, 1).astype(np.int64)
    up = sign > 0
    # Increasing channels: O = code, thresholds at the least I reaching each level. Decreasing ones, bisected on
    # J = -I: O = -code = -levels[-1] + step * #{k : I > (greatest I reaching level k)}.
    first = _first_reached(ev, sign, np.where(up, lo, -hi), np.where(up, hi, -lo), targets, out_scale)
    t = np.where(up.reshape(-1, 1), first, 1 - first)
    own_bias = np.where(up, levels[0], -levels[-1])
    bias = float(own_bias.min())
    extra = np.round((own_bias - bias) / step).astype(np.int64)  # thresholds every I reaches, per channel
    k = np.arange(int(extra.max())).reshape(1, -1)
    padding = np.where(k < extra.reshape(-1, 1), lo.reshape(-1, 1), hi.reshape(-1, 1) + 1)  # else: none reaches
    t = np.concatenate([t, padding], axis=1)
    t = np.sort(t, axis=1)
    lo_o = np.where(up, levels[0], -levels[-1]).astype(np.float64)
    hi_o = np.where(up, levels[-1], -levels[0]).astype(np.float64)
    return Thresholds(t.astype(np.float32), sign, bias, step, lo_o, hi_o, levels, out_scale)
