"""Pinned bitstreams for real boards: the board-level design (accelerator, UART host link, PLL, LEDs) placed and
routed on each board's FPGA with the constraint file from its profile, and checked on its virtual board.

Designs (random weights; nothing here depends on training):
- ``tiny``: the tiny WRN (WRN-8-1, 1-bit weights, 4-bit shifted ReLU, 8x8x1 input) folded for ``--fps``;
- ``mlp``: a small 1-bit MLP for the small FPGAs (64 -> 64 -> 10, 2-bit activations, 8x8x1 UINT8 input), built
  with plain Brevitas and lowered with ``onebit lower``.

Each pair ``BOARD:DESIGN`` is built with ``onebit.hw.build(..., board=...)``: RTL, Verilator co-simulation,
``--frames`` random frames through the virtual board with ``onebit infer``'s protocol code, then Yosys, nextpnr and
the family's packer. Per board: the constraint file's pins checked against the profile, resources and what they
use of the device, fmax of each clock (accelerator and link), the link's frames/s beside the accelerator's,
the bitstream's size, and the tool times.

    python benchmarks/board.py [--builds ulx3s-85f:tiny icebreaker:mlp tang-nano-9k:mlp] [--clock-mhz 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import RESULTS_DIR, command_line, machine_info, write_json
from _graphs import folded_wrn

DEFAULT_BUILDS = ["ulx3s-85f:tiny", "icebreaker:mlp", "tang-nano-9k:mlp"]


def mlp_graph(folder: Path, fps: float, clock_mhz: float) -> Path:
    import contextlib
    import io

    import brevitas.nn as qnn
    import torch
    from brevitas.export import export_qonnx
    from brevitas.quant import SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat
    from torch import nn

    from onebit.export.dataflow.folding_search import fold_for_target
    from onebit.export.dataflow.graph import load_dataflow
    from onebit.export.pipeline import DATAFLOW_FILE, lower_file

    torch.manual_seed(0)
    w = dict(weight_quant=SignedBinaryWeightPerTensorConst, bias=False)
    model = nn.Sequential(qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True), nn.Flatten(),
                          qnn.QuantLinear(64, 64, **w), nn.BatchNorm1d(64),
                          qnn.QuantReLU(bit_width=2, return_quant_tensor=True), qnn.QuantLinear(64, 10, **w))
    bn = model[3]
    bn.running_mean.copy_(torch.randn(64))
    bn.running_var.copy_(torch.rand(64) * 2 + 0.5)
    with contextlib.redirect_stdout(io.StringIO()):
        export_qonnx(model.eval(), torch.rand(1, 1, 8, 8), export_path=str(folder / "mlp.onnx"))
    lower_file(folder / "mlp.onnx", folder / "mlp", frames=4)
    folded, _ = fold_for_target(load_dataflow(folder / "mlp" / DATAFLOW_FILE), fps, clock_mhz)
    path = folder / "mlp.folded.onnx"
    folded.save(str(path))
    return path


def pins_match(board, text: str) -> bool:
    from onebit.hw.boards import parse_constraints

    pins = parse_constraints(board.family, text)
    return (pins.get("clk_osc") == board.clock.site and pins.get("uart_rx") == board.uart_rx.site
            and pins.get("uart_tx") == board.uart_tx.site)


def run_board(board_name: str, design: str, graph: Path, out: Path, clock_mhz: float, frames: int) -> dict:
    from onebit.errors import OnebitError
    from onebit.hw.boards import check_board
    from onebit.hw.build import build

    board = check_board(board_name)
    t0 = time.perf_counter()
    head = {"board": board.name, "design": design, "device": board.device, "part": board.part}
    try:
        r = build(graph, out, clock_mhz=clock_mhz, frames=frames, board=board, board_frames=frames, log=print)
    except OnebitError as e:  # a design that does not fit, a clock the PLL cannot make: the refusal is the result
        return {**head, "error": str(e), "seconds": round(time.perf_counter() - t0, 1)}
    s, b = r.get("synth", {}), r["board"]
    em = b["emulation"]
    bit = out / "synth" / s["bitstream"] if s.get("bitstream") else None
    return {**head, "clock_mhz": clock_mhz, "accelerator_clock_mhz": b["accelerator_clock_mhz"], "baud": b["baud"],
            "constraints": b["constraints"],
            "constraint_pins_match_profile": pins_match(board, (out / "rtl" / b["constraints"]).read_text()),
            "cosim_bit_exact": r["cosim"]["outputs_equal"], "cosim_cycles_equal_simulator": r["cosim"]["cycles_equal"],
            "virtual_board_frames": em["frames"], "virtual_board_outputs_equal": em["outputs_equal"],
            "virtual_board_seconds": em["seconds"],
            "link_frames_per_second": b["link_frames_per_second"],
            "accelerator_frames_per_second": b["accelerator_frames_per_second"], "limited_by": b["limited_by"],
            "ii_cycles": r["ii_cycles"], "resources": s.get("resources"), "utilisation": s.get("utilisation"),
            "fmax_mhz": s.get("fmax_mhz"), "clocks": s.get("clocks"), "timing_met": s.get("timing_met"),
            "bitstream": s.get("bitstream"), "bitstream_bytes": bit.stat().st_size if bit and bit.is_file() else None,
            "step_seconds": {**r["seconds"], **{f"synth_{k}": v for k, v in s.get("seconds", {}).items()}},
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--builds", nargs="+", default=DEFAULT_BUILDS, help="BOARD:DESIGN pairs (designs: tiny, mlp)")
    p.add_argument("--clock-mhz", type=float, default=50.0, help="accelerator clock (through each board's PLL)")
    p.add_argument("--fps", type=float, default=1000.0, help="folding target of every design")
    p.add_argument("--frames", type=int, default=8, help="random frames co-simulated and run on the virtual board")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for spec in args.builds:
            board_name, _, design = spec.partition(":")
            if design not in ("tiny", "mlp"):
                raise SystemExit(f"error: --builds: {spec!r}: expected BOARD:tiny or BOARD:mlp")
            work = tmp / f"{board_name}-{design}"
            work.mkdir()
            if design == "tiny":
                graph = folded_wrn(work, "tiny", args.fps, args.clock_mhz, in_channels=1, size=8)
            else:
                graph = mlp_graph(work, args.fps, args.clock_mhz)
            results.append(run_board(board_name, design, graph, work / "hw", args.clock_mhz, args.frames))
            r = results[-1]
            if "error" in r:
                print(f"{spec}: {r['error']}")
                continue
            res = r["resources"] or {}
            clocks = ", ".join(f"{k} {c['fmax_mhz']:.1f} MHz (target {c['target_mhz']:g})"
                               for k, c in (r["clocks"] or {}).items())
            print(f"{spec} ({r['device']}): LUT {res.get('luts')}, FF {res.get('ffs')}, BRAM {res.get('bram')}; "
                  f"fmax {clocks or r['fmax_mhz']}; pins match the profile {r['constraint_pins_match_profile']}; "
                  f"virtual board equal on {r['virtual_board_frames']} frames {r['virtual_board_outputs_equal']}; "
                  f"link {r['link_frames_per_second']:,.0f} frames/s at {r['baud']:,} baud vs accelerator "
                  f"{r['accelerator_frames_per_second']:,.0f}: limited by the {r['limited_by']}; bitstream "
                  f"{r['bitstream_bytes']:,} bytes; {r['seconds']:.0f} s")
    out = args.out or RESULTS_DIR / "board.json"
    write_json(out, {"command": command_line(), "machine": machine_info(), "results": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
