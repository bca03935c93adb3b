"""Hardware figures with the open toolchain: resources, fmax, II and frames/s, and Verilator's speed.

Designs (random weights; nothing here depends on training):
- ``tiny``: the tiny WRN (WRN-8-1, 1-bit weights, 4-bit shifted ReLU, 8x8x1 digits input), folded for each
  of ``--tiny-fps`` (default 1,000 and 5,000 frames/s) at the clock;
- ``cnv``: a CNV-like net as in FINN's examples -- 6 conv (3x3, no padding, max-pool after the 2nd and 4th)
  + 3 fully connected layers, 1-bit weights, 2-bit activations, 32x32x3 input -- built with plain Brevitas and
  lowered with ``onebit lower``; channel widths are FINN's CNV (64/128/256, fc 512) times ``--cnv-width``.

Each is built with ``onebit.hw.build`` (RTL, Verilator co-simulation checked bit-exact and cycle-exact against
the simulator, Yosys + nextpnr + ecppack) for ``--device``.

    python benchmarks/hw.py [--designs tiny cnv] [--device ecp5-25k] [--clock-mhz 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import RESULTS_DIR, command_line, machine_info, write_json
from _graphs import folded_wrn


def cnv_model(width: float):
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat
    from torch import nn

    c = [max(4, int(round(k * width))) for k in (64, 64, 128, 128, 256, 256, 512, 512)]
    w = dict(weight_quant=SignedBinaryWeightPerTensorConst, bias=False)

    def act():
        return qnn.QuantReLU(bit_width=2, return_quant_tensor=True)

    layers = [qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True)]
    cin = 3
    for i, cout in enumerate(c[:6]):
        layers += [qnn.QuantConv2d(cin, cout, 3, **w), nn.BatchNorm2d(cout), act()]
        if i in (1, 3):
            layers.append(nn.MaxPool2d(2))
        cin = cout
    layers.append(nn.Flatten())
    cin = c[5]  # 32 -> 30 -> 28 -> 14 -> 12 -> 10 -> 5 -> 3 -> 1
    for cout in c[6:]:
        layers += [qnn.QuantLinear(cin, cout, **w), nn.BatchNorm1d(cout), act()]
        cin = cout
    layers.append(qnn.QuantLinear(cin, 10, **w))
    model = nn.Sequential(*layers)
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 2 + 0.5)
    return model.eval(), c


def cnv_graph(folder: Path, width: float, fps: float, clock_mhz: float) -> tuple[Path, list]:
    import torch
    from brevitas.export import export_qonnx

    from onebit.export.dataflow.folding_search import fold_for_target
    from onebit.export.dataflow.graph import load_dataflow
    from onebit.export.pipeline import DATAFLOW_FILE, lower_file

    torch.manual_seed(0)
    model, widths = cnv_model(width)
    export_qonnx(model, torch.rand(1, 3, 32, 32), export_path=str(folder / "cnv.onnx"))
    lower_file(folder / "cnv.onnx", folder / "cnv", frames=4)
    folded, _ = fold_for_target(load_dataflow(folder / "cnv" / DATAFLOW_FILE), fps, clock_mhz)
    path = folder / "cnv.folded.onnx"
    folded.save(str(path))
    return path, widths


def run_design(name: str, graph: Path, out: Path, device: str, clock_mhz: float, frames: int) -> dict:
    from onebit.errors import OnebitError
    from onebit.hw.build import build

    t0 = time.perf_counter()
    try:
        r = build(graph, out, device=device, clock_mhz=clock_mhz, frames=frames, log=print)
    except OnebitError as e:  # e.g. a design that does not fit: the refusal is the result
        return {"design": name, "device": device, "error": str(e), "seconds": time.perf_counter() - t0}
    s = r.get("synth", {})
    c = r["cosim"]
    return {"design": name, "device": device, "clock_mhz": clock_mhz, "layers": r["rtl"]["layers"],
            "ii_cycles": r["ii_cycles"], "latency_cycles": r["latency_cycles"],
            "cosim_bit_exact": c["outputs_equal"], "cosim_cycles_equal_simulator": c["cycles_equal"],
            "verilator_cycles_per_second": c["verilator_cycles_per_second"], "resources": s.get("resources"),
            "utilisation": s.get("utilisation"), "fmax_mhz": s.get("fmax_mhz"), "timing_met": s.get("timing_met"),
            "frames_per_second_at_fmax": r.get("frames_per_second"), "latency_us_at_fmax": r.get("latency_us"),
            "bitstream_bytes": (out / "synth" / s["bitstream"]).stat().st_size if s.get("bitstream") else None,
            "step_seconds": {**r["seconds"], **{f"synth_{k}": v for k, v in s.get("seconds", {}).items()}},
            "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--designs", nargs="+", default=["tiny", "cnv"], choices=["tiny", "cnv"])
    p.add_argument("--device", default="ecp5-25k")
    p.add_argument("--cnv-device", default=None, help="device for the CNV (default --device)")
    p.add_argument("--clock-mhz", type=float, default=50.0)
    p.add_argument("--tiny-fps", type=float, nargs="+", default=[1000.0, 5000.0],
                   help="folding targets of the tiny WRN (one design each)")
    p.add_argument("--cnv-width", type=float, default=0.25)
    p.add_argument("--cnv-fps", type=float, default=500.0, help="folding target of the CNV")
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for fps in args.tiny_fps if "tiny" in args.designs else []:
            (tmp / f"tiny{fps:g}").mkdir()
            g = folded_wrn(tmp / f"tiny{fps:g}", "tiny", fps, args.clock_mhz, in_channels=1, size=8)
            r = run_design(f"tiny WRN-8-1 (a4 srelu) for {fps:g} frames/s", g, tmp / f"tiny{fps:g}_hw", args.device,
                           args.clock_mhz, args.frames)
            r["folded_for_fps"] = fps
            results.append(r)
        if "cnv" in args.designs:
            g, widths = cnv_graph(tmp, args.cnv_width, args.cnv_fps, args.clock_mhz)
            r = run_design(f"CNV-like x{args.cnv_width:g} (6 conv + 3 fc, w1 a2)", g, tmp / "cnv_hw",
                           args.cnv_device or args.device, args.clock_mhz, args.frames)
            r.update({"widths": widths, "folded_for_fps": args.cnv_fps})
            results.append(r)
    for r in results:
        if "error" in r:
            print(f"{r['design']} on {r['device']}: {r['error']}")
            continue
        res = r["resources"] or {}
        print(f"{r['design']} on {r['device']}: LUT {res.get('luts')}, FF {res.get('ffs')}, BRAM {res.get('bram')}, "
              f"DSP {res.get('dsp')}; fmax {r['fmax_mhz']:.1f} MHz; II {r['ii_cycles']:,} cycles -> "
              f"{r['frames_per_second_at_fmax']:,.0f} frames/s; Verilator {r['verilator_cycles_per_second']:,} "
              f"cycles/s; co-simulation bit-exact {r['cosim_bit_exact']}, cycles = simulator "
              f"{r['cosim_cycles_equal_simulator']}")
    out = args.out or RESULTS_DIR / "hw.json"
    write_json(out, {"command": command_line(), "machine": machine_info(), "results": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
