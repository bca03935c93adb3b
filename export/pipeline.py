"""The export flow: PyTorch -> QONNX -> integer graph -> dataflow graph, each step checked on the same frames.

Parity, stage by stage:

- PyTorch vs QONNX execution: max |logit difference| and argmax agreement;
- QONNX vs integer graph: the integer graph's float tail reproduces the QONNX logits;
- PyTorch integer view vs integer graph: ``round(logits / unit)`` from PyTorch equals the integer scores, where
  ``unit`` is what one count of the integer score is worth in logits;
- integer graph vs dataflow graph: scores identical, labels = argmax of the scores.
"""

from __future__ import annotations

import io
import json
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from onebit.atomic import check_output, make_folder, write_bytes, write_json
from onebit.errors import ParityError, UnsupportedError, check_fits_memory
from onebit.export import graphs
from onebit.export.dataflow import graph as dfg
from onebit.export.dataflow.executor import execute_frames
from onebit.export.dataflow.convert import to_dataflow
from onebit.export.integer import META_OUTPUT, integer_output_name, to_integer_graph
from onebit.export.integer_input import InputSpec, input_spec as make_input_spec, integer_input_codes

QONNX_FILE = "model.qonnx.onnx"
INTEGER_FILE = "model.integer.onnx"
DATAFLOW_FILE = "model.dataflow.onnx"
REPORT_FILE = "parity.json"
OUTPUT_FILES = (QONNX_FILE, INTEGER_FILE, DATAFLOW_FILE, REPORT_FILE)
#: PyTorch and QONNX differ only by float rounding in the head (~1e-7 relative).
LOGIT_TOLERANCE = 1e-4


@dataclass
class Passes:
    """Times each pass and reports it as it ends (``log`` gets one line per pass)."""

    log: Callable[[str], None] = lambda s: None
    times: dict = field(default_factory=dict)

    @contextmanager
    def step(self, name: str):
        self.log(f"  … {name}")
        t0 = time.perf_counter()
        yield
        self.times[name] = round(time.perf_counter() - t0, 3)
        self.log(f"  ✓ {name} ({self.times[name]:.2f} s)")


def save(model: ModelWrapper, path: Path) -> None:
    write_bytes(path, model.model.SerializeToString())


def score_unit(integer: ModelWrapper, scores: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Logits per integer count, per class, measured on the integer graph itself (its tail is linear)."""
    nz = scores != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(nz, logits / np.where(nz, scores, 1), np.nan)
    unit = np.nanmedian(ratio, axis=0)
    if np.any(~np.isfinite(unit)):
        raise ParityError("integer graph: a class score is 0 on every frame; cannot relate scores to logits")
    return unit.astype(np.float64)


def dataflow_input(integer: ModelWrapper, codes: np.ndarray) -> np.ndarray:
    """Frames as integer codes in the source graph's input layout -> the dataflow graph's input (NHWC)."""
    return _stream_layout(integer_input_codes(integer, codes))


def _stream_layout(codes: np.ndarray) -> np.ndarray:
    """The integer graph's input (NCHW, or flat) -> the dataflow graph's stream (NHWC, or flat)."""
    return np.ascontiguousarray(codes.transpose(0, 2, 3, 1) if codes.ndim == 4 else codes)


#: frames per execution of a QONNX or integer graph in the checks: every tensor of a call is kept, so all 10,000
#: Fashion-MNIST test images at once would take about 25 GB for wrn-8-2
CHECK_CHUNK = 250


def _run_in_chunks(model: ModelWrapper, x: np.ndarray, names: tuple[str, ...] | None = None):
    """``graphs.run`` over CHECK_CHUNK frames at a time: the graph's output, or the tensors ``names``."""
    parts = []
    for i in range(0, len(x), CHECK_CHUNK):
        out = graphs.run(model, x[i:i + CHECK_CHUNK], return_all=names is not None)
        parts.append(out if names is None else {k: out[k] for k in names})
    if names is None:
        return np.concatenate(parts)
    return {k: np.concatenate([p[k] for p in parts]) for k in names}


def lower_and_check(qonnx: ModelWrapper, codes: np.ndarray, float_input: np.ndarray, passes: Passes,
                    torch_logits: np.ndarray | None = None, top_k: int = 1,
                    input_spec: InputSpec | None = None) -> tuple[ModelWrapper, ModelWrapper, dict]:
    """Lower a cleaned QONNX model and check every stage on the same frames.

    ``codes``: the frames as integers in the QONNX graph's input layout (NCHW); ``float_input``: the same frames
    as the QONNX graph's float input; ``input_spec``: how one is made from the other, when the graph's input does
    not feed its quantizers directly.
    """
    report: dict = {"frames": int(len(codes))}
    with passes.step("execute QONNX"):
        q_logits = _run_in_chunks(qonnx, float_input)
    if torch_logits is not None:
        diff = float(np.abs(q_logits - torch_logits).max())
        agree = float((q_logits.argmax(1) == torch_logits.argmax(1)).mean())
        tol = LOGIT_TOLERANCE * max(1.0, float(np.abs(torch_logits).max()))
        report["pytorch_vs_qonnx"] = {"max_abs_diff": diff, "argmax_agreement": agree, "tolerance": tol}
        if diff > tol:
            raise ParityError(f"QONNX execution differs from PyTorch by {diff:.3g} in the logits (tolerance "
                              f"{LOGIT_TOLERANCE:g}); the export is not faithful")
    with passes.step("lower to integer graph"):
        integer = to_integer_graph(qonnx, input_spec)
    codes = integer_input_codes(integer, codes)
    with passes.step("execute integer graph"):
        ctx = _run_in_chunks(integer, codes, (integer.graph.output[0].name, integer_output_name(integer)))
        i_logits = ctx[integer.graph.output[0].name]
        i_scores = ctx[integer_output_name(integer)].reshape(len(codes), -1)
    diff = float(np.abs(i_logits - q_logits).max())
    tol = LOGIT_TOLERANCE * max(1.0, float(np.abs(q_logits).max()))
    report["qonnx_vs_integer"] = {"max_abs_diff": diff,
                                  "argmax_agreement": float((i_logits.argmax(1) == q_logits.argmax(1)).mean()),
                                  "tolerance": tol}
    if diff > tol:
        raise ParityError(f"integer graph differs from QONNX execution by {diff:.3g} in the outputs")
    if torch_logits is not None:
        unit = score_unit(integer, i_scores, i_logits.reshape(len(codes), -1))
        view = np.round(torch_logits.reshape(len(codes), -1) / unit)
        bad = int((view != i_scores).sum())
        report["pytorch_integer_view_vs_integer"] = {"identical": bad == 0, "differing_scores": bad}
        if bad:
            raise ParityError(f"PyTorch's integer scores differ from the integer graph's in {bad} places")
    with passes.step("convert to dataflow graph"):
        dataflow = to_dataflow(integer, top_k=top_k)
    with passes.step("execute dataflow graph"):
        res = execute_frames(dataflow, _stream_layout(codes))
    d_scores = res[dfg.scores_name(dataflow)].reshape(len(codes), -1)
    labels = res[dataflow.graph.output[0].name].reshape(len(codes), -1)
    scores_equal = bool(np.array_equal(d_scores, i_scores))
    # the labels are the logits' order (ties to the lower class, as argmax), whatever the float tail
    expected_top = np.argsort(-i_logits.reshape(len(codes), -1), axis=1, kind="stable")[:, : labels.shape[1]]
    labels_equal = bool(np.array_equal(labels, expected_top))
    report["integer_vs_dataflow"] = {"scores_identical": scores_equal, "labels_identical": labels_equal}
    if not scores_equal:
        first = np.argwhere(d_scores != i_scores)[0]
        raise ParityError(f"dataflow graph scores differ from the integer graph's (first at frame {first[0]}, "
                          f"class {first[1]}: {d_scores[tuple(first)]} vs {i_scores[tuple(first)]})")
    if not labels_equal:
        first = int(np.argwhere((labels != expected_top).any(1))[0][0])
        raise ParityError(f"dataflow graph labels differ from the integer graph's logits' order (first at frame "
                          f"{first}: {labels[first].tolist()} vs {expected_top[first].tolist()})")
    report["tail_keeps_order"] = bool(json.loads(integer.get_metadata_prop(META_OUTPUT)).get("tail_keeps_order"))
    report["predictions"] = labels[:, 0].astype(int).tolist()
    return integer, dataflow, report


def check_out_folder(out: str | Path, inputs: list) -> Path:
    """The output folder and the files written into it, checked before anything is read or written."""
    out = check_output(out, folder=True)
    for name in OUTPUT_FILES:
        check_output(out / name, inputs=inputs)
    return out


# ----- onebit runs ----------------------------------------------------------------------------------------
def export_run(run: str | Path, out: str | Path, *, frames: int | None = None, top_k: int = 1,
               log: Callable[[str], None] = lambda s: None) -> dict:
    """Export a trained (or freshly initialised) onebit run folder; writes the three graphs and the report."""
    from onebit.training.checkpoint import CONFIG, load_trained, resolve_checkpoint
    from onebit.training.data import load_dataset

    checkpoint = resolve_checkpoint(run)
    out = check_out_folder(out, [checkpoint, checkpoint.parent / CONFIG])
    passes = Passes(log)
    model, state = load_trained(checkpoint)
    cfg = model.cfg
    if not cfg.quantized:
        raise UnsupportedError(f"{run}: {cfg.describe()}: float activations cannot become integers; train with "
                               f"--abits K (1..8)")
    if not cfg.binary:
        raise UnsupportedError(f"{run}: {cfg.describe()}: full-precision weights; onebit lowers 1-bit weights")
    data = state.get("train", {}).get("data")
    with passes.step("load test frames"):
        ds = load_dataset(data)
        images = ds.x_test if frames is None else ds.x_test[:frames]
    codes = images.transpose(0, 3, 1, 2).astype(np.float32)  # uint8 NCHW
    float_input = codes / np.float32(255.0)
    report = export_model(model, codes, float_input, out, passes, top_k=top_k)
    report["labels_vs_dataset"] = {"test_accuracy": float((np.asarray(report["predictions"]) ==
                                                           ds.y_test[:len(codes)]).mean())}
    report.update({"run": str(run), "arch": cfg.describe(), "dataset": ds.name})
    write_json(out / REPORT_FILE, report)
    return report


def export_model(model, codes: np.ndarray, float_input: np.ndarray, out: Path, passes: Passes,
                 top_k: int = 1) -> dict:
    import torch

    from onebit.export.qonnx_export import export_qonnx

    make_folder(out)
    model.eval()
    with passes.step("PyTorch forward"):
        with torch.no_grad():
            torch_logits = np.concatenate([model(torch.from_numpy(float_input[i:i + 500])).numpy()
                                           for i in range(0, len(float_input), 500)])
    with passes.step("export QONNX (Brevitas)"):
        tmp = out / ".export.onnx"
        # torch.onnx prints its progress on stdout; keep stdout for onebit's own report (``--json``).
        with redirect_stdout(io.StringIO()):
            export_qonnx(model, torch.from_numpy(float_input[:1]), tmp)
        qonnx = graphs.clean(graphs.load_onnx(tmp))
        tmp.unlink()
        save(qonnx, out / QONNX_FILE)
    integer, dataflow, report = lower_and_check(qonnx, codes, float_input, passes, torch_logits, top_k)
    save(integer, out / INTEGER_FILE)
    save(dataflow, out / DATAFLOW_FILE)
    report["files"] = {"qonnx": QONNX_FILE, "integer": INTEGER_FILE, "dataflow": DATAFLOW_FILE}
    report["pass_seconds"] = passes.times
    return report


# ----- QONNX files from elsewhere ---------------------------------------------------------------------------
def input_quantizer(qonnx: ModelWrapper, source: str = "QONNX model"):
    if not any(n.op_type in ("Quant", "BipolarQuant") for n in qonnx.graph.node):
        raise UnsupportedError(f"{source}: the graph has no Quant or BipolarQuant nodes: a float model; expected a "
                               f"quantized model (e.g. Brevitas, exported to QONNX)")
    name = qonnx.graph.input[0].name
    consumers = qonnx.find_consumers(name) or []
    quant = next((c for c in consumers if c.op_type == "Quant"), None)
    if quant is None:
        raise UnsupportedError(f"{source}: graph input {name!r} feeds {[c.op_type for c in consumers]}; expected a "
                               f"Quant node on the input (a quantized model), or the integer type and scale the "
                               f"float input is made of (input type UINT8 and input scale 1/255, say)")
    return quant


def input_codes(qonnx: ModelWrapper, spec: InputSpec | None, source: str) -> tuple[np.float32, list[float]]:
    """(scale, integer levels) of the graph's input: the user's ``spec``, else those of the input quantizer."""
    if spec is not None:
        if not any(n.op_type in ("Quant", "BipolarQuant") for n in qonnx.graph.node):
            input_quantizer(qonnx, source)  # raises: a float model
        lo, hi = spec.levels
        return spec.scale, [float(lo), float(hi)]
    from onebit.export.integer_lowering import Lowering
    from onebit.export.integer_thresholds import quant_params

    quant = input_quantizer(qonnx, source)
    scale, zp, levels = quant_params(Lowering(qonnx), quant)
    if np.asarray(scale).size != 1:
        raise UnsupportedError(f"node {quant.name}: per-channel input scale; expected one scale")
    return np.float32(np.asarray(scale).reshape(-1)[0]), levels


def lower_file(path: str | Path, out: str | Path, *, frames: int = 16, inputs: np.ndarray | None = None,
               seed: int = 0, top_k: int = 1, input_type: str | None = None, input_scale=None,
               log: Callable[[str], None] = lambda s: None) -> dict:
    """``onebit lower``: a QONNX file from elsewhere -> integer and dataflow graphs, checked on ``frames`` inputs.

    ``inputs`` (optional) are the user's frames as the QONNX graph's float input (NCHW); by default random
    integer codes of the input's type are used. ``input_type`` and ``input_scale`` (e.g. ``"UINT8"``,
    ``"1/255"``) say what the float input is made of, ``input_scale * code``, where the graph's input does not
    feed a quantizer directly: its float front end (reshapes, ``2x - 1``, mean/std) folds into the first
    threshold stage, and the accelerator's input is the integer codes.
    """
    from onebit.export.qonnx_checks import check_qonnx_nodes

    spec = make_input_spec(input_type, input_scale)
    out = check_out_folder(out, [path])
    passes = Passes(log)
    with passes.step("load and clean QONNX"):
        raw = graphs.load_onnx(path)
        check_qonnx_nodes(raw, path)
        qonnx = graphs.clean(raw, source=path)
    scale, levels = input_codes(qonnx, spec, str(path))
    shape = qonnx.get_tensor_shape(qonnx.graph.input[0].name)
    if inputs is None:
        check_fits_memory("frames", frames, 8 * int(np.prod(shape[1:])), f"random inputs of shape {tuple(shape[1:])}")
        rng = np.random.default_rng(seed)
        codes = rng.integers(int(levels[0]), int(levels[-1]) + 1, size=(frames, *shape[1:])).astype(np.float32)
    else:
        graphs.check_input(qonnx, inputs, "inputs", param="inputs")
        codes = np.clip(np.round(inputs / scale), levels[0], levels[-1]).astype(np.float32)
    float_input = (codes * scale).astype(np.float32)
    with graphs.foreign_errors(path, "lowering"):
        integer, dataflow, report = lower_and_check(qonnx, codes, float_input, passes, None, top_k, spec)
    make_folder(out)
    save(qonnx, out / QONNX_FILE)
    save(integer, out / INTEGER_FILE)
    save(dataflow, out / DATAFLOW_FILE)
    report.update({"source": str(path), "files": {"qonnx": QONNX_FILE, "integer": INTEGER_FILE,
                                                  "dataflow": DATAFLOW_FILE}, "pass_seconds": passes.times})
    if spec is not None:
        report["input"] = {"type": spec.dtype.name, "scale": float(spec.scale)}
    write_json(out / REPORT_FILE, report)
    return report
