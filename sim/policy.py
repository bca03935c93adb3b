"""Policy iteration's step: the binding constraint of every event, and the times it implies.

A policy picks for every event the constraint that sets its time (the previous step, a beat it reads, or
the read that frees room for the beat it writes); the events and their picks form a forest whose path sums
are evaluated at once by pointer doubling (over the heads of the runs of steps that wait for nothing else).
Every binding constraint is an edge of the beat dependency graph, so a cycle among them proves a deadlock;
:func:`walk_cycle` follows it and names the edges on it.
"""

from __future__ import annotations

import math

import numpy as np

from onebit.sim.schedule import Schedule


def binding_policy(s: Schedule, active: list[int] | None = None) -> dict:
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


def evaluate_policy(pol: dict) -> tuple[np.ndarray, int | None]:
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


def walk_cycle(pol: dict, start: int, max_walk: int = 50_000_000) -> dict:
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

