"""Deadlocks: the dependency cycle that too shallow FIFOs close, and the error that names the FIFO.

A schedule exists iff the beat dependency graph is acyclic; a too shallow FIFO on a fork-join closes a
cycle (the fork waits for room in the shortcut FIFO, the join waits for the conv branch, the conv branch
waits for the fork). Every binding constraint is an edge of that graph, so a cycle among them proves a
deadlock; pointer doubling finds it (:mod:`onebit.sim.policy`) and a walk around it names the FIFOs whose
credits close it. Which FIFO to deepen, and by how much, is :func:`onebit.sim.fifo_sizing.check_deadlock`'s.
"""

from __future__ import annotations

from onebit.errors import GraphError
from onebit.sim.network import Edge, Network
from onebit.sim.policy import binding_policy, evaluate_policy, walk_cycle
from onebit.sim.schedule import Schedule


class DeadlockError(GraphError):
    """The FIFO depths deadlock the pipeline; names the FIFO's edge, its depth and the depth it needs."""

    def __init__(self, message: str, info: dict):
        super().__init__(message)
        self.info = info


def find_cycle(s: Schedule) -> dict | None:
    """A cycle among the binding constraints of the current times, or None (see :func:`walk_cycle`)."""
    pol = binding_policy(s)
    _, cycle = evaluate_policy(pol)
    return None if cycle is None else walk_cycle(pol, cycle)


def cycle_info(net: Network, cycle: dict) -> dict:
    """What :class:`DeadlockError` reports of a cycle (from :func:`walk_cycle`): its credit and data edges."""
    edges = [net.edges[k] for k in cycle["credit_edges"]]
    return {"credit_edges": [x.name for x in edges], "credit_edge_ids": [x.index for x in edges],
            "data_edge_ids": cycle["data_edges"], "cycle_events": cycle["length"]}


def describe_deadlock(net: Network, info: dict, e: Edge, needed: int | None, alone: bool) -> DeadlockError:
    """The error naming edge ``e``'s FIFO as the one to deepen (to ``needed``; ``alone``: that suffices)."""
    waits = [net.edges[k] for k in info["data_edge_ids"]
             if net.edges[k].consumer == e.consumer and net.edges[k].producer != e.producer]
    info = {**info, "producer": e.pname, "consumer": e.cname, "tensor": e.tensor,
            "fifo": e.fifos[0] if e.fifos else None, "depth": e.depth, "needed": needed, "fixes_alone": alone,
            "waits_for": waits[0].pname if waits else None}
    return DeadlockError(_deadlock_message(info), info)


def deadlock_error(net: Network, cycle: dict) -> DeadlockError:
    """The error for a cycle found while solving: it names the shallowest FIFO on the cycle."""
    info = cycle_info(net, cycle)
    edges = [net.edges[k] for k in info["credit_edge_ids"]] or [net.edges[k] for k in info["data_edge_ids"]]
    return describe_deadlock(net, info, min(edges, key=lambda x: x.depth or 0), None, False)


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

