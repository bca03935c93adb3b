"""The stream pipeline as a whole: every layer's step machine (:mod:`onebit.sim.model`) joined by its edges.

**Edges.** Each stream edge runs from a layer's output to a layer's stream input; ``StreamingFIFO`` nodes
are folded into the edge they sit on (their ``depth`` becomes the edge's capacity in beats). The graph input
is a source that offers one beat per cycle; graph outputs go to a sink that is always ready. A beat written
at step time ``t`` can be read from ``t + latency`` (the layer's, :attr:`LayerModel.latency`). An edge of
depth ``d`` lets its producer write beat ``j`` only after the consumer has read beat ``j - d`` (at least one
cycle before): the producer stalls.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import GraphError
from onebit.export.dataflow import graph as dfg
from onebit.sim.model import LayerModel, layer_model

FIFO = "StreamingFIFO"


@dataclass
class Edge:
    """A stream edge. ``producer``/``consumer`` are layer indices (None: graph input / graph output)."""

    index: int
    producer: int | None
    port: int
    consumer: int | None
    slot: int
    tensor: str
    beats: int
    fifos: list[str] = field(default_factory=list)
    tensors: list[str] = field(default_factory=list)  # every tensor along the edge (FIFO outputs included)
    depth: int | None = None
    pname: str = "input"
    cname: str = "output"

    @property
    def name(self) -> str:
        return f"{self.pname} -> {self.cname}"

    @property
    def internal(self) -> bool:
        return self.producer is not None and self.consumer is not None


class Network:
    """The layers (cycle models) and stream edges of a dataflow graph, in topological order."""

    def __init__(self, model: ModelWrapper):
        self.model = model
        nodes = [n for n in model.graph.node if n.op_type != FIFO]
        fifo_nodes = {n.output[0]: n for n in model.graph.node if n.op_type == FIFO}
        self.layers: list[LayerModel] = [layer_model(dfg.get_op(n).frozen(), model) for n in nodes]
        self.index = {lm.name: i for i, lm in enumerate(self.layers)}
        producer = {}
        for i, n in enumerate(nodes):
            for port, t in enumerate(n.output):
                producer[t] = (i, port)
        inp = model.graph.input[0].name
        outputs = [o.name for o in model.graph.output]
        self.edges: list[Edge] = []
        self.in_edges: list[list[Edge]] = [[] for _ in nodes]
        self.out_edges: list[list[Edge]] = [[] for _ in nodes]
        readers: dict[str, list[str]] = {}

        def trace(tensor: str):
            """Walk back through FIFO nodes: (source tensor, FIFO names, tensors, depth sum or None)."""
            names, tensors, depth = [], [tensor], None
            while tensor in fifo_nodes:
                f = fifo_nodes[tensor]
                names.insert(0, f.name)
                depth = (depth or 0) + int(dfg.get_op(f).attr("depth"))
                tensor = f.input[0]
                tensors.insert(0, tensor)
            return tensor, names, tensors, depth

        def add(src: str, consumer: int | None, slot: int, names, tensors, depth, reader: str):
            if src == inp:
                p, port = None, 0
            elif src in producer:
                p, port = producer[src]
            else:
                raise GraphError(f"node {reader}: its stream input {src!r} is produced by no layer")
            readers.setdefault(src, []).append(reader)
            beats = self.layers[consumer].in_beats(slot) if consumer is not None else self.layers[p].out_beats
            if p is not None and self.layers[p].out_beats != beats:
                raise GraphError(f"edge {self.layers[p].name} -> {reader}: the producer writes "
                                 f"{self.layers[p].out_beats} beats per frame, the consumer reads {beats}; the "
                                 f"stream widths differ (insert width converters, InsertDWC)")
            e = Edge(len(self.edges), p, port, consumer, slot, src, beats, names, tensors, depth,
                     "input" if p is None else self.layers[p].name,
                     "output" if consumer is None else self.layers[consumer].name)
            self.edges.append(e)
            if p is not None:
                self.out_edges[p].append(e)
            if consumer is not None:
                self.in_edges[consumer].append(e)

        for i, n in enumerate(nodes):
            op = self.layers[i].op
            for slot, k in enumerate(op.stream_inputs()):
                src, names, tensors, depth = trace(n.input[k])
                add(src, i, slot, names, tensors, depth, n.name)
        for out in outputs:
            src, names, tensors, depth = trace(out)
            add(src, None, 0, names, tensors, depth, "output")
        for t, who in readers.items():
            if len(who) > 1:
                raise GraphError(f"tensor {t!r} is read by {len(who)} layers ({', '.join(who)}); a stream has one "
                                 f"consumer, so a fork needs a DuplicateStreams node")
        self.order = self._topo_order()

    def _topo_order(self) -> list[int]:
        indeg = [sum(e.producer is not None for e in ins) for ins in self.in_edges]
        ready = [i for i, d in enumerate(indeg) if d == 0]
        order = []
        while ready:
            i = ready.pop(0)
            order.append(i)
            for e in self.out_edges[i]:
                if e.consumer is not None:
                    indeg[e.consumer] -= 1
                    if indeg[e.consumer] == 0:
                        ready.append(e.consumer)
        if len(order) != len(self.layers):
            raise GraphError("the dataflow graph has a cycle; a stream pipeline must be acyclic")
        return order

    # ----- FIFO depths -------------------------------------------------------------------------------------
    @property
    def internal_edges(self) -> list[Edge]:
        return [e for e in self.edges if e.internal]

    def set_depths(self, depths: dict | None) -> None:
        """Override edge depths: keys are a tensor on the edge, a StreamingFIFO name, ``"producer -> consumer"``
        or ``"default"`` (every edge without a FIFO node or its own entry); values are beats >= 1."""
        if not depths:
            return
        if not isinstance(depths, dict):
            raise GraphError(f"depths: expected a mapping {{edge: depth}}, got {type(depths).__name__}",
                             param="depths")
        keys = {}
        for e in self.internal_edges:
            for k in (*e.tensors, *e.fifos, f"{e.pname}->{e.cname}"):
                keys[k] = e
        default = depths.get("default")
        given = set()
        for key, value in depths.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GraphError(f"depths: {key!r}: expected an integer >= 1 (beats), got {value!r}", param="depths")
            if key == "default":
                continue
            e = keys.get(key.replace(" ", "") if "->" in key else key)
            if e is None:
                sample = ", ".join(f"'{x.pname} -> {x.cname}'" for x in self.internal_edges[:3])
                raise GraphError(f"depths: no stream edge {key!r} in the graph; expected a tensor name, a "
                                 f"StreamingFIFO name or 'producer -> consumer' (e.g. {sample})", param="depths")
            e.depth = int(value)
            given.add(e.index)
        if default is not None:
            for e in self.internal_edges:
                if e.index not in given and not e.fifos:
                    e.depth = int(default)

    def subnet(self, keep: set[int]) -> "Network":
        """The layers ``keep`` as a network of their own: edges from other layers become sources (a beat per
        cycle), edges to other layers sinks; ``origin`` maps its edge indices to this network's."""
        sub = object.__new__(Network)
        sub.model = self.model
        ids = sorted(keep)
        where = {old: k for k, old in enumerate(ids)}
        sub.layers = [self.layers[i] for i in ids]
        sub.index = {lm.name: k for k, lm in enumerate(sub.layers)}
        sub.edges, sub.origin = [], {}
        sub.in_edges = [[] for _ in ids]
        sub.out_edges = [[] for _ in ids]
        for e in self.edges:
            p = where.get(e.producer) if e.producer is not None else None
            c = where.get(e.consumer) if e.consumer is not None else None
            if p is None and c is None:
                continue
            ne = replace(e, index=len(sub.edges), producer=p, consumer=c)
            sub.origin[ne.index] = e.index
            sub.edges.append(ne)
            if p is not None:
                sub.out_edges[p].append(ne)
            if c is not None:
                sub.in_edges[c].append(ne)
        sub.order = sub._topo_order()
        return sub

    def region(self, layers: set[int]) -> set[int]:
        """The layers on paths between layers of ``layers`` (both ends included): a fork-join and its branches."""
        def reach(start, step):
            seen, todo = set(start), list(start)
            while todo:
                for j in step(todo.pop()):
                    if j not in seen:
                        seen.add(j)
                        todo.append(j)
            return seen

        down = reach(layers, lambda i: [e.consumer for e in self.out_edges[i] if e.consumer is not None])
        up = reach(layers, lambda i: [e.producer for e in self.in_edges[i] if e.producer is not None])
        return down & up

    @property
    def finite(self) -> bool:
        return any(e.depth is not None for e in self.internal_edges)

    def events_per_frame(self) -> int:
        return sum(lm.events for lm in self.layers)

