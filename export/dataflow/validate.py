"""Validation of a dataflow graph as a whole: every node checked against its op class (:meth:`HWOp.check`), and
the graph around them: each tensor written once and read after it is written, the streams between layers of
the shape and data type both ends declare, the graph's input and outputs agreeing with the layers, and the
metadata readable. A graph that passes can be executed, simulated and built without a numpy or Verilator error:
every failure is one GraphError line naming the file and the node."""

from __future__ import annotations

import json

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import GraphError, OnebitError
from onebit.export.dataflow.base import HWOp, supported_dtype


def check_dataflow(model: ModelWrapper, source: str = "dataflow graph") -> ModelWrapper:
    """``model`` if it is a dataflow graph onebit can run; else the first problem as an OnebitError whose message
    starts with ``source`` (the file)."""
    try:
        _check(model)
    except OnebitError as e:
        raise type(e)(f"{source}: {e}") from None
    return model


def _dtype_annotations(model: ModelWrapper) -> dict[str, str]:
    """tensor -> qonnx data-type name, read once (``get_tensor_datatype`` searches the list per call)."""
    out = {}
    for a in model.graph.quantization_annotation:
        for kv in a.quant_parameter_tensor_names:
            if kv.key == "finn_datatype":
                out[a.tensor_name] = kv.value
    return out


def _shapes(model: ModelWrapper) -> dict[str, tuple]:
    out = {}
    for vi in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return out


def _same_stream(a: tuple, b: tuple) -> bool:
    """The same stream: as many values per frame, in the same (row-major NHWC) order; the shapes may group them
    differently: (1, 1, 1, C) and (1, C), or a feature map (1, H, W, C) read as one vector (1, H*W*C) by the
    fully connected MVAU after a flatten."""
    return int(np.prod(a)) == int(np.prod(b))


def _fmt(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _check(model: ModelWrapper) -> None:
    from onebit.export.dataflow.graph import META_SCORE_SCALE, META_SCORES, get_op

    graph = model.graph
    if len(graph.input) != 1:
        raise GraphError(f"{len(graph.input)} graph inputs; expected one (the image stream)")
    if not graph.output:
        raise GraphError("no graph output")
    inp = graph.input[0].name
    shapes = _shapes(model)
    in_shape = shapes.get(inp)
    if not in_shape or any(d is None or d < 1 for d in in_shape):
        raise GraphError(f"graph input {inp!r} has shape {_fmt(in_shape or ())}; expected fixed positive "
                           f"dimensions (NHWC)")
    dtypes = _dtype_annotations(model)
    if inp in dtypes and supported_dtype(dtypes[inp]) is None:
        raise GraphError(f"graph input {inp!r} has data type {dtypes[inp]!r}; expected an integer data type")
    inits = {i.name for i in graph.initializer}
    # tensor -> (op, output index); the graph input as (None, 0)
    written: dict[str, tuple[HWOp | None, int]] = {inp: (None, 0)}
    for node in graph.node:
        op = get_op(node)
        op.check(model)
        for t in node.input:
            if t in written or t in inits:
                continue
            later = any(t in n.output for n in graph.node)
            raise GraphError(f"node {node.name} ({node.op_type}): input {t!r} is "
                               + ("written by a later node (a cycle, or nodes out of order)" if later else
                                  "produced by no node and is no initializer or graph input"))
        for i in op.stream_inputs():
            t = node.input[i]
            if t in inits:
                raise GraphError(f"node {node.name} ({node.op_type}): stream input {t!r} is an initializer")
            _check_edge(model, written[t], t, op, i, in_shape, dtypes)
        for j, t in enumerate(node.output):
            if t in written or t in inits:
                raise GraphError(f"node {node.name} ({node.op_type}): output {t!r} is written twice")
            written[t] = (op, j)
            declared = shapes.get(t)
            if declared and None not in declared and not _same_stream(declared, tuple(op.output_shape())):
                raise GraphError(f"node {node.name} ({node.op_type}): output {t!r} is declared {_fmt(declared)}; "
                                   f"the layer writes {_fmt(op.output_shape())}")
            if t in dtypes and supported_dtype(dtypes[t]) != op.output_dtype():
                raise GraphError(f"node {node.name} ({node.op_type}): output {t!r} is annotated {dtypes[t]}; the "
                                   f"layer writes {op.output_dtype().name}")
    for out in graph.output:
        if out.name not in written or out.name == inp:
            raise GraphError(f"graph output {out.name!r} is written by no node")
    scores = model.get_metadata_prop(META_SCORES)
    if scores and scores not in written:
        raise GraphError(f"metadata {META_SCORES} names {scores!r}, which no node writes")
    raw = model.get_metadata_prop(META_SCORE_SCALE)
    if raw:
        try:
            scale = np.asarray(json.loads(raw), np.float64)
            ok = scale.ndim <= 1 and scale.size >= 1 and bool(np.all(np.isfinite(scale)))
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise GraphError(f"metadata {META_SCORE_SCALE} is {raw[:40]!r}; expected a finite number or list of "
                               f"numbers")


def _check_edge(model, producer: tuple, tensor: str, op: HWOp, i: int, in_shape: tuple, dtypes: dict) -> None:
    """The stream ``tensor`` into input ``i`` of ``op``: the shape and data type its producer (or the graph
    input) writes are the ones ``op`` reads."""
    prod, _ = producer
    node = op.onnx_node
    where = f"node {node.name} ({node.op_type}): input {tensor!r}"
    wrote = in_shape if prod is None else tuple(prod.output_shape())
    source = "the graph input" if prod is None else f"node {prod.name}"
    reads = tuple(op.input_shapes()[i])
    if not _same_stream(wrote, reads):
        raise GraphError(f"{where} has shape {_fmt(wrote)} from {source}; the layer reads {_fmt(reads)}")
    want = op.input_dtype(i)
    have = prod.output_dtype() if prod is not None else supported_dtype(dtypes.get(tensor, "")) or want
    if have != want:
        raise GraphError(f"{where} carries {have.name} from {source}; the layer reads {want.name}")
