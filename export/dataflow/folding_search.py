"""The folding search (DSE): PE/SIMD for a frame rate, a LUT budget, or both.

Every HW layer's cycles per frame follow FINN's model (``HWOp.exp_cycles``); the graph's initiation interval
(II) is the slowest node, so a good folding *balances* the layers.

- **fold_for_target**: every node must take <= ``clock / fps`` cycles per frame; each unit (below) gets the
  cheapest folding (estimated LUTs) that meets it. As FINN's SetFolding, the least parallelism that meets the
  target, but chosen over all PE x SIMD pairs instead of SIMD first, then PE: with 1-bit weights a PE costs a
  threshold comparator bank, a SIMD lane only an adder input, so e.g. SIMD 48 x PE 8 can beat SIMD 144 x PE 4;
- **fold_for_budget**: greedy, speeding up the bottleneck one folding step at a time while the estimated LUTs
  (nodes plus DWCs) stay within the budget; then every layer is relaxed back to the cheapest folding that still
  meets the II reached.

The search works on *units*: an MVAU with its SWG and FMPadding, a Pool with its depthwise SWG and FMPadding
(coupled as in :mod:`onebit.export.dataflow.folding`), or one other layer. Every candidate folding of a unit is
evaluated once with the op classes' own ``exp_cycles``/``resources`` (plus the DWCs inside the unit); the
Pareto-optimal ones form the unit's ladder (cycles strictly decreasing, LUTs non-decreasing), least parallel
first. StreamingDataWidthConverter and StreamingFIFO nodes are removed before a search (both depend on the
folding) and DWCs are inserted again after it; FIFO depths come later, from the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import FoldingError, check_positive
from onebit.export.dataflow.base import HWOp
from onebit.export.dataflow.folding import (SWG, check_parallel_window, divisors, set_attr,
                                            strip_stream_nodes, swg_settings_for, window_chain)
from onebit.export.dataflow.folding_report import folding_report
from onebit.export.dataflow.graph import get_op
from onebit.export.dataflow.insert import InsertDWC, dwc_resources, stream_edges


@dataclass
class Unit:
    """Layers folded together. ``candidates``: every folding the search may give them; ``rungs``: the
    Pareto-optimal ones (cycles strictly decreasing, LUTs strictly increasing), least parallel first, and
    ``stats`` per rung: (cycles, LUT, mem_bits, slowest node, {node: (out width, {input: in width})})."""

    nodes: list  # NodeProtos
    candidates: list  # each: {node name: {attr: value}}
    rungs: list = field(default_factory=list)
    stats: list = field(default_factory=list)
    idx: int = 0

    @property
    def name(self) -> str:
        return self.nodes[-1].name


def _mvau_candidates(model: ModelWrapper, node) -> tuple[list, list]:
    op = get_op(node)
    mw, mh = op.attr("MW"), op.attr("MH")
    swg, pad = window_chain(model, node)
    members = [n for n in (pad, swg, node) if n is not None]
    if swg is not None:
        sop = get_op(swg)
        c = sop.attr("IFMChannels")
        kh, kw = sop.attr("ConvKernelDim")
        simds = [(d, d, 0) for d in divisors(c)]
        if mw == kh * kw * c:  # beyond C channels per beat the SWG moves whole windows
            simds += [(m * c, c, 1) for m in divisors(kh * kw) if m > 1]
    else:
        simds = [(d, None, None) for d in divisors(mw)]
    out = []
    for simd, wsimd, pw in simds:
        for pe in divisors(mh):
            cand = {node.name: {"SIMD": simd, "PE": pe}}
            if swg is not None:
                cand[swg.name] = {"SIMD": wsimd, "parallel_window": pw}
            if pad is not None:
                cand[pad.name] = {"SIMD": wsimd}
            out.append(cand)
    return members, out


def _pool_candidates(model: ModelWrapper, node) -> tuple[list, list]:
    swg, pad = window_chain(model, node)
    members = [n for n in (pad, swg, node) if n is not None]
    out = []
    for pe in divisors(get_op(node).attr("Channels")):
        cand = {node.name: {"PE": pe}}
        if swg is not None:
            cand[swg.name] = {"SIMD": swg_settings_for(get_op(swg), pe)[0], "parallel_window": 0}
            if pad is not None:
                cand[pad.name] = {"SIMD": cand[swg.name]["SIMD"]}
        out.append(cand)
    return members, out


def _single_candidates(node) -> list:
    op = get_op(node)
    bounds = op.folding()
    combos = [{}]
    for attr, bound in bounds.items():
        combos = [{**c, attr: d} for c in combos for d in divisors(bound)]
    if node.op_type == SWG and not op.attr("depthwise"):
        c = op.attr("IFMChannels")
        combos = [{**x, "parallel_window": 0} for x in combos] + [{"SIMD": c, "parallel_window": 1}]
    return [{node.name: x} for x in combos]


def build_units(model: ModelWrapper) -> list[Unit]:
    """Partition the folded layers into units (see the module docstring), with their candidate foldings."""
    units, claimed = [], set()
    for node in model.graph.node:
        if node.op_type == "MVAU":
            members, cands = _mvau_candidates(model, node)
        elif node.op_type == "Pool":
            members, cands = _pool_candidates(model, node)
        else:
            continue
        units.append(Unit(members, cands))
        claimed.update(n.name for n in members)
    for node in model.graph.node:
        if node.name in claimed or not get_op(node).folding():
            continue
        units.append(Unit([node], _single_candidates(node)))
    return units


class Search:
    """The state of a folding search: each unit's rung, the resulting cycles and LUTs (nodes plus DWCs).
    Building it sets every unit of ``model`` to its least parallel folding.

    Every candidate of every unit is evaluated once (the op classes' ``exp_cycles`` and ``resources``, plus the
    DWCs inside the unit, e.g. between a whole-window SWG and an MVAU reading fewer elements per beat); DWCs on
    edges between units are priced from the two units' current rungs.
    """

    def __init__(self, model: ModelWrapper):
        self.model = model
        self.ops = {n.name: get_op(n) for n in model.graph.node}
        self.units = build_units(model)
        self.unit_of = {n.name: u for u in self.units for n in u.nodes}
        # fixed nodes (no folding): their cycles, LUTs and widths never change
        self.fixed = [op for name, op in self.ops.items() if name not in self.unit_of]
        self.fixed_lut = sum(int(op.resources().get("LUT", 0)) for op in self.fixed)
        self.fixed_cycles = max((int(op.exp_cycles()) for op in self.fixed), default=0)
        self.fixed_widths = {op.name: self._widths(op) for op in self.fixed}
        self._dwc_cache: dict = {}
        self.edges, internal = [], {}
        for p, _, c, i, t in stream_edges(model):
            edge = (p.name, c.name, i, tuple(self.ops[p.name].output_shape()), model.get_tensor_datatype(t).name)
            up, uc = self.unit_of.get(p.name), self.unit_of.get(c.name)
            if up is not None and up is uc:
                internal.setdefault(id(up), []).append(edge)
            else:
                self.edges.append(edge)
        self.edges_of: dict[int, list[int]] = {}
        for k, (p, c, *_rest) in enumerate(self.edges):
            ends = [self.unit_of.get(p), self.unit_of.get(c)]
            for u in {id(u): u for u in ends if u is not None}.values():
                self.edges_of.setdefault(id(u), []).append(k)
        for u in self.units:
            self._frontier(u, internal.get(id(u), []))

    @staticmethod
    def _widths(op: HWOp) -> tuple[int, dict[int, int]]:
        node = op.onnx_node
        return int(op.outstream_width()), {i: int(op.instream_width(i)) for i in op.stream_inputs()
                                           if i < len(node.input)}

    def dwc_lut(self, w_out: int, w_in: int, shape: tuple, dtype: str) -> int:
        if w_out == w_in:
            return 0
        key = (w_out, w_in, dtype)
        if key not in self._dwc_cache:
            self._dwc_cache[key] = int(dwc_resources(w_out, w_in, shape, dtype).get("LUT", 0))
        return self._dwc_cache[key]

    def _apply(self, rung: dict) -> None:
        for name, attrs in rung.items():
            op = self.ops[name]
            for attr, value in attrs.items():
                set_attr(op, attr, value)

    def _frontier(self, unit: Unit, internal: list) -> None:
        points = []
        for k, cand in enumerate(unit.candidates):
            self._apply(cand)
            ops_ = [self.ops[n.name] for n in unit.nodes]
            cyc = {op.name: int(op.exp_cycles()) for op in ops_}
            res = [op.resources() for op in ops_]
            widths = {op.name: self._widths(op) for op in ops_}
            lut = sum(int(r.get("LUT", 0)) for r in res) + sum(
                self.dwc_lut(widths[p][0], widths[c][1][i], shape, dt) for p, c, i, shape, dt in internal)
            slowest = max(cyc, key=cyc.get)
            par = sum(v for attrs in cand.values() for a, v in attrs.items() if a in ("PE", "SIMD"))
            points.append((cyc[slowest], lut, par, k, sum(int(r.get("mem_bits", 0)) for r in res), slowest, widths))
        points.sort(key=lambda p: (p[0], p[1], p[2], p[3]))  # fastest first; then cheapest, least parallel
        frontier: list = []
        for p in points:  # keep a slower point only if it is no dearer: equal LUTs favour less parallelism
            if not frontier or (p[0] > frontier[-1][0] and p[1] <= frontier[-1][1]):
                frontier.append(p)
        frontier.reverse()  # least parallel (slowest, cheapest) first
        unit.rungs = [unit.candidates[p[3]] for p in frontier]
        unit.stats = [(p[0], p[1], p[4], p[5], p[6]) for p in frontier]
        unit.idx = 0
        self._apply(unit.rungs[0])

    def stat(self, unit: Unit, idx: int | None = None) -> tuple:
        return unit.stats[unit.idx if idx is None else idx]

    def widths(self, name: str) -> tuple[int, dict[int, int]]:
        u = self.unit_of.get(name)
        return self.fixed_widths[name] if u is None else u.stats[u.idx][4][name]

    def edge_lut(self, k: int) -> int:
        p, c, i, shape, dtype = self.edges[k]
        return self.dwc_lut(self.widths(p)[0], self.widths(c)[1][i], shape, dtype)

    def unit_cycles(self, unit: Unit, idx: int | None = None) -> int:
        return self.stat(unit, idx)[0]

    def total_lut(self) -> int:
        return (self.fixed_lut + sum(self.stat(u)[1] for u in self.units)
                + sum(self.edge_lut(k) for k in range(len(self.edges))))

    def lut_if(self, unit: Unit, idx: int, total: int) -> int:
        """The total LUTs if ``unit`` moved to rung ``idx``, from the current total."""
        edges = self.edges_of.get(id(unit), [])
        before = self.stat(unit)[1] + sum(self.edge_lut(k) for k in edges)
        keep, unit.idx = unit.idx, idx
        after = self.stat(unit)[1] + sum(self.edge_lut(k) for k in edges)
        unit.idx = keep
        return total - before + after

    def ii(self) -> int:
        return max([self.fixed_cycles] + [self.unit_cycles(u) for u in self.units])

    def first_rung_within(self, unit: Unit, target: float) -> int | None:
        """The cheapest folding meeting ``target`` cycles (rungs are ordered by LUTs)."""
        for idx in range(len(unit.rungs)):
            if self.unit_cycles(unit, idx) <= target:
                return idx
        return None

    def next_faster(self, unit: Unit) -> int | None:
        return unit.idx + 1 if unit.idx + 1 < len(unit.rungs) else None

    def commit(self) -> None:
        for u in self.units:
            self._apply(u.rungs[u.idx])


def _best_unit_fps(search: Search, clock_hz: float) -> tuple[int, str, str]:
    """(best reachable II, the node that sets it, its op) with every unit fully unfolded."""
    worst = (search.fixed_cycles, None)
    for u in search.units:
        c, _, _, slow, _ = search.stat(u, len(u.rungs) - 1)
        if c > worst[0]:
            worst = (c, slow)
    if worst[1] is None:
        slow_op = max(search.fixed, key=lambda op: op.exp_cycles())
        return worst[0], slow_op.name, slow_op.onnx_node.op_type
    return worst[0], worst[1], search.ops[worst[1]].onnx_node.op_type


def _target_search(search: Search, target_fps: float, clock_hz: float) -> None:
    target = clock_hz / target_fps
    failing = []
    for u in search.units:
        idx = search.first_rung_within(u, target)
        if idx is None:
            failing.append(u)
            idx = len(u.rungs) - 1
        u.idx = idx
    if failing or search.fixed_cycles > target:
        best, node, op_type = _best_unit_fps(search, clock_hz)
        raise FoldingError(
            f"target_fps {target_fps:g}: node {node} ({op_type}) needs at least {best:,} cycles per frame even "
            f"fully unfolded, i.e. at most {clock_hz / best:,.0f} fps at {clock_hz / 1e6:g} MHz; the target needs "
            f"<= {target:,.0f} cycles", param="target_fps")


def _budget_search(search: Search, max_luts: int) -> str:
    for u in search.units:
        u.idx = 0
    total = search.total_lut()
    if total > max_luts:
        raise FoldingError(f"max_luts {max_luts:,}: even the least parallel folding (PE = SIMD = 1 everywhere) "
                           f"needs about {total:,} LUTs", param="max_luts")
    while True:
        ii = search.ii()
        slow = [u for u in search.units if search.unit_cycles(u) == ii]
        if not slow:  # a layer without folding sets the II
            stop = "a layer without folding sets the II"
            break
        unit = slow[0]
        nxt = search.next_faster(unit)
        if nxt is None:
            stop = f"the bottleneck {search.stat(unit, unit.idx)[3]} is fully unfolded"
            break
        new_total = search.lut_if(unit, nxt, total)
        if new_total > max_luts:
            stop = (f"the bottleneck {search.stat(unit, unit.idx)[3]}'s next folding step would need {new_total:,} "
                    f"LUTs, over the budget")
            break
        unit.idx, total = nxt, new_total
    # relax: every unit back to the least parallel folding that still meets the II reached
    ii = search.ii()
    before = [u.idx for u in search.units]
    for u in search.units:
        u.idx = search.first_rung_within(u, ii)
    if search.total_lut() > total:  # cannot happen with monotone LUT ladders; keep the greedy result if it does
        for u, idx in zip(search.units, before):
            u.idx = idx
    return stop


def _finish(model: ModelWrapper, search: Search, clock_mhz: float, info: dict, insert_dwc: bool) -> tuple:
    search.commit()
    for node in model.graph.node:
        if node.op_type == SWG:
            check_parallel_window(get_op(node))
    estimate = search.total_lut()
    if insert_dwc:
        InsertDWC().apply(model)
    report = folding_report(model, clock_mhz)
    report["search"] = {**info, "estimated_LUT": estimate}
    return model, report


def fold_for_target(model: ModelWrapper, target_fps: float, clock_mhz: float = 100.0, max_luts: int | None = None,
                    insert_dwc: bool = True) -> tuple[ModelWrapper, dict]:
    """The cheapest folding (estimated LUTs; among equals the least parallel) whose every node takes
    <= clock / target_fps cycles per frame.

    With ``max_luts`` the result must also fit the budget, else FoldingError says what the target needs and
    what the budget reaches. Works in place: removes old DWCs/FIFOs, sets PE/SIMD, inserts DWCs (unless
    ``insert_dwc=False``). Returns ``(model, report)`` (:func:`folding_report` plus a ``search`` entry).
    """
    check_positive("target_fps", target_fps, error=FoldingError)
    check_positive("clock_mhz", clock_mhz, error=FoldingError)
    if max_luts is not None:
        check_positive("max_luts", max_luts, integer=True, error=FoldingError)
    removed = strip_stream_nodes(model)
    search = Search(model)
    clock_hz = clock_mhz * 1e6
    _target_search(search, target_fps, clock_hz)
    info = {"target_fps": target_fps, "target_cycles": clock_hz / target_fps, "max_luts": max_luts,
            "removed_stream_nodes": removed, "stop": "every layer meets the target"}
    if max_luts is not None:
        need = search.total_lut()
        if need > max_luts:
            chosen = [u.idx for u in search.units]
            _budget_search(search, int(max_luts))
            reach = clock_hz / search.ii()
            for u, idx in zip(search.units, chosen):
                u.idx = idx
            raise FoldingError(f"target_fps {target_fps:g} needs about {need:,} LUTs (the cheapest folding that "
                               f"reaches it), over max_luts {int(max_luts):,}; that budget reaches about "
                               f"{reach:,.0f} fps at {clock_mhz:g} MHz", param="target_fps")
    return _finish(model, search, clock_mhz, info, insert_dwc)


def fold_for_budget(model: ModelWrapper, max_luts: int, clock_mhz: float = 100.0,
                    insert_dwc: bool = True) -> tuple[ModelWrapper, dict]:
    """The fastest folding the greedy search finds within ``max_luts`` estimated LUTs (layers plus DWCs).

    Starts at PE = SIMD = 1 and speeds up the bottleneck by one folding step at a time while the total stays
    within the budget; stops when the bottleneck cannot be improved; then relaxes the other layers to the least
    parallel folding that meets the II reached. In place, like :func:`fold_for_target`.
    """
    check_positive("max_luts", max_luts, integer=True, error=FoldingError)
    check_positive("clock_mhz", clock_mhz, error=FoldingError)
    removed = strip_stream_nodes(model)
    search = Search(model)
    stop = _budget_search(search, int(max_luts))
    info = {"target_fps": None, "target_cycles": None, "max_luts": int(max_luts), "removed_stream_nodes": removed,
            "stop": stop}
    return _finish(model, search, clock_mhz, info, insert_dwc)


def fold(model: ModelWrapper, target_fps: float | None = None, clock_mhz: float = 100.0,
         max_luts: int | None = None, insert_dwc: bool = True) -> tuple[ModelWrapper, dict]:
    """The CLI's entry: a target (optionally within a budget), or a budget alone."""
    if target_fps is not None:
        return fold_for_target(model, target_fps, clock_mhz, max_luts, insert_dwc)
    if max_luts is not None:
        return fold_for_budget(model, max_luts, clock_mhz, insert_dwc)
    raise FoldingError("fold: give target_fps, max_luts or both")
