"""The state of a QONNX -> integer lowering: what each source tensor is (:class:`IntTensor`, :class:`IntWeight`),
the integer graph being built, and the data type of each integer tensor (:func:`dtype_for`).

The lowering itself is :func:`onebit.export.integer.to_integer_graph`; the rule for each op is in
:mod:`onebit.export.integer_rules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import UnsupportedError


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


class Lowering:
    """The lowering of one source graph: its values so far (by source tensor name) and the nodes, constants,
    data types and inputs of the integer graph."""

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
        scale = np.asarray(v.scale, np.float32).reshape(-1)
        if positive and np.any(scale <= 0):  # max does not commute with a negation (see Thresholds)
            raise UnsupportedError(f"node {node.name} ({node.op_type}): input {node.input[index]!r} has a "
                                   f"non-positive scale in some channel; expected positive scales")
        if not v.chain:
            return v
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
