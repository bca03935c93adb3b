"""The verification verdict: every stage compared with the one before it on the same test images.

One row per check, ``{stage, check, frames, verdict, detail}``, its verdict one of pass / FAIL / warning / not run,
each computed from the numbers the stages report: PyTorch checkpoint = packed 1-bit file; PyTorch = QONNX =
integer graph = dataflow graph (the export's parity report, against its tolerance); dataflow graph = simulator;
RTL under Verilator = executor and simulator on every edge and every beat; then timing after place and route.

- :func:`verify_chain`: ``onebit verify``: export, simulator and RTL co-simulation of a trained run;
- :func:`verify_run`: ``onebit run``'s verify stage, from the files the earlier stages wrote;
- :func:`export_rows`: also the parity lines of ``onebit export`` and ``onebit lower``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from onebit.atomic import make_folder, write_json
from onebit.errors import OnebitError, ParityError
from onebit.flow.engine import Context

PASS, FAIL, WARN, SKIP = "pass", "FAIL", "warning", "not run"
REPORT_FILE = "verify.json"


def row(stage: str, check: str, ok: bool | None, frames, detail: str, soft: bool = False) -> dict:
    """``ok`` None: not run; False: FAIL, or a warning where ``soft`` (the design works, a target is missed)."""
    verdict = SKIP if ok is None else PASS if ok else WARN if soft else FAIL
    return {"stage": stage, "check": check, "frames": frames, "verdict": verdict, "detail": detail}


# ----- rows from the stages' reports -------------------------------------------------------------------------
def pack_rows(pack: dict | None) -> list[dict]:
    """None: no packed file (a network of the user's own, lowered from its QONNX file)."""
    if pack is None:
        return []
    ok = pack["logits_identical"]
    return [row("pack", "packed 1-bit file = PyTorch checkpoint (logits)", ok, pack["frames"],
                "identical logits" if ok else "logits differ")]


def _tolerance(pair: dict) -> float:
    if "tolerance" in pair:
        return pair["tolerance"]
    from onebit.export.pipeline import LOGIT_TOLERANCE  # a parity report from before it recorded its tolerance

    return LOGIT_TOLERANCE


def export_rows(parity: dict) -> list[dict]:
    """PyTorch = QONNX = integer graph = dataflow graph; a foreign QONNX file (``onebit lower``) has no PyTorch."""
    n = parity["frames"]
    rows = []
    pq = parity.get("pytorch_vs_qonnx")
    if pq:  # within the tolerance, an argmax that flips is a near-tie of two logits
        tol, agree = _tolerance(pq), pq["argmax_agreement"]
        rows.append(row("export", "PyTorch = QONNX execution", pq["max_abs_diff"] <= tol and agree == 1.0, n,
                        f"max |logit diff| {pq['max_abs_diff']:.1e} (tolerance {tol:.1e}), argmax agree "
                        f"{100 * agree:.1f} %", soft=pq["max_abs_diff"] <= tol))
    qi = parity["qonnx_vs_integer"]
    tol = _tolerance(qi)
    rows.append(row("export", "QONNX = integer graph", qi["max_abs_diff"] <= tol, n,
                    f"max |diff| {qi['max_abs_diff']:.1e} (tolerance {tol:.1e})"))
    pi = parity.get("pytorch_integer_view_vs_integer")
    if pi:
        rows.append(row("export", "PyTorch integer scores = integer graph", pi["identical"], n,
                        "identical" if pi["identical"] else f"{pi['differing_scores']} scores differ"))
    idf = parity["integer_vs_dataflow"]
    ok = idf["scores_identical"] and idf["labels_identical"]
    rows.append(row("export", "integer graph = dataflow graph (scores, labels)", ok, n,
                    "identical" if ok else "scores differ" if not idf["scores_identical"] else "labels differ"))
    return rows


def sim_rows(reference: dict[str, np.ndarray], sim: dict[str, np.ndarray], folded: bool = True) -> list[dict]:
    """The export's dataflow graph (executed) against the simulator's outputs of the graph that was built."""
    n = int(len(sim["labels"]))
    rows = []
    for key in ("scores", "labels"):
        a, b = reference[key], sim[key]
        ok = a.shape == b.shape and bool(np.array_equal(a, b))
        detail = "identical" if ok else (f"shapes {a.shape} vs {b.shape}" if a.shape != b.shape
                                         else f"{int((a != b).sum())} values differ")
        check = "dataflow graph = folded graph in the simulator" if folded else "dataflow graph = simulator"
        rows.append(row("sim", f"{check} ({key})", ok, n, detail))
    return rows


def cosim_rows(cosim: dict | None, frames=None) -> list[dict]:
    """``cosim``: the co-simulation report (``CosimResult.as_dict()``); None: it did not run."""
    if cosim is None:
        return [row("hw", "RTL co-simulation", None, 0, "the hardware stage did not run")]
    n = cosim.get("frames", frames)
    first = cosim.get("mismatches", [])[:1]
    rtl, sim = cosim.get("rtl") or {}, cosim.get("sim") or {}
    cycles = cosim.get("cycles_equal")
    timing = (f"II {rtl.get('ii')} vs {sim.get('ii')}, latency {rtl.get('latency')} vs {sim.get('latency')} "
              f"cycles" if rtl else "")
    return [row("hw", "RTL (Verilator) = reference executor, every edge", cosim.get("outputs_equal"), n,
                "bit-exact" if cosim.get("outputs_equal") else (first[0] if first else "outputs differ")),
            row("hw", "RTL cycles = simulator, every beat", cycles, n,
                ("cycle-exact" if cycles else "cycles differ") + (f"; {timing}" if timing else ""))]


def output_rows(outputs: dict | None) -> list[dict]:
    """``outputs``: the build's output check on the remaining frames (None: there were none)."""
    if not outputs:
        return []
    n, of = outputs["frames"], outputs["of"]
    cover = f"all {of:,} frames" if n == of else (f"{n:,} of {of:,} frames (all would take about "
                                                  f"{outputs['estimate_s']:,.0f} s; [hw] cosim_seconds)")
    first = outputs.get("mismatches", [])[:1]
    exact = outputs.get("outputs_equal") and outputs.get("cycles_equal")
    return [row("hw", "RTL outputs = reference executor, each frame's end cycle = simulator", exact, n,
                (f"bit- and cycle-exact on {cover}" if exact else (first[0] if first else "outputs differ")) +
                f"; Verilator {outputs['verilator_seconds']:.1f} s")]


def hw_rows(build: dict | None, hw: dict) -> list[dict]:
    """``build``: the hardware build's report (None: not run); ``hw``: the run's [hw] configuration."""
    if build is None:
        return cosim_rows(None)
    rows = cosim_rows(build.get("cosim", {}), build.get("frames")) + output_rows(build.get("cosim_outputs"))
    rows += board_rows(build.get("board"))
    if not hw["pnr"]:
        return rows + [row("hw", "place and route, bitstream", None, None, "not requested ([hw] pnr = false)")]
    synth = build.get("synth") or {}
    fmax, bit = synth.get("fmax_mhz"), synth.get("bitstream")
    clock = hw["clock_mhz"]
    detail = f"fmax {fmax:.1f} MHz" if fmax is not None else "no fmax reported"
    failing = synth.get("failing_paths") or []
    if failing:
        from onebit.hw.synth import format_path

        detail += f"; critical path {format_path(failing[0])}"
    rows.append(row("hw", f"timing at {clock:g} MHz (nextpnr)", None if fmax is None else fmax >= clock, None,
                    detail, soft=True))
    rows.append(row("hw", "bitstream", bool(bit) if synth else None, None,
                    f"hw/synth/{bit}" if bit else "not written"))
    return rows


def board_rows(board: dict | None) -> list[dict]:
    """``board``: the build's board section (None: not a board build)."""
    if board is None:
        return []
    check = f"virtual {board['name']} (board-level RTL, UART link, onebit infer) = reference executor"
    em = board.get("emulation")
    if not em:
        return [row("hw", check, None, 0, "did not run (the co-simulation failed first)")]
    if not em["outputs_equal"]:
        return [row("hw", check, False, em["frames"], em.get("mismatch", "outputs differ"))]
    retries = f", {em['retries']} retries" if em.get("retries") else ""
    return [row("hw", check, True, em["frames"],
                f"outputs equal on {em['frames']} frames at {board['baud']:,} baud (bit time scaled to "
                f"{em['scaled_bit_clocks']} link clocks){retries}; link {board['link_frames_per_second']:,.0f} "
                f"frames/s, accelerator {board['accelerator_frames_per_second']:,.0f} frames/s: limited by the "
                f"{board['limited_by']}")]


# ----- the verdict -----------------------------------------------------------------------------------------
def verdict(checks: list[dict]) -> dict:
    failed = [c["check"] for c in checks if c["verdict"] == FAIL]
    return {"passed": not failed, "failed": failed, "checks": checks}


def summary_line(result: dict) -> str:
    return "every check passes" if result["passed"] else f"FAILED: {', '.join(result['failed'])}"


def format_checks(checks: list[dict]) -> list[str]:
    """The checks as a text table, one line each."""
    width = max([len("check")] + [len(c["check"]) for c in checks])
    lines = [f"{'verdict':<8} {'stage':<7} {'check':<{width}}  detail"]
    lines += [f"{c['verdict']:<8} {c['stage']:<7} {c['check']:<{width}}  {c['detail']}" for c in checks]
    return lines


def require_passed(result: dict, report: str | Path) -> None:
    if not result["passed"]:
        raise ParityError(f"verification failed ({', '.join(result['failed'])}); see {report}")


# ----- the graphs' outputs ---------------------------------------------------------------------------------
def graph_outputs(model, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Labels and scores of the reference executor on ``frames``."""
    from onebit.export.dataflow import graph as dfg
    from onebit.export.dataflow.executor import execute_frames

    out = execute_frames(model, frames)
    return {"labels": out[model.graph.output[0].name], "scores": out[dfg.scores_name(model)]}


def simulated_outputs(model, result) -> dict[str, np.ndarray]:
    """Labels and scores of a simulator result (``onebit.sim.network.simulate``)."""
    from onebit.export.dataflow import graph as dfg

    return {"labels": result.outputs[model.graph.output[0].name], "scores": result.outputs[dfg.scores_name(model)]}


# ----- onebit verify ---------------------------------------------------------------------------------------
def verify_chain(run: str | Path, out: str | Path, *, frames: int = 8, graph: str | Path | None = None,
                 depths: dict | None = None, log: Callable[[str], None] = lambda s: None) -> dict:
    """Verify a trained run on its first ``frames`` test images; ``graph``: the (folded) dataflow graph to
    simulate and build (default: the export's unfolded graph). Writes ``out/verify.json``."""
    from onebit.export.dataflow import graph as dfg
    from onebit.export.pipeline import DATAFLOW_FILE, export_run
    from onebit.hw.cosim import cosimulate
    from onebit.sim.simulation import simulate
    from onebit.training.checkpoint import load_trained
    from onebit.training.data import load_dataset

    out = Path(out)
    report: dict = {"run": str(run), "frames": frames}
    # the inputs first: a missing run, data set or graph is the user's mistake, not a stage that differs
    _, state = load_trained(run)
    ds = load_dataset(state.get("train", {}).get("data"))
    folded = dfg.load_dataflow(graph) if graph is not None else None
    try:
        checks = export_rows(export_run(run, out / "export", frames=frames, log=log))
    except ParityError as e:
        return _finish(out, report, [row("export", "PyTorch = QONNX = integer graph = dataflow graph", False,
                                         frames, str(e))])
    x = ds.x_test[:frames].astype(np.float32)  # uint8 NHWC: the dataflow graph's input layout
    unfolded = dfg.load_dataflow(out / "export" / DATAFLOW_FILE)
    reference = graph_outputs(unfolded, x)
    model = folded if folded is not None else unfolded
    checks += sim_rows(reference, simulated_outputs(model, simulate(model, inputs=x, depths=depths)),
                       folded=graph is not None)
    try:
        cos = cosimulate(model, x, out / "rtl", depths=depths, strict=False)
        report["cosim"] = cos.as_dict()
        checks += cosim_rows(report["cosim"])
    except OnebitError as e:
        checks.append(row("hw", "RTL co-simulation", False, len(x), str(e)))
    report["test_accuracy"] = float((reference["labels"].reshape(len(x), -1)[:, 0] == ds.y_test[:len(x)]).mean())
    return _finish(out, report, checks)


def _finish(out: Path, report: dict, checks: list[dict]) -> dict:
    report.update(verdict(checks))
    make_folder(out)
    write_json(out / REPORT_FILE, report)
    return report


# ----- onebit run's verify stage ---------------------------------------------------------------------------
def _load_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def verify_run(ctx: Context, files: dict[str, str]) -> dict:
    """``files``: the run-folder paths of pack, parity, dataflow, frames, sim_outputs and build."""
    from onebit.export.dataflow import graph as dfg

    with np.load(ctx.path(files["sim_outputs"]), allow_pickle=False) as npz:
        sim = {k: npz[k] for k in npz.files}
    reference = graph_outputs(dfg.load_dataflow(ctx.path(files["dataflow"])),
                              np.load(ctx.path(files["frames"]), allow_pickle=False))
    return verdict([*pack_rows(_load_json(ctx.path(files["pack"]))),
                    *export_rows(_load_json(ctx.path(files["parity"]))), *sim_rows(reference, sim),
                    *hw_rows(_load_json(ctx.path(files["build"])), ctx.cfg["hw"])])
