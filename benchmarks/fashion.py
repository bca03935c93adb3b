"""Fashion-MNIST end to end: a trained 1-bit WRN to an ECP5 bitstream, every check on the whole test set.

Runs ``onebit run --checkpoint RUN --data fashion-mnist --device DEVICE`` (the same command a user runs) with
``[hw] cosim_seconds`` large enough that the RTL's output co-simulation in Verilator covers every test image, and
records what each stage checked on how many frames, the accuracies (PyTorch, the packed model, the dataflow
graph, the simulator, the RTL), the hardware (resources, fmax, frames/s) and each stage's time.

    python benchmarks/fashion.py [--run benchmarks/results/accuracy/fashion-mnist-wrn-8-2/trained/1bit-srelu-a4-seed0]
                                 [--device ecp5-85k] [--frames N] [--no-pnr] [--out-dir DIR]

``--frames N`` checks the first N test images only (a quick look; the committed result uses all of them). The
run folder (``--out-dir``, default a temporary one) keeps the bitstream and the reports.
Output: ``benchmarks/results/fashion_bitstream.json`` (``--out``).
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

from _common import BENCH_DIR, RESULTS_DIR, command_line, machine_info, write_json

DEFAULT_RUN = BENCH_DIR / "results" / "accuracy" / "fashion-mnist-wrn-8-2" / "trained" / "1bit-srelu-a4-seed0"


def onebit_run(run: Path, out: Path, device: str, frames: int | None, pnr: bool) -> dict:
    config = out.parent / f"{out.name}-config.toml"
    config.write_text(f"[hw]\ncosim_seconds = 1e7\npnr = {'true' if pnr else 'false'}\n")
    cmd = [sys.executable, "-m", "onebit", "run", "--config", str(config), "--checkpoint", str(run), "--data",
           "fashion-mnist", "--device", device, "--out", str(out), "--json", "-q",
           *(["--frames", str(frames)] if frames else [])]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: onebit run failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    result = json.loads(proc.stdout)
    result["seconds"] = round(seconds, 1)
    return result


def accuracies(out: Path, results: dict) -> dict:
    """Test accuracy as each stage computes it, on the frames it checked."""
    labels = np.load(out / "export" / "labels.npy")
    sim_labels = np.load(out / "sim" / "outputs.npz")["labels"].reshape(len(labels))
    hw = results["hw"]
    sim_acc = float((sim_labels == labels).mean())
    return {"pytorch_float_logits": results["train"]["test_acc"], "packed_model": results["pack"]["test_acc"],
            "simulator": sim_acc,
            # the RTL's label of every frame it ran equals the simulator's (the check is bit for bit)
            "rtl": sim_acc if hw["outputs_exact"] and hw["output_frames"] == len(labels) else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=DEFAULT_RUN, help="the trained run (onebit train / accuracy.py)")
    p.add_argument("--device", default="ecp5-85k")
    p.add_argument("--frames", type=int, default=None, help="test images checked (default: all)")
    p.add_argument("--no-pnr", dest="pnr", action="store_false", help="synthesis only, no place and route")
    p.add_argument("--out-dir", type=Path, default=None, help="run folder to keep (default: a temporary one)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "fashion_bitstream.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out_dir or Path(tmp) / "run"
        out.parent.mkdir(parents=True, exist_ok=True)
        r = onebit_run(args.run, out, args.device, args.frames, args.pnr)
        rec = record(args.run, args.device, out, r)
    write_json(args.out, {"command": command_line(), "machine": machine_info(), "result": rec})
    print(json.dumps(rec, indent=2, default=str))
    print(f"wrote {args.out}")


def record(run: Path, device: str, out: Path, r: dict) -> dict:
    """The benchmark's record of one `onebit run --json` (``r``) in the run folder ``out``."""
    res = r["results"]
    acc = accuracies(out, res)
    build = json.loads((out / "hw" / "build.json").read_text())
    hw, export, sim = res["hw"], res["export"], res["sim"]
    synth = build.get("synth") or {}
    outputs = build.get("cosim_outputs") or {}
    root = BENCH_DIR.parent
    return {
        "run": str(run.resolve().relative_to(root)) if run.resolve().is_relative_to(root) else str(run),
        "device": device, "test_images": export["frames"], "arch": export.get("arch"),
        "checks": {"pack": {"frames": res["pack"]["frames"], "logits_identical": res["pack"]["logits_identical"]},
                   "export": {k: export[k] for k in export if k.endswith("_vs_integer") or k.startswith("pytorch")
                              or k in ("integer_vs_dataflow", "labels_vs_dataset", "frames")},
                   "sim": {"frames": sim["frames"]},
                   "rtl_edges": {"frames": hw["frames"], "outputs_equal": hw["outputs_equal"],
                                 "cycles_equal": hw["cycles_equal"]},
                   "rtl_outputs": {"frames": hw["output_frames"], "of": hw["output_frames_of"],
                                   "bit_exact_and_cycle_exact": hw["outputs_exact"],
                                   "verilator_seconds": outputs.get("verilator_seconds"),
                                   "verilator_runs_at_once": outputs.get("runs", 1),
                                   "verilator_cycles_per_second": outputs.get("verilator_cycles_per_second")},
                   "verify_passed": res["verify"]["passed"]},
        "accuracy": acc,
        "fold": {k: res["fold"].get(k) for k in ("ii_cycles", "fps", "LUT")},
        "hardware": {"resources": synth.get("resources"), "utilisation": synth.get("utilisation"),
                     "fmax_mhz": synth.get("fmax_mhz"), "timing_met": synth.get("timing_met"),
                     "clock_mhz": build.get("clock_mhz"), "frames_per_second": build.get("frames_per_second"),
                     "bitstream_bytes": (out / "hw" / "synth" / synth["bitstream"]).stat().st_size
                     if synth.get("bitstream") else None,
                     "frames_per_second_at_clock": build.get("frames_per_second_at_clock"), "critical_paths": synth.get("critical_paths")},
        "stage_seconds": {row["stage"]: row.get("seconds") for row in r["stages"]},
        "hw_step_seconds": build.get("seconds"), "tool_seconds": synth.get("seconds"),
        "seconds": r.get("seconds"),
    }


if __name__ == "__main__":
    main()
