"""The stages of ``onebit run``, each a small function over the run folder (see :mod:`onebit.flow.engine`).

Run folder layout (paths below are relative to it)::

    run.toml                 the resolved configuration
    train/                   the training run (checkpoint.pt, metrics.jsonl, curves.png, config.json)
    pack/                    packed.npz (one bit per weight) and pack.json
    export/                  QONNX, integer and dataflow graphs, parity.json; frames.npy / labels.npy: the test
                             images every later stage checks
    fold/                    model.folded.onnx and folding.json
    sim/                     model.sim.json, model.sim_cycles.png, model.sim_timeline.png, outputs.npz
    hw/                      build.json, rtl/, synth/ (from onebit.hw.build)
    verify.json, report.html
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

from onebit.atomic import write_bytes, write_json
from onebit.errors import ToolError, renamed
from onebit.flow import config
from onebit.flow.engine import Context, Stage

CHECKPOINT = "train/checkpoint.pt"
TRAIN_FILES = ("train/checkpoint.pt", "train/metrics.jsonl", "train/curves.png", "train/config.json")
PACKED, PACK_JSON = "pack/packed.npz", "pack/pack.json"
DATAFLOW, PARITY = "export/model.dataflow.onnx", "export/parity.json"
FRAMES, LABELS = "export/frames.npy", "export/labels.npy"
FOLDED, FOLDING = "fold/model.folded.onnx", "fold/folding.json"
SIM_STEM = "sim/model"  # sim/report.write_report's names follow
SIM_JSON, SIM_CYCLES, SIM_TIMELINE = (f"{SIM_STEM}.sim.json", f"{SIM_STEM}.sim_cycles.png",
                                      f"{SIM_STEM}.sim_timeline.png")
SIM_OUT = "sim/outputs.npz"
BUILD = "hw/build.json"
VERIFY, REPORT = "verify.json", "report.html"


def _save_npy(ctx: Context, rel: str, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    write_bytes(ctx.path(rel), buf.getvalue())


def _test_images(ctx: Context):
    from onebit.training.data import load_dataset

    ds = load_dataset(ctx.cfg["data"]["dataset"])
    n = ctx.cfg["verify"]["frames"] or len(ds.y_test)
    return ds.x_test[:n], ds.y_test[:n]


# ----- train -------------------------------------------------------------------------------------------------
def train_stage(ctx: Context) -> dict:
    from onebit.training.trainer import train

    folder = ctx.path("train")
    checkpoint = ctx.path(CHECKPOINT)
    resume = ctx.resuming and checkpoint.is_file()
    if resume:
        metrics = ctx.path("train/metrics.jsonl")
        done = len(metrics.read_text().splitlines()) if metrics.is_file() else "?"
        ctx.sublog(f"continuing the interrupted training from its checkpoint after epoch {done}")
    elif checkpoint.exists():
        checkpoint.unlink()  # an older run's checkpoint, trained with other settings
    result = train(config.train_config(ctx.cfg), folder, resume=resume, quiet=ctx.quiet)
    return {k: result[k] for k in ("arch", "dataset", "epochs", "test_acc", "train_time_s", "params")}


def trained_stage(ctx: Context) -> dict:
    """``[model] checkpoint``: a run trained elsewhere (``onebit train``, the accuracy benchmark) becomes this
    run's ``train/`` as it is, checked against its own configuration; nothing is trained (a run stopped early
    is used at its last epoch, and the log says so)."""
    import json

    from onebit.training import checkpoint as ckpt
    from onebit.training.trainer import load_train_config

    src = config.trained_run(ctx.cfg["model"]["checkpoint"])
    folder = ctx.path("train")
    folder.mkdir(parents=True, exist_ok=True)
    for name in (ckpt.CHECKPOINT, ckpt.CONFIG, ckpt.METRICS, "curves.png"):
        if (src / name).is_file():
            write_bytes(folder / name, (src / name).read_bytes())
        elif (folder / name).exists():
            (folder / name).unlink()  # an earlier run's, not this one's
    model, state = ckpt.load_trained(folder)  # the checkpoint against its config.json
    cfg = load_train_config(folder)
    metrics = folder / ckpt.METRICS
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.is_file() else []
    epoch, total = int(state.get("epoch") or len(rows)), cfg.total_epochs()
    ctx.sublog(f"the trained run {src}: {epoch} of {total} epochs" + ("" if epoch >= total else
                                                                       ", used as it is (not trained further)"))
    ds = state.get("dataset") or {}
    return {"arch": model.cfg.describe(), "dataset": ds.get("name", cfg.data), "epochs": epoch,
            "test_acc": rows[-1].get("test_acc") if rows else None,
            "train_time_s": sum(r.get("epoch_time_s", 0.0) for r in rows),
            "params": sum(p.numel() for p in model.parameters())}


# ----- pack --------------------------------------------------------------------------------------------------
def pack_stage(ctx: Context) -> dict:
    """The deployment file (one bit per binary weight); loading it back must give the same logits."""
    from onebit.training.checkpoint import load_trained
    from onebit.training.pack import float_bytes, load_packed, payload_bytes, save_packed
    from onebit.training.trainer import predict

    model, state = load_trained(ctx.path(CHECKPOINT))
    size = save_packed(model, ctx.path(PACKED), {"data": ctx.cfg["data"]["dataset"], "epoch": state.get("epoch")})
    unpacked, _ = load_packed(ctx.path(PACKED))
    images, labels = _test_images(ctx)
    logits, logits_unpacked = predict(model, images), predict(unpacked, images)
    floats = float_bytes(model)
    result = {"packed_bytes": size, "float_bytes": floats, "compression": round(floats / size, 2),
              **payload_bytes(model), "frames": int(len(labels)),
              "logits_identical": bool(np.array_equal(logits, logits_unpacked)),
              "test_acc": float((logits_unpacked.argmax(1) == labels).mean())}
    write_json(ctx.path(PACK_JSON), result)
    return result


# ----- export ------------------------------------------------------------------------------------------------
def export_stage(ctx: Context) -> dict:
    """QONNX, integer and dataflow graphs, each checked against the last (``export_run`` raises on a mismatch)."""
    from onebit.export.pipeline import export_run

    report = export_run(ctx.path("train"), ctx.path("export"), frames=ctx.cfg["verify"]["frames"], log=ctx.sublog)
    images, labels = _test_images(ctx)
    _save_npy(ctx, FRAMES, images.astype(np.float32))  # the dataflow graph's input: NHWC pixel codes
    _save_npy(ctx, LABELS, labels)
    keep = ("frames", "pytorch_vs_qonnx", "qonnx_vs_integer", "pytorch_integer_view_vs_integer",
            "integer_vs_dataflow", "labels_vs_dataset", "arch", "dataset")
    return {k: report[k] for k in keep if k in report}


# ----- lower (a network of the user's own) -------------------------------------------------------------------
#: random frames checked when the data set's images are not the network's input
RANDOM_FRAMES = 64


def _user_frames(ctx: Context, qonnx, scale, levels) -> tuple[np.ndarray, np.ndarray, str]:
    """Codes in the QONNX input's layout, their labels (-1: none) and where they came from: the data set's
    test images when they are the network's input (the same C, H, W, or the flattened image), else random codes
    of the input type."""
    shape = tuple(qonnx.get_tensor_shape(qonnx.graph.input[0].name)[1:])
    images, labels = _test_images(ctx)
    nchw = images.transpose(0, 3, 1, 2)
    if tuple(nchw.shape[1:]) == shape or (images.shape[-1] == 1 and int(np.prod(shape)) == nchw[0].size):
        codes = np.clip(nchw.reshape(len(nchw), *shape).astype(np.float32), levels[0], levels[-1])
        return codes, labels.astype(np.int64), f"test images of {ctx.cfg['data']['dataset']}"
    n = ctx.cfg["verify"]["frames"] or RANDOM_FRAMES
    codes = np.random.default_rng(0).integers(int(levels[0]), int(levels[-1]) + 1, size=(n, *shape))
    why = (f"random codes: the images of {ctx.cfg['data']['dataset']} are {tuple(images.shape[1:])} (HWC), "
           f"the network's input {shape}")
    return codes.astype(np.float32), np.full(n, -1, np.int64), why


def lower_stage(ctx: Context) -> dict:
    """The user's QONNX file -> integer and dataflow graphs, every stage checked on the same frames."""
    from onebit.export import graphs
    from onebit.export.integer_input import input_spec
    from onebit.export.pipeline import INTEGER_FILE, dataflow_input, input_codes, lower_file

    m = ctx.cfg["model"]
    scale_text = None if m["input_scale"] is None else str(m["input_scale"])
    with renamed({"input_type": "model.input_type", "input_scale": "model.input_scale"}):
        spec = input_spec(m["input_type"], scale_text)
    qonnx = graphs.clean(graphs.load_onnx(m["onnx"]), source=m["onnx"])
    scale, levels = input_codes(qonnx, spec, m["onnx"])
    codes, labels, source = _user_frames(ctx, qonnx, scale, levels)
    report = lower_file(m["onnx"], ctx.path("export"), inputs=codes * np.float32(scale), input_type=m["input_type"],
                        input_scale=scale_text, log=ctx.sublog)
    integer = graphs.load_onnx(ctx.path("export") / INTEGER_FILE)
    _save_npy(ctx, FRAMES, dataflow_input(integer, codes).astype(np.float32))
    _save_npy(ctx, LABELS, labels)
    report["inputs"] = source
    report["arch"] = Path(m["onnx"]).name
    if labels.min() >= 0:
        report["labels_vs_dataset"] = {"test_accuracy": float((np.asarray(report["predictions"]) == labels).mean())}
        report["dataset"] = ctx.cfg["data"]["dataset"]
    write_json(ctx.path(PARITY), report)
    keep = ("frames", "inputs", "qonnx_vs_integer", "integer_vs_dataflow", "labels_vs_dataset", "arch", "dataset")
    return {k: report[k] for k in keep if k in report}


# ----- fold --------------------------------------------------------------------------------------------------
def graph_io(model) -> dict:
    """Shape and data type of the graph's input, its output (labels) and its scores."""
    from onebit.export.dataflow import graph as dfg

    def describe(name):
        return {"name": name, "shape": list(model.get_tensor_shape(name)),
                "type": model.get_tensor_datatype(name).name}

    return {"input": describe(model.graph.input[0].name), "output": describe(model.graph.output[0].name),
            "scores": describe(dfg.scores_name(model))}


def fold_stage(ctx: Context) -> dict:
    from onebit.export.dataflow.folding_search import fold_for_target
    from onebit.export.dataflow.graph import load_dataflow

    f, clock = ctx.cfg["fold"], ctx.cfg["hw"]["clock_mhz"]
    model, report = fold_for_target(load_dataflow(ctx.path(DATAFLOW)), f["target_fps"], clock, f["max_luts"])
    write_bytes(ctx.path(FOLDED), model.model.SerializeToString())
    write_json(ctx.path(FOLDING), {**report, "graph": graph_io(model)})
    t = report["totals"]
    return {k: t[k] for k in ("ii_cycles", "fps", "bottleneck", "LUT", "mem_bits", "nodes")} | {
        "stop": report["search"]["stop"]}


# ----- simulate ----------------------------------------------------------------------------------------------
def sim_stage(ctx: Context) -> dict:
    """Cycles, II, latency and FIFO depths of the folded graph; its bit-exact outputs on the test frames."""
    from onebit.export.dataflow import graph as dfg
    from onebit.flow.verify import simulated_outputs
    from onebit.sim.simulation import simulate
    from onebit.sim.report import build_report, write_report

    model = dfg.load_dataflow(ctx.path(FOLDED))
    res = simulate(model, inputs=np.load(ctx.path(FRAMES), allow_pickle=False))
    report = build_report(res, ctx.cfg["hw"]["clock_mhz"], FOLDED)
    write_report(res, report, ctx.path(SIM_STEM))
    buf = io.BytesIO()
    np.savez(buf, **simulated_outputs(model, res))
    write_bytes(ctx.path(SIM_OUT), buf.getvalue())
    t = report["totals"]
    return {k: t[k] for k in ("frames", "ii_cycles", "fps", "latency_cycles", "latency_us", "bottleneck",
                              "fifo_bits_needed")}


# ----- hardware ----------------------------------------------------------------------------------------------
def _hw_build():
    try:
        from onebit.hw.build import build
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("onebit"):
            raise
        raise ToolError(f"the hardware stage needs {e.name}, which this installation of onebit lacks; "
                        f"run the flow up to the simulator with --until sim") from None
    return build


def hw_stage(ctx: Context) -> dict:
    """RTL; Verilator co-simulation against the executor and the simulator, edge by edge on the first test
    frames and at the outputs on as many as the time budget allows; synthesis, place and route."""
    build = _hw_build()
    hw = ctx.cfg["hw"]
    frames = np.load(ctx.path(FRAMES), allow_pickle=False)
    with np.load(ctx.path(SIM_OUT), allow_pickle=False) as sim:
        expected = sim["labels"]
    report = build(ctx.path(FOLDED), ctx.path("hw"), device=config.device(ctx.cfg), clock_mhz=hw["clock_mhz"],
                   inputs=frames, expected=expected, edge_frames=hw["frames"], cosim_seconds=hw["cosim_seconds"],
                   synth=hw["synth"], pnr=hw["pnr"], log=ctx.sublog, board=config.board(ctx.cfg), baud=hw["baud"],
                   board_frames=hw["board_frames"],
                   strict=False)  # a co-simulation mismatch goes into the verdict and the report
    cosim, synth = report.get("cosim", {}), report.get("synth") or {}
    outputs = report.get("cosim_outputs") or {}
    result = {"frames": cosim.get("frames"), "outputs_equal": cosim.get("outputs_equal"),
              "cycles_equal": cosim.get("cycles_equal"), "output_frames": outputs.get("frames", 0),
              "output_frames_of": int(len(frames)), "outputs_exact": outputs.get("cycles_equal"),
              "ii_cycles": report.get("ii_cycles"), "latency_cycles": report.get("latency_cycles"),
              "resources": synth.get("resources"), "fmax_mhz": synth.get("fmax_mhz"),
              "bitstream": synth.get("bitstream"), "frames_per_second": report.get("frames_per_second")}
    if "board" in report:
        b = report["board"]
        em = b.get("emulation") or {}
        result["board"] = {"name": b["name"], "constraints": b["constraints"], "baud": b["baud"],
                           "board_frames": em.get("frames", 0), "board_outputs_equal": em.get("outputs_equal"),
                           **{k: b.get(k) for k in ("link_frames_per_second", "accelerator_frames_per_second",
                                                    "limited_by")}}
    return result


# ----- verify and report -------------------------------------------------------------------------------------
def verify_stage(ctx: Context) -> dict:
    from onebit.flow.verify import verify_run

    result = verify_run(ctx, {"pack": PACK_JSON, "parity": PARITY, "dataflow": DATAFLOW, "frames": FRAMES,
                              "sim_outputs": SIM_OUT, "build": BUILD})
    write_json(ctx.path(VERIFY), result)
    return {"passed": result["passed"], "checks": len(result["checks"]), "failed": result["failed"]}


def report_stage(ctx: Context) -> dict:
    from onebit.flow.report import write_html

    write_html(ctx, ctx.path(REPORT))
    return {"report": REPORT}


# ----- the stage list ----------------------------------------------------------------------------------------
def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _summary_train(r):
    return f"test accuracy {_pct(r['test_acc'])} after {r['epochs']} epochs"


def _summary_pack(r):
    return (f"{r['packed_bytes']:,} bytes packed ({r['compression']:g}x smaller than float32); "
            f"unpacked logits {'identical' if r['logits_identical'] else 'DIFFERENT'}")


def _summary_export(r):
    return (f"PyTorch = QONNX = integer = dataflow graph on {r['frames']} frames; "
            f"dataflow accuracy {_pct(r['labels_vs_dataset']['test_accuracy'])}")


def _summary_fold(r):
    return f"II {r['ii_cycles']:,} cycles, {r['fps']:,.0f} frames/s; about {r['LUT']:,} LUT (estimate)"


def _summary_sim(r):
    return (f"{r['frames']} frames: II {r['ii_cycles']:,} cycles ({r['fps']:,.0f} frames/s), "
            f"latency {r['latency_us']:,.1f} us")


def _summary_verify(r):
    from onebit.flow.verify import summary_line

    return summary_line(r)


def _summary_hw(r):
    parts = [f"co-simulation {'bit-exact' if r['outputs_equal'] else 'DIFFERENT'}, "
             f"{'cycle-exact' if r['cycles_equal'] else 'cycles DIFFER'} on every edge ({r['frames']} frames)"]
    if r.get("output_frames"):
        parts.append(f"outputs {'exact' if r['outputs_exact'] else 'DIFFERENT'} on "
                     f"{r['output_frames']:,} of {r['output_frames_of']:,} frames")
    b = r.get("board") or {}
    if b.get("board_frames"):
        parts.append(f"virtual {b['name']} {'equal' if b['board_outputs_equal'] else 'DIFFERENT'} on "
                     f"{b['board_frames']} frames")
    if r.get("fmax_mhz"):
        parts.append(f"fmax {r['fmax_mhz']:.1f} MHz")
    return "; ".join(parts)


CLOCK = {"clock_mhz": "hw.clock_mhz"}
STAGES = [
    Stage("train", train_stage, config=("data", "model", "train"), writes=TRAIN_FILES, summary=_summary_train,
          resumable=True, params=config.TRAIN_PARAMS),
    Stage("pack", pack_stage, config=("data", "verify"), reads=(CHECKPOINT,), writes=(PACKED, PACK_JSON),
          summary=_summary_pack, code=("training",)),
    Stage("export", export_stage, config=("data", "verify"), reads=(CHECKPOINT,),
          writes=("export/model.qonnx.onnx", "export/model.integer.onnx", DATAFLOW, PARITY, FRAMES, LABELS),
          summary=_summary_export, params={"frames": "verify.frames"}, code=("export", "training")),
    Stage("fold", fold_stage, config=("fold", "hw.clock_mhz"), reads=(DATAFLOW,), writes=(FOLDED, FOLDING),
          summary=_summary_fold, params={**CLOCK, "target_fps": "fold.target_fps", "max_luts": "fold.max_luts"},
          code=("export/dataflow",)),
    Stage("sim", sim_stage, config=("hw.clock_mhz",), reads=(FOLDED, FRAMES),
          writes=(SIM_JSON, SIM_CYCLES, SIM_TIMELINE, SIM_OUT), summary=_summary_sim,
          params={**CLOCK, "frames": "verify.frames"}, code=("sim", "export/dataflow")),
    Stage("hw", hw_stage, config=("hw",), reads=(FOLDED, FRAMES, SIM_OUT), writes=(BUILD,), summary=_summary_hw,
          params={**CLOCK, "device": "hw.device", "edge_frames": "hw.frames", "cosim_seconds": "hw.cosim_seconds",
                  "board": "hw.board", "baud": "hw.baud", "board_frames": "hw.board_frames"},
          code=("hw", "sim", "export/dataflow")),
    Stage("verify", verify_stage, config=("hw",),
          reads=(PACK_JSON, PARITY, DATAFLOW, FRAMES, SIM_OUT, BUILD), writes=(VERIFY,), summary=_summary_verify),
    Stage("report", report_stage, reads=(config.CONFIG_FILE, "train/metrics.jsonl", "train/curves.png", PACK_JSON,
                                         PARITY, FOLDING, SIM_JSON, SIM_CYCLES, SIM_TIMELINE, BUILD, VERIFY),
          writes=(REPORT,), summary=lambda r: f"wrote {REPORT}"),
]
STAGE_NAMES = [s.name for s in STAGES]


def _summary_lower(r):
    acc = r.get("labels_vs_dataset", {}).get("test_accuracy")
    return (f"QONNX = integer = dataflow graph on {r['frames']} frames ({r['inputs']})" +
            (f"; dataflow accuracy {_pct(acc)}" if acc is not None else ""))


#: the stages for a network of the user's own (``[model] onnx``): no training, packing or export
USER_MODEL_STAGES = [
    Stage("lower", lower_stage, config=("data", "verify", "model.onnx", "model.input_type", "model.input_scale"),
          writes=("export/model.qonnx.onnx", "export/model.integer.onnx", DATAFLOW, PARITY, FRAMES, LABELS),
          summary=_summary_lower, params={"frames": "verify.frames", "inputs": "model.onnx"}, code=("export",)),
    *[s for s in STAGES if s.name not in ("train", "pack", "export")],
]


def stages_for(cfg: dict) -> list[Stage]:
    """The stage list of a configuration; a user's network is read by its stage (the file's content is part of
    that stage's key)."""
    path = cfg["model"]["onnx"]
    stages = STAGES
    run = cfg["model"]["checkpoint"]
    if run is not None:  # a trained run's files are this stage's input: their content is part of its key
        src = config.trained_run(run).resolve()
        stages = [dataclasses.replace(STAGES[0], fn=trained_stage, config=("data", "model.checkpoint"),
                                      reads=(str(src / "checkpoint.pt"), str(src / "config.json")), params={}),
                  *STAGES[1:]]
    if path is not None:
        lower = dataclasses.replace(USER_MODEL_STAGES[0], reads=(str(Path(path).resolve()),))
        stages = [lower, *USER_MODEL_STAGES[1:]]
    board = cfg["hw"]["board"]
    if board is not None and Path(board).is_file():  # a board's .toml: its content is part of the hw stage's key
        stages = [dataclasses.replace(s, reads=(*s.reads, str(Path(board).resolve()))) if s.name == "hw" else s
                  for s in stages]
    return stages
