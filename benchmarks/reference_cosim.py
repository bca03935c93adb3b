"""FINN's reference BNNs (Brevitas' ``bnn_pynq`` TFC, SFC, LFC and CNV; random weights) through the RTL: lowered
with ``--input-type UINT8 --input-scale 1/255``, folded for ``--fps`` at the clock, then co-simulated in
Verilator against the reference executor (every edge, bit-exact) and the simulator (every beat, cycle-exact).

CI co-simulates TFC-W1A1 and TFC-W2A2 (``tests/test_reference_nets.py``); the larger nets, the CNVs above all,
are here. No synthesis: ``benchmarks/hw.py`` places and routes.

    python benchmarks/reference_cosim.py [--nets cnv_1w1a cnv_2w2a ...] [--fps 1000] [--frames 2]

Writes ``benchmarks/results/reference_cosim.json`` (``--out``): per net, its fold (II, frames/s), whether the
RTL is bit-exact and cycle-exact, and the lower, Verilator compile and simulation times.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, command_line, machine_info, write_json  # noqa: E402

NETS = ["tfc_1w1a", "tfc_1w2a", "tfc_2w2a", "sfc_1w1a", "sfc_1w2a", "sfc_2w2a", "lfc_1w1a", "lfc_1w2a",
        "cnv_1w1a", "cnv_1w2a", "cnv_2w2a"]


def export_reference(name: str, path: Path) -> Path:
    """The net with random weights and BN statistics settled on random batches (as FINN's tests build it)."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    torch.manual_seed(0)
    model, _ = model_with_cfg(name, pretrained=False)
    shape = (3, 32, 32) if name.startswith("cnv") else (1, 28, 28)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(32, *shape))
    with contextlib.redirect_stdout(io.StringIO()):
        export_qonnx(model.eval(), torch.randn(1, *shape), str(path))
    return path


def run_net(name: str, folder: Path, fps: float, clock_mhz: float, frames: int) -> dict:
    from onebit.export.dataflow.folding_search import fold_for_target
    from onebit.export.dataflow.graph import load_dataflow
    from onebit.export.pipeline import DATAFLOW_FILE, lower_file
    from onebit.hw.build import build

    t0 = time.perf_counter()
    onnx_path = export_reference(name, folder / f"{name}.onnx")
    report = lower_file(onnx_path, folder / name, frames=8, input_type="UINT8", input_scale="1/255")
    t_lower = time.perf_counter() - t0
    folded, fold = fold_for_target(load_dataflow(folder / name / DATAFLOW_FILE), fps, clock_mhz)
    graph = folder / f"{name}.folded.onnx"
    graph.write_bytes(folded.model.SerializeToString())
    t1 = time.perf_counter()
    r = build(graph, folder / f"{name}-build", clock_mhz=clock_mhz, frames=frames, synth=False, log=print)
    c = r["cosim"]
    return {"net": name, "lowered_identical": report["integer_vs_dataflow"],
            "ii_cycles": fold["totals"]["ii_cycles"], "fps_at_clock": fold["totals"]["fps"],
            "lut_estimate": fold["totals"]["LUT"], "frames": frames,
            "cosim_bit_exact": c["outputs_equal"], "cosim_cycles_equal_simulator": c["cycles_equal"],
            "lower_s": round(t_lower, 1), "build_and_cosim_s": round(time.perf_counter() - t1, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", nargs="+", default=NETS, choices=NETS)
    p.add_argument("--fps", type=float, default=1000.0, help="frames/s each net is folded for (default 1000)")
    p.add_argument("--clock-mhz", type=float, default=100.0)
    p.add_argument("--frames", type=int, default=2, help="frames co-simulated per net (default 2)")
    p.add_argument("--out", default=str(RESULTS_DIR / "reference_cosim.json"))
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.nets:
            print(f"[reference_cosim] {name} ...", flush=True)
            r = run_net(name, Path(tmp), args.fps, args.clock_mhz, args.frames)
            rows.append(r)
            print(f"[reference_cosim] {name}: II {r['ii_cycles']:,} cycles, bit-exact {r['cosim_bit_exact']}, "
                  f"cycle-exact {r['cosim_cycles_equal_simulator']}, {r['build_and_cosim_s']} s", flush=True)
    write_json(Path(args.out), {"benchmark": "reference_cosim", "fps_target": args.fps, "clock_mhz": args.clock_mhz,
                                "nets": rows, "all_exact": all(r["cosim_bit_exact"] and
                                                               r["cosim_cycles_equal_simulator"] for r in rows),
                                "machine": machine_info(), "command": command_line()})


if __name__ == "__main__":
    main()
