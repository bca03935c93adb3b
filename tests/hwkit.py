"""Helpers for the RTL tests: small dataflow graphs built node by node, and co-simulation checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from onebit.export.dataflow import graph as dfg


def dataflow_graph(nodes, inp: tuple, out: tuple, inits: dict | None = None, dtypes: dict | None = None):
    """A dataflow graph: ``inp``/``out`` are (name, NHWC shape, DataType name); ``inits`` name -> array;
    ``dtypes`` annotates intermediate tensors (name -> DataType name). Shapes of the rest come from the ops."""
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(inp[0], TensorProto.FLOAT, list(inp[1]))],
                          [helper.make_tensor_value_info(out[0], TensorProto.FLOAT, list(out[1]))])
    m = ModelWrapper(helper.make_model(g))
    for k, v in (inits or {}).items():
        m.set_initializer(k, np.asarray(v, dtype=np.float32))
    m.set_tensor_datatype(inp[0], DataType[inp[2]])
    m.set_tensor_datatype(out[0], DataType[out[2]])
    for k, v in (dtypes or {}).items():
        m.set_tensor_datatype(k, DataType[v])
    for node in m.graph.node:  # shapes of intermediate tensors from the ops themselves
        op = dfg.get_op(node)
        for t in node.output:
            if t != out[0]:
                m.set_tensor_shape(t, list(op.output_shape()))
    return m


def random_frames(model: ModelWrapper, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random frames covering the graph input's whole type range."""
    name = model.graph.input[0].name
    dt = model.get_tensor_datatype(name)
    shape = model.get_tensor_shape(name)
    rng = np.random.default_rng(seed)
    if dt.name == "BIPOLAR":
        return (2 * rng.integers(0, 2, (n, *shape[1:])) - 1).astype(np.float32)
    return rng.integers(int(dt.min()), int(dt.max()) + 1, (n, *shape[1:])).astype(np.float32)


def assert_cosim(model: ModelWrapper, folder: Path, frames: int = 2, seed: int = 0, depths: dict | None = None):
    """Build and run the graph's RTL; outputs bit-exact with the reference executor on every edge, and every
    beat's cycle equal to the simulator's (raises CosimError naming the first difference)."""
    from onebit.hw.cosim import cosimulate

    x = random_frames(model, frames, seed)
    result = cosimulate(model, x, folder, depths=depths)
    assert result.outputs_equal and result.cycles_equal, result.mismatches
    return result
