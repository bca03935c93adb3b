"""Co-simulation: the generated RTL under Verilator against the reference executor (every beat's value on
every edge) and the simulator (every beat's delivery and pop cycle on every edge). A mismatch names the
first differing layer, tensor, frame and element."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import CosimError
from onebit.hw import verilator
from onebit.hw.encode import hex_beats
from onebit.hw.top import Design, generate
from onebit.sim.simulation import simulate
from onebit.export.dataflow import graph as dfg
from onebit.export.dataflow.executor import execute


@dataclass
class CosimResult:
    frames: int
    outputs_equal: bool
    cycles_equal: bool
    rtl: dict  # ii, latency, cycles
    sim: dict
    verilator_seconds: float
    cycles_per_second: float
    mismatches: list[str] = field(default_factory=list)
    outputs: np.ndarray | None = None

    def as_dict(self) -> dict:
        return {"frames": self.frames, "outputs_equal": self.outputs_equal, "cycles_equal": self.cycles_equal,
                "rtl": self.rtl, "sim": self.sim, "verilator_seconds": round(self.verilator_seconds, 3),
                "verilator_cycles_per_second": round(self.cycles_per_second),
                "mismatches": self.mismatches}


def _element(shape: tuple, flat: int) -> str:
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(flat, shape)) + "]"


def schedule(design: Design, frames: int):
    """The simulator's schedule of the design's frames with its FIFO depths, every frame simulated."""
    return simulate(design.model, frames=frames, depths=design.depth_map(), fifo_sizing=False, extend=False)


def compare(design: Design, trace: verilator.Trace, x: np.ndarray, res=None, check_cycles: bool = True) -> CosimResult:
    model, net = design.model, design.net
    n = len(x)
    taps = execute_frames_taps(model, x)
    res = res or schedule(design, n)
    sched = res.schedule
    mismatches: list[str] = []
    if check_cycles and not sched.converged:
        mismatches.append("the simulator's schedule did not converge; its cycles cannot be compared")
        check_cycles = False
    data_ok = True
    for i in net.order:
        lm = net.layers[i]
        for e in net.out_edges[i]:
            got_hex = trace.edges[e.index]["data"]
            op = lm.op
            tensor = e.tensors[0]
            want = taps[tensor]
            lanes = op.fold_of_output()
            beats = e.beats
            got_hex = got_hex[: n * beats]  # a layer may run ahead into a next frame (e.g. padding rows)
            if len(got_hex) != n * beats:
                data_ok = False
                mismatches.append(f"layer {lm.name}: tensor {tensor!r}: the RTL delivered {len(got_hex)} beats, "
                                  f"expected {n * beats} ({n} frame(s) x {beats})")
                break
            got = hex_beats(got_hex, op.output_dtype(), lanes).reshape(want.shape)
            diff = np.flatnonzero(got.astype(np.float64).ravel() != want.astype(np.float64).ravel())
            if len(diff):
                data_ok = False
                k = int(diff[0])
                per = int(np.prod(want.shape[1:]))
                frame, flat = divmod(k, per)
                mismatches.append(f"layer {lm.name}: tensor {tensor!r} frame {frame} element "
                                  f"{_element(want.shape[1:], flat)} (NHWC): RTL {int(got.ravel()[k])}, reference "
                                  f"{int(want.ravel()[k])} ({len(diff)} element(s) differ)")
        if not data_ok:
            break  # later layers only repeat the first difference
    cycles_ok = bool(sched.converged)
    if check_cycles and data_ok:
        for i in net.order:
            lm = net.layers[i]
            for e in net.out_edges[i]:
                want_w = sched.write_times[i] + (lm.latency - 1)
                got_w = trace.edges[e.index]["w"][: len(want_w)]
                if not np.array_equal(got_w, want_w):
                    cycles_ok = False
                    k = int(np.flatnonzero(got_w != want_w)[0])
                    mismatches.append(f"layer {lm.name}: output beat {k} left the layer in cycle {int(got_w[k])}, "
                                      f"the simulator says {int(want_w[k])}")
                    break
            if not cycles_ok:
                break
    rtl_done = trace.out_cycles.reshape(n, -1)[:, -1] + 1 if len(trace.out_cycles) == n * design.out_edge.beats \
        else None
    start = trace.edges[design.in_edge.index]["r"]
    rtl = {"cycles": trace.cycles}
    if rtl_done is not None and len(start):
        rtl["latency"] = int(rtl_done[0] - start[0]) + 1
        rtl["ii"] = int(rtl_done[-1] - rtl_done[-2]) if n > 1 else None
    sim = {"latency": res.latency, "ii": res.ii if n > 1 else None, "ii_model": res.ii_model}
    outs = None
    if data_ok:
        out_t = design.out_edge.tensors[0]
        outs = taps[out_t]
    cps = trace.cycles / trace.seconds if trace.seconds > 0 else 0.0
    return CosimResult(n, data_ok, cycles_ok and data_ok, rtl, sim, trace.seconds, cps, mismatches, outs)


def execute_frames_taps(model: ModelWrapper, x: np.ndarray) -> dict[str, np.ndarray]:
    return execute(model, x, taps=True)


def cosimulate(model: ModelWrapper, x: np.ndarray, folder: Path, depths: dict | None = None,
               design: Design | None = None, exe: Path | None = None, max_cycles: int | None = None,
               strict: bool = True) -> CosimResult:
    """Generate (unless given), build and run the design on frames ``x``; compare. ``strict``: raise
    :class:`CosimError` on any mismatch."""
    x = dfg.check_frames(model, np.asarray(x))
    design = design or generate(model, folder, depths)
    exe = exe or verilator.build(design, len(x))
    res = schedule(design, len(x))
    last = max(int(t[-1]) + lm.latency for t, lm in zip(res.schedule.step_times, design.net.layers))
    if max_cycles is None:
        max_cycles = int(last * 2 + 1000)
    trace = verilator.run(design, exe, x, max_cycles, min_cycles=last + 1)
    result = compare(design, trace, x, res)
    if trace.timed_out:
        result.mismatches.insert(0, f"the RTL did not finish within {max_cycles} cycles")
        result.outputs_equal = result.cycles_equal = False
    if strict and result.mismatches:
        raise CosimError("co-simulation: " + result.mismatches[0])
    return result


@dataclass
class OutputCheck:
    """A long co-simulation that checks the design's output beats only: their values against the reference
    executor and the cycle each frame's last beat leaves against the simulator's schedule."""

    frames: int
    outputs_equal: bool
    cycles_equal: bool
    verilator_seconds: float
    cycles_per_second: float
    mismatches: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"frames": self.frames, "outputs_equal": self.outputs_equal, "cycles_equal": self.cycles_equal,
                "verilator_seconds": round(self.verilator_seconds, 3),
                "verilator_cycles_per_second": round(self.cycles_per_second), "mismatches": self.mismatches}


def frame_done_cycles(design: Design, frames: int) -> tuple[np.ndarray, bool]:
    """Per frame, the cycle after its last output beat leaves (the simulator's schedule), and whether that is
    exact: past the simulated frames it is once the schedule is periodic, an extrapolation otherwise."""
    res = simulate(design.model, frames=frames, depths=design.depth_map(), fifo_sizing=False)
    return np.asarray(res.done, np.int64), res.steady is not None or res.simulated_frames == frames


def cosimulate_outputs(design: Design, exe: Path, x: np.ndarray, expected: np.ndarray | None = None,
                       timeout: float = 3600, done: tuple[np.ndarray, bool] | None = None,
                       workers: int = 1) -> OutputCheck:
    """Run the compiled design (built for at least ``len(x)`` frames) on every frame of ``x`` without edge
    traces; ``expected``: the graph's output on ``x`` (default: the reference executor's); ``done``:
    :func:`frame_done_cycles` of at least ``len(x)`` frames, if the caller has it.

    ``workers`` > 1 splits the frames into that many runs at once, each from reset in its own folder. The
    schedule does not depend on the data, so each run's frames leave in the cycles of the first frames of
    one long run."""
    model = design.model
    x = dfg.check_frames(model, np.asarray(x))
    n = len(x)
    out_name = design.out_edge.tensors[0]
    want = execute(model, x)[out_name] if expected is None else np.asarray(expected)
    done, exact = done if done is not None else frame_done_cycles(design, n)
    bounds = np.linspace(0, n, max(1, min(workers, n)) + 1).astype(int)
    shards = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

    def one(k: int, a: int, b: int):
        return verilator.run(design, exe, x[a:b], max_cycles=int(done[b - a - 1] * 1.5 + 1000), timeout=timeout,
                             min_cycles=int(done[b - a - 1]), taps=False,
                             workdir=None if len(shards) == 1 else design.rtl / f"run{k}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(shards)) as pool:  # each run is a Verilator process; the threads only wait
        traces = list(pool.map(lambda s: one(s[0], *s[1]), enumerate(shards)))
    seconds = time.perf_counter() - t0
    cps = sum(t.cycles for t in traces) / seconds if seconds > 0 else 0.0
    beats = design.out_edge.beats
    producer = design.net.layers[design.out_edge.producer].op
    mismatches: list[str] = []
    got, rtl_done = [], []
    for (a, b), trace in zip(shards, traces):
        got_n = len(trace.out_hex) // beats
        if trace.timed_out or got_n < b - a:
            mismatches.append(f"the RTL delivered {got_n} of frames {a}..{b - 1}'s outputs")
            return OutputCheck(n, False, False, seconds, cps, mismatches)
        got.append(hex_beats(trace.out_hex[: (b - a) * beats], producer.output_dtype(), producer.fold_of_output()))
        rtl_done.append(trace.out_cycles[: (b - a) * beats].reshape(b - a, beats)[:, -1] + 1)
    got = np.concatenate(got).reshape(want.shape)
    bad = np.flatnonzero((got.reshape(n, -1) != want.reshape(n, -1)).any(axis=1))
    if len(bad):
        k = int(bad[0])
        mismatches.append(f"output of frame {k}: RTL {got[k].ravel().tolist()}, reference "
                          f"{want[k].ravel().tolist()} ({len(bad)} of {n} frames differ)")
    expected_done = np.concatenate([done[: b - a] for a, b in shards])
    rtl_done = np.concatenate(rtl_done)
    cycles_ok = bool(exact) and np.array_equal(rtl_done, expected_done)
    if not exact:
        mismatches.append("the simulator extrapolated past its event budget; the cycles cannot be compared")
    elif not cycles_ok:
        k = int(np.flatnonzero(rtl_done != expected_done)[0])
        a = max(s[0] for s in shards if s[0] <= k)
        run = f" of the run from frame {a}" if len(shards) > 1 else ""
        mismatches.append(f"frame {k}'s last output beat left in cycle {int(rtl_done[k]) - 1}{run}, the simulator "
                          f"says {int(expected_done[k]) - 1}")
    return OutputCheck(n, not len(bad), cycles_ok and not len(bad), seconds, cps, mismatches)
