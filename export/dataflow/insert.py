"""Stream plumbing for a folded dataflow graph, as qonnx transformations (``apply(model) -> (model, changed)``):

- :class:`InsertDWC` puts a ``StreamingDataWidthConverter`` on every edge whose producer writes a stream of a
  different width than its consumer reads (FINN's InsertDWC);
- :class:`InsertFIFO` puts a ``StreamingFIFO`` on every stream edge between two layers (FINN's InsertFIFO);
- :class:`RemoveStreamNodes` takes DWCs and/or FIFOs out again (before a new folding: both depend on it; and
  for the FINN+ hand-off, which inserts its own).

Each inserted node consumes the producer's tensor and writes a new one that the consumer reads, so the
producer's tensor names (the class scores named in the metadata among them) stay as they were. Both insertions
reach their fixed point in one pass; run them in place (``t.apply(model)``) on large graphs, since
``model.transform`` deep-copies the model.
"""

from __future__ import annotations

import re

from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from onebit.errors import GraphError
from onebit.export.dataflow.base import FINN_DOMAIN
from onebit.export.dataflow.graph import get_op
from onebit.export.dataflow.ops import StreamingDataWidthConverter, StreamingFIFO

DWC = StreamingDataWidthConverter.op_type
FIFO = StreamingFIFO.op_type


def next_index(model: ModelWrapper, stem: str) -> int:
    """The first free ``n`` for node names ``<stem>_<n>``."""
    pat = re.compile(rf"^{re.escape(stem)}_(\d+)$")
    used = [int(m.group(1)) for n in model.graph.node if (m := pat.match(n.name))]
    return max(used, default=-1) + 1


def stream_edges(model: ModelWrapper) -> list[tuple]:
    """Every stream edge between two nodes: ``(producer node, output index, consumer node, input index, tensor)``,
    in graph order of the consumers. Parameter inputs (weights, thresholds) are not streams."""
    producers = {}
    for node in model.graph.node:
        for j, out in enumerate(node.output):
            producers[out] = (node, j)
    edges = []
    for node in model.graph.node:
        op = get_op(node)
        for i in op.stream_inputs():
            if i >= len(node.input) or node.input[i] not in producers:
                continue
            prod, j = producers[node.input[i]]
            edges.append((prod, j, node, i, node.input[i]))
    return edges


def dwc_node(name: str, inp: str, out: str, in_shape, out_shape, in_width: int, out_width: int, dtype: str):
    return helper.make_node(DWC, [inp], [out], name=name, domain=FINN_DOMAIN, backend="fpgadataflow",
                            inShape=list(in_shape), outShape=list(out_shape), inWidth=int(in_width),
                            outWidth=int(out_width), dataType=dtype)


def dwc_resources(in_width: int, out_width: int, shape, dtype: str) -> dict:
    """What a DWC between these widths would cost (the folding search prices DWCs before inserting them)."""
    return get_op(dwc_node("dwc", "i", "o", shape, shape, in_width, out_width, dtype)).resources()


def _splice(model: ModelWrapper, consumer, i: int, node, shape, dtype) -> None:
    """Put ``node`` (reading the tensor ``consumer`` read at input ``i``) in front of it; its output, of ``shape``
    and ``dtype``, is what the consumer reads now."""
    model.graph.node.insert(list(model.graph.node).index(consumer), node)
    consumer.input[i] = node.output[0]
    model.graph.value_info.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, list(shape)))
    model.set_tensor_datatype(node.output[0], dtype)


class InsertDWC(Transformation):
    """Insert a StreamingDataWidthConverter wherever ``producer.outstream_width() != consumer.instream_width(i)``."""

    def __init__(self):
        super().__init__()
        self.inserted: list[str] = []

    def apply(self, model: ModelWrapper):
        changed = False
        n = next_index(model, DWC)
        for prod, _, cons, i, tensor in stream_edges(model):
            p, c = get_op(prod), get_op(cons)
            w_out, w_in = p.outstream_width(), c.instream_width(i)
            if w_out == w_in:
                continue
            dtype = model.get_tensor_datatype(tensor)
            in_shape, out_shape = p.output_shape(), c.input_shapes()[i]
            name = f"{DWC}_{n}"
            n += 1
            node = dwc_node(name, tensor, f"{name}_out", in_shape, out_shape, w_out, w_in, dtype.name)
            _splice(model, cons, i, node, out_shape, dtype)
            self.inserted.append(name)
            changed = True
        return model, changed


class InsertFIFO(Transformation):
    """Insert a StreamingFIFO on every stream edge between two layers (none next to an existing FIFO).

    ``depths`` maps ``(producer name, consumer name)`` or the edge's tensor name to a depth in beats; the other
    edges get ``default``. The FIFO's folded shape is the producer's folded output shape: run InsertDWC first.
    """

    def __init__(self, depths: dict | None = None, default: int = 2):
        super().__init__()
        self.depths = dict(depths or {})
        self.default = int(default)
        self.inserted: list[str] = []
        if self.default < 1 or any(int(d) < 1 for d in self.depths.values()):
            raise GraphError(f"FIFO depths must be >= 1, got default {default} and "
                             f"{sorted(set(self.depths.values()))}")

    def depth_for(self, producer: str, consumer: str, tensor: str) -> int:
        return int(self.depths.get((producer, consumer), self.depths.get(tensor, self.default)))

    def apply(self, model: ModelWrapper):
        changed = False
        n = next_index(model, FIFO)
        for prod, _, cons, i, tensor in stream_edges(model):
            if prod.op_type == FIFO or cons.op_type == FIFO:
                continue
            p, c = get_op(prod), get_op(cons)
            if p.outstream_width() != c.instream_width(i):
                raise GraphError(f"edge {prod.name} -> {cons.name}: stream widths differ ({p.outstream_width()} vs "
                                 f"{c.instream_width(i)} bits); insert the width converters (InsertDWC) first")
            dtype = model.get_tensor_datatype(tensor)
            normal = p.output_shape()
            name = f"{FIFO}_{n}"
            n += 1
            node = helper.make_node(FIFO, [tensor], [f"{name}_out"], name=name, domain=FINN_DOMAIN,
                                    backend="fpgadataflow", depth=self.depth_for(prod.name, cons.name, tensor),
                                    folded_shape=list(p.folded_output_shape()), normal_shape=list(normal),
                                    dataType=dtype.name)
            _splice(model, cons, i, node, normal, dtype)
            self.inserted.append(name)
            changed = True
        return model, changed


class RemoveStreamNodes(Transformation):
    """Remove StreamingDataWidthConverter and/or StreamingFIFO nodes (identities in value), reconnecting their
    consumers to the tensor they read. Returns the number removed in ``self.removed``.

    A stream node that writes a graph output is the one case to choose (``at_output``):

    - ``"keep"`` (the default; the folding search): it stays, since its tensor name is the graph's interface;
    - ``"remove"`` (the FINN+ hand-off, where FINN+ inserts and sizes its own): it goes too, and its producer
      writes the graph output's name instead, so the interface keeps its name.
    """

    def __init__(self, op_types=(DWC, FIFO), at_output: str = "keep"):
        super().__init__()
        if at_output not in ("keep", "remove"):
            raise GraphError(f"at_output: expected 'keep' or 'remove', got {at_output!r}", param="at_output")
        self.op_types = set(op_types)
        self.at_output = at_output
        self.removed = 0

    def apply(self, model: ModelWrapper):
        outputs = {o.name for o in model.graph.output}
        for node in [n for n in model.graph.node if n.op_type in self.op_types]:
            src, dst = node.input[0], node.output[0]
            if dst in outputs:
                producer = model.find_producer(src)
                if self.at_output == "keep" or producer is None:
                    continue
                producer.output[list(producer.output).index(src)] = dst
                _rename_reads(model, src, dst)
                dead = src
            else:
                _rename_reads(model, dst, src)
                dead = dst
            model.graph.node.remove(node)
            _drop_annotations(model, dead)
            self.removed += 1
        return model, False


def _rename_reads(model: ModelWrapper, old: str, new: str) -> None:
    for other in model.graph.node:
        for k, name in enumerate(other.input):
            if name == old:
                other.input[k] = new


def _drop_annotations(model: ModelWrapper, tensor: str) -> None:
    """Forget the shape and data type of a tensor no node writes any more."""
    for vi in [v for v in model.graph.value_info if v.name == tensor]:
        model.graph.value_info.remove(vi)
    for qa in [q for q in model.graph.quantization_annotation if q.tensor_name == tensor]:
        model.graph.quantization_annotation.remove(qa)


def insert_dwcs(model: ModelWrapper) -> ModelWrapper:
    """InsertDWC in place (no deep copy)."""
    return InsertDWC().apply(model)[0]


def insert_fifos(model: ModelWrapper, depths: dict | None = None, default: int = 2) -> ModelWrapper:
    """InsertFIFO in place (no deep copy)."""
    return InsertFIFO(depths, default).apply(model)[0]


