"""The verification verdict of a run: every stage compared with the one before it on the same test images.

PyTorch checkpoint = packed 1-bit file; PyTorch = QONNX = integer graph = dataflow graph (export's parity
report); dataflow graph = folded graph in the simulator (computed here); RTL under Verilator = executor and
simulator on every edge and every beat (the hardware build's co-simulation); then timing after place and route.
"""

from __future__ import annotations

import json

import numpy as np

from onebit.flow.engine import Context

PASS, FAIL, WARN, SKIP = "pass", "FAIL", "warning", "not run"


def _row(stage: str, check: str, ok: bool | None, frames, detail: str, soft: bool = False) -> dict:
    verdict = SKIP if ok is None else PASS if ok else WARN if soft else FAIL
    return {"stage": stage, "check": check, "frames": frames, "verdict": verdict, "detail": detail}


def pack_rows(pack: dict) -> list[dict]:
    ok = pack["logits_identical"]
    return [_row("pack", "packed 1-bit file = PyTorch checkpoint (logits)", ok, pack["frames"],
                 "identical logits" if ok else "logits differ")]


def export_rows(parity: dict) -> list[dict]:
    n = parity["frames"]
    rows = []
    pq = parity.get("pytorch_vs_qonnx")
    if pq:  # export_run refuses a difference over its tolerance, so reaching here means within it
        rows.append(_row("export", "PyTorch = QONNX execution", True, n,
                         f"max |logit diff| {pq['max_abs_diff']:.1e}, argmax agree "
                         f"{100 * pq['argmax_agreement']:.1f} %"))
    qi = parity["qonnx_vs_integer"]
    rows.append(_row("export", "QONNX = integer graph", True, n, f"max |diff| {qi['max_abs_diff']:.1e}"))
    pi = parity.get("pytorch_integer_view_vs_integer")
    if pi:
        rows.append(_row("export", "PyTorch integer scores = integer graph", pi["identical"], n,
                         "identical" if pi["identical"] else f"{pi['differing_scores']} scores differ"))
    idf = parity["integer_vs_dataflow"]
    ok = idf["scores_identical"] and idf["labels_identical"]
    rows.append(_row("export", "integer graph = dataflow graph (scores, labels)", ok, n,
                     "identical" if ok else "scores or labels differ"))
    return rows


def sim_rows(unfolded: dict[str, np.ndarray], sim: dict[str, np.ndarray]) -> list[dict]:
    n = int(len(sim["labels"]))
    rows = []
    for key in ("scores", "labels"):
        a, b = unfolded[key], sim[key]
        ok = a.shape == b.shape and bool(np.array_equal(a, b))
        detail = "identical" if ok else (f"shapes {a.shape} vs {b.shape}" if a.shape != b.shape
                                         else f"{int((a != b).sum())} values differ")
        rows.append(_row("sim", f"dataflow graph = folded graph in the simulator ({key})", ok, n, detail))
    return rows


def hw_rows(build: dict | None, hw: dict) -> list[dict]:
    """``hw``: the run's [hw] configuration."""
    if build is None:
        return [_row("hw", "RTL co-simulation", None, 0, "the hardware stage did not run")]
    c = build.get("cosim", {})
    n = c.get("frames", build.get("frames"))
    first = c.get("mismatches", [])[:1]
    rows = [_row("hw", "RTL (Verilator) = reference executor, every edge", c.get("outputs_equal"), n,
                 "bit-exact" if c.get("outputs_equal") else (first[0] if first else "outputs differ")),
            _row("hw", "RTL cycles = simulator, every beat", c.get("cycles_equal"), n,
                 "cycle-exact" if c.get("cycles_equal") else "cycles differ")]
    if not hw["pnr"]:
        return rows + [_row("hw", "place and route, bitstream", None, None, "not requested ([hw] pnr = false)")]
    synth = build.get("synth") or {}
    fmax, bit = synth.get("fmax_mhz"), synth.get("bitstream")
    clock = hw["clock_mhz"]
    rows.append(_row("hw", f"timing at {clock:g} MHz (nextpnr)", None if fmax is None else fmax >= clock, None,
                     f"fmax {fmax:.1f} MHz" if fmax is not None else "no fmax reported", soft=True))
    rows.append(_row("hw", "bitstream", bool(bit) if synth else None, None,
                     f"hw/synth/{bit}" if bit else "not written"))
    return rows


def _load_json(ctx: Context, rel: str) -> dict | None:
    p = ctx.path(rel)
    return json.loads(p.read_text()) if p.is_file() else None


def _unfolded_outputs(ctx: Context, graph: str, frames: str) -> dict[str, np.ndarray]:
    from onebit.export.dataflow import graph as dfg
    from onebit.export.dataflow.executor import execute_frames

    model = dfg.load_dataflow(ctx.path(graph))
    out = execute_frames(model, np.load(ctx.path(frames), allow_pickle=False))
    return {"labels": out[model.graph.output[0].name], "scores": out[dfg.scores_name(model)]}


def verify_run(ctx: Context, files: dict[str, str]) -> dict:
    """``files``: the run-folder paths of pack, parity, dataflow, frames, sim_outputs and build."""
    with np.load(ctx.path(files["sim_outputs"]), allow_pickle=False) as npz:
        sim = {k: npz[k] for k in npz.files}
    checks = [*pack_rows(_load_json(ctx, files["pack"])), *export_rows(_load_json(ctx, files["parity"])),
              *sim_rows(_unfolded_outputs(ctx, files["dataflow"], files["frames"]), sim),
              *hw_rows(_load_json(ctx, files["build"]), ctx.cfg["hw"])]
    return {"passed": all(c["verdict"] != FAIL for c in checks), "checks": checks}
