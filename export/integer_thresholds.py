"""Thresholds of an activation quantizer: ``Quant(chain(fl32(scale * I)))`` is a monotone step function of the
integer ``I`` per channel, so it is a MultiThreshold on ``I``. The thresholds are found by bisection over the
integer range, evaluating the *original* nodes with qonnx, so the integer graph reproduces QONNX execution exactly,
ties included, whatever the float evaluation order of the ops.
"""

from __future__ import annotations

import copy

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
