"""The run's HTML report: one self-contained file (plots embedded as base64 PNGs), numbers as tables.

It reads only the files the stages wrote, so it can be regenerated from a run folder at any time.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections import Counter
from pathlib import Path

from onebit.atomic import atomic_open
from onebit.flow import stages
from onebit.flow.config import CONFIG_FILE
from onebit.flow.engine import Context, read_stamp, stamp_path

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.pass { color: #17702a; font-weight: bold; } .FAIL { color: #b00020; font-weight: bold; }
.warning { color: #a06000; font-weight: bold; } .notrun { color: #777; }
.banner { padding: 0.6em 1em; border-radius: 4px; font-weight: bold; }
.banner.pass { background: #e3f4e6; } .banner.FAIL { background: #fbe3e6; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
"""


# ----- HTML pieces -----------------------------------------------------------------------------------------
def esc(x) -> str:
    return html.escape(str(x))


def num(v, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def table(head: list[str], rows: list[list], left: int = 1) -> str:
    """A table; the first ``left`` columns are left-aligned (names), the rest right-aligned (numbers)."""
    def cell(tag, k, v):
        cls = ' class="l"' if k < left else ""
        return f"<{tag}{cls}>{v}</{tag}>"

    out = ["<table>", "<tr>" + "".join(cell("th", k, esc(h)) for k, h in enumerate(head)) + "</tr>"]
    out += ["<tr>" + "".join(cell("td", k, v) for k, v in enumerate(row)) + "</tr>" for row in rows]
    return "\n".join(out + ["</table>"])


def pairs(rows: list[tuple[str, str]]) -> str:
    return table(["", ""], [[esc(k), v] for k, v in rows])


def image(path: Path, alt: str) -> str:
    if not path.is_file():
        return f'<p class="notrun">({esc(alt)}: no plot)</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def verdict(v: str) -> str:
    return f'<span class="{v.replace(" ", "")}">{esc(v)}</span>'


# ----- inputs ----------------------------------------------------------------------------------------------
def _json(ctx: Context, rel: str) -> dict:
    p = ctx.path(rel)
    return json.loads(p.read_text()) if p.is_file() else {}


def _metrics(ctx: Context) -> list[dict]:
    p = ctx.path("train/metrics.jsonl")
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.is_file() else []


# ----- sections --------------------------------------------------------------------------------------------
def summary(ctx: Context, d: dict) -> str:
    last = d["metrics"][-1] if d["metrics"] else {}
    parity, sim, build, pack = d["parity"], d["sim"].get("totals", {}), d["build"], d["pack"]
    synth = build.get("synth") or {}
    checks = d["verify"].get("checks", [])
    passed = sum(c["verdict"] == "pass" for c in checks)
    rows = [("test accuracy (PyTorch, whole test set)", pct(last.get("test_acc"))),
            (f"accuracy of the dataflow graph ({parity.get('frames', '-')} test images)",
             pct(parity.get("labels_vs_dataset", {}).get("test_accuracy"))),
            ("packed 1-bit weights file", f"{num(pack.get('packed_bytes'))} bytes "
                                          f"({num(pack.get('compression'), 2)}x smaller than float32)"),
            (f"frames/s at {num(ctx.cfg['hw']['clock_mhz'], 0)} MHz (simulator)", num(sim.get("fps"))),
            ("first-frame latency (simulator)", f"{num(sim.get('latency_us'))} us"),
            ("fmax (nextpnr)", f"{num(synth.get('fmax_mhz'))} MHz"),
            ("frames/s at fmax", num(build.get("frames_per_second"))),
            ("verification", f"{passed} of {len(checks)} checks pass")]
    return pairs(rows)


def training(ctx: Context, d: dict) -> str:
    head = ["epoch", "lr", "train loss", "train error", "test accuracy", "seconds"]
    rows = [[m["epoch"], num(m.get("lr"), 4), num(m.get("train_loss"), 4), pct(m.get("train_err")),
             pct(m.get("test_acc")), num(m.get("epoch_time_s"))] for m in d["metrics"]]
    return "\n".join([image(ctx.path("train/curves.png"), "training curves"), table(head, rows)])


def packing(d: dict) -> str:
    p = d["pack"]
    return pairs([("packed file (pack/packed.npz)", f"{num(p.get('packed_bytes'))} bytes"),
                  ("binary weights, one bit each", f"{num(p.get('binary_bytes'))} bytes"),
                  ("float tensors (input BN, statistics)", f"{num(p.get('float_tensor_bytes'))} bytes"),
                  ("float32 checkpoint weights", f"{num(p.get('float_bytes'))} bytes"),
                  ("compression", f"{num(p.get('compression'), 2)}x")])


def graph(d: dict) -> str:
    f = d["folding"]
    counts = Counter(r["op"] for r in f.get("layers", []))
    t = f.get("totals", {})
    rows = [[esc(op), n] for op, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    io_rows = [[esc(role), esc(t["name"]), esc(" x ".join(map(str, t["shape"]))), esc(t["type"])]
               for role, t in f.get("graph", {}).items()]
    return "\n".join([f"<p>{num(t.get('nodes'))} nodes in the folded dataflow graph (fold/model.folded.onnx), "
                      f"{num(t.get('mem_bits'))} bits of weights and thresholds.</p>",
                      table(["tensor", "name", "shape (NHWC)", "type"], io_rows, left=2),
                      table(["op", "nodes"], rows)])


def folding(ctx: Context, d: dict) -> str:
    f = d["folding"]
    t, s = f.get("totals", {}), f.get("search", {})
    head = ["layer", "op", "PE", "SIMD", "cycles", "share of II", "LUT (estimate)", "memory bits"]
    rows = [[esc(r["name"]), esc(r["op"]), num(r["PE"]), num(r["SIMD"]), num(r["cycles"]), pct(r["share"]),
             num(r["LUT"]), num(r["mem_bits"])] for r in f.get("layers", [])]
    goal = (f"target {num(s.get('target_fps'), 0)} frames/s at {num(ctx.cfg['hw']['clock_mhz'], 0)} MHz: "
            f"{esc(s.get('stop', ''))}")
    return "\n".join([f"<p>{goal}. II {num(t.get('ii_cycles'))} cycles (bottleneck {esc(t.get('bottleneck'))}), "
                      f"{num(t.get('LUT'))} LUT estimated.</p>", table(head, rows, left=2)])


def _built_depths(sim: dict, build: dict) -> dict[str, int]:
    """Per consumer layer: the deepest FIFO in front of it in the generated RTL."""
    built = (build.get("rtl") or {}).get("fifo_depths", {})
    depths: dict[str, int] = {}
    for e in sim.get("edges", []):
        if e["tensor"] in built:
            depths[e["consumer"]] = max(depths.get(e["consumer"], 0), int(built[e["tensor"]]))
    return depths


def simulation(ctx: Context, d: dict) -> str:
    sim = d["sim"]
    t = sim.get("totals", {})
    totals = pairs([("frames simulated", num(t.get("frames"))),
                    ("initiation interval",
                     f"{num(t.get('ii_cycles'))} cycles (bottleneck {esc(t.get('bottleneck'))})"),
                    ("frames/s", num(t.get("fps"))),
                    ("first-frame latency", f"{num(t.get('latency_cycles'))} cycles = {num(t.get('latency_us'))} us"),
                    ("FIFO memory needed", f"{num(t.get('fifo_bits_needed'))} bits")])
    built = _built_depths(sim, d["build"])
    head = ["layer", "op", "cycles", "utilisation", "stall in", "stall out", "FIFO depth needed", "FIFO depth (RTL)"]
    rows = [[esc(r["name"]), esc(r["op"]), num(r["cycles"]), pct(r["utilisation"]), num(r["stall_in"]),
             num(r["stall_out"]), num(r["fifo_depth"]), num(built.get(r["name"]))] for r in sim.get("layers", [])]
    return "\n".join([totals, image(ctx.path(stages.SIM_CYCLES), "cycles per layer"),
                      image(ctx.path(stages.SIM_TIMELINE), "pipeline timeline"), table(head, rows, left=2),
                      "<p>FIFO depth needed: the deepest input FIFO of the layer for no slowdown (simulator); "
                      "(RTL): the depth the hardware build gave it.</p>"])


def hardware(ctx: Context, d: dict) -> str:
    b = d["build"]
    if not b:
        return '<p class="notrun">The hardware stage has not run.</p>'
    synth, cosim = b.get("synth") or {}, b.get("cosim", {})
    rows = [("device", esc(b.get("device"))), ("target clock", f"{num(b.get('clock_mhz'), 0)} MHz"),
            ("co-simulated frames, every edge (Verilator)", num(cosim.get("frames"))),
            ("co-simulated frames, outputs (Verilator)",
             f"{num((b.get('cosim_outputs') or {}).get('frames', 0))} of {num(b.get('frames'))}"),
            ("II (RTL)", f"{num(b.get('ii_cycles'))} cycles"),
            ("latency (RTL)", f"{num(b.get('latency_cycles'))} cycles"),
            ("fmax", f"{num(synth.get('fmax_mhz'))} MHz"),
            ("frames/s at fmax", num(b.get("frames_per_second"))),
            ("latency at fmax", f"{num(b.get('latency_us'))} us"),
            ("frames/s at the target clock", num(b.get("frames_per_second_at_clock"))),
            ("critical path", esc(_critical(synth))),
            ("bitstream", esc(f"hw/synth/{synth['bitstream']}" if synth.get("bitstream") else "-"))]
    res = synth.get("resources") or {}
    parts = [pairs(rows)]
    if b.get("board"):
        parts.append(board(b))
    if res:
        parts.append(table(["resource", "used"], [[esc(k), num(v) if not isinstance(v, dict) else
                                                   esc(", ".join(f"{a} {num(x)}" for a, x in v.items()))]
                                                  for k, v in res.items()]))
    return "\n".join(parts)


def _critical(synth: dict) -> str:
    paths = synth.get("failing_paths") or synth.get("critical_paths") or []
    if not paths:
        return "-"
    from onebit.hw.synth import format_path

    worst = max(paths, key=lambda p: p["delay_ns"])
    return ("missed: " if worst["failing"] else "") + format_path(worst)


def board(b: dict) -> str:
    """The board build: its pins and link, the link's frames/s beside the accelerator's, and what it uses of the
    board's FPGA."""
    bd, synth = b["board"], b.get("synth") or {}
    em = bd.get("emulation") or {}
    rows = [("board", esc(bd["name"])), ("constraint file", esc(f"hw/rtl/{bd['constraints']}")),
            ("accelerator clock (PLL)", f"{num(bd['accelerator_clock_mhz'], 2)} MHz"),
            ("host link", f"{num(bd['baud'], 0)} baud (UART 8N1)"),
            ("link frames/s", num(bd.get("link_frames_per_second"))),
            ("accelerator frames/s", num(bd.get("accelerator_frames_per_second"))),
            ("limited by", esc(bd.get("limited_by", "-"))),
            ("virtual board", esc(f"{em['frames']} frames through onebit infer's protocol, outputs "
                                  f"{'equal to the reference' if em['outputs_equal'] else 'DIFFERENT'}")
             if em else "did not run")]
    parts = ["<h3>Board</h3>", pairs(rows)]
    use = synth.get("utilisation") or _synthesis_use(synth.get("resources") or {}, b.get("device"))
    if use:
        parts.append(f"<p>What the design uses of the board's {esc(b.get('device'))} "
                     f"({'after place and route' if synth.get('utilisation') else 'Yosys counts, before placement'}):"
                     f"</p>")
        parts.append(table(["resource", "used", "available", "share"],
                           [[esc(k), num(v.get("used")), num(v.get("available")),
                             pct(v["used"] / v["available"]) if v.get("available") else "-"]
                            for k, v in use.items()]))
    return "\n".join(parts)


def _synthesis_use(res: dict, device: str | None) -> dict:
    """Yosys's LUT, FF and block-RAM counts against the device's (when there was no place and route)."""
    try:
        from onebit.hw.synth import DEVICES
    except ModuleNotFoundError:
        return {}
    dev = DEVICES.get(device)
    if dev is None or not res:
        return {}
    return {name: {"used": res[key], "available": have} for name, key, have in
            (("LUT", "luts", dev.luts), ("FF", "ffs", dev.ffs), ("block RAM", "bram", dev.bram)) if key in res}


def verification(d: dict) -> str:
    head = ["stage", "check", "frames", "verdict", "detail"]
    rows = [[esc(c["stage"]), esc(c["check"]), num(c["frames"]), verdict(c["verdict"]), esc(c["detail"])]
            for c in d["verify"].get("checks", [])]
    return table(head, rows, left=2)


def timings(ctx: Context) -> str:
    rows = []
    for name in [s.name for s in stages.stages_for(ctx.cfg)][:-1]:
        st = read_stamp(stamp_path(ctx, name)) or {}
        rows.append([esc(name), num(st.get("seconds")), esc(st.get("finished", "-"))])
    return table(["stage", "seconds (last run)", "finished"], rows)


def _inputs(ctx: Context) -> dict:
    return {"metrics": _metrics(ctx), "pack": _json(ctx, stages.PACK_JSON),
            "parity": _json(ctx, stages.PARITY), "folding": _json(ctx, stages.FOLDING), "sim": _json(ctx, stages.SIM_JSON),
            "build": _json(ctx, stages.BUILD), "verify": _json(ctx, stages.VERIFY)}


def render(ctx: Context) -> str:
    d = _inputs(ctx)
    parity = d["parity"]
    ok = d["verify"].get("passed")
    banner = (f'<p class="banner {"pass" if ok else "FAIL"}">Verification: '
              f'{"every stage agrees bit for bit" if ok else "FAILED (see the table below)"}</p>')
    config = ctx.path(CONFIG_FILE).read_text() if ctx.path(CONFIG_FILE).is_file() else ""
    sections = [("Summary", summary(ctx, d)), ("Verification", verification(d)),
                ("Training", training(ctx, d)), ("Packed size", packing(d)), ("Dataflow graph", graph(d)),
                ("Folding", folding(ctx, d)), ("Simulation: cycles, FIFO depths, timeline", simulation(ctx, d)),
                ("Hardware: resources, fmax, frames/s", hardware(ctx, d)),
                ("Configuration (run.toml)", f"<pre>{esc(config)}</pre>"), ("Stage times", timings(ctx))]
    body = "\n".join(f"<h2>{esc(title)}</h2>\n{content}" for title, content in sections)
    title = f"onebit run: {parity.get('arch', '')} on {parity.get('dataset', '')}"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{esc(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n<h1>{esc(title)}</h1>\n"
            f"<p>Written {esc(time.strftime('%Y-%m-%d %H:%M'))} from the run folder "
            f"{esc(ctx.out.name)}/.</p>\n{banner}\n{body}\n</body>\n</html>\n")


def write_html(ctx: Context, path: Path) -> None:
    with atomic_open(path, "w") as f:
        f.write(render(ctx))
