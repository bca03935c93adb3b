"""Wall time of export + lowering for WRN-20-10 on CPU (goal: under 60 s).

Measures, for a WRN-20-10 with 1-bit weights and k-bit activations (random weights): the Brevitas QONNX export,
qonnx clean-up, lowering to the integer graph and conversion to the dataflow graph -- the export path
itself. The parity executions that ``onebit export`` runs afterwards on a batch are timed separately and
checked (the chain must be identical on the batch).

    python benchmarks/export_speed.py [--arch wrn-20-10] [--abits 4] [--act srelu] [--frames 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import RESULTS_DIR, command_line, format_table, machine_info, write_json

GOAL_S = 60.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="wrn-20-10")
    p.add_argument("--act", default="srelu", choices=["srelu", "bn-relu"])
    p.add_argument("--abits", type=int, default=4)
    p.add_argument("--frames", type=int, default=2, help="frames for the parity check after the export")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    import torch

    from onebit.export import graphs
    from onebit.export.dataflow.convert import to_dataflow
    from onebit.export.integer import to_integer_graph
    from onebit.export.pipeline import Passes, lower_and_check
    from onebit.export.qonnx_export import export_qonnx
    from onebit.training.config import parse_arch
    from onebit.training.model import build_model

    torch.manual_seed(args.seed)
    cfg = parse_arch(args.arch, act=args.act, abits=args.abits)
    model = build_model(cfg).eval()
    if args.act == "bn-relu":  # non-trivial thresholds
        gen = torch.Generator().manual_seed(args.seed)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    size = cfg.image_size
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        t0 = time.perf_counter()
        export_qonnx(model, torch.zeros(1, cfg.in_channels, size, size), path)
        times["qonnx_export"] = time.perf_counter() - t0
        t = time.perf_counter()
        qonnx = graphs.clean(graphs.load_onnx(path))
        times["clean"] = time.perf_counter() - t
        t = time.perf_counter()
        integer = to_integer_graph(qonnx)
        times["lower_to_integer"] = time.perf_counter() - t
        t = time.perf_counter()
        dataflow = to_dataflow(integer)
        times["to_dataflow"] = time.perf_counter() - t
        total = time.perf_counter() - t0

        rng = np.random.default_rng(args.seed)
        codes = rng.integers(0, 256, size=(args.frames, cfg.in_channels, size, size)).astype(np.float32)
        with torch.no_grad():
            logits = model(torch.from_numpy(codes / np.float32(255))).numpy()
        passes = Passes()
        t = time.perf_counter()
        _, _, report = lower_and_check(qonnx, codes, codes / np.float32(255), passes, logits)
        parity_s = time.perf_counter() - t

    result = {
        "benchmark": "export_speed",
        "command": command_line(),
        "arch": cfg.describe(),
        "params": sum(p.numel() for p in model.parameters()),
        "dataflow_nodes": len(dataflow.graph.node),
        "seconds": {k: round(v, 3) for k, v in times.items()},
        "export_and_lowering_s": round(total, 3),
        "goal_s": GOAL_S,
        "meets_goal": total < GOAL_S,
        "parity": {"frames": args.frames, "seconds": round(parity_s, 3),
                   "pass_seconds": passes.times,
                   "pytorch_integer_view_identical": report["pytorch_integer_view_vs_integer"]["identical"],
                   "dataflow_scores_identical": report["integer_vs_dataflow"]["scores_identical"]},
        "machine": machine_info("cpu"),
    }
    out = args.out or RESULTS_DIR / f"export_speed_{cfg.name}_{args.act}_a{args.abits}.json"
    write_json(out, result)
    rows = [[k, f"{v:.2f}"] for k, v in times.items()] + [["export + lowering", f"{total:.2f}"],
                                                           [f"parity check ({args.frames} frames)", f"{parity_s:.2f}"]]
    print(format_table(["pass", "seconds"], rows))
    print(f"{cfg.describe()}: export + lowering {total:.1f} s (goal < {GOAL_S:.0f} s); chain identical: "
          f"{result['parity']['dataflow_scores_identical'] and result['parity']['pytorch_integer_view_identical']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
