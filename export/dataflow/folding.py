"""Folding of a dataflow graph: set PE/SIMD by hand, or search them (DSE) for a frame rate or a LUT budget.

Every HW layer's cycles per frame follow FINN's model (``HWOp.exp_cycles``); the graph's initiation interval
(II) is the slowest node, so a good folding *balances* the layers. Terms:

- **apply_folding**: set attributes from a FINN-style folding config ``{node: {"PE": 4, "SIMD": 8}}``, checking
  that each value divides what it must (``HWOp.folding()``);
- **stream coupling** (as FINN): a sliding-window generator (ConvolutionInputGenerator, SWG) feeding an MVAU
  moves the MVAU's SIMD channels per cycle, and the FMPadding before it the same; when the MVAU's SIMD is larger
  than the channel count the SWG moves whole windows (``parallel_window=1``, SIMD = channels). A depthwise SWG
  feeding a Pool uses the Pool's PE. Other width mismatches are fixed by width converters (DWCs,
  :mod:`onebit.export.dataflow.insert`);
- **fold_for_target**: every node must take <= ``clock / fps`` cycles per frame; each unit (below) gets the
  cheapest folding (estimated LUTs) that meets it. As FINN's SetFolding, the least parallelism that meets the
  target, but chosen over all PE x SIMD pairs instead of SIMD first, then PE: with 1-bit weights a PE costs a
  threshold comparator bank, a SIMD lane only an adder input, so e.g. SIMD 48 x PE 8 can beat SIMD 144 x PE 4;
- **fold_for_budget**: greedy, speeding up the bottleneck one folding step at a time while the estimated LUTs
  (nodes plus DWCs) stay within the budget; then every layer is relaxed back to the cheapest folding that still
  meets the II reached.

The search works on *units*: an MVAU with its SWG and FMPadding, a Pool with its depthwise SWG and FMPadding,
or one other layer. Every candidate folding of a unit is evaluated once with the op classes' own
``exp_cycles``/``resources`` (plus the DWCs inside the unit); the Pareto-optimal ones form the unit's ladder
(cycles strictly decreasing, LUTs non-decreasing), least parallel first. StreamingDataWidthConverter and
StreamingFIFO nodes are removed before a search (both depend on the folding) and DWCs are inserted again after
it; FIFO depths come later, from the simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import FoldingError
from onebit.export.dataflow.base import HWOp
from onebit.export.dataflow.graph import get_op
from onebit.export.dataflow.insert import DWC, FIFO, InsertDWC, RemoveStreamNodes, dwc_resources, stream_edges

SWG = "ConvolutionInputGenerator"
#: non-folding attributes a folding config may set too (FINN's folding configs carry them)
EXTRA_ATTRS = ("parallel_window", "ram_style", "ram_style_thresholds", "resType", "mem_mode")


def divisors(n: int) -> list[int]:
    n = int(n)
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _fmt_divisors(n: int) -> str:
    ds = divisors(n)
    return ", ".join(map(str, ds)) if len(ds) <= 16 else ", ".join(map(str, ds[:8])) + ", ..., " + str(ds[-1])


def _set(op: HWOp, attr: str, value) -> None:
    op.set_nodeattr(attr, int(value) if isinstance(value, int) else value)


# ----- manual folding ---------------------------------------------------------------------------------------
def apply_folding(model: ModelWrapper, folding: dict, couple: bool = True) -> ModelWrapper:
    """Set folding attributes in place from ``{node name: {attr: value}}`` (a FINN folding config; a
    ``"Defaults"`` entry is ignored) and return the model.

    PE/SIMD must divide the bound the op names in ``folding()``; ``parallel_window`` (SWG) is 0 or 1 and needs
    SIMD = IFMChannels on a non-depthwise SWG; ``ram_style``, ``resType``, ``mem_mode`` are passed through.
    With ``couple``, an SWG (and the FMPadding before it) whose consumer was given here but which was not given
    itself follows its consumer: SIMD = the MVAU's SIMD, or the Pool's PE.
    """
    if not isinstance(folding, dict):
        raise FoldingError(f"folding: expected a mapping node name -> {{attribute: value}}, got "
                           f"{type(folding).__name__}")
    nodes = {n.name: n for n in model.graph.node}
    given: set[str] = set()
    for name, attrs in folding.items():
        if name == "Defaults":
            continue
        node = nodes.get(name)
        if node is None:
            raise FoldingError(f"folding: no node named {name!r} in the graph (it has {len(nodes)} nodes, e.g. "
                               f"{', '.join(list(nodes)[:4])})")
        if not isinstance(attrs, dict):
            raise FoldingError(f"folding: node {name}: expected {{attribute: value}}, got {attrs!r}")
        op = get_op(node)
        bounds = op.folding()
        types = op.get_nodeattr_types()
        for attr, value in attrs.items():
            if attr in bounds:
                bound = int(bounds[attr])
                if isinstance(value, bool) or not isinstance(value, int) or value < 1 or bound % value:
                    raise FoldingError(f"node {name} ({node.op_type}): {attr}={value!r} must divide {bound}; "
                                       f"allowed: {_fmt_divisors(bound)}")
                _set(op, attr, value)
            elif attr == "parallel_window" and node.op_type == SWG:
                if value not in (0, 1) or isinstance(value, bool):
                    raise FoldingError(f"node {name} ({SWG}): parallel_window={value!r}; expected 0 or 1")
                _set(op, attr, int(value))
            elif attr in EXTRA_ATTRS and attr in types and attr != "parallel_window":
                if not isinstance(value, str):
                    raise FoldingError(f"node {name} ({node.op_type}): {attr}={value!r}; expected a string")
                _set(op, attr, value)
            else:
                allowed = sorted(bounds) + [a for a in EXTRA_ATTRS if a in types]
                raise FoldingError(f"node {name} ({node.op_type}): no folding attribute {attr!r}; expected one of "
                                   f"{', '.join(allowed) or '(none: this layer has no folding)'}")
        if node.op_type == SWG and "SIMD" in attrs and "parallel_window" not in attrs \
                and op.attr("SIMD") != op.attr("IFMChannels"):
            _set(op, "parallel_window", 0)  # a partial SIMD given alone means the default (one window tap) style
        given.add(name)
    if couple:
        _couple(model, given)
    for node in model.graph.node:
        if node.op_type == SWG:
            _check_parallel_window(get_op(node))
    return model


def _check_parallel_window(op: HWOp) -> None:
    if op.attr("parallel_window") and (op.attr("depthwise") or op.attr("SIMD") != op.attr("IFMChannels")):
        raise FoldingError(f"node {op.name} ({SWG}): parallel_window=1 needs depthwise=0 and SIMD = IFMChannels "
                           f"({op.attr('IFMChannels')}), got depthwise={op.attr('depthwise')}, SIMD={op.attr('SIMD')}")


def _single_producer(model: ModelWrapper, node, op_type: str):
    """The producer of ``node``'s first input if it has type ``op_type`` and ``node`` is its only consumer."""
    prod = model.find_producer(node.input[0])
    if prod is None or prod.op_type != op_type:
        return None
    cons = model.find_consumers(prod.output[0]) or []
    return prod if len(prod.output) == 1 and len(cons) == 1 else None


def window_chain(model: ModelWrapper, node):
    """For an MVAU or Pool: its (SWG, FMPadding) feeding it, each None when absent or shared."""
    swg = _single_producer(model, node, SWG)
    if swg is None:
        return None, None
    depthwise = get_op(swg).attr("depthwise")
    if (node.op_type == "MVAU") == bool(depthwise):
        return None, None
    return swg, _single_producer(model, swg, "FMPadding")


def swg_settings_for(swg: HWOp, consumer_fold: int) -> tuple[int, int]:
    """(SWG SIMD, parallel_window) that best feeds a consumer reading ``consumer_fold`` elements per beat."""
    c = swg.attr("IFMChannels")
    if swg.attr("depthwise"):
        return math.gcd(consumer_fold, c), 0
    if c % consumer_fold == 0:
        return consumer_fold, 0
    return c, 1


def _couple(model: ModelWrapper, given: set[str]) -> None:
    for node in model.graph.node:
        if node.op_type not in ("MVAU", "Pool") or node.name not in given:
            continue
        swg, pad = window_chain(model, node)
        if swg is None:
            continue
        sop = get_op(swg)
        if swg.name not in given:
            fold = get_op(node).attr("SIMD" if node.op_type == "MVAU" else "PE")
            simd, pw = swg_settings_for(sop, fold)
            _set(sop, "SIMD", simd)
            _set(sop, "parallel_window", pw)
            given.add(swg.name)
        if pad is not None and pad.name not in given:
            _set(get_op(pad), "SIMD", sop.attr("SIMD"))


# ----- cycles and the report ----------------------------------------------------------------------------------
def cycles(model: ModelWrapper) -> dict[str, int]:
    """Expected cycles per frame of every node (FINN's ``exp_cycles`` model)."""
    return {n.name: int(get_op(n).exp_cycles()) for n in model.graph.node}


def initiation_interval(model: ModelWrapper) -> int:
    """Cycles between frames in steady state: the slowest node's cycles per frame."""
    return max(cycles(model).values())


def latency_cycles(model: ModelWrapper, per_node: dict[str, int] | None = None) -> int:
    """The longest path's sum of cycles (FINN's ``critical_path_cycles``): a first, pessimistic latency
    estimate, since consecutive layers overlap in a real pipeline."""
    per_node = per_node or cycles(model)
    producers = {o: n.name for n in model.graph.node for o in n.output}
    dist: dict[str, int] = {}
    for node in model.graph.node:  # dataflow graphs are stored in topological order
        before = [dist.get(producers[t], 0) for t in node.input if t in producers]
        dist[node.name] = per_node[node.name] + max(before, default=0)
    return max(dist.values(), default=0)


def _folding_attrs(op: HWOp) -> dict:
    out = {k: int(op.attr(k)) for k in op.folding()}
    if op.onnx_node.op_type == SWG:
        out["parallel_window"] = int(op.attr("parallel_window"))
    return out


def folding_report(model: ModelWrapper, clock_mhz: float) -> dict:
    """Per-layer rows and totals, JSON-able: cycles, share of the II, LUT, memory bits, stream widths; the
    II, fps at ``clock_mhz``, latency estimate, total LUT and memory; and the folding config (``folding``)."""
    check_positive("--clock-mhz", clock_mhz)
    ops_ = [get_op(n) for n in model.graph.node]
    per = {op.name: int(op.exp_cycles()) for op in ops_}
    ii = max(per.values())
    rows = []
    for op in ops_:
        res = op.resources()
        types = op.get_nodeattr_types()
        node = op.onnx_node
        rows.append({
            "name": op.name, "op": node.op_type,
            "PE": int(op.attr("PE")) if "PE" in types else None,
            "SIMD": int(op.attr("SIMD")) if "SIMD" in types else None,
            **({"parallel_window": int(op.attr("parallel_window"))} if node.op_type == SWG else {}),
            "cycles": per[op.name], "share": round(per[op.name] / ii, 4),
            "LUT": int(res.get("LUT", 0)), "mem_bits": int(res.get("mem_bits", 0)),
            "in_widths": [int(op.instream_width(i)) for i in op.stream_inputs() if i < len(node.input)],
            "out_width": int(op.outstream_width()),
        })
    bottleneck = max(rows, key=lambda r: r["cycles"])["name"]
    lat = latency_cycles(model, per)
    hz = clock_mhz * 1e6
    totals = {
        "ii_cycles": ii, "bottleneck": bottleneck, "clock_mhz": clock_mhz, "fps": hz / ii,
        "latency_cycles": lat, "latency_us": lat / clock_mhz, "LUT": sum(r["LUT"] for r in rows),
        "mem_bits": sum(r["mem_bits"] for r in rows), "nodes": len(rows),
        "dwcs": sum(r["op"] == DWC for r in rows), "fifos": sum(r["op"] == FIFO for r in rows),
    }
    folding = {op.name: _folding_attrs(op) for op in ops_ if op.folding()}
    return {"layers": rows, "totals": totals, "folding": folding}


def format_report(report: dict) -> str:
    """The report as a text table, one row per layer, then the totals (and the search, if any)."""
    head = ["layer", "op", "PE", "SIMD", "cycles", "share", "LUT", "mem bits", "in bits", "out bits"]
    lines = []
    body = []
    for r in report["layers"]:
        simd = "-" if r["SIMD"] is None else str(r["SIMD"]) + ("w" if r.get("parallel_window") else "")
        body.append([r["name"], r["op"], "-" if r["PE"] is None else str(r["PE"]), simd, f"{r['cycles']:,}",
                     f"{100 * r['share']:.1f}%", f"{r['LUT']:,}", f"{r['mem_bits']:,}",
                     ",".join(map(str, r["in_widths"])) or "-", str(r["out_width"])])
    widths = [max(len(h), *(len(row[k]) for row in body)) if body else len(h) for k, h in enumerate(head)]
    left = {0, 1}

    def fmt(row):
        return "  ".join(c.ljust(w) if k in left else c.rjust(w) for k, (c, w) in enumerate(zip(row, widths)))

    lines.append(fmt(head))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt(row) for row in body)
    t = report["totals"]
    lines.append("")
    lines.append(f"II {t['ii_cycles']:,} cycles (bottleneck {t['bottleneck']}): {t['fps']:,.1f} frames/s at "
                 f"{t['clock_mhz']:g} MHz; latency <= {t['latency_cycles']:,} cycles ({t['latency_us']:,.1f} us)")
    lines.append(f"{t['LUT']:,} LUT (estimate), {t['mem_bits']:,} memory bits ({t['mem_bits'] / 8 / 2**20:.2f} MiB), "
                 f"{t['nodes']} nodes, {t['dwcs']} width converters, {t['fifos']} FIFOs")
    s = report.get("search")
    if s:
        goal = []
        if s.get("target_fps") is not None:
            goal.append(f"target {s['target_fps']:,g} fps ({s['target_cycles']:,.0f} cycles)")
        if s.get("max_luts") is not None:
            goal.append(f"budget {s['max_luts']:,} LUT")
        lines.append(f"search: {', '.join(goal) + '; ' if goal else ''}{s['stop']}")
    return "\n".join(lines)


# ----- the search -----------------------------------------------------------------------------------------
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
    """The state of a folding search (building it sets every unit of ``model`` to its least parallel folding): each unit's rung, the resulting cycles and LUTs (nodes plus DWCs).

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
                _set(op, attr, value)

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


def check_positive(flag: str, value, integer: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok or (integer and int(value) != value):
        kind = "a positive integer" if integer else "a positive number"
        raise FoldingError(f"{flag}: expected {kind}, got {value!r}")


def strip_stream_nodes(model: ModelWrapper) -> int:
    """Remove DWCs and FIFOs in place (both depend on the folding); returns how many were removed."""
    t = RemoveStreamNodes()
    t.apply(model)
    return t.removed


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
            f"--target-fps {target_fps:g}: node {node} ({op_type}) needs at least {best:,} cycles per frame even "
            f"fully unfolded, i.e. at most {clock_hz / best:,.0f} fps at {clock_hz / 1e6:g} MHz; the target needs "
            f"<= {target:,.0f} cycles")


def _budget_search(search: Search, max_luts: int) -> str:
    for u in search.units:
        u.idx = 0
    total = search.total_lut()
    if total > max_luts:
        raise FoldingError(f"--max-luts {max_luts:,}: even the least parallel folding (PE = SIMD = 1 everywhere) "
                           f"needs about {total:,} LUTs")
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
            _check_parallel_window(get_op(node))
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
    check_positive("--target-fps", target_fps)
    check_positive("--clock-mhz", clock_mhz)
    if max_luts is not None:
        check_positive("--max-luts", max_luts, integer=True)
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
            raise FoldingError(f"--target-fps {target_fps:g} needs about {need:,} LUTs (the cheapest folding that "
                               f"reaches it), over --max-luts {int(max_luts):,}; that budget reaches about "
                               f"{reach:,.0f} fps at {clock_mhz:g} MHz")
    return _finish(model, search, clock_mhz, info, insert_dwc)


def fold_for_budget(model: ModelWrapper, max_luts: int, clock_mhz: float = 100.0,
                    insert_dwc: bool = True) -> tuple[ModelWrapper, dict]:
    """The fastest folding the greedy search finds within ``max_luts`` estimated LUTs (layers plus DWCs).

    Starts at PE = SIMD = 1 and speeds up the bottleneck by one folding step at a time while the total stays
    within the budget; stops when the bottleneck cannot be improved; then relaxes the other layers to the least
    parallel folding that meets the II reached. In place, like :func:`fold_for_target`.
    """
    check_positive("--max-luts", max_luts, integer=True)
    check_positive("--clock-mhz", clock_mhz)
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
    raise FoldingError("fold: give --target-fps, --max-luts or both")
