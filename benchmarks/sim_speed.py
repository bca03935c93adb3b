"""Simulator speed: against Verilator on the same design, and one frame of WRN-20-10.

Part 1 (ratio): the tiny WRN (random weights, seed 0) folded for ``--target-fps``, with the FIFO depths the
hardware build uses; ``--frames`` frames through the generated RTL under Verilator (compiled without traces;
compile time reported apart) and through the simulator: its timing alone (``onebit sim --frames N``: a few
frames simulated until the schedule provably repeats, the rest extended exactly) and with the bit-exact
outputs of every frame. Prints both ratios and checks that outputs and every frame's completion cycle agree.

Part 2 (scale): one frame of the full WRN-20-10 (26.7M 1-bit weights, random) folded for ``--wrn-fps``:
simulation wall time and the peak memory of a fresh process (goals: under 10 s on 2 cores, under 4 GiB).

    python benchmarks/sim_speed.py [--frames 200] [--target-fps 2000] [--skip-wrn]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import RESULTS_DIR, command_line, machine_info, write_json
from _graphs import folded_wrn

GOAL_RATIO = 100.0
GOAL_WRN_S = 10.0
GOAL_WRN_GIB = 4.0

WRN_CHILD = r"""
import json, resource, sys, time
import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from onebit.sim.network import simulate
model = ModelWrapper(sys.argv[1])
dt = model.get_tensor_datatype(model.graph.input[0].name)
shape = model.get_tensor_shape(model.graph.input[0].name)
x = np.random.default_rng(0).integers(int(dt.min()), int(dt.max()) + 1, (1, *shape[1:])).astype(np.float32)
t0 = time.perf_counter()
res = simulate(model, inputs=x)
sec = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": sec, "peak_bytes": peak, "ii": res.ii, "latency": res.latency,
                  "layers": len(res.net.layers), "events_per_frame": res.net.events_per_frame()}))
"""


def ratio_part(folder: Path, frames: int, target_fps: float, clock_mhz: float) -> dict:
    from qonnx.core.modelwrapper import ModelWrapper

    from onebit.hw import verilator
    from onebit.hw.build import random_inputs
    from onebit.hw.top import generate
    from onebit.sim.network import simulate

    path = folded_wrn(folder, "tiny", target_fps, clock_mhz, in_channels=1, size=8)
    model = ModelWrapper(str(path))
    x = random_inputs(model, frames)
    design = generate(model, folder / "hw")
    depths = design.depth_map()
    simulate(model, inputs=x[:1], depths=depths, fifo_sizing=False)  # warm-up (imports, caches)
    t0 = time.perf_counter()
    timing = simulate(model, frames=frames, depths=depths, fifo_sizing=False)  # what 'onebit sim --frames N' does
    timing_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = simulate(model, inputs=x, depths=depths, fifo_sizing=False)  # plus bit-exact outputs of every frame
    sim_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    exe = verilator.build(design, frames, taps=False)
    compile_s = time.perf_counter() - t0
    best = None
    for _ in range(3):
        trace = verilator.run(design, exe, x, max_cycles=int(res.done[-1] * 2 + 1000))
        best = trace if best is None or trace.seconds < best.seconds else best
    from onebit.hw.encode import hex_beats

    out_t = design.out_edge.tensors[0]
    op = design.layers[design.out_edge.producer].op
    got = hex_beats(best.out_hex, op.output_dtype(), op.fold_of_output()).ravel()
    want = res.outputs[out_t].ravel()
    rtl_done = best.out_cycles.reshape(frames, -1)[:, -1] + 1
    return {"design": "tiny WRN-8-1 (4-bit srelu), folded for "
                      f"{target_fps:g} frames/s at {clock_mhz:g} MHz", "graph_layers": len(design.layers),
            "frames": frames, "cycles": int(best.cycles), "sim_timing_seconds": timing_s,
            "sim_timing_simulated_frames": timing.simulated_frames, "sim_steady_state": timing.steady,
            "sim_with_outputs_seconds": sim_s, "ratio_timing": best.seconds / timing_s,
            "verilator_run_seconds": best.seconds, "verilator_compile_seconds": compile_s,
            "verilator_cycles_per_second": best.cycles / best.seconds,
            "ratio_with_outputs": best.seconds / sim_s, "outputs_equal": bool(np.array_equal(got, want)),
            "frame_done_equal": bool(np.array_equal(rtl_done, res.done) and np.array_equal(rtl_done, timing.done)),
            "ii": res.ii, "latency": res.latency}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--target-fps", type=float, default=2000.0)
    p.add_argument("--wrn-fps", type=float, default=100.0)
    p.add_argument("--clock-mhz", type=float, default=100.0)
    p.add_argument("--skip-wrn", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    result = {"command": command_line(), "machine": machine_info()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        r = ratio_part(tmp, args.frames, args.target_fps, args.clock_mhz)
        result["vs_verilator"] = {**r, "goal_ratio": GOAL_RATIO, "meets_goal_timing": r["ratio_timing"] >= GOAL_RATIO,
                                  "meets_goal_with_outputs": r["ratio_with_outputs"] >= GOAL_RATIO}
        print(f"tiny WRN, {r['frames']} frames, {r['cycles']:,} cycles: Verilator {r['verilator_run_seconds']:.3f} s "
              f"({r['verilator_cycles_per_second']:,.0f} cycles/s; compile {r['verilator_compile_seconds']:.1f} s); "
              f"simulator timing {r['sim_timing_seconds']:.3f} s ({r['ratio_timing']:.0f}x faster; "
              f"{r['sim_timing_simulated_frames']} frames simulated, steady state {r['sim_steady_state']}), with "
              f"bit-exact outputs {r['sim_with_outputs_seconds']:.3f} s ({r['ratio_with_outputs']:.0f}x); outputs "
              f"{'equal' if r['outputs_equal'] else 'DIFFER'}, frame completion cycles "
              f"{'equal' if r['frame_done_equal'] else 'DIFFER'}")
        if not args.skip_wrn:
            t0 = time.perf_counter()
            path = folded_wrn(tmp, "wrn-20-10", args.wrn_fps, args.clock_mhz, act="srelu", abits=4)
            prep = time.perf_counter() - t0
            p2 = subprocess.run([sys.executable, "-c", WRN_CHILD, str(path)], capture_output=True, text=True,
                                timeout=1800, check=True)
            w = json.loads(p2.stdout.strip().splitlines()[-1])
            w.update({"export_and_fold_seconds": prep, "folded_for_fps": args.wrn_fps,
                      "goal_seconds": GOAL_WRN_S, "goal_gib": GOAL_WRN_GIB,
                      "meets_goal": w["seconds"] < GOAL_WRN_S and w["peak_bytes"] < GOAL_WRN_GIB * 2**30})
            result["wrn_20_10_one_frame"] = w
            print(f"WRN-20-10, one frame ({w['layers']} layers, {w['events_per_frame']:,} events): "
                  f"{w['seconds']:.2f} s, peak {w['peak_bytes'] / 2**30:.2f} GiB (fresh process); II "
                  f"{w['ii']:,} cycles")
    out = args.out or RESULTS_DIR / "sim_speed.json"
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
