"""Simulator speed: against Verilator on the same design, and one frame of WRN-20-10.

Part 1 (ratio): the tiny WRN (random weights, seed 0) folded for ``--target-fps``, with the FIFO depths the
hardware build uses; ``--frames`` frames through the generated RTL under Verilator (compiled without traces;
compile time reported apart) and through the simulator: its timing alone (``onebit sim --frames N``: a few
frames simulated until the schedule provably repeats, the rest extended exactly) and with the bit-exact
outputs of every frame. Each is the best of ``--repeats`` runs: Verilator's in fresh processes, the
simulator's in a fresh process of its own that has not imported torch (as ``onebit sim`` runs), after one
one-frame warm-up call. Prints both ratios and checks that outputs and every frame's completion cycle agree.

Part 2 (scale): one frame of the full WRN-20-10 (26.7M 1-bit weights, random) folded for ``--wrn-fps``:
simulation wall time and the peak memory of a fresh process (goals: under 10 s on 2 cores, under 4 GiB).

    python benchmarks/sim_speed.py [--frames 200] [--target-fps 2000] [--repeats 3] [--skip-wrn]
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
from onebit.sim.simulation import simulate
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


SIM_CHILD = r"""
import json, sys, time
import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from onebit.sim.simulation import simulate
graph, depths_file, inputs_file, repeats, out, out_t = sys.argv[1:7]
model = ModelWrapper(graph)
depths = json.load(open(depths_file))
x = np.load(inputs_file)
simulate(model, inputs=x[:1], depths=depths, fifo_sizing=False)  # warm-up (first calls, caches)
timing_s, outputs_s = [], []
for _ in range(int(repeats)):
    t0 = time.perf_counter()
    timing = simulate(model, frames=len(x), depths=depths, fifo_sizing=False)  # what 'onebit sim --frames N' does
    timing_s.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    res = simulate(model, inputs=x, depths=depths, fifo_sizing=False)  # plus bit-exact outputs of every frame
    outputs_s.append(time.perf_counter() - t0)
np.savez(out, outputs=res.outputs[out_t], done=res.done, timing_done=timing.done)
print(json.dumps({"timing_seconds": timing_s, "outputs_seconds": outputs_s, "simulated_frames": timing.simulated_frames,
                  "steady": timing.steady, "ii": res.ii, "latency": res.latency}))
"""


def ratio_part(folder: Path, frames: int, target_fps: float, clock_mhz: float, repeats: int) -> dict:
    from qonnx.core.modelwrapper import ModelWrapper

    from onebit.hw import verilator
    from onebit.export.dataflow.graph import random_frames as random_inputs
    from onebit.hw.encode import hex_beats
    from onebit.hw.top import generate

    path = folded_wrn(folder, "tiny", target_fps, clock_mhz, in_channels=1, size=8)
    model = ModelWrapper(str(path))
    x = random_inputs(model, frames)
    design = generate(model, folder / "hw")
    (folder / "depths.json").write_text(json.dumps(design.depth_map()))
    np.save(folder / "inputs.npy", x)
    child = subprocess.run([sys.executable, "-c", SIM_CHILD, str(path), str(folder / "depths.json"),
                            str(folder / "inputs.npy"), str(repeats), str(folder / "sim.npz"), design.out_edge.tensors[0]],
                           capture_output=True, text=True, timeout=1800, check=True)
    sim = json.loads(child.stdout.strip().splitlines()[-1])
    got_sim = np.load(folder / "sim.npz")
    timing_s, sim_s = min(sim["timing_seconds"]), min(sim["outputs_seconds"])
    t0 = time.perf_counter()
    exe = verilator.build(design, frames, taps=False)
    compile_s = time.perf_counter() - t0
    best = None
    for _ in range(repeats):
        trace = verilator.run(design, exe, x, max_cycles=int(got_sim["done"][-1] * 2 + 1000))
        best = trace if best is None or trace.seconds < best.seconds else best
    op = design.layers[design.out_edge.producer].op
    got = hex_beats(best.out_hex, op.output_dtype(), op.fold_of_output()).ravel()
    want = got_sim["outputs"].ravel()
    rtl_done = best.out_cycles.reshape(frames, -1)[:, -1] + 1
    return {"design": "tiny WRN-8-1 (4-bit srelu), folded for "
                      f"{target_fps:g} frames/s at {clock_mhz:g} MHz", "graph_layers": len(design.layers),
            "frames": frames, "repeats": repeats, "cycles": int(best.cycles), "sim_timing_seconds": timing_s,
            "sim_timing_simulated_frames": sim["simulated_frames"], "sim_steady_state": sim["steady"],
            "sim_with_outputs_seconds": sim_s, "sim_timing_runs": sim["timing_seconds"],
            "sim_with_outputs_runs": sim["outputs_seconds"], "ratio_timing": best.seconds / timing_s,
            "verilator_run_seconds": best.seconds, "verilator_compile_seconds": compile_s,
            "verilator_cycles_per_second": best.cycles / best.seconds,
            "ratio_with_outputs": best.seconds / sim_s, "outputs_equal": bool(np.array_equal(got, want)),
            "frame_done_equal": bool(np.array_equal(rtl_done, got_sim["done"])
                                     and np.array_equal(rtl_done, got_sim["timing_done"])),
            "ii": sim["ii"], "latency": sim["latency"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--target-fps", type=float, default=2000.0)
    p.add_argument("--wrn-fps", type=float, default=100.0)
    p.add_argument("--clock-mhz", type=float, default=100.0)
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs, for both simulators")
    p.add_argument("--skip-wrn", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    result = {"command": command_line(), "machine": machine_info()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        r = ratio_part(tmp, args.frames, args.target_fps, args.clock_mhz, args.repeats)
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
