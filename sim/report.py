"""Simulator reports: the per-layer table, the totals, the FIFO depths, as JSON and text, and two plots
(cycles per layer; a pipeline timeline). Files are written through :mod:`onebit.atomic`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onebit.atomic import atomic_open, write_json
from onebit.sim.simulation import SimResult


def _fold(op, attr):
    types = op.get_nodeattr_types()
    return int(op.attr(attr)) if attr in types else None


def build_report(res: SimResult, clock_mhz: float, graph: str | None = None) -> dict:
    """JSON-able report: ``layers`` (one row each), ``edges`` (stream edges with their depths), ``fifo_depths``
    (``"producer -> consumer": depth needed``, usable as ``--fifo-depths``) and ``totals``."""
    net, sched = res.net, res.schedule
    ii = res.ii
    ii_model = res.ii_model
    hz = clock_mhz * 1e6
    rows = []
    for i, lm in enumerate(net.layers):
        stalls = sched.layer_stalls(i)
        spans = sched.layer_spans(i)
        ins = net.in_edges[i]
        needed = [res.needed.get(e.index) for e in ins if e.internal]
        needed = [d for d in needed if d is not None]
        given = [e.depth for e in ins if e.internal and e.depth is not None]
        t = sched.step_times[i]
        first_write = int(t[lm.tiled(sched.n)[2][0]]) if lm.out_beats else None
        rows.append({
            "name": lm.name, "op": lm.op_type, "PE": _fold(lm.op, "PE"), "SIMD": _fold(lm.op, "SIMD"),
            "cycles": lm.period, "exp_cycles": lm.exp_cycles(), "share": round(lm.period / ii_model, 6),
            "utilisation": round(stalls["utilisation"], 6), "stall_in": stalls["stall_in"],
            "stall_out": stalls["stall_out"], "fill_cycles": lm.fill_cycles(),
            "rate_in": lm.rates()["in"], "rate_out": lm.rates()["out"],
            "in_beats": [lm.in_beats(k) for k in range(len(lm.reads))], "out_beats": lm.out_beats,
            "first_step": int(spans[0, 0]), "first_output": first_write, "frame0_end": int(spans[0, 1]),
            "fifo_depth": max(needed) if needed else None, "fifo_given": max(given) if given else None,
        })
    edges = []
    for e in net.internal_edges:
        edges.append({"producer": e.pname, "consumer": e.cname, "tensor": e.tensor, "fifo": e.fifos or None,
                      "beats_per_frame": e.beats, "depth": e.depth, "needed_depth": res.needed.get(e.index),
                      "max_occupancy": sched.edge_occupancy(e)})
    bottleneck = res.bottleneck
    frames, done = res.frames, res.done
    totals = {
        "frames": frames, "simulated_frames": res.simulated_frames, "clock_mhz": clock_mhz,
        "steady_state": list(res.steady) if res.steady is not None else None,
        "ii_cycles": ii, "ii_model_cycles": ii_model, "bottleneck": bottleneck,
        "bottleneck_op": net.layers[net.index[bottleneck]].op_type,
        "fps": hz / ii, "throughput_fps": frames * hz / (int(done[-1]) + 1),
        "latency_cycles": res.latency, "latency_us": res.latency / clock_mhz,
        "makespan_cycles": int(done[-1]) + 1, "makespan_us": (int(done[-1]) + 1) / clock_mhz,
        "fifo_mode": "finite" if net.finite else "unbounded", "sweeps": sched.sweeps,
        "converged": bool(sched.converged), "depth_frames": res.depth_frames,
        "layers": len(net.layers), "edges": len(edges),
        "fifo_bits_needed": int(sum(d * _width(net, net.edges[k]) for k, d in res.needed.items())),
    }
    sim_n = res.simulated_frames
    report = {
        "graph": graph, "totals": totals, "layers": rows, "edges": edges,
        "fifo_depths": {f"{e.pname} -> {e.cname}": res.needed[e.index] for e in net.internal_edges
                        if e.index in res.needed},
        "frame_done_cycles": [int(x) for x in done[:sim_n]],
        "frame_latency_cycles": [int(d - s) + 1 for d, s in zip(done[:sim_n], res.start[:sim_n])],
    }
    if res.outputs is not None:
        report["functional"] = {k: list(v.shape) for k, v in res.outputs.items()}
    return report


def _width(net, e) -> int:
    return int(net.layers[e.producer].op.outstream_width()) if e.producer is not None else 0


def format_report(report: dict) -> str:
    """The report as text: one row per layer, then the totals."""
    head = ["layer", "op", "PE", "SIMD", "cycles", "share", "util", "stall in", "stall out", "FIFO in"]
    body = []
    for r in report["layers"]:
        fifo = "-" if r["fifo_depth"] is None else f"{r['fifo_depth']:,}"
        if r["fifo_given"] is not None:
            fifo += f" ({r['fifo_given']:,})"
        body.append([r["name"], r["op"], "-" if r["PE"] is None else str(r["PE"]),
                     "-" if r["SIMD"] is None else str(r["SIMD"]), f"{r['cycles']:,}", f"{100 * r['share']:.1f}%",
                     f"{100 * r['utilisation']:.1f}%", f"{r['stall_in']:,}", f"{r['stall_out']:,}", fifo])
    widths = [max(len(h), *(len(row[k]) for row in body)) if body else len(h) for k, h in enumerate(head)]

    def fmt(row):
        return "  ".join(c.ljust(w) if k < 2 else c.rjust(w) for k, (c, w) in enumerate(zip(row, widths)))

    lines = [fmt(head), "  ".join("-" * w for w in widths), *(fmt(row) for row in body), ""]
    t = report["totals"]
    sim = ""
    if t["simulated_frames"] != t["frames"]:
        rest = ("rest extended exactly: the schedule repeats every {} frame(s), {:,} cycles later".format(
            *t["steady_state"]) if t.get("steady_state") else "rest extrapolated with the last interval")
        sim = f" ({t['simulated_frames']} simulated, {rest})"
    lines.append(f"II {t['ii_cycles']:,} cycles (bottleneck {t['bottleneck']}, {t['bottleneck_op']}): "
                 f"{t['fps']:,.1f} frames/s at {t['clock_mhz']:g} MHz")
    lines.append(f"first-frame latency {t['latency_cycles']:,} cycles ({t['latency_us']:,.1f} us); {t['frames']} "
                 f"frame(s){sim} in {t['makespan_cycles']:,} cycles: {t['throughput_fps']:,.1f} frames/s")
    mode = ("FIFO depths as given" if t["fifo_mode"] == "finite" else "unbounded FIFOs")
    if t["fifo_mode"] == "finite" and not t["converged"]:
        mode += f" (did not converge in {t['sweeps']} sweeps: times are lower bounds)"
    lines.append(f"{mode}; 'FIFO in': the depth each layer's input FIFO needs for no slowdown "
                 f"(given in parentheses), {t['fifo_bits_needed']:,} bits in all")
    return "\n".join(lines)


# ----- plots -----------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cycles(report: dict, path: str | Path) -> None:
    """Bar chart: cycles per frame of every layer (log scale), the II as a line, the bottleneck marked."""
    plt = _pyplot()
    rows = report["layers"]
    kinds = sorted({r["op"] for r in rows})
    cmap = plt.get_cmap("tab20")
    colour = {k: cmap(i % 20) for i, k in enumerate(kinds)}
    fig, ax = plt.subplots(figsize=(min(16.0, max(8.0, 0.1 * len(rows) + 3)), 4.8))
    x = np.arange(len(rows))
    ax.bar(x, [r["cycles"] for r in rows], color=[colour[r["op"]] for r in rows], width=0.85)
    t = report["totals"]
    ax.axhline(t["ii_cycles"], color="k", lw=0.8, ls="--", label=f"II {t['ii_cycles']:,} cycles")
    b = next(k for k, r in enumerate(rows) if r["name"] == t["bottleneck"])
    ax.annotate(f"bottleneck {t['bottleneck']}", (b, rows[b]["cycles"]), xytext=(0, 8), textcoords="offset points",
                ha="center", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("cycles per frame")
    ax.set_xlabel("layer (graph order)")
    if len(rows) <= 40:
        ax.set_xticks(x, [r["name"] for r in rows], rotation=90, fontsize=6)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[k]) for k in kinds]
    ax.legend(handles + ax.get_legend_handles_labels()[0], kinds + ax.get_legend_handles_labels()[1], fontsize=6,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"cycles per layer: {t['fps']:,.0f} frames/s at {t['clock_mhz']:g} MHz")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_timeline(res: SimResult, report: dict, path: str | Path, max_frames: int = 8) -> None:
    """Pipeline timeline: for every layer (top to bottom, graph order) a bar per frame from its first to its
    last step, coloured by frame; stalls inside a frame's span are included."""
    plt = _pyplot()
    net, sched = res.net, res.schedule
    n = min(sched.n, max_frames)
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(10, max(4.0, 0.09 * len(net.layers) + 2)))
    for i in range(len(net.layers)):
        spans = sched.layer_spans(i)[:n]
        ax.broken_barh([(int(a), max(1, int(b - a))) for a, b in spans], (i - 0.4, 0.8),
                       facecolors=[cmap(f % 10) for f in range(n)], alpha=0.8)
    ax.set_ylim(len(net.layers) - 0.5, -0.5)
    if len(net.layers) <= 40:
        ax.set_yticks(range(len(net.layers)), [lm.name for lm in net.layers], fontsize=6)
    else:
        ax.set_ylabel("layer (graph order)")
    t = report["totals"]
    ax.set_xlabel(f"cycle ({t['clock_mhz']:g} MHz)")
    ax.set_title(f"pipeline timeline, {n} frame(s): latency {t['latency_cycles']:,} cycles, II {t['ii_cycles']:,}")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _save(fig, path) -> None:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


def write_report(res: SimResult, report: dict, stem: str | Path, plots: bool = True) -> dict[str, str]:
    """Write ``<stem>.sim.json`` and (``plots``) ``<stem>.sim_cycles.png``, ``<stem>.sim_timeline.png``."""
    stem = str(stem)
    files = {"json": stem + ".sim.json"}
    if plots:
        files["cycles_png"] = stem + ".sim_cycles.png"
        files["timeline_png"] = stem + ".sim_timeline.png"
        plot_cycles(report, files["cycles_png"])
        plot_timeline(res, report, files["timeline_png"])
    report["files"] = files
    write_json(files["json"], report)
    return files
