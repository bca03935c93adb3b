"""The stream pipeline as a whole: every layer's step machine (:mod:`onebit.sim.model`) joined by its edges.

**Edges.** Each stream edge runs from a layer's output to a layer's stream input; ``StreamingFIFO`` nodes
are folded into the edge they sit on (their ``depth`` becomes the edge's capacity in beats). The graph input
is a source that offers one beat per cycle; graph outputs go to a sink that is always ready. A beat written
at step time ``t`` can be read from ``t + latency`` (the layer's, :attr:`LayerModel.latency`). An edge of depth ``d`` lets its producer write beat
``j`` only after the consumer has read beat ``j - d`` (at least one cycle before): the producer stalls.

**Unbounded FIFOs** (no StreamingFIFO nodes, no ``depths``): one pass in topological order, each layer's
event times a vectorised max-plus recurrence of its inputs' arrival times. This gives the exact schedule of
the model: per-frame completion times, first-frame latency, the steady-state initiation interval (the
slowest layer's period) and, per edge, the depth it needs so that the pipeline runs as with unbounded FIFOs
(:func:`needed_depths`), from occupancies ``max_j (j + 1 - #{reads before write j})`` (a ``searchsorted``):
e.g. what the shortcut branch must buffer while the conv branch fills its sliding windows.

**Finite FIFOs**: backpressure couples each layer to its consumers, so the schedule is the least fixed point
of the recurrences with credits. Starting from the unbounded schedule (a lower bound), a few backward and
forward Gauss-Seidel sweeps recompute the layers whose neighbours changed; if that has not converged, policy
iteration takes over: every event's binding constraint (previous step, a beat it reads, or the read that
frees room for the beat it writes) forms a forest whose path sums are evaluated at once by pointer doubling
(over the heads of the runs of steps that wait for nothing else), then each event re-picks its binding
constraint, until nothing changes (a bounded number of iterations). Both give the same least fixed point.

**Deadlocks.** A schedule exists iff the beat dependency graph is acyclic; a too shallow FIFO on a fork-join
closes a cycle (the fork waits for room in the shortcut FIFO, the join waits for the conv branch, the conv
branch waits for the fork). Every binding constraint is an edge of that graph, so a cycle among them proves
a deadlock; pointer doubling finds it and a walk around it names the FIFOs whose credits close it. A
deadlock with N frames is a deadlock of the first frame (a frame's events depend only on its own and earlier
frames'), so the check runs on one frame; the FIFO to deepen and the least depth it needs are then found by
bisection on one frame of the fork-join region the cycle lies in.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import GraphError
from onebit.export.dataflow import graph as dfg
from onebit.sim.model import NEG, LayerModel, layer_model

FIFO = "StreamingFIFO"
#: Gauss-Seidel sweeps of the finite-FIFO fixed point before switching to policy iteration
GS_SWEEPS = 4
#: policy iterations before giving up (each evaluates every event's binding path at once)
MAX_ITERATIONS = 2000
#: frames the FIFO sizing looks at, at least (within SIZING_EVENT_BUDGET events)
SIZING_FRAMES = 4
SIZING_EVENT_BUDGET = 8_000_000
#: event budget of one timing run (all layers, all frames); more frames are extrapolated from the last II
EVENT_BUDGET = 24_000_000


class DeadlockError(GraphError):
    """The FIFO depths deadlock the pipeline; names the FIFO's edge, its depth and the depth it needs."""

    def __init__(self, message: str, info: dict):
        super().__init__(message)
        self.info = info


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
            raise GraphError(f"FIFO depths: expected a JSON object {{edge: depth}}, got {type(depths).__name__}")
        keys = {}
        for e in self.internal_edges:
            for k in (*e.tensors, *e.fifos, f"{e.pname}->{e.cname}"):
                keys[k] = e
        default = depths.get("default")
        given = set()
        for key, value in depths.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GraphError(f"FIFO depths: {key!r}: depth {value!r}; expected an integer >= 1 (beats)")
            if key == "default":
                continue
            e = keys.get(key.replace(" ", "") if "->" in key else key)
            if e is None:
                sample = ", ".join(f"'{x.pname} -> {x.cname}'" for x in self.internal_edges[:3])
                raise GraphError(f"FIFO depths: no stream edge {key!r} in the graph; expected a tensor name, a "
                                 f"StreamingFIFO name or 'producer -> consumer' (e.g. {sample})")
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


# ----- schedules --------------------------------------------------------------------------------------------
class Schedule:
    """Event times of every layer over ``n`` frames (``T[i]``), with the writes and reads derived from them."""

    def __init__(self, net: Network, n: int, bounded: bool):
        self.net, self.n, self.bounded = net, n, bounded
        self.step_times: list[np.ndarray | None] = [None] * len(net.layers)
        self.write_times: list[np.ndarray | None] = [None] * len(net.layers)
        self.edge_reads: dict[int, np.ndarray] = {}
        self.sweeps = 0
        self.iterations = 0
        self.converged = True

    # arrival times of a layer's input beats, and the earliest write time of its output beats
    def arrivals(self, i: int) -> list[np.ndarray]:
        out = []
        for e in self.net.in_edges[i]:
            if e.producer is None:
                out.append(np.arange(self.n * e.beats, dtype=np.int64))
            else:
                out.append(self.write_times[e.producer] + self.net.layers[e.producer].latency)
        return out

    def credit(self, i: int) -> np.ndarray | None:
        if not self.bounded:
            return None
        c = None
        for e in self.net.out_edges[i]:
            if e.depth is None or e.consumer is None:
                continue
            r = self.edge_reads[e.index]
            if e.depth >= len(r):
                continue
            cand = np.full(len(r), NEG, dtype=np.int64)
            cand[e.depth:] = r[: len(r) - e.depth] + 1
            c = cand if c is None else np.maximum(c, cand)
        return c

    def compute(self, i: int) -> bool:
        """Recompute layer ``i`` from its neighbours; returns whether its times changed."""
        lm = self.net.layers[i]
        t = lm.times(self.n, self.arrivals(i), self.credit(i))
        if self.step_times[i] is not None and np.array_equal(t, self.step_times[i]):
            return False
        self.set(i, t)
        return True

    def set(self, i: int, t: np.ndarray) -> None:
        lm = self.net.layers[i]
        _, reads, writes = lm.tiled(self.n)
        self.step_times[i] = t
        self.write_times[i] = t[writes]
        for e in self.net.in_edges[i]:
            self.edge_reads[e.index] = t[reads[e.slot]]
        for e in self.net.out_edges[i]:
            if e.consumer is None:
                self.edge_reads[e.index] = self.write_times[i] + lm.latency

    # ----- results -----------------------------------------------------------------------------------------
    def source_reads(self) -> np.ndarray:
        e = next(e for e in self.net.edges if e.producer is None)
        return self.edge_reads[e.index]

    def frame_done(self) -> np.ndarray:
        """Per frame: the cycle in which the sink takes the frame's last output beat (over all outputs)."""
        done = None
        for e in self.net.edges:
            if e.consumer is None:
                last = self.edge_reads[e.index].reshape(self.n, -1)[:, -1]
                done = last if done is None else np.maximum(done, last)
        return done

    def frame_start(self) -> np.ndarray:
        """Per frame: the cycle in which the first layer reads the frame's first input beat."""
        return self.source_reads().reshape(self.n, -1)[:, 0]

    def layer_spans(self, i: int) -> np.ndarray:
        """(n, 2): per frame, the cycle the layer's first step ran and the cycle after its last step."""
        lm = self.net.layers[i]
        t = self.step_times[i].reshape(self.n, lm.events)
        return np.stack([t[:, 0] - lm.pos[0], t[:, -1] + (lm.period - lm.pos[-1])], axis=1)

    def layer_stalls(self, i: int) -> dict:
        """Cycles the layer waited, by cause: for input (starved) or for room in an output FIFO (blocked).
        Waiting before the first frame's first step counts as neither."""
        lm = self.net.layers[i]
        pos, _, _ = lm.tiled(self.n)
        lb_in, lb_out = lm.lower_bounds(self.n, self.arrivals(i), self.credit(i))
        x = self.step_times[i] - pos
        inc = np.diff(x)
        grew = np.flatnonzero(inc > 0) + 1
        out = 0
        if lb_out is not None and len(grew):
            blocked = lb_out[grew] > lb_in[grew]
            out = int(inc[grew[blocked] - 1].sum())
        total = int(x[-1] - x[0])
        busy = self.n * lm.period
        return {"stall_in": total - out, "stall_out": out, "busy": busy,
                "utilisation": busy / (busy + total) if busy + total else 1.0, "start": int(x[0])}

    def edge_occupancy(self, e: Edge) -> int:
        """Largest number of beats on the edge just after a write: the depth it needs to never stall."""
        if e.producer is None or e.consumer is None:
            return 0
        w, r = self.write_times[e.producer], self.edge_reads[e.index]
        if not len(w):
            return 0
        cnt = np.searchsorted(r, w, side="left")
        return int(max(1, int((np.arange(1, len(w) + 1) - cnt).max())))


def latest(s: Schedule) -> Schedule:
    """The as-late-as-possible schedule that still delivers every output beat when ``s`` does (unbounded
    FIFOs): each layer's steps as late as its consumers allow (a min-plus recurrence, reverse topological
    order). It is feasible for FIFO depths equal to its occupancies, so with those depths the pipeline's
    outputs leave exactly as with unbounded FIFOs: the depth each edge needs (:func:`needed_depths`)."""
    net, n = s.net, s.n
    late = Schedule(net, n, False)
    horizon = max(int(t[-1]) for t in s.step_times)  # no event of s is later, so every latest time is >= s's
    big = 1 << 60
    for i in net.order[::-1]:
        lm = net.layers[i]
        pos, _, writes = lm.tiled(n)
        deadline = None
        for e in net.out_edges[i]:
            d = s.edge_reads[e.index] if e.consumer is None else late.edge_reads[e.index]
            deadline = d - lm.latency if deadline is None else np.minimum(deadline, d - lm.latency)
        ub = np.full(len(pos), big, dtype=np.int64)
        if deadline is not None:
            ub[writes] = deadline
        ub[-1] = min(ub[-1], horizon)
        y = ub - pos
        y = np.minimum.accumulate(y[::-1])[::-1]
        late.set(i, y + pos)
    return late


def needed_depths(s: Schedule) -> dict[int, int]:
    """Edge index -> a depth for every internal edge with which no output beat leaves later than in the
    unbounded schedule ``s``: sufficient, and an upper bound of the least such depths.

    The occupancies of the as-late-as-possible schedule (:func:`latest`) are such depths, but they keep
    data waiting in front of late consumers (at a residual join, the whole frame). So the pipeline is then
    solved with them (as soon as possible, backpressure included) and its own occupancies are taken: that
    schedule is feasible with its occupancies, hence it is also the least schedule with them, and it
    delivers the outputs as ``s`` does. With these depths the shortcut FIFO holds what the conv branch delays.
    """
    net = s.net
    late = latest(s)
    alap = {e.index: late.edge_occupancy(e) for e in net.internal_edges}
    del late  # the schedules of large graphs take hundreds of MB each
    saved = {e.index: e.depth for e in net.internal_edges}
    try:
        for e in net.internal_edges:
            e.depth = alap[e.index]
        tight = solve(net, s.n, True, check_deadlock=False)
        return {e.index: tight.edge_occupancy(e) for e in net.internal_edges}
    finally:
        for e in net.internal_edges:
            e.depth = saved[e.index]


def solve(net: Network, n: int, bounded: bool | None = None, max_iterations: int = MAX_ITERATIONS,
          check_deadlock: bool = True) -> Schedule:
    """The schedule over ``n`` frames; with finite FIFOs the least fixed point (see the module docstring).

    Raises :class:`DeadlockError` when a dependency cycle is found (``check_deadlock``; else the schedule is
    returned with ``converged=False``). After ``max_iterations`` policy iterations without reaching the fixed
    point the schedule is returned with ``converged=False``: its times are lower bounds.
    """
    bounded = net.finite if bounded is None else bounded
    s = Schedule(net, n, False)
    for i in net.order:
        s.compute(i)
    if not bounded:
        return s
    s.bounded = True
    dirty = _sweeps(s, GS_SWEEPS)
    for it in range(max_iterations):
        # policy iteration over the unsettled layers and their neighbours; every layer at iterations 0, 1, 2, 4,
        # 8, ...: a deadlock cycle shows only in a policy that holds all of its layers
        if not dirty:
            return s
        active = set(range(len(net.layers)))
        if it & (it - 1):
            active = set(dirty)
            for i in dirty:
                active |= {e.consumer for e in net.out_edges[i] if e.consumer is not None}
                active |= {e.producer for e in net.in_edges[i] if e.producer is not None}
        pol = _policy(s, sorted(active))
        t, cycle = _evaluate(pol)
        s.iterations += 1
        if cycle is not None:
            s.converged = False
            if check_deadlock:
                raise _deadlock_error(net, s, _walk(pol, cycle))
            return s
        offsets, changed = pol["offsets"], set()
        for k, i in enumerate(pol["layers"]):
            ti = t[offsets[k]:offsets[k + 1]]
            if not np.array_equal(ti, s.step_times[i]):
                s.set(i, ti.copy())
                changed.add(i)
        dirty |= changed
        for i in changed:
            dirty |= _neighbours(net, i)
        dirty = _sweeps(s, 2, dirty)  # cheap local propagation between policy steps
    s.converged = not dirty
    return s


def _neighbours(net: Network, i: int) -> set[int]:
    """The layers whose times depend on layer ``i``'s: its consumers, and its producers through finite FIFOs."""
    out = {e.consumer for e in net.out_edges[i] if e.consumer is not None}
    return out | {e.producer for e in net.in_edges[i] if e.producer is not None and e.depth is not None}


def _sweeps(s: Schedule, count: int, dirty: set[int] | None = None) -> set[int]:
    """Backward and forward Gauss-Seidel sweeps over the layers whose neighbours changed (``dirty``: all at
    first); returns the layers still to recompute (none: the fixed point)."""
    net = s.net
    dirty = set(range(len(net.layers))) if dirty is None else set(dirty)
    forward = False
    for _ in range(count):
        order = net.order if forward else net.order[::-1]
        for i in order:
            if i not in dirty:
                continue
            dirty.discard(i)
            if s.compute(i):
                dirty |= _neighbours(net, i)
        s.sweeps += 1
        forward = not forward
        if not dirty:
            break
    return dirty


# ----- policy iteration and deadlocks: the binding constraint of every event -----------------------------
def _policy(s: Schedule, active: list[int] | None = None) -> dict:
    """For every event of the ``active`` layers (default all; global ids, layer by layer), the constraint that
    sets its time given the other events' current times: ``pred`` (the event it waits for; itself for a
    root), ``w`` (the cycles after it; for a root its time), ``kind`` (0 previous step of the same layer or
    root, 1 a beat it reads, 2 the read that frees room for the beat it writes) and ``edge``. An event waiting
    for a layer outside ``active`` is a root at that layer's current time. Each layer is recomputed once from
    its neighbours, so the policy's times are >= the current ones."""
    net, n = s.net, s.n
    active = list(range(len(net.layers))) if active is None else sorted(active)
    where = {i: k for k, i in enumerate(active)}
    offsets = np.cumsum([0] + [net.layers[i].events * n for i in active])
    preds, ws, kinds, edges, poss = [], [], [], [], []
    for k, i in enumerate(active):
        lm = net.layers[i]
        pos, reads, writes = lm.tiled(n)
        poss.append(pos)
        arr = s.arrivals(i)
        t = lm.times(n, arr, s.credit(i))
        off = offsets[k]
        ne = len(pos)
        idx = np.arange(ne, dtype=np.int64)
        pred = off + idx
        w = np.empty(ne, dtype=np.int64)
        w[0] = pos[0]
        w[1:] = np.diff(pos)
        kind = np.zeros(ne, dtype=np.int8)
        edge = np.full(ne, -1, dtype=np.int32)
        chain = np.empty(ne, dtype=np.int64)
        chain[0] = pos[0]
        chain[1:] = t[:-1] + w[1:]
        m = chain == t
        m[0] = False
        pred[m] = off + idx[m] - 1
        root = ~m  # events not set by their previous step: set below by a read or a credit (or a root)
        root[0] = True
        for e in net.in_edges[i]:
            ev = reads[e.slot]
            hit = np.flatnonzero(root[ev] & (arr[e.slot] == t[ev]))
            if e.producer in where:
                pred[ev[hit]] = offsets[where[e.producer]] + net.layers[e.producer].tiled(n)[2][hit]
                w[ev[hit]] = net.layers[e.producer].latency
            else:  # a root: the source offers beat k at cycle k; a layer outside is held at its times
                w[ev[hit]] = arr[e.slot][hit]
            kind[ev[hit]] = 1
            edge[ev[hit]] = e.index
            root[ev[hit]] = False
        for e in net.out_edges[i]:
            if e.consumer is None or e.depth is None:
                continue
            r = s.edge_reads[e.index]
            if e.depth >= len(r):
                continue
            wj = writes[e.depth:]
            hit = np.flatnonzero(root[wj] & (r[: len(r) - e.depth] + 1 == t[wj]))
            if e.consumer in where:
                cons_reads = net.layers[e.consumer].tiled(n)[1][e.slot]
                pred[wj[hit]] = offsets[where[e.consumer]] + cons_reads[hit]
                w[wj[hit]] = 1
            else:
                w[wj[hit]] = r[hit] + 1
            kind[wj[hit]] = 2
            edge[wj[hit]] = e.index
            root[wj[hit]] = False
        # remaining roots: the first step of the layer (w = pos[0]); nothing else can be one
        preds.append(pred)
        ws.append(w)
        kinds.append(kind)
        edges.append(edge)
    return {"pred": np.concatenate(preds), "w": np.concatenate(ws), "kind": np.concatenate(kinds),
            "edge": np.concatenate(edges), "offsets": offsets, "pos": np.concatenate(poss), "layers": active}


def _evaluate(pol: dict) -> tuple[np.ndarray, int | None]:
    """Times under a policy: each event's root time plus the weights on its path. Returns ``(times, None)``,
    or ``(None, event)`` with an event on a cycle of the policy (a deadlock).

    Most events wait for the previous step of their layer, and such a run adds up to a difference of step
    positions; so only the heads of these runs (roots and events set by another layer) are resolved, by
    pointer doubling, and the rest follow from their head.
    """
    pred, w, kind, pos = pol["pred"], pol["w"], pol["kind"], pol["pos"]
    v = len(pred)
    idx = np.arange(v, dtype=np.int64)
    chained = (kind == 0) & (pred != idx)
    head = np.maximum.accumulate(np.where(chained, 0, idx))  # a layer's first event is never chained
    heads = np.flatnonzero(~chained)
    rank = np.cumsum(~chained) - 1  # rank among heads, valid at heads
    p = pred[heads]
    is_root = p == heads
    g = head[p]
    hpred = np.where(is_root, np.arange(len(heads)), rank[g])
    hw = np.where(is_root, w[heads], pos[p] - pos[g] + w[heads])
    anc = hpred.copy()
    acc = np.where(is_root, 0, hw)
    for k in range(max(1, math.ceil(math.log2(max(len(heads), 2)))) + 1):
        if is_root[anc].all():
            break
        acc = acc + acc[anc]
        anc = anc[anc]
    bad = np.flatnonzero(~is_root[anc])
    if len(bad):
        return None, int(heads[anc[bad[0]]])
    t_heads = acc + hw[anc]
    return t_heads[rank[head]] + pos - pos[head], None


def _walk(pol: dict, start: int, max_walk: int = 50_000_000) -> dict:
    """Follow the policy around the cycle through ``start``: its credit and data edges, in order."""
    pred, kind, edge = pol["pred"], pol["kind"], pol["edge"]
    x, p = start, pred.copy()
    for _ in range(max(1, math.ceil(math.log2(max(len(p), 2)))) + 1):
        p = p[p]
    x = int(p[start])  # a node on the cycle itself (start may lead into it)
    first, credit_edges, data_edges, steps = x, [], [], 0
    while True:
        k = int(kind[x])
        if k == 2:
            credit_edges.append(int(edge[x]))
        elif k == 1:
            data_edges.append(int(edge[x]))
        x = int(pred[x])
        steps += 1
        if x == first or steps > max_walk:
            break
    return {"credit_edges": list(dict.fromkeys(credit_edges)), "data_edges": list(dict.fromkeys(data_edges)),
            "length": steps}


def find_cycle(s: Schedule) -> dict | None:
    """A cycle among the binding constraints of the current times, or None (see :func:`_walk`)."""
    pol = _policy(s)
    _, cycle = _evaluate(pol)
    return None if cycle is None else _walk(pol, cycle)


def _runs_with(net: Network, e: Edge, depth: int | None, through: bool = False) -> bool:
    """Whether the first frame runs with edge ``e`` at ``depth`` (others as they are); with ``through``,
    whether at least no deadlock cycle runs through ``e``'s credit."""
    old = e.depth
    e.depth = depth
    try:
        solve(net, 1, True)
        return True
    except DeadlockError as err:
        return through and e.index not in err.info["credit_edge_ids"]
    finally:
        e.depth = old


def least_depth(net: Network, e: Edge, through: bool = False) -> int:
    """The least depth of edge ``e`` (the other depths as they are) with which the first frame runs (or, with
    ``through``, no deadlock cycle runs through ``e``). One frame never holds more than ``e.beats`` beats on
    the edge, so that depth is as good as an unbounded one."""
    lo, hi = e.depth, max(e.beats, e.depth + 1)
    if not _runs_with(net, e, hi, through):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _runs_with(net, e, mid, through):
            hi = mid
        else:
            lo = mid
    return hi


def _cycle_info(net: Network, cycle: dict) -> dict:
    edges = [net.edges[k] for k in cycle["credit_edges"]]
    return {"credit_edges": [x.name for x in edges], "credit_edge_ids": [x.index for x in edges],
            "data_edge_ids": cycle["data_edges"], "cycle_events": cycle["length"]}


def _describe(net: Network, info: dict, e: Edge, needed: int | None, alone: bool) -> DeadlockError:
    waits = [net.edges[k] for k in info["data_edge_ids"]
             if net.edges[k].consumer == e.consumer and net.edges[k].producer != e.producer]
    info = {**info, "producer": e.pname, "consumer": e.cname, "tensor": e.tensor,
            "fifo": e.fifos[0] if e.fifos else None, "depth": e.depth, "needed": needed, "fixes_alone": alone,
            "waits_for": waits[0].pname if waits else None}
    return DeadlockError(_deadlock_message(info), info)


def _deadlock_error(net: Network, s: Schedule, cycle: dict) -> DeadlockError:
    info = _cycle_info(net, cycle)
    edges = [net.edges[k] for k in info["credit_edge_ids"]] or [net.edges[k] for k in info["data_edge_ids"]]
    return _describe(net, info, min(edges, key=lambda x: x.depth or 0), None, False)


def _deadlock_message(info: dict) -> str:
    need = info["needed"]
    msg = (f"deadlock: FIFO on edge {info['producer']} -> {info['consumer']} holds {info['depth']} beats but needs "
           f"at least {need if need is not None else info['depth'] + 1}")
    extra = []
    if info["fifo"]:
        extra.append(f"node {info['fifo']}")
    extra.append(f"{info['producer']} stalls on the full FIFO")
    if info["waits_for"]:
        extra.append(f"while {info['consumer']} waits for {info['waits_for']}")
    if not info.get("fixes_alone", True):
        extra.append("and deepening it alone is not enough: another FIFO is too shallow as well")
    return msg + " (" + ", ".join(extra) + ")"


def check_deadlock(net: Network, find_needed: bool = True) -> Schedule | None:
    """Raise :class:`DeadlockError` if the FIFO depths deadlock the first frame (hence every frame); else
    return the first frame's schedule (None without finite FIFOs).

    The error names the FIFO to deepen: of the FIFOs whose credit is on the dependency cycle, the first
    (residual joins first) whose enlargement alone lets the cycle's fork-join region run; and
    (``find_needed``) the least depth it needs there, the other depths as they are, by bisection on one
    frame of that region (a cycle never leaves the layers between its fork and its join). ``fixes_alone``
    says whether that depth also lets the whole pipeline run.
    """
    if not net.finite:
        return None
    try:
        return solve(net, 1, True)
    except DeadlockError as err:
        if not find_needed:
            raise
        info = {k: err.info[k] for k in ("credit_edges", "credit_edge_ids", "data_edge_ids", "cycle_events")}
    edges = [net.edges[k] for k in info["credit_edge_ids"]]
    edges.sort(key=lambda x: (len(net.in_edges[x.consumer]) < 2, x.depth))
    ends = {x.producer for x in edges} | {x.consumer for x in edges}
    ends |= {net.edges[k].producer for k in info["data_edge_ids"]} | {net.edges[k].consumer
                                                                    for k in info["data_edge_ids"]}
    sub = net.subnet(net.region({x for x in ends if x is not None}))
    back = {v: k for k, v in sub.origin.items()}
    chosen, through = None, False
    for e in edges:
        if _runs_with(sub, sub.edges[back[e.index]], None):
            chosen = e
            break
    if chosen is None:  # no single FIFO fixes the region: name one whose enlargement at least breaks this cycle
        through = True
        chosen = next((e for e in edges if _runs_with(sub, sub.edges[back[e.index]], None, through=True)), None)
    if chosen is None:
        raise _describe(net, info, edges[0], None, False)
    needed = least_depth(sub, sub.edges[back[chosen.index]], through=through)
    alone = not through and _runs_with(net, chosen, needed)
    raise _describe(net, info, chosen, needed, alone)


# ----- the simulation -----------------------------------------------------------------------------------------
@dataclass
class SimResult:
    """Everything a report needs: the network, the final schedule, the unbounded one, per-frame times."""

    net: Network
    schedule: Schedule  # the schedule with the graph's FIFO depths (the unbounded one if it has none)
    unbounded: Schedule
    frames: int
    simulated_frames: int
    done: np.ndarray  # per frame: cycle in which its last output beat leaves (extrapolated past simulated)
    start: np.ndarray  # per frame: cycle in which its first input beat enters
    needed: dict[int, int] = field(default_factory=dict)  # edge index -> depth it needs (see needed_depths)
    depth_frames: int = 0  # frames the needed depths were computed over
    outputs: dict | None = None  # bit-exact outputs (reference executor) when inputs were given
    steady: tuple[int, int] | None = None  # (q, d): every frame is the frame q before it shifted by d cycles

    @property
    def ii_model(self) -> int:
        """Steady-state initiation interval with unbounded FIFOs: the slowest layer's period."""
        return max(lm.period for lm in self.net.layers)

    @property
    def ii(self) -> int:
        """Initiation interval: in a steady state the mean interval between frame completions over its period
        (rounded), else the last simulated interval (the model's with one frame)."""
        if self.steady is not None:
            q, d = self.steady
            return int(round(d / q))
        n = self.simulated_frames
        return int(self.done[n - 1] - self.done[n - 2]) if n > 1 else self.ii_model

    @property
    def bottleneck(self) -> str:
        return max(self.net.layers, key=lambda lm: lm.period).name

    @property
    def latency(self) -> int:
        """First-frame latency in cycles: from its first input beat entering to its last output beat leaving."""
        return int(self.done[0] - self.start[0]) + 1


def reach(net: Network) -> int:
    """How many frames back a frame's constraints reach: one (the previous step), or more through the credits
    of FIFOs that hold a frame or more."""
    return max([1] + [-(-e.depth // e.beats) for e in net.internal_edges if e.depth is not None and e.beats])


def steady_shift(s: Schedule, max_period: int = 4) -> tuple[int, int] | None:
    """``(q, d)`` if the last ``q`` simulated frames are exactly the ``q`` before them shifted by ``d`` cycles,
    event for event in every layer, and the source did not hold them back (``d`` equals the source's beats
    over ``q`` frames, or no read of those frames' input beats waited for its arrival). Then every later frame
    is the frame ``q`` before it shifted by ``d``: its constraints are that frame's, shifted (the same step
    layouts; the frames its credits reach back to (:func:`reach`) are checked too), except the source's
    arrivals, which shift by fewer cycles and so bind nowhere. The smallest such ``q`` <= ``max_period``; None
    if there is none."""
    n, net = s.n, s.net
    src = next(e for e in net.edges if e.producer is None)
    r = reach(net)
    for q in range(1, max_period + 1):
        w = max(q, r)  # the frames the next one depends on must repeat, not just the last q
        if n < w + q:
            break
        d = None
        for i, lm in enumerate(net.layers):
            t = s.step_times[i].reshape(n, lm.events)
            diff = t[n - w:] - t[n - w - q:n - q]
            if d is None:
                d = int(diff.flat[0])
            if np.any(diff != d):
                d = None
                break
        if d is None or d < q * src.beats:
            continue
        if d > q * src.beats:
            reads = s.edge_reads[src.index].reshape(n, -1)[n - q:]
            arrival = np.arange((n - q) * src.beats, n * src.beats, dtype=np.int64).reshape(q, -1)
            if np.any(reads == arrival):
                continue
        return q, d
    return None


def load_depths(path: str | Path) -> dict:
    """A ``--fifo-depths`` JSON file: {tensor | FIFO name | "producer -> consumer" | "default": depth}; a
    ``fifo_depths`` entry of a simulator report is accepted too."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise GraphError(f"--fifo-depths {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise GraphError(f"--fifo-depths {path}: not a JSON object of depths ({type(e).__name__}: "
                         f"{str(e)[:100]})") from None
    if isinstance(data, dict) and isinstance(data.get("fifo_depths"), dict):
        data = data["fifo_depths"]
    if not isinstance(data, dict):
        raise GraphError(f"--fifo-depths {path}: expected a JSON object {{edge: depth}}, got {type(data).__name__}")
    return data


#: elements (float32) of all tensors of one executor chunk: bounds its memory (~256 MB)
CHUNK_ELEMENTS = 64_000_000


def execute_frames(model: ModelWrapper, x: np.ndarray, chunk: int | None = None) -> dict[str, np.ndarray]:
    """The reference executor (bit-exact) over all frames, ``chunk`` frames at a time to bound memory (default:
    as many as CHUNK_ELEMENTS allows, 1 to 256: the executor's cost per call is mostly per node, not per frame)."""
    x = dfg.check_frames(model, x)
    if chunk is None:
        per_frame = sum(int(np.prod(dfg.get_op(n).output_shape())) for n in model.graph.node)
        chunk = max(1, min(256, CHUNK_ELEMENTS // max(1, per_frame)))
    parts = [dfg.execute(model, x[k:k + chunk]) for k in range(0, len(x), chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def simulate(model: ModelWrapper, frames: int | None = None, inputs: np.ndarray | None = None,
             depths: dict | None = None, event_budget: int = EVENT_BUDGET, fifo_sizing: bool = True,
             extend: bool = True) -> SimResult:
    """Simulate ``frames`` frames: the bit-exact outputs of ``inputs`` (if given; ``frames`` defaults to
    their count) and the cycle schedule.

    ``depths`` overrides FIFO depths (see :meth:`Network.set_depths`). Raises :class:`DeadlockError` when the
    depths deadlock the pipeline. Frames beyond what ``event_budget`` events allow are extrapolated with the
    last simulated initiation interval (``simulated_frames`` says how many were simulated). Once the schedule
    is provably periodic (:func:`steady_shift`, after a few frames) the rest is extended exactly instead of
    simulated (``extend=False`` simulates every frame up to the budget). ``fifo_sizing``:
    also compute the depth each edge needs (:func:`needed_depths`) over the simulated frames.
    """
    if frames is not None and frames < 1:
        raise GraphError(f"--frames {frames}: expected at least 1")
    net = Network(model)
    net.set_depths(depths)
    x = None
    if inputs is not None:
        x = np.asarray(inputs)
        if x.ndim == len(dfg.input_shape(model)) - 1:
            x = x[None]
        frames = frames or len(x)
        if frames > len(x):
            raise GraphError(f"--frames {frames}: the input holds only {len(x)} frame(s)")
        x = dfg.check_frames(model, x[:frames])
    frames = int(frames or 1)
    per_frame = max(1, net.events_per_frame())
    n_sim = max(1, min(frames, event_budget // per_frame))
    if frames > 1:
        n_sim = max(n_sim, 2)
    probe = 4 + reach(net) if extend else None
    steady = sched = None
    if probe is not None and n_sim > probe:
        # the schedule repeats once it has repeated for one period (see steady_shift): simulate a few frames
        # and extend exactly; more only while it has not settled
        for n_try in (probe, 2 * probe, 4 * probe):
            if n_try >= n_sim:
                break
            trial = solve(net, n_try, None if net.finite else False, check_deadlock=False)
            if not trial.converged:  # a deadlock (named below) or no fixed point within the iterations
                break
            steady = steady_shift(trial)
            if steady is not None:
                n_sim, sched = n_try, trial
                break
    # a converged trial has no deadlock: its first frame is the first frame
    first = check_deadlock(net) if net.finite and sched is None else None
    unbounded = sched if sched is not None and not net.finite else solve(net, n_sim, False)
    needed, depth_frames = {}, 0
    if fifo_sizing:  # over enough frames to see the steady state (two frames can miss what the third needs),
        # as far as the sizing's event budget goes (a WRN-20-10 frame alone has ~8M events)
        depth_frames = max(n_sim, min(SIZING_FRAMES, SIZING_EVENT_BUDGET // per_frame))
        needed = needed_depths(unbounded if depth_frames == n_sim else solve(net, depth_frames, False))
    if sched is None:  # else the converged trial is the schedule
        if not net.finite:
            sched = unbounded
        elif n_sim == 1:
            sched = first
        else:
            sched = solve(net, n_sim, True, check_deadlock=False)
    outputs = execute_frames(model, x) if x is not None else None
    done, start = sched.frame_done(), sched.frame_start()
    if frames > n_sim and steady is not None:  # exact: frame k is frame k - q shifted by d
        q, d = steady
        k = np.arange(n_sim, frames, dtype=np.int64)
        back = n_sim - q + (k - n_sim) % q
        done = np.concatenate([done, done[back] + ((k - n_sim) // q + 1) * d])
        start = np.concatenate([start, start[back] + ((k - n_sim) // q + 1) * d])
    elif frames > n_sim:  # past the event budget: an extrapolation with the last interval
        ii = int(done[-1] - done[-2]) if n_sim > 1 else max(lm.period for lm in net.layers)
        extra = np.arange(1, frames - n_sim + 1, dtype=np.int64)
        done = np.concatenate([done, done[-1] + extra * ii])
        step = int(start[-1] - start[-2]) if n_sim > 1 else ii
        start = np.concatenate([start, start[-1] + extra * step])
    return SimResult(net, sched, unbounded, frames, n_sim, done, start, needed, depth_frames, outputs, steady)
