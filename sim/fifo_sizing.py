"""FIFO sizing: the depth each edge needs to run as with unbounded FIFOs, and the depth that ends a deadlock.

**Needed depths.** Per edge, the depth it needs so that the pipeline runs as with unbounded FIFOs
(:func:`needed_depths`), from occupancies ``max_j (j + 1 - #{reads before write j})`` (a ``searchsorted``):
e.g. what the shortcut branch must buffer while the conv branch fills its sliding windows.

**Deadlocks** (:mod:`onebit.sim.deadlock`). A deadlock with N frames is a deadlock of the first frame (a
frame's events depend only on its own and earlier frames'), so the check runs on one frame; the FIFO to
deepen and the least depth it needs are then found by bisection on one frame of the fork-join region the
cycle lies in (:func:`check_deadlock`).
"""

from __future__ import annotations

import numpy as np

from onebit.sim.deadlock import DeadlockError, describe_deadlock
from onebit.sim.network import Edge, Network
from onebit.sim.schedule import Schedule
from onebit.sim.solver import solve


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
        raise describe_deadlock(net, info, edges[0], None, False)
    needed = least_depth(sub, sub.edges[back[chosen.index]], through=through)
    alone = not through and _runs_with(net, chosen, needed)
    raise describe_deadlock(net, info, chosen, needed, alone)
