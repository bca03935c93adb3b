"""The whole tiny WRN in RTL: `onebit build` (Verilator co-simulation bit-exact and cycle-exact against the
simulator, Yosys synthesis without multipliers), mismatch reports that name the layer, deadlocks refused before
any build, and `onebit verify` on a trained run."""

from __future__ import annotations

import json
import re

import pytest

from testkit import call, tiny_dataflow
from onebit.errors import CosimError
from onebit.export.dataflow.folding_search import fold_for_target
from onebit.export.dataflow.graph import load_dataflow
from onebit.export.dataflow.graph import random_frames as random_inputs
from onebit.hw.cosim import cosimulate
from onebit.hw.top import generate
from onebit.sim.deadlock import DeadlockError
from onebit.sim.simulation import simulate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_folded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    model, _ = fold_for_target(load_dataflow(tiny_dataflow(folder)), 5000, 50)
    path = folder / "tiny_folded.onnx"
    model.save(str(path))
    return path


def test_build_tiny_net(tiny_folded, tmp_path, capsys):
    """RTL of every layer, lint-clean; 3 frames bit-exact on every edge and every beat's cycle equal to the
    simulator's; Yosys synthesis (ECP5) maps it without DSPs or multipliers."""
    code, out, err = call(capsys, "build", tiny_folded, "--out", tmp_path / "b", "--frames", 3, "--no-pnr", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["rtl"]["lint"].startswith("clean")
    c = r["cosim"]
    assert c["outputs_equal"] and c["cycles_equal"] and not c["mismatches"]
    sim = simulate(load_dataflow(tiny_folded), frames=3, depths=r["rtl"]["fifo_depths"], fifo_sizing=False)
    assert c["rtl"]["ii"] == sim.ii and c["rtl"]["latency"] == sim.latency
    res = r["synth"]["resources"]
    assert res["luts"] > 1000 and res["ffs"] > 500
    assert res["dsp"] == 0 and res["multipliers"] == 0
    assert (tmp_path / "b" / "build.json").exists() and (tmp_path / "b" / "rtl" / "onebit_top.v").exists()


def test_outputs_of_every_frame_after_the_edge_checked_ones(tiny_folded, tmp_path):
    """Past the edge-by-edge frames, each frame's output and end cycle; a time budget of 0 checks none more;
    a differing output names its frame."""
    from onebit.export.dataflow.executor import execute
    from onebit.hw.build import build

    model = load_dataflow(tiny_folded)
    x = random_inputs(model, 11)
    r = build(tiny_folded, tmp_path / "a", inputs=x, synth=False)
    assert r["cosim"]["frames"] == 4 and r["cosim"]["outputs_equal"]
    o = r["cosim_outputs"]
    assert o["frames"] == o["of"] == 11 and o["outputs_equal"] and o["cycles_equal"] and not o["mismatches"]
    assert build(tiny_folded, tmp_path / "b", inputs=x, synth=False, cosim_seconds=0)["cosim_outputs"]["frames"] == 4
    labels = execute(model, x)[model.graph.output[0].name].copy()
    labels[9] = labels[9] + 1
    with pytest.raises(CosimError, match=r"output of frame 9: RTL \[.*\], reference \[.*\] \(1 of 11 frames differ\)"):
        build(tiny_folded, tmp_path / "c", inputs=x, expected=labels, synth=False)


def test_outputs_checked_in_several_runs_at_once(tiny_folded, tmp_path):
    """The output check split into runs from reset (one per CPU in `onebit build`): the same verdict as one
    run, and a differing output or end cycle names its frame in the whole set."""
    from onebit.export.dataflow.executor import execute
    from onebit.hw import verilator
    from onebit.hw.cosim import cosimulate_outputs, frame_done_cycles

    model = load_dataflow(tiny_folded)
    x = random_inputs(model, 10)
    design = generate(model, tmp_path)
    exe = verilator.build(design, len(x), taps=False)
    schedule = frame_done_cycles(design, len(x))
    ok = cosimulate_outputs(design, exe, x, done=schedule, workers=3)
    assert ok.frames == 10 and ok.outputs_equal and ok.cycles_equal and not ok.mismatches
    assert sorted(p.name for p in design.rtl.glob("run*")) == ["run0", "run1", "run2"]
    want = execute(model, x)[model.graph.output[0].name].copy()
    want[8] = want[8] + 1  # a frame of the last run
    bad = cosimulate_outputs(design, exe, x, want, done=schedule, workers=3)
    assert not bad.outputs_equal and re.match(r"output of frame 8: RTL .* \(1 of 10 frames differ\)", bad.mismatches[0])
    done, exact = schedule
    late = done.copy()
    late[3] += 1  # runs of 3, 3 and 4 frames: only the last has a fourth frame (frame 9 of the set)
    off = cosimulate_outputs(design, exe, x, done=(late, exact), workers=3)
    assert not off.cycles_equal and "frame 9's last output beat" in off.mismatches[0]
    assert "of the run from frame 6" in off.mismatches[0]


def test_mismatch_names_the_first_differing_layer(tiny_folded, tmp_path):
    model = load_dataflow(tiny_folded)
    design = generate(model, tmp_path)
    mvau = next(l for l in design.layers if l.op.onnx_node.op_type == "MVAU" and l.name != "MVAU_0")
    mem = design.rtl / "mem" / f"{mvau.ident}_w_g000.mem"
    words = mem.read_text().split()
    width = len(words[0])
    words[0] = format(int(words[0], 16) ^ 1, f"0{width}x")  # one weight bit of the layer flipped
    mem.write_text("\n".join(words) + "\n")
    with pytest.raises(CosimError, match=rf"layer {mvau.name}: tensor '[^']+' frame 0 element \["):
        cosimulate(model, random_inputs(model, 1), tmp_path, design=design)


def test_too_shallow_shortcut_is_refused_before_building(tiny_folded, tmp_path):
    model = load_dataflow(tiny_folded)
    dup = next(n for n in model.graph.node if n.op_type == "DuplicateStreams")
    with pytest.raises(DeadlockError, match="FIFO"):
        generate(model, tmp_path, depths={"default": 1, dup.output[1]: 1, dup.output[0]: 1})
    assert not (tmp_path / "rtl" / "onebit_top.v").exists()


def test_build_refuses_bad_flags(tiny_folded, tmp_path, capsys):
    code, _, err = call(capsys, "build", tiny_folded, "--out", tmp_path, "--device", "xc7a35t")
    assert code == 2 and re.fullmatch(r"error: unknown device 'xc7a35t'; expected one of .*\n", err)
    code, _, err = call(capsys, "build", tmp_path / "missing.onnx", "--out", tmp_path)
    assert code == 2 and "missing.onnx" in err and len(err.strip().splitlines()) == 1


def test_verify_whole_chain(trained_run, tmp_path, capsys):
    run, _ = trained_run
    code, out, err = call(capsys, "verify", run, "--out", tmp_path / "v", "--frames", 4, "--json")
    assert code == 0, err
    r = json.loads(out)
    checks = {c["check"]: c for c in r["checks"]}
    assert r["passed"] and not r["failed"], checks
    for name in ("PyTorch = QONNX execution", "QONNX = integer graph", "PyTorch integer scores = integer graph",
                 "integer graph = dataflow graph (scores, labels)", "dataflow graph = simulator (scores)",
                 "dataflow graph = simulator (labels)", "RTL (Verilator) = reference executor, every edge",
                 "RTL cycles = simulator, every beat"):
        assert checks[name]["verdict"] == "pass", checks[name]
    assert r["cosim"]["frames"] == 4
