"""The dataflow graph file: its nodes, metadata and input.

The file is an ONNX model whose nodes are HW layers (FINN op names and attributes, domain
``finn.custom_op.fpgadataflow``; onebit's own ops in ``onebit.export.dataflow.ops``), NHWC, batch 1, with
qonnx data-type annotations on every tensor and explicit shapes in ``value_info``. Metadata:

- ``onebit.scores``: the tensor holding the class scores (integer accumulators) before LabelSelect;
- ``onebit.score_scale``: float32 scale(s) that turn the scores into the source model's logits, up to the
  float tail recorded in ``onebit.tail_ops`` (e.g. the 1/T of the logits).

The reference executor that runs it is :mod:`onebit.export.dataflow.executor`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import GraphError, UnsupportedError
from onebit.export.dataflow.base import HWOp
from onebit.export.dataflow.ops import OPS

META_SCORES = "onebit.scores"
META_SCORE_SCALE = "onebit.score_scale"
META_TAIL = "onebit.tail_ops"


def get_op(node) -> HWOp:
    cls = OPS.get(node.op_type)
    if cls is None:
        raise UnsupportedError(f"node {node.name} ({node.op_type}): not a dataflow layer onebit knows; expected "
                               f"one of {', '.join(sorted(OPS))}")
    return cls(node)


def ops(model: ModelWrapper) -> list[HWOp]:
    return [get_op(n) for n in model.graph.node]


def load_dataflow(path: str | Path) -> ModelWrapper:
    from onebit.export.dataflow.validate import check_dataflow
    from onebit.export.graphs import load_onnx

    model = load_onnx(path)
    for node in model.graph.node:
        if node.op_type not in OPS:
            raise GraphError(f"{path}: node {node.name} ({node.op_type}) is not a dataflow layer; expected a graph "
                             f"written by 'onebit export' or 'onebit lower'")
    return check_dataflow(model, str(path))


def scores_name(model: ModelWrapper) -> str:
    return model.get_metadata_prop(META_SCORES) or model.graph.output[0].name


def score_scale(model: ModelWrapper) -> np.ndarray:
    raw = model.get_metadata_prop(META_SCORE_SCALE)
    return np.asarray(json.loads(raw) if raw else [1.0], np.float32)


def input_shape(model: ModelWrapper) -> tuple:
    return tuple(model.get_tensor_shape(model.graph.input[0].name))


def check_frames(model: ModelWrapper, x: np.ndarray, source: str = "input") -> np.ndarray:
    """``x`` as float32 frames of the graph's input, checked for type, shape and integer range; ``source`` (the
    parameter or file they came from) starts each error's message."""
    name = model.graph.input[0].name
    shape = input_shape(model)
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise GraphError(f"{source}: frames of dtype {x.dtype}; expected numbers (integers of the graph input's "
                         f"type)", param=source)
    if x.ndim == len(shape) - 1:
        x = x[None]
    if tuple(x.shape[1:]) != shape[1:]:
        raise GraphError(f"{source}: the dataflow graph's input {name!r} takes frames of shape "
                         f"(N, {', '.join(map(str, shape[1:]))}) (NHWC), got {tuple(x.shape)}", param=source)
    dt = model.get_tensor_datatype(name)
    xi = x
    if xi.dtype.kind == "f" and not np.all(np.isfinite(xi)):
        raise GraphError(f"{source}: frames hold NaN or infinite values; expected integers in [{dt.min()}, "
                         f"{dt.max()}] ({dt.name})", param=source)
    if not np.all(xi == np.round(xi)) or xi.min(initial=0) < dt.min() or xi.max(initial=0) > dt.max():
        raise GraphError(f"{source}: input values must be integers in [{dt.min()}, {dt.max()}] ({dt.name}), got "
                         f"[{xi.min()}, {xi.max()}]", param=source)
    return xi.astype(np.float32)


def random_frames(model: ModelWrapper, frames: int, seed: int = 0) -> np.ndarray:
    """Random frames of the graph's input type (all codes equally likely), float32; ``frames`` is bounded by the
    machine's memory (the error names the ``frames`` parameter)."""
    from onebit.errors import check_fits_memory

    dt = model.get_tensor_datatype(model.graph.input[0].name)
    shape = input_shape(model)
    check_fits_memory("frames", frames, 8 * int(np.prod(shape[1:])), f"random frames of shape {tuple(shape[1:])}")
    rng = np.random.default_rng(seed)
    if dt.name == "BIPOLAR":  # its codes are -1 and +1, never 0
        return (2 * rng.integers(0, 2, (frames, *shape[1:])) - 1).astype(np.float32)
    return rng.integers(int(dt.min()), int(dt.max()) + 1, (frames, *shape[1:])).astype(np.float32)
