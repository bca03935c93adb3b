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
recorded in the metadata ``onebit.integer_output`` with the scores' range per class and whether the tail keeps
their order (:mod:`onebit.export.score_order`).

Each op's rule is one small function in ``RULES`` (:mod:`onebit.export.integer_rules`); anything else is refused
with the node and the reason. The quantizers' thresholds: :mod:`onebit.export.integer_thresholds`; the state of a
lowering: :mod:`onebit.export.integer_lowering`.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from onebit.errors import UnsupportedError
from onebit.export.graphs import clean
from onebit.export.integer_input import InputSpec, fold_front_layout, record_layout
from onebit.export.integer_lowering import IntTensor, Lowering
from onebit.export.integer_rules import RULES
from onebit.export.score_order import rank_thresholds

QUANT_OPS = {"Quant", "BipolarQuant"}
META_OUTPUT = "onebit.integer_output"


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


def to_integer_graph(qonnx_model: ModelWrapper, input_spec: InputSpec | None = None) -> ModelWrapper:
    """Lower a (cleaned) QONNX model; raises UnsupportedError naming the first node it cannot lower.

    ``input_spec``: what the float graph input is made of (``scale * code`` of an integer type); without it the
    input must feed quantizers only, and their codes are the integer graph's input.
    """
    src = clean(qonnx_model)
    low = Lowering(src)
    if not any(n.op_type in QUANT_OPS for n in src.graph.node):
        raise UnsupportedError("the graph has no Quant or BipolarQuant nodes: a float model; expected a "
                               "quantized (Brevitas) model")
    folded, steps = set(), []
    if input_spec is None:
        first_consumers = src.find_consumers(src.graph.input[0].name) or []
        for c in first_consumers:
            if c.op_type not in QUANT_OPS:
                raise UnsupportedError(f"node {c.name} ({c.op_type}) reads the float graph input "
                                       f"{src.graph.input[0].name!r} directly; expected a Quant node on the input, "
                                       f"or the integer type and scale the float input is made of (input type "
                                       f"UINT8 and input scale 1/255, say)")
    else:
        name, steps, folded = fold_front_layout(src)
        shape = low.shape(name)
        lo, hi = input_spec.levels
        low.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        low.dtypes[name] = input_spec.dtype
        c = shape[1] if len(shape) > 1 else 1
        low.values[name] = IntTensor(name, np.asarray([input_spec.scale], np.float32), np.full(c, lo),
                                     np.full(c, hi), shape)
    for node in src.graph.node:
        if node.name in folded:
            continue
        handler = RULES.get(node.op_type)
        if handler is None:
            raise UnsupportedError(f"node {node.name} ({node.op_type}): op type not supported; expected one of "
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
    lo, hi = (np.asarray(x.per_channel(v), np.int64).reshape(-1).tolist() for v in (x.lo, x.hi))
    meta = {"tensor": x.name, "dtype": low.dtypes[x.name].name,
            "scale": np.asarray(x.scale, np.float32).reshape(-1).tolist(),
            "tail_ops": [n.op_type for n in tail_nodes], "lo": lo, "hi": hi}
    record_layout(model, steps)
    model = model.transform(InferShapes())
    for name, dt in low.dtypes.items():
        model.set_tensor_datatype(name, dt)
    meta["tail_keeps_order"] = rank_thresholds(model, x.name, lo, hi) is None
    model.set_metadata_prop(META_OUTPUT, json.dumps(meta))
    return model


class ToIntegerGraph(Transformation):
    """qonnx-style wrapper: ``model.transform(ToIntegerGraph())``."""

    def apply(self, model):
        return to_integer_graph(model), False


def integer_output_name(model: ModelWrapper) -> str:
    return json.loads(model.get_metadata_prop(META_OUTPUT))["tensor"]
