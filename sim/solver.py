"""The schedule solver: event times of every layer over ``n`` frames, with or without finite FIFOs.

**Unbounded FIFOs** (no StreamingFIFO nodes, no ``depths``): one pass in topological order, each layer's
event times a vectorised max-plus recurrence of its inputs' arrival times. This gives the exact schedule of
the model: per-frame completion times, first-frame latency and the steady-state initiation interval (the
slowest layer's period).

**Finite FIFOs**: backpressure couples each layer to its consumers, so the schedule is the least fixed point
of the recurrences with credits. Starting from the unbounded schedule (a lower bound), a few backward and
forward Gauss-Seidel sweeps recompute the layers whose neighbours changed; if that has not converged, policy
iteration (:mod:`onebit.sim.policy`) takes over: every event re-picks its binding constraint until nothing
changes (a bounded number of iterations, after which sweeps finish the job). All give the same least fixed
point.
"""

from __future__ import annotations

import numpy as np

from onebit.sim.deadlock import deadlock_error
from onebit.sim.network import Network
from onebit.sim.policy import binding_policy, evaluate_policy, walk_cycle
from onebit.sim.schedule import Schedule

#: Gauss-Seidel sweeps of the finite-FIFO fixed point before switching to policy iteration
GS_SWEEPS = 4
#: policy iterations before the solver falls back to sweeps (each evaluates every event's binding path at once)
MAX_ITERATIONS = 2000
#: Gauss-Seidel sweeps after policy iteration ran out, before the schedule is returned as a lower bound
FALLBACK_SWEEPS = 200_000


def solve(net: Network, n: int, bounded: bool | None = None, max_iterations: int = MAX_ITERATIONS,
          check_deadlock: bool = True) -> Schedule:
    """The schedule over ``n`` frames; with finite FIFOs the least fixed point (see the module docstring).

    Raises :class:`~onebit.sim.deadlock.DeadlockError` when a dependency cycle is found (``check_deadlock``;
    else the schedule is returned with ``converged=False``). After ``max_iterations`` policy iterations
    without reaching the fixed point, Gauss-Seidel sweeps go on (up to ``FALLBACK_SWEEPS``); if even they do not
    reach it the schedule is returned with ``converged=False``: its times are lower bounds.
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
        pol = binding_policy(s, sorted(active))
        t, cycle = evaluate_policy(pol)
        s.iterations += 1
        if cycle is not None:
            s.converged = False
            if check_deadlock:
                raise deadlock_error(net, walk_cycle(pol, cycle))
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
    if dirty:  # policy iteration creeps (long chains of full FIFOs behind deep pipelines): sweep to the end
        dirty = _sweeps(s, FALLBACK_SWEEPS, dirty)
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

