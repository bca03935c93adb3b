"""The report of a folded dataflow graph: per-layer cycles (FINN's ``exp_cycles`` model), share of the
initiation interval (II, the slowest node's cycles per frame), LUTs, memory and stream widths; the totals; and
the folding itself in FINN's config format; as JSON and as a text table.
"""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import FoldingError, check_positive
from onebit.export.dataflow.base import HWOp
from onebit.export.dataflow.folding import SWG
from onebit.export.dataflow.graph import get_op
from onebit.export.dataflow.insert import DWC, FIFO


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
    check_positive("clock_mhz", clock_mhz, error=FoldingError)
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
