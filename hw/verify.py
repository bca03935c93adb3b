"""``onebit verify``: the whole chain on the same test images -- PyTorch = QONNX = integer graph = dataflow graph
= simulator = RTL (Verilator) -- with a verdict per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from onebit.atomic import write_json
from onebit.errors import OnebitError
from onebit.export.dataflow import graph as dfg
from onebit.export.dataflow.executor import execute

REPORT_FILE = "verify.json"


def _row(stage: str, ok: bool, detail: str) -> dict:
    return {"stage": stage, "verdict": "identical" if ok else "DIFFERENT", "ok": bool(ok), "detail": detail}


def verify(run: str | Path, out: str | Path, *, frames: int = 8, graph: str | Path | None = None,
           depths: dict | None = None, log: Callable[[str], None] = lambda s: None) -> dict:
    """Verify a trained run on its first ``frames`` test images; ``graph``: the (folded) dataflow graph to
    build (default: the export's unfolded graph). Writes ``out/verify.json``."""
    from onebit.export.pipeline import DATAFLOW_FILE, export_run
    from onebit.hw.cosim import cosimulate
    from onebit.sim.simulation import simulate
    from onebit.training.checkpoint import load_model
    from onebit.training.data import load_dataset

    out = Path(out)
    rows: list[dict] = []
    report: dict = {"run": str(run), "frames": frames, "stages": rows}
    try:
        parity = export_run(run, out / "export", frames=frames, log=log)
    except OnebitError as e:
        rows.append(_row("PyTorch = QONNX = integer = dataflow", False, str(e)))
        return _finish(out, report)
    pq = parity["pytorch_vs_qonnx"]
    rows.append(_row("PyTorch = QONNX", pq["argmax_agreement"] == 1.0,
                     f"max |logit diff| {pq['max_abs_diff']:.2g}, argmax agreement {100 * pq['argmax_agreement']:.1f} %"))
    qi = parity["qonnx_vs_integer"]
    rows.append(_row("QONNX = integer graph", parity["pytorch_integer_view_vs_integer"]["identical"],
                     f"integer scores = PyTorch's integer view; float tail max diff {qi['max_abs_diff']:.2g}"))
    idf = parity["integer_vs_dataflow"]
    rows.append(_row("integer graph = dataflow graph", idf["scores_identical"] and idf["labels_identical"],
                     "scores and labels identical" if idf["scores_identical"] else "scores differ"))
    _, state = load_model(run)
    ds = load_dataset(state.get("train", {}).get("data"))
    x = ds.x_test[:frames].astype(np.float32)  # uint8 NHWC: the dataflow graph's input layout
    model = dfg.load_dataflow(graph or out / "export" / DATAFLOW_FILE)
    ref = execute(model, x)
    label_name = model.graph.output[0].name
    labels = ref[label_name].reshape(len(x), -1)[:, 0].astype(int)
    if graph is not None:
        same = labels.tolist() == parity["predictions"]
        rows.append(_row("dataflow graph = folded graph", same, f"{graph}: labels "
                         + ("identical" if same else "differ")))
    res = simulate(model, inputs=x, depths=depths)
    sim_ok = all(np.array_equal(res.outputs[k], ref[k]) for k in ref)
    rows.append(_row("dataflow graph = simulator", sim_ok, f"{len(x)} frames: outputs and scores bit-exact; II "
                     f"{res.ii} cycles, latency {res.latency} cycles"))
    try:
        cos = cosimulate(model, x, out / "rtl", depths=depths, strict=False)
        rtl_ok = cos.outputs_equal and not cos.mismatches
        rows.append(_row("simulator = RTL (outputs)", rtl_ok, "bit-exact on every edge" if rtl_ok
                         else cos.mismatches[0]))
        rows.append(_row("simulator = RTL (cycles)", cos.cycles_equal, f"every beat's cycle equal; II "
                         f"{cos.rtl.get('ii')} vs {cos.sim.get('ii')}, latency {cos.rtl.get('latency')} vs "
                         f"{cos.sim.get('latency')}" if cos.cycles_equal else
                         (cos.mismatches[-1] if cos.mismatches else "differ")))
        report["cosim"] = cos.as_dict()
    except OnebitError as e:
        rows.append(_row("simulator = RTL", False, str(e)))
    report["test_accuracy"] = float((labels == ds.y_test[:len(x)]).mean())
    return _finish(out, report)


def _finish(out: Path, report: dict) -> dict:
    report["all_identical"] = all(r["ok"] for r in report["stages"])
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / REPORT_FILE, report)
    return report


def format_verify(report: dict) -> list[str]:
    w = max(len(r["stage"]) for r in report["stages"])
    lines = [f"{'stage':<{w}}  verdict    detail"]
    lines += [f"{r['stage']:<{w}}  {r['verdict']:<9}  {r['detail']}" for r in report["stages"]]
    lines.append("verdict: " + ("every stage identical" if report["all_identical"] else "STAGES DIFFER"))
    return lines
