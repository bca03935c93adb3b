"""FINN+ cross-checks of the dataflow graph: FINN+'s Python execution and cycle estimates equal onebit's, and the
FINN+ build folder is valid.

The FINN+ tests run where FINN+ is importable (in this interpreter, or the one named by ONEBIT_FINN_PYTHON) and
are skipped otherwise, unless ONEBIT_REQUIRE_FINN=1 (set by CI, which installs FINN+) turns the skip into a
failure. The builder test needs FINN+'s full dependency list (mashumaro, mip, pandas; DEVELOPERS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from onebit.errors import ConfigError, UnsupportedError
from onebit.export import finn_handoff, finn_worker
from onebit.export.dataflow.base import FINN_DOMAIN
from onebit.export.dataflow.convert import to_dataflow
from onebit.export.dataflow.executor import execute
from onebit.export.dataflow.graph import get_op, load_dataflow, scores_name
from onebit.export.graphs import clean, load_onnx
from onebit.export.integer import to_integer_graph
from onebit.export.qonnx_export import export_qonnx
from onebit.training.config import parse_arch
from onebit.training.model import build_model
from testkit import randomise_bn

FINN_OK, FINN_WHERE = finn_worker.finn_available()
REQUIRED = os.environ.get("ONEBIT_REQUIRE_FINN") == "1"
needs_finn = pytest.mark.skipif(not FINN_OK and not REQUIRED, reason=f"FINN+ not available: {FINN_WHERE}")

#: op types whose cycle formula onebit copies from FINN+ (ChannelPad: its MVAU substitute must match too)
SAME_CYCLES = {"MVAU", "Thresholding", "FMPadding", "ElementwiseAdd", "DuplicateStreams", "GlobalAccPool",
               "LabelSelect", "Pool", "ChannelPad", "ConvolutionInputGenerator"}
VARIANTS = [("srelu", 4), ("bn-relu", 2)]





def fold(model):
    """A valid, non-trivial folding: each PE/SIMD the middle divisor of what it must divide."""
    for node in model.graph.node:
        op = get_op(node)
        for attr, n in op.folding().items():
            divisors = [d for d in range(1, n + 1) if n % d == 0]
            op.set_nodeattr(attr, divisors[len(divisors) // 2])
    return model


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """(act, abits) -> path of the dataflow graph of a randomly initialised tiny net (folded)."""
    root = tmp_path_factory.mktemp("finn")
    out = {}
    for act, abits in VARIANTS:
        torch.manual_seed(abits)
        net = build_model(parse_arch("tiny", in_channels=1, act=act, abits=abits)).eval()
        randomise_bn(net)
        export_qonnx(net, torch.zeros(1, 1, 8, 8), root / f"{act}.onnx")
        df = fold(to_dataflow(to_integer_graph(clean(load_onnx(root / f"{act}.onnx")))))
        df.save(str(root / f"{act}-df.onnx"))
        out[(act, abits)] = root / f"{act}-df.onnx"
    return out


def frames(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1)).astype(np.uint8)


def require_finn():
    if not FINN_OK:
        pytest.fail(f"ONEBIT_REQUIRE_FINN=1 but FINN+ is not available: {FINN_WHERE}")


# ----- FINN+'s Python execution ---------------------------------------------------------------------
@needs_finn
@pytest.mark.parametrize("channelpad", ["mvau", "keep"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v[0]}-{v[1]}bit")
def test_finn_execution_equals_onebit(graphs, variant, channelpad):
    require_finn()
    path = graphs[variant]
    model = load_dataflow(path)
    x = frames()
    ref = execute(model, x, taps=True)
    outputs = [o.name for o in model.graph.output]
    scores = scores_name(model)
    # every layer's output, the graph outputs and the scores among them (scores as a second graph output)
    names = [t for node in model.graph.node for t in node.output]
    with_scores = finn_handoff.with_scores_output(model)
    got = finn_worker.finn_execute_tensors(with_scores, x, names, channelpad=channelpad)
    bad = [t for t in names if not np.array_equal(got[t].reshape(ref[t].shape), ref[t])]
    assert not bad, f"FINN+ and onebit differ on {bad[:5]} (first of {len(bad)})"
    for t in [*outputs, scores]:
        assert np.array_equal(got[t].reshape(ref[t].shape), ref[t]), t
    assert len(np.unique(ref[scores].reshape(len(x), -1), axis=0)) > 1, "degenerate test: all frames score alike"
    if channelpad == "mvau":
        top = finn_worker.finn_execute(path, x)
        assert np.array_equal(top.reshape(ref[outputs[0]].shape), ref[outputs[0]])


@needs_finn
def test_finn_threshold_rounding_keeps_the_graph(graphs):
    """FINN+'s step_minimize_bit_width always runs RoundAndClipThresholds: it must not change a value."""
    require_finn()
    if finn_worker.finn_python() is not None:
        (pytest.fail if REQUIRED else pytest.skip)("FINN+ runs in another interpreter; this check needs it in "
                                                   "process")
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.infer_datatypes import InferDataTypes

    for path in graphs.values():
        model = finn_handoff.prepare_for_finn(path)
        annotated = {t: model.get_tensor_datatype(t) for t in model.get_all_tensor_names()}
        inferred = model.transform(InferDataTypes())
        assert all(inferred.get_tensor_datatype(t) == dt for t, dt in annotated.items())
        rounded = inferred.transform(RoundAndClipThresholds())
        x = frames(4, seed=3)
        top = finn_worker.finn_execute(rounded, x)
        ref = execute(load_dataflow(path), x)[model.graph.output[0].name]
        assert np.array_equal(top.reshape(ref.shape), ref)


# ----- FINN+'s cycle estimates -----------------------------------------------------------------------
def cycle_table(model, finn: dict) -> tuple[list[tuple], str]:
    rows = []
    for node in model.graph.node:
        entry = finn.get(node.name, {})
        rows.append((node.name, node.op_type, get_op(node).exp_cycles(), entry.get("finn_op", "-"),
                     entry.get("cycles")))
    lines = [f"{'node':30s} {'onebit':>8s} {'FINN+':>8s}  FINN+ layer"]
    lines += [f"{name:30s} {ours:8d} {str(theirs):>8s}  {op}" + ("" if ours == theirs else "   <- differs")
              for name, _, ours, op, theirs in rows]
    return rows, "\n".join(lines)


@needs_finn
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v[0]}-{v[1]}bit")
def test_finn_exp_cycles_equal_onebit(graphs, variant):
    require_finn()
    model = load_dataflow(graphs[variant])
    finn = finn_worker.finn_exp_cycles(graphs[variant], finn_worker.DEFAULT_PART)
    rows, table = cycle_table(model, finn)
    part = finn_worker.DEFAULT_PART
    print(f"\nexp_cycles per layer, {variant[0]} {variant[1]}-bit (folded), part {part}\n{table}")
    checked = [r for r in rows if r[1] in SAME_CYCLES]
    assert checked and all(r[4] is not None for r in checked), "FINN+ reported no cycles for some layers"
    bad = [r for r in checked if r[2] != r[4]]
    assert not bad, f"exp_cycles differ:\n{table}"


# ----- the FINN+ build folder --------------------------------------------------------------------------
def node_attrs(node) -> dict:
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def test_write_finn_build(graphs, tmp_path):
    path = graphs[("srelu", 4)]
    files = finn_handoff.write_finn_build(path, tmp_path / "b", board="Pynq-Z2", clock_mhz=125, target_fps=1000)
    for f in files.values():
        assert f.is_file(), f
    cfg = json.loads(files["build_config"].read_text())
    assert cfg["board"] == "Pynq-Z2" and cfg["shell_flow_type"] == "vivado_zynq"
    assert cfg["synth_clk_period_ns"] == 8.0 and cfg["target_fps"] == 1000
    assert cfg["steps"][:3] == ["step_create_dataflow_partition", "step_apply_folding_config",
                                "step_specialize_layers"]
    assert not {"step_qonnx_to_finn", "step_streamline", "step_convert_to_hw"} & set(cfg["steps"])
    assert "bitfile" in cfg["generate_outputs"] and cfg["folding_config_file"] == "folding_config.json"
    compile(files["build_script"].read_text(), "build.py", "exec")

    source = load_dataflow(path)
    handoff = load_dataflow(files["model"])
    assert all(n.domain == FINN_DOMAIN for n in handoff.graph.node)
    assert "ChannelPad" not in {n.op_type for n in handoff.graph.node}
    # the hand-off graph computes the same as the source, ChannelPad's MVAU included
    x = frames(4, seed=2)
    want, got = execute(source, x), execute(handoff, x)
    out = source.graph.output[0].name
    assert np.array_equal(want[out], got[out]) and np.array_equal(want[scores_name(source)],
                                                                     got[scores_name(source)])
    # folding_config.json carries every node's PE/SIMD, under the hand-off graph's (FINN+'s) names
    folding = json.loads(files["folding_config"].read_text())
    names = json.loads(files["handoff"].read_text())["node_names"]
    by_name = {n.name: n for n in handoff.graph.node}
    for node in source.graph.node:
        mine = node_attrs(node)
        theirs = folding[names[node.name]]
        if node.op_type == "ChannelPad":
            assert by_name[names[node.name]].op_type == "MVAU"
            assert theirs["PE"] == mine["PE"] and theirs["SIMD"] == mine["NumChannels"]
        else:
            assert {k: mine[k] for k in ("PE", "SIMD") if k in mine} == \
                   {k: theirs[k] for k in ("PE", "SIMD") if k in theirs}


def test_write_finn_build_options(graphs, tmp_path):
    path = graphs[("bn-relu", 2)]
    files = finn_handoff.write_finn_build(path, tmp_path / "p", fpga_part="xczu3eg-sbva484-1-e", folding="finn",
                                target_fps=5000)
    cfg = json.loads(files["build_config"].read_text())
    assert cfg["fpga_part"] == "xczu3eg-sbva484-1-e" and "shell_flow_type" not in cfg
    assert "step_target_fps_parallelization" in cfg["steps"] and "folding_config_file" not in cfg
    assert "bitfile" not in cfg["generate_outputs"]
    with pytest.raises(ConfigError, match="unknown board"):
        finn_handoff.write_finn_build(path, tmp_path / "x", board="NoSuchBoard")
    with pytest.raises(ConfigError, match="board"):
        finn_handoff.write_finn_build(path, tmp_path / "x")
    with pytest.raises(ConfigError, match="target_fps"):
        finn_handoff.write_finn_build(path, tmp_path / "x", board="ZCU104", folding="finn")
    with pytest.raises(UnsupportedError, match="ChannelPad"):
        finn_handoff.write_finn_build(path, tmp_path / "x", board="ZCU104", channelpad="error")


def insert_fifo(model, tensor: str, at_end: bool = False):
    """Put a StreamingFIFO (onebit's op) after ``tensor``; with ``at_end`` it becomes the graph output."""
    from onnx import TensorProto

    shape = list(model.get_tensor_shape(tensor))
    dt = model.get_tensor_datatype(tensor)
    new = tensor + "_fifo"
    producer = model.find_producer(tensor)
    if at_end:
        producer.output[0] = new  # the FIFO takes over the graph output's name
        src, dst = new, tensor
    else:
        src, dst = tensor, new
        for node in model.graph.node:
            for i, name in enumerate(node.input):
                if name == tensor:
                    node.input[i] = new
    fifo = helper.make_node("StreamingFIFO", [src], [dst], name=f"StreamingFIFO_{len(model.graph.node)}",
                            domain=FINN_DOMAIN, backend="fpgadataflow", depth=8, folded_shape=[*shape, 1],
                            normal_shape=shape, dataType=dt.name)
    model.graph.node.insert(list(model.graph.node).index(producer) + 1, fifo)
    model.graph.value_info.append(helper.make_tensor_value_info(new, TensorProto.FLOAT, shape))
    model.set_tensor_datatype(new, dt)
    return model


def test_write_finn_build_drops_onebit_fifos(graphs, tmp_path):
    source = load_dataflow(graphs[("srelu", 4)])
    model = load_dataflow(graphs[("srelu", 4)])
    insert_fifo(model, "MVAU_0_out")
    insert_fifo(model, model.graph.output[0].name, at_end=True)
    model.save(str(tmp_path / "fifo.onnx"))
    x = frames(3, seed=4)
    out = source.graph.output[0].name
    assert np.array_equal(execute(load_dataflow(tmp_path / "fifo.onnx"), x)[out], execute(source, x)[out])
    files = finn_handoff.write_finn_build(tmp_path / "fifo.onnx", tmp_path / "b", board="ZCU104")
    handoff = load_dataflow(files["model"])
    assert "StreamingFIFO" not in {n.op_type for n in handoff.graph.node}
    assert handoff.graph.output[0].name == out
    assert np.array_equal(execute(handoff, x)[out], execute(source, x)[out])
    assert len(json.loads(files["handoff"].read_text())["removed"]) == 2


def test_cycle_estimates_default_to_the_zcu104():
    assert finn_worker.DEFAULT_PART == finn_handoff.BOARDS["ZCU104"][0]


def test_missing_finn_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv(finn_worker.ENV_PYTHON, str(tmp_path / "no-python"))
    with pytest.raises(finn_worker.FinnError, match="not an executable"):
        finn_worker.finn_python()
    monkeypatch.delenv(finn_worker.ENV_PYTHON)
    monkeypatch.setattr(finn_worker, "_IN_PROCESS", False)
    with pytest.raises(finn_worker.FinnError, match="FINN\\+ not installed; see DEVELOPERS.md"):
        finn_worker.finn_exp_cycles("unused.onnx")


def finn_builder_python() -> tuple[str | None, str]:
    """``(interpreter with FINN+'s builder, "")``, or ``(None, why not)``."""
    if not FINN_OK:
        return None, f"FINN+ not available: {FINN_WHERE}"
    python = finn_worker.finn_python() or sys.executable
    probe = subprocess.run([python, "-c", "import mashumaro, mip, pandas, finn.builder.build_dataflow_config"],
                           capture_output=True, timeout=300)
    if probe.returncode != 0:
        return None, "FINN+'s builder needs its full dependency list (mashumaro, mip, pandas); see DEVELOPERS.md"
    return python, ""


@pytest.mark.slow
def test_finn_builder_runs_the_build_folder(graphs, tmp_path):
    """FINN+'s builder accepts the folder and runs it up to the estimate reports (no Vivado needed)."""
    python, why = finn_builder_python()
    if python is None:
        pytest.skip(why)
    path = graphs[("srelu", 4)]
    files = finn_handoff.write_finn_build(path, tmp_path / "b", board="Pynq-Z2", clock_mhz=100)
    build = files["build_script"].parent
    env = {k: v for k, v in os.environ.items() if k not in ("XILINX_VIVADO", "FINN_BUILD_DIR", "FINN_SETTINGS")}
    snippet = ("import json, sys; from finn.builder.build_dataflow_config import DataflowBuildConfig as C; "
               "d = json.load(open(sys.argv[1])); C(**d); C.from_dict(d); print('constructs')")
    proc = subprocess.run([python, "-c", snippet, str(files["build_config"])], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0 and "constructs" in proc.stdout, proc.stderr[-2000:]
    for flag in ("--check", "--estimate-only"):
        proc = subprocess.run([python, "build.py", flag], cwd=build, capture_output=True, text=True, timeout=900,
                              env=env)
        assert proc.returncode == 0, f"build.py {flag}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    # FINN+ applied onebit's folding to the right nodes (matched by output tensor) ...
    source = load_dataflow(path)
    by_tensor = {n.output[0]: n for n in source.graph.node}
    inter = build / "build_output" / "intermediate_models"
    folded = onnx.load(str(inter / "step_apply_folding_config.onnx"))
    for node in folded.graph.node:
        mine, theirs = node_attrs(by_tensor[node.output[0]]), node_attrs(node)
        if by_tensor[node.output[0]].op_type == "ChannelPad":
            assert (theirs["PE"], theirs["SIMD"]) == (mine["PE"], mine["NumChannels"])
        else:
            assert all(theirs[k] == mine[k] for k in ("PE", "SIMD") if k in mine), node.name
    # ... and its estimate report has onebit's cycles for the layers whose formulas onebit copies
    final = onnx.load(str(inter / "step_generate_estimate_reports.onnx"))
    cycles = json.loads((build / "build_output" / "report" / "estimate_layer_cycles.json").read_text())
    for node in final.graph.node:
        ours = by_tensor[node.output[0]]
        if ours.op_type in SAME_CYCLES:
            assert cycles[node.name] == get_op(ours).exp_cycles(), node.name
