"""``onebit build``: a folded dataflow graph to RTL, a Verilator co-simulation checked against the reference
executor and the simulator, and (with the open toolchain) synthesis, place and route and a bitstream."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from onebit.atomic import check_output, make_folder, write_json
from onebit.errors import ConfigError, CosimError, GraphError
from onebit.export.dataflow import graph as dfg
from onebit.hw import verilator
from onebit.export.dataflow.executor import execute
from onebit.hw.cosim import cosimulate, cosimulate_outputs, frame_done_cycles
from onebit.hw.top import generate

REPORT_FILE = "build.json"
EDGE_FRAMES = 4  # frames co-simulated edge by edge (every beat's value and cycle on every edge)
COSIM_SECONDS = 120.0  # the output check covers the inputs that Verilator runs in about this long
BOARD_FRAMES = 4  # frames run through the virtual board of a board build


random_inputs = dfg.random_frames  # the name benchmarks (and older commits' scripts) import


def _check_inputs(model, inputs) -> np.ndarray:
    try:
        return dfg.check_frames(model, np.asarray(inputs), "inputs")
    except GraphError as e:
        if e.param is None:  # check_frames names the frames' source in its message only
            e.rename("inputs")
        raise


def build(graph: str | Path, out: str | Path, *, device: str = "ecp5-25k", clock_mhz: float = 50.0,
          frames: int = 2, inputs: np.ndarray | None = None, depths: dict | None = None, synth: bool = True,
          pnr: bool = True, log: Callable[[str], None] = lambda s: None, strict: bool = True,
          edge_frames: int = EDGE_FRAMES, cosim_seconds: float | None = COSIM_SECONDS,
          expected: np.ndarray | None = None, board=None, baud: int | None = None,
          board_frames: int = BOARD_FRAMES) -> dict:
    """Generate, lint, co-simulate and (``synth``/``pnr``) implement the graph; writes ``out/build.json``.

    ``inputs``: frames in the graph's input layout (default: ``frames`` random ones). The first ``edge_frames``
    are co-simulated edge by edge; then the outputs of all of them, or of as many as Verilator runs in about
    ``cosim_seconds`` (None: all; 0: none), against ``expected`` (the graph's output on ``inputs``; default: the
    reference executor's) and the simulator's cycles. Raises CosimError when the RTL differs from the executor
    or the simulator (``strict``; the report is written first), FitError when the design does not fit
    ``device``.

    ``board`` (a :class:`~onebit.hw.boards.Board`): build the board-level design instead -- the accelerator behind
    a UART host link at ``baud`` (default: the board's), clocked by the board's PLL at ``clock_mhz``, on the
    board's pins (``device`` is the board's) -- and run the first ``board_frames`` inputs through its virtual
    board (``onebit emulate``) with the host's own protocol code, against the reference executor."""
    if clock_mhz <= 0:
        raise ConfigError(f"clock_mhz: expected a positive number, got {clock_mhz}", param="clock_mhz")
    if edge_frames < 1:
        raise ConfigError(f"edge_frames: expected at least 1, got {edge_frames}", param="edge_frames")
    if cosim_seconds is not None and not cosim_seconds >= 0:
        raise ConfigError(f"cosim_seconds: expected a number >= 0, got {cosim_seconds}", param="cosim_seconds")
    out = check_output(out, folder=True, inputs=[graph])
    model = dfg.load_dataflow(graph)
    x = dfg.random_frames(model, frames) if inputs is None else _check_inputs(model, inputs)
    make_folder(out)
    report: dict = {"graph": str(graph), "device": device, "clock_mhz": clock_mhz, "frames": int(len(x)),
                    "seconds": {}}

    def step(name):
        report["seconds"][name] = round(time.perf_counter() - t0, 2)
        log(f"  ✓ {name} ({report['seconds'][name]:.1f} s)")

    t0 = time.perf_counter()
    design = generate(model, out, depths)
    report["rtl"] = {"folder": "rtl", "top": "onebit_top", "files": design.files,
                     "fifo_depths": design.depth_map(), "layers": len(design.layers)}
    plan = None
    if board is not None:
        from onebit.hw.board import write_board

        device = board.device
        plan = write_board(design, board, clock_mhz, baud)
        report["device"] = device
        report["board"] = {"name": board.name, "constraints": plan["constraints"], "baud": plan["link"]["baud"],
                           "accelerator_clock_mhz": round(plan["accelerator"]["clock_hz"] / 1e6, 4)}
    step("generate RTL" + (f" and the {board.name} board top" if board is not None else ""))
    t0 = time.perf_counter()
    verilator.lint(design)
    report["rtl"]["lint"] = "clean (verilator --lint-only -Wall)"
    step("lint (Verilator)")
    t0 = time.perf_counter()
    exe = verilator.build(design, len(x))
    step("compile (Verilator)")
    t0 = time.perf_counter()
    cos = cosimulate(model, x[:edge_frames], out, design=design, exe=exe, strict=False)
    report["cosim"] = cos.as_dict()
    step(f"co-simulate every edge (Verilator, {len(x[:edge_frames])} frames)")
    if not cos.mismatches and len(x) > edge_frames:
        t0 = time.perf_counter()
        report["cosim_outputs"] = _check_outputs(design, exe, x, expected, edge_frames, cosim_seconds)
        checked = report["cosim_outputs"]["frames"]
        if checked:
            step(f"co-simulate the outputs (Verilator, {checked:,} of {len(x):,} frames)")
    mismatches = cos.mismatches + report.get("cosim_outputs", {}).get("mismatches", [])
    if mismatches:
        write_json(out / REPORT_FILE, report)
        if strict:
            raise CosimError(f"co-simulation of {graph}: {mismatches[0]}")
        return report
    ii = cos.rtl.get("ii") or cos.sim["ii_model"]
    report["ii_cycles"] = int(ii)
    report["latency_cycles"] = int(cos.rtl["latency"])
    if plan is not None:
        t0 = time.perf_counter()
        report["board"].update(_emulate(out, model, plan, int(ii), x[:board_frames],
                                        None if expected is None else np.asarray(expected)[:board_frames]))
        step(f"virtual board (Verilator behind a pseudo-terminal, {len(x[:board_frames])} frames)")
        if not report["board"]["emulation"]["outputs_equal"]:
            write_json(out / REPORT_FILE, report)
            if strict:
                raise CosimError(f"virtual board of {graph}: {report['board']['emulation']['mismatch']}")
            return report
    if synth:
        from onebit.hw.synth import synthesize

        t0 = time.perf_counter()
        s = synthesize(design, device=device, clock_mhz=clock_mhz, out_dir=out / "synth", pnr=pnr, log=log,
                       board=plan)
        report["synth"] = s
        step("synthesis" + (", place and route, bitstream" if pnr else ""))
        fmax = s.get("fmax_mhz")
        if fmax:
            report["frames_per_second"] = fmax * 1e6 / ii
            report["latency_us"] = cos.rtl["latency"] / fmax
        report["frames_per_second_at_clock"] = clock_mhz * 1e6 / ii
    write_json(out / REPORT_FILE, report)
    return report


def _emulate(out: Path, model, plan: dict, ii: int, x: np.ndarray, expected: np.ndarray | None) -> dict:
    """The board-level design in Verilator behind a pseudo-terminal, driven by ``onebit infer``'s own code."""
    from onebit.hw.board import BOARD_FILE, link_frames_per_second
    from onebit.hw.emulate import Emulator
    from onebit.hw.host import infer

    plan["ii_cycles"] = ii
    write_json(out / BOARD_FILE, plan)
    want = execute(model, x)[model.graph.output[0].name] if expected is None else expected
    with Emulator(out) as emu:
        got, r = infer(out, emu.port, x)
    equal = bool(np.array_equal(got.reshape(len(x), -1), np.asarray(want).reshape(len(x), -1)))
    link_fps = link_frames_per_second(plan, plan["link"]["clock_hz"], plan["link"]["bit_q8"])  # at the real baud
    acc_fps = plan["accelerator"]["clock_hz"] / ii
    em = {"frames": len(x), "outputs_equal": equal, "seconds": r["seconds"], "retries": r["retries"],
          "accelerator_cycles": r["accelerator_cycles"], "scaled_bit_clocks": plan["emulation"]["bit_clocks"],
          "link_frames_per_second": r["link_frames_per_second"]}
    if not equal:
        k = int(np.flatnonzero((got.reshape(len(x), -1) != np.asarray(want).reshape(len(x), -1)).any(axis=1))[0])
        em["mismatch"] = (f"frame {k}: the virtual board answered {got[k].ravel().tolist()}, the reference "
                          f"{np.asarray(want)[k].ravel().tolist()}")
    return {"emulation": em, "link_frames_per_second": round(link_fps, 1),
            "accelerator_frames_per_second": round(acc_fps, 1),
            "limited_by": "link" if link_fps <= acc_fps else "accelerator"}


def _check_outputs(design, exe, x, expected, edge_frames: int, budget_s: float | None) -> dict:
    """The output check on all of ``x``, or on the frames Verilator runs within ``budget_s`` at the speed of
    a first run on the edge-checked frames without traces."""
    schedule = frame_done_cycles(design, len(x))  # one simulator run for both Verilator runs
    done = schedule[0]
    probe = cosimulate_outputs(design, exe, x[:edge_frames], None if expected is None else expected[:edge_frames],
                               done=schedule)
    speed = max(probe.cycles_per_second, 1.0)
    workers = cosim_workers(len(x))
    per_run = -(-len(x) // workers)
    estimate = float(done[per_run - 1]) / speed
    n = len(x) if budget_s is None else min(len(x), workers * int(np.searchsorted(done, budget_s * speed,
                                                                                   side="right")))
    info = {"of": int(len(x)), "estimate_s": round(estimate, 1), "budget_s": budget_s, "runs": workers}
    if probe.mismatches or n <= edge_frames:
        return probe.as_dict() | info | {"runs": 1}
    want = None if expected is None else np.asarray(expected)[:n]
    runs = cosim_workers(n)
    return cosimulate_outputs(design, exe, x[:n], want, done=schedule, workers=runs).as_dict() | info | {"runs": runs}


#: frames per Verilator run below which one more run at once does not pay for its start
MIN_FRAMES_PER_RUN = 32


def cosim_workers(frames: int) -> int:
    """Verilator runs at once for the output check: one per CPU this process may use, each of at least
    MIN_FRAMES_PER_RUN frames."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, frames // MIN_FRAMES_PER_RUN))


def format_build(report: dict) -> list[str]:
    c = report.get("cosim", {})
    lines = [f"RTL: {report['rtl']['layers']} layers, {len(report['rtl']['fifo_depths'])} FIFOs, lint clean",
             f"co-simulation ({c.get('frames')} frames): outputs "
             f"{'bit-exact on every edge' if c.get('outputs_equal') else 'DIFFERENT'}, cycles "
             f"{'equal to the simulator' if c.get('cycles_equal') else 'DIFFERENT'}; II {report.get('ii_cycles')} "
             f"cycles, latency {report.get('latency_cycles')} cycles; Verilator "
             f"{c.get('verilator_cycles_per_second', 0):,} cycles/s"]
    s = report.get("synth")
    if s:
        r = s.get("resources", {})
        lines.append(f"{report['device']}: " + ", ".join(f"{k} {v}" for k, v in r.items()))
        if s.get("fmax_mhz"):
            lines.append(f"fmax {s['fmax_mhz']:.1f} MHz (target {report['clock_mhz']:g} MHz, "
                         f"{'met' if s.get('timing_met') else 'not met'}): {report['frames_per_second']:,.0f} "
                         f"frames/s, latency {report['latency_us']:.1f} us")
        for name, c in (s.get("clocks") or {}).items():
            lines.append(f"  clock {name}: fmax {c['fmax_mhz']:.1f} MHz (target {c['target_mhz']:g} MHz)")
        from onebit.hw.synth import format_path

        for p in s.get("failing_paths") or []:
            lines.append(f"  failing path ({p['to_clock']}): {format_path(p)}")
        if s.get("bitstream"):
            lines.append(f"bitstream: synth/{s['bitstream']}")
    o = report.get("cosim_outputs")
    if o:
        lines.append(_format_outputs(o))
    b = report.get("board")
    if b:
        em = b.get("emulation", {})
        lines.append(f"board {b['name']}: pins in rtl/{b['constraints']}, accelerator at "
                     f"{b['accelerator_clock_mhz']:g} MHz (PLL), host link {b['baud']:,} baud")
        if em:
            lines.append(f"virtual board ({em['frames']} frames through onebit infer's protocol): outputs "
                         f"{'equal to the reference' if em['outputs_equal'] else 'DIFFERENT'}; link "
                         f"{b['link_frames_per_second']:,.0f} frames/s, accelerator "
                         f"{b['accelerator_frames_per_second']:,.0f} frames/s: limited by the {b['limited_by']}")
    for m in c.get("mismatches", []) + (o or {}).get("mismatches", []):
        lines.append(f"MISMATCH: {m}")
    return lines


def _format_outputs(o: dict) -> str:
    head = f"co-simulation of the outputs ({o['frames']:,} of {o['of']:,} frames"
    head += ")" if o["frames"] == o["of"] else f"; all would take about {o['estimate_s']:,.0f} s)"
    runs = f" in {o['runs']} Verilator runs at once" if o.get("runs", 1) > 1 else ""
    return (head + f": {'bit-exact' if o['outputs_equal'] else 'DIFFERENT'}, every frame's end "
            f"{'in the simulator cycle' if o['cycles_equal'] else 'in a DIFFERENT cycle'}; "
            f"{o['verilator_seconds']:.1f} s, {o['verilator_cycles_per_second']:,} cycles/s{runs}")
