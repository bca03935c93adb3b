"""Folding: PE/SIMD validation, FINN's cycle formulas, the search for a frame rate or a LUT budget, the width
converters and FIFOs it needs (execution stays bit-identical), and the ``onebit fold`` command."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import helper

from onebit.errors import FoldingError, GraphError
from onebit.export.dataflow.folding import apply_folding, divisors, strip_stream_nodes
from onebit.export.dataflow.folding_report import cycles, folding_report, format_report, initiation_interval
from onebit.export.dataflow.folding_search import Search, fold_for_budget, fold_for_target
from onebit.export.dataflow.executor import execute
from onebit.export.dataflow.fold_cli import fold_cmd
from onebit.export.dataflow.graph import get_op, load_dataflow, scores_name
from onebit.export.dataflow.insert import DWC, FIFO, InsertDWC, InsertFIFO, RemoveStreamNodes, stream_edges
from testkit import call, count_window_cycles, tiny_dataflow

CLOCK = 100.0


def attr(node, name):
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else (list(v) if isinstance(v, (list, tuple)) else v)
    return None


@pytest.fixture(scope="module")
def graph_file(tmp_path_factory):
    """The tiny WRN (1x8x8 input, random weights) as an unfolded dataflow graph, built once."""
    return tiny_dataflow(tmp_path_factory.mktemp("fold"))


@pytest.fixture
def model(graph_file):
    return load_dataflow(graph_file)


@pytest.fixture(scope="module")
def frames(graph_file):
    m = load_dataflow(graph_file)
    dt = m.get_tensor_datatype(m.graph.input[0].name)
    shape = m.get_tensor_shape(m.graph.input[0].name)
    rng = np.random.default_rng(0)
    return rng.integers(dt.min(), dt.max() + 1, (6, *shape[1:])).astype(np.float32)


@pytest.fixture(scope="module")
def reference(graph_file, frames):
    return execute(load_dataflow(graph_file), frames, taps=False)


def node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def first(model, op_type):
    return next(n for n in model.graph.node if n.op_type == op_type)


# ----- apply_folding ----------------------------------------------------------------------------------------
def test_unfolded_graph_has_pe_simd_one(model):
    for n in model.graph.node:
        for a in ("PE", "SIMD"):
            assert attr(n, a) in (None, 1)


def test_divisibility_error_names_node_attribute_and_divisors(model):
    mvau = first(model, "MVAU")
    mh = attr(mvau, "MH")
    bad = next(p for p in range(2, mh + 2) if mh % p)
    with pytest.raises(FoldingError, match=rf"node {mvau.name} \(MVAU\): PE={bad} must divide {mh}; allowed: 1, ") as e:
        apply_folding(model, {mvau.name: {"PE": bad}})
    assert "\n" not in str(e.value)
    thr = first(model, "Thresholding")
    with pytest.raises(FoldingError, match=rf"{thr.name} \(Thresholding\): PE=0 must divide"):
        apply_folding(model, {thr.name: {"PE": 0}})
    with pytest.raises(FoldingError, match="no node named 'nope'"):
        apply_folding(model, {"nope": {"PE": 1}})
    with pytest.raises(FoldingError, match=rf"{thr.name} \(Thresholding\): no folding attribute 'SIMD'; expected one "
                                           r"of PE"):
        apply_folding(model, {thr.name: {"SIMD": 1}})
    with pytest.raises(FoldingError, match="must divide"):
        apply_folding(model, {mvau.name: {"SIMD": 2.0}})


def test_parallel_window_needs_full_simd(model):
    swg = next(n for n in model.graph.node if n.op_type == "ConvolutionInputGenerator" and attr(n, "IFMChannels") > 1)
    with pytest.raises(FoldingError, match=rf"{swg.name} .*parallel_window=1 needs depthwise=0 and SIMD = IFMChannels"):
        apply_folding(model, {swg.name: {"SIMD": 1, "parallel_window": 1}})


def test_swg_and_padding_follow_the_mvau(model):
    # an MVAU fed by FMPadding -> SWG with 16 channels
    mvau = next(n for n in model.graph.node if n.op_type == "MVAU" and attr(n, "MW") == 144)
    swg = model.find_producer(mvau.input[0])
    pad = model.find_producer(swg.input[0])
    assert (swg.op_type, pad.op_type) == ("ConvolutionInputGenerator", "FMPadding")
    apply_folding(model, {mvau.name: {"SIMD": 8, "PE": 4}})
    assert (attr(swg, "SIMD"), attr(swg, "parallel_window"), attr(pad, "SIMD")) == (8, 0, 8)
    apply_folding(model, {mvau.name: {"SIMD": 144}})
    assert (attr(swg, "SIMD"), attr(swg, "parallel_window"), attr(pad, "SIMD")) == (16, 1, 16)
    assert get_op(swg).outstream_width() == get_op(mvau).instream_width(0)  # a whole window per beat
    apply_folding(model, {mvau.name: {"SIMD": 48}})  # 3 taps per beat: whole windows, then a DWC
    assert (attr(swg, "SIMD"), attr(swg, "parallel_window")) == (16, 1)
    # a depthwise SWG uses its Pool's PE
    pool = first(model, "Pool")
    dw = model.find_producer(pool.input[0])
    apply_folding(model, {pool.name: {"PE": 4}})
    assert attr(dw, "SIMD") == 4 and get_op(dw).outstream_width() == get_op(pool).instream_width(0)
    # an explicitly given SWG keeps its value
    apply_folding(model, {mvau.name: {"SIMD": 4}, swg.name: {"SIMD": 2}})
    assert attr(swg, "SIMD") == 2


# ----- cycles: FINN's closed forms ----------------------------------------------------------------------------
def test_cycles_follow_finn_closed_forms(model):
    mvaus = [n for n in model.graph.node if n.op_type == "MVAU"]
    cfg = {}
    for n in mvaus:
        mw, mh = attr(n, "MW"), attr(n, "MH")
        cfg[n.name] = {"PE": divisors(mh)[1], "SIMD": divisors(mw)[-2]}
    thr = [n for n in model.graph.node if n.op_type == "Thresholding" and attr(n, "NumChannels") % 2 == 0]
    cfg.update({n.name: {"PE": 2} for n in thr})
    apply_folding(model, cfg)
    cyc = cycles(model)
    for n in mvaus:
        mw, mh = attr(n, "MW"), attr(n, "MH")
        pe, simd = cfg[n.name]["PE"], cfg[n.name]["SIMD"]
        assert cyc[n.name] == (mh // pe) * (mw // simd) * int(np.prod(attr(n, "numInputVectors")))
    for n in thr:
        assert cyc[n.name] == int(np.prod(attr(n, "numInputVectors"))) * attr(n, "NumChannels") // 2
    for n in model.graph.node:
        if n.op_type == "FMPadding":
            (h, w), (t, l, b, r) = attr(n, "ImgDim"), attr(n, "Padding")
            assert cyc[n.name] == (h + t + b) * (w + l + r) * attr(n, "NumChannels") // attr(n, "SIMD")
        is_3x3 = attr(n, "ConvKernelDim") == [3, 3] and attr(n, "Stride") == [1, 1]
        if n.op_type == "ConvolutionInputGenerator" and is_3x3:
            # FINN's ConvolutionInputGenerator_rtl (default style): buffer + OH * max(write, read) block cycles
            (h, w), cf = attr(n, "IFMDim"), attr(n, "IFMChannels") // attr(n, "SIMD")
            assert cyc[n.name] == count_window_cycles(h, w, 3, 1, cf, bool(attr(n, "depthwise")), bool(attr(n, "parallel_window")))
    assert initiation_interval(model) == max(cyc.values())


def test_one_mvau_by_hand(model):
    mvau = next(n for n in model.graph.node if n.op_type == "MVAU" and attr(n, "MW") == 144 and attr(n, "MH") == 16)
    apply_folding(model, {mvau.name: {"PE": 4, "SIMD": 8}})
    vecs = int(np.prod(attr(mvau, "numInputVectors")))
    assert cycles(model)[mvau.name] == (16 // 4) * (144 // 8) * vecs == 4 * 18 * 64


def test_report_rows_and_totals(model):
    rep = folding_report(model, CLOCK)
    json.dumps(rep)
    t = rep["totals"]
    assert t["ii_cycles"] == initiation_interval(model) == max(r["cycles"] for r in rep["layers"])
    assert t["fps"] == pytest.approx(CLOCK * 1e6 / t["ii_cycles"])
    assert t["LUT"] == sum(r["LUT"] for r in rep["layers"]) and t["latency_cycles"] >= t["ii_cycles"]
    assert {r["name"] for r in rep["layers"]} == {n.name for n in model.graph.node}
    text = format_report(rep)
    assert "II " in text and t["bottleneck"] in text


# ----- the search -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fps", [2e4, 1.5e5, 5e5])
def test_fold_for_target_meets_the_target_everywhere(model, fps):
    model, rep = fold_for_target(model, fps, CLOCK)
    target = CLOCK * 1e6 / fps
    cyc = cycles(model)  # DWCs included
    assert any(n.op_type == DWC for n in model.graph.node) or fps < 1e5
    assert max(cyc.values()) <= target
    assert rep["totals"]["fps"] >= fps and rep["totals"]["ii_cycles"] == max(cyc.values())
    assert rep["search"]["estimated_LUT"] == rep["totals"]["LUT"]
    for prod, _, cons, i, _ in stream_edges(model):
        assert get_op(prod).outstream_width() == get_op(cons).instream_width(i), (prod.name, cons.name)


def test_fold_for_target_is_least_parallel_per_unit(model):
    target = CLOCK * 1e6 / 5e4
    fold_for_target(model, 5e4, CLOCK)
    bare = copy.deepcopy(model)
    assert strip_stream_nodes(bare) > 0
    search = Search(bare)  # (resets the copy's folding to the least parallel)
    for u in search.units:  # no cheaper folding of a unit also meets the target
        chosen = next(k for k, r in enumerate(u.rungs)
                      if all(attr(node(model, n), a) == v for n, attrs in r.items() for a, v in attrs.items()))
        assert all(c > target for c, *_ in u.stats[:chosen])


def test_too_high_fps_names_the_bottleneck(model):
    with pytest.raises(FoldingError) as e:
        fold_for_target(copy.deepcopy(model), 1e9, CLOCK)
    msg = str(e.value)
    m = re.search(r"node (\S+) \((\w+)\) needs at least ([\d,]+) cycles per frame even fully unfolded, i\.e\. at "
                  r"most ([\d,]+) fps", msg)
    assert m and msg.startswith("target_fps 1e+09") and "\n" not in msg, msg
    best = int(m.group(3).replace(",", ""))
    assert node(model, m.group(1)).op_type == m.group(2)
    # the bound is exact: that node's best is the fastest the graph can go
    _, rep = fold_for_target(copy.deepcopy(model), CLOCK * 1e6 / best, CLOCK)
    assert rep["totals"]["ii_cycles"] == best
    with pytest.raises(FoldingError, match=m.group(1)):
        fold_for_target(copy.deepcopy(model), CLOCK * 1e6 / (best - 1), CLOCK)


@pytest.mark.parametrize("bad", [0, -5, float("nan")])
def test_nonpositive_targets_are_rejected(model, bad):
    with pytest.raises(FoldingError, match="target_fps: expected a positive number"):
        fold_for_target(model, bad, CLOCK)
    with pytest.raises(FoldingError, match="max_luts: expected a positive integer"):
        fold_for_budget(model, bad, CLOCK)


def test_budget_search_never_exceeds_the_budget(model):
    least = Search(copy.deepcopy(model)).total_lut()
    iis = []
    for budget in [least, int(least * 1.3), int(least * 2), int(least * 5), 10**9]:
        m, rep = fold_for_budget(copy.deepcopy(model), budget, CLOCK)
        assert rep["totals"]["LUT"] <= budget and rep["search"]["estimated_LUT"] == rep["totals"]["LUT"]
        assert rep["totals"]["ii_cycles"] == initiation_interval(m)
        iis.append(rep["totals"]["ii_cycles"])
    assert iis[-1] < iis[0] and iis == sorted(iis, reverse=True)
    # an unlimited budget reaches the fastest folding there is
    best = max(s.stats[-1][0] for s in Search(copy.deepcopy(model)).units)
    assert iis[-1] == best
    with pytest.raises(FoldingError, match=rf"max_luts {least - 1:,}: even the least parallel folding"):
        fold_for_budget(copy.deepcopy(model), least - 1, CLOCK)


def test_target_within_budget(model):
    _, rep = fold_for_target(copy.deepcopy(model), 5e4, CLOCK)
    need = rep["totals"]["LUT"]
    _, rep2 = fold_for_target(copy.deepcopy(model), 5e4, CLOCK, max_luts=need)
    assert rep2["totals"]["LUT"] == need
    with pytest.raises(FoldingError, match=r"target_fps 50000 needs about [\d,]+ LUTs .* over max_luts .* that "
                                           r"budget reaches about [\d,]+ fps"):
        fold_for_target(copy.deepcopy(model), 5e4, CLOCK, max_luts=need - 1)


# ----- DWCs and FIFOs: execution stays bit-identical ----------------------------------------------------------
def check_annotations(model):
    for n in model.graph.node:
        if n.op_type in (DWC, FIFO):
            out = n.output[0]
            assert model.get_tensor_shape(out) == list(get_op(n).output_shape())
            assert model.get_tensor_datatype(out).name == attr(n, "dataType")


def test_folded_graph_with_dwcs_and_fifos_executes_identically(model, frames, reference):
    model, _ = fold_for_target(model, 2e5, CLOCK)
    n_dwc = sum(n.op_type == DWC for n in model.graph.node)
    assert n_dwc > 0
    assert all(re.fullmatch(rf"{DWC}_\d+", n.name) for n in model.graph.node if n.op_type == DWC)
    assert InsertDWC().apply(model)[1] is False  # nothing left to convert
    depths = {}
    prod, _, cons, _, tensor = stream_edges(model)[3]
    depths[(prod.name, cons.name)] = 17
    ins = InsertFIFO(depths, default=4)
    ins.apply(model)
    assert InsertFIFO().apply(model)[1] is False
    fifos = [n for n in model.graph.node if n.op_type == FIFO]
    assert len(fifos) == len(ins.inserted) > n_dwc
    assert sorted(attr(n, "depth") for n in fifos)[-1] == 17 and {attr(n, "depth") for n in fifos} == {4, 17}
    for n in fifos:
        p = model.find_producer(n.input[0])
        assert get_op(n).instream_width() == get_op(p).outstream_width()
        assert attr(n, "folded_shape") == list(get_op(p).folded_output_shape())
    check_annotations(model)
    for dwc in (n for n in model.graph.node if n.op_type == DWC):
        assert attr(dwc, "inWidth") != attr(dwc, "outWidth")
    assert scores_name(model) in {o for n in model.graph.node for o in n.output}
    out = execute(model, frames)
    assert out.keys() == reference.keys()
    for k in reference:
        np.testing.assert_array_equal(out[k], reference[k])
    # and through qonnx's transform (deep copy + cleanup), from a graph without stream nodes
    stripped = model.transform(RemoveStreamNodes(), cleanup=False)
    assert not any(n.op_type in (DWC, FIFO) for n in stripped.graph.node)
    again = stripped.transform(InsertDWC()).transform(InsertFIFO())
    check_annotations(again)
    out2 = execute(again, frames)
    for k in reference:
        np.testing.assert_array_equal(out2[k], reference[k])


def test_insert_fifo_needs_matching_widths(model):
    apply_folding(model, {first(model, "MVAU").name: {"PE": 2}})
    with pytest.raises(GraphError, match=r"stream widths differ .*\(InsertDWC\)"):
        InsertFIFO().apply(model)


def test_refolding_a_folded_graph(model, frames, reference):
    model, _ = fold_for_target(model, 2e5, CLOCK)
    InsertFIFO().apply(model)
    model, rep = fold_for_budget(model, 40_000, CLOCK)
    assert rep["search"]["removed_stream_nodes"] > 0 and not any(n.op_type == FIFO for n in model.graph.node)
    assert rep["totals"]["LUT"] <= 40_000
    for k, v in execute(model, frames).items():
        np.testing.assert_array_equal(v, reference[k])


def test_report_folding_reapplies(graph_file):
    m1, rep = fold_for_target(load_dataflow(graph_file), 1e5, CLOCK)
    m2 = load_dataflow(graph_file)
    apply_folding(m2, json.loads(json.dumps(rep["folding"])))
    InsertDWC().apply(m2)
    assert cycles(m2) == cycles(m1)


# ----- the command ----------------------------------------------------------------------------------------
def test_fold_command_writes_graph_and_report(graph_file, tmp_path, frames, reference):
    runner = CliRunner()
    out = tmp_path / "folded.onnx"
    res = runner.invoke(fold_cmd, [str(graph_file), "--target-fps", "100000", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "II " in res.output and "MVAU" in res.output
    rep = json.loads((tmp_path / "folded.folding.json").read_text())
    assert rep["graph"] == str(out) and rep["totals"]["fps"] >= 1e5
    m = load_dataflow(out)
    assert initiation_interval(m) == rep["totals"]["ii_cycles"]
    for k, v in execute(m, frames).items():
        np.testing.assert_array_equal(v, reference[k])
    # --json, a budget, the default output name
    res = runner.invoke(fold_cmd, [str(graph_file), "--max-luts", "60000", "--clock-mhz", "200", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    default = graph_file.with_name(graph_file.stem + "_folded.onnx")
    assert rep["graph"] == str(default) and default.is_file()
    assert graph_file.with_name(graph_file.stem + "_folded.folding.json").is_file()
    assert rep["totals"]["LUT"] <= 60000 and rep["totals"]["clock_mhz"] == 200
    # both: a target within a budget; and --config re-applies a report's folding
    res = runner.invoke(fold_cmd, [str(graph_file), "--target-fps", "50000", "--max-luts", "10000000", "--out",
                               str(tmp_path / "both.onnx")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(fold_cmd, [str(graph_file), "--config", str(tmp_path / "both.folding.json"), "--out",
                               str(tmp_path / "cfg.onnx"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["totals"]["ii_cycles"] == \
        json.loads((tmp_path / "both.folding.json").read_text())["totals"]["ii_cycles"]


@pytest.mark.parametrize("args, pattern", [
    (["--target-fps", "1e12"], r"--target-fps 1e\+12: node \S+ \(\w+\) needs at least"),
    (["--target-fps", "-3"], "--target-fps: expected a positive number, got -3"),
    (["--max-luts", "-5"], "--max-luts: expected a positive integer, got -5"),
    (["--max-luts", "10"], "--max-luts 10: even the least parallel folding"),
    (["--target-fps", "1000", "--clock-mhz", "0"], "--clock-mhz: expected a positive number"),
    ([], "give --target-fps, --max-luts or --device"),
    (["--device", "xc7"], "--device: unknown device 'xc7'; expected one of"),
    (["--device", "ecp5-25k", "--max-luts", "9000"], "give --device or --max-luts"),
    (["--device", "ecp5-25k", "--config", "c.json"], "cannot be combined with"),
])
def test_fold_command_errors(graph_file, tmp_path, args, pattern, capsys):
    code, _, err = call(capsys, "fold", graph_file, "--out", tmp_path / "x.onnx", *args)  # through cli.main
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ") and re.search(pattern, err), err
    assert not (tmp_path / "x.onnx").exists()


def test_fold_command_through_main_prints_one_error_line(graph_file, capsys):
    from onebit import cli

    if "fold" not in cli.cli.commands:
        cli.cli.add_command(fold_cmd)
    with pytest.raises(SystemExit) as e:
        cli.main(["fold", str(graph_file), "--target-fps", "1e12"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --target-fps")


def test_fold_for_a_device_is_the_fastest_folding_within_its_luts(graph_file, tmp_path, capsys):
    from onebit.hw.synth import DEVICES

    for name in ("ecp5-45k", "ecp5-85k"):
        code, out, err = call(capsys, "fold", graph_file, "--device", name, "--out", tmp_path / f"{name}.onnx",
                              "--json")
        assert code == 0, err
        rep = json.loads(out)
        dev = DEVICES[name]
        assert rep["search"]["max_luts"] == dev.luts and rep["totals"]["LUT"] <= dev.luts
        assert rep["device"] == {"name": name, "luts": dev.luts, "LUT": rep["totals"]["LUT"],
                                 "bram_bits": dev.bram_bits, "mem_bits": rep["totals"]["mem_bits"],
                                 "memory_fits": rep["totals"]["mem_bits"] <= dev.bram_bits}
        budget = json.loads(call(capsys, "fold", graph_file, "--max-luts", dev.luts, "--out", tmp_path / "b.onnx",
                                 "--json")[1])
        assert budget["totals"]["ii_cycles"] == rep["totals"]["ii_cycles"]  # the same search, the device's budget
    small, large = (json.loads((tmp_path / f"{n}.folding.json").read_text())["totals"]["ii_cycles"]
                    for n in ("ecp5-45k", "ecp5-85k"))
    assert large <= small
    code, out, err = call(capsys, "fold", graph_file, "--device", "ecp5-45k", "--out", tmp_path / "t.onnx")
    assert code == 0 and "ecp5-45k: about" in out and "block-RAM bits (estimates)" in out, out
