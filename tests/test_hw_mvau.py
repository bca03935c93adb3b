"""MVAU RTL against the reference executor and the simulator, through Verilator."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qonnx.core.datatype import DataType

from hwkit import assert_cosim, dataflow_graph
from testkit import call
from onebit.errors import UnsupportedError
from onebit.export.dataflow import graph as dfg
from onebit.export.dataflow.base import make_node
from onebit.export.dataflow.ops.mvau import MVAU
from onebit.export.dataflow.ops.thresholding import Thresholding
from onebit.hw.encode import signed_bits
from onebit.hw.top import generate

pytestmark = pytest.mark.slow


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def mvau_layer(name, x, y, mw, mh, pe, simd, vecs, in_dt, rng, wdt="BIPOLAR", steps=0, signed_out=False,
               acc_dt=None):
    """An MVAU node, its initializers and its output type: ``steps`` thresholds per channel (0: none, the
    accumulator leaves as ``acc_dt``, by default the exact INT/UINT of its range)."""
    idt = DataType[in_dt]
    if wdt in ("BIPOLAR", "BINARY"):
        w = rng.choice([-1.0, 1.0] if wdt == "BIPOLAR" else [0.0, 1.0], (mw, mh))
    else:  # k-bit: every value of the type, its extremes included
        w = rng.integers(int(DataType[wdt].min()), int(DataType[wdt].max()) + 1, (mw, mh)).astype(np.float64)
    a, b = w * int(idt.min()), w * int(idt.max())
    lo, hi = int(np.minimum(a, b).sum(0).min()), int(np.maximum(a, b).sum(0).max())
    acc_dt = acc_dt or (f"UINT{max(1, hi.bit_length())}" if lo >= 0 else f"INT{signed_bits(lo, hi)}")
    inits = {f"{name}_w": w}
    attrs = dict(PE=pe, SIMD=simd, MW=mw, MH=mh, inputDataType=in_dt, weightDataType=wdt, accDataType=acc_dt,
                 numInputVectors=vecs, binaryXnorMode=0)
    ins = [x, f"{name}_w"]
    if steps:
        # thresholds partly outside the sum's range, with ties and a non-integer one; some layers share one row
        rows = 1 if rng.random() < 0.25 else mh
        t = np.sort(rng.integers(lo - 3, hi + 4, (rows, steps)), axis=1).astype(np.float32)
        t[:, 0] -= 0.5
        bits = max(1, steps.bit_length())
        if steps == 1 and not signed_out:
            out_dt, act = "BIPOLAR", 0
        else:
            out_dt, act = (f"INT{bits + 1}", -(steps // 2)) if signed_out else (f"UINT{bits}", 0)
        inits[f"{name}_t"] = t
        node = make_node(MVAU, ins + [f"{name}_t"], [y], name, noActivation=0, outputDataType=out_dt, ActVal=act,
                         **attrs)
    else:
        out_dt = acc_dt
        node = make_node(MVAU, ins, [y], name, noActivation=1, outputDataType=out_dt, **attrs)
    return node, inits, out_dt


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_mvau(tmp_path_factory, data):
    mw = data.draw(st.sampled_from([1, 2, 3, 4, 6, 8, 9, 12, 16]))
    mh = data.draw(st.sampled_from([1, 2, 3, 4, 5, 6, 8]))
    pe = data.draw(st.sampled_from(divisors(mh)))
    simd = data.draw(st.sampled_from(divisors(mw)))
    h, w = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    in_dt = data.draw(st.sampled_from(["INT8", "UINT8", "INT4", "UINT2", "UINT1", "INT16", "INT3", "BIPOLAR"]))
    wdt = data.draw(st.sampled_from(["BIPOLAR", "BIPOLAR", "BINARY"]))
    steps = data.draw(st.sampled_from([0, 0, 1, 2, 3, 7, 15, 100, 255]))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    node, inits, out_dt = mvau_layer("MVAU_0", "x", "y", mw, mh, pe, simd, [1, h, w], in_dt, rng, wdt, steps,
                                     signed_out=data.draw(st.booleans()),
                                     acc_dt=data.draw(st.sampled_from([None, "INT32"])))
    m = dataflow_graph([node], ("x", (1, h, w, mw), in_dt), ("y", (1, h, w, mh), out_dt), inits)
    assert_cosim(m, tmp_path_factory.mktemp("mvau"), frames=2, seed=data.draw(st.integers(0, 99)))


@pytest.mark.parametrize("first", ["MVAU", "Thresholding"])
def test_two_layers_with_stalls(tmp_path, first):
    """One-beat FIFOs: the producer waits for room, the MVAU's reads wait for beats (MVAU -> MVAU: the second
    reads only in its first fold; Thresholding -> MVAU: a beat every STAGES + 2 cycles)."""
    rng = np.random.default_rng(1)
    h, w = 2, 2
    if first == "MVAU":
        in_dt, c = "INT4", 6
        n0, i0, mid = mvau_layer("MVAU_0", "x", "a", c, 4, 2, 3, [1, h, w], in_dt, rng, steps=3)
    else:
        in_dt, c, mid = "INT8", 4, "UINT3"
        i0 = {"t0": np.sort(rng.integers(-128, 128, (c, 7)), axis=1).astype(np.float32)}
        n0 = make_node(Thresholding, ["x", "t0"], ["a"], "Thresholding_0", PE=2, NumChannels=c, numSteps=7,
                       inputDataType=in_dt, weightDataType="INT32", outputDataType=mid, numInputVectors=[1, h, w],
                       ActVal=0)
    n1, i1, out_dt = mvau_layer("MVAU_1", "a", "y", 4, 6, 2, 2, [1, h, w], mid, rng, steps=0)
    m = dataflow_graph([n0, n1], ("x", (1, h, w, c), in_dt), ("y", (1, h, w, 6), out_dt), {**i0, **i1},
                       {"a": mid})
    assert_cosim(m, tmp_path, frames=3, depths={"default": 1})


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_kbit_mvau(tmp_path_factory, data):
    """2- to 4-bit weights (signed, unsigned, TERNARY) as bit planes of adder trees, with and without thresholds."""
    mw = data.draw(st.sampled_from([1, 3, 4, 6, 8, 12]))
    mh = data.draw(st.sampled_from([1, 2, 3, 4, 6]))
    pe = data.draw(st.sampled_from(divisors(mh)))
    simd = data.draw(st.sampled_from(divisors(mw)))
    h, w = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    in_dt = data.draw(st.sampled_from(["INT8", "UINT8", "INT4", "UINT2", "UINT1", "INT3", "BIPOLAR"]))
    k = data.draw(st.integers(2, 4))
    wdt = data.draw(st.sampled_from([f"INT{k}", f"UINT{k}", "TERNARY" if k == 2 else f"INT{k}"]))
    steps = data.draw(st.sampled_from([0, 1, 3, 15]))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    node, inits, out_dt = mvau_layer("MVAU_0", "x", "y", mw, mh, pe, simd, [1, h, w], in_dt, rng, wdt, steps,
                                     signed_out=data.draw(st.booleans()))
    m = dataflow_graph([node], ("x", (1, h, w, mw), in_dt), ("y", (1, h, w, mh), out_dt), inits)
    design = generate(m, tmp_path_factory.mktemp("kbit"))
    assert [(l.module, l.params()["WBITS"]) for l in design.layers] == [("onebit_mvau", 2 if wdt == "TERNARY" else k)]
    assert_cosim(m, tmp_path_factory.mktemp("kbit"), frames=2, seed=data.draw(st.integers(0, 99)))


def test_kbit_weight_memory_holds_bit_planes(tmp_path):
    """Word nf*SF + sf holds PE x SIMD x k bits: bit b*PE*SIMD + p*SIMD + s is bit b of the weight's code."""
    w = np.array([[-8, 7], [-1, 5], [3, -4], [0, 1]], dtype=np.float64)  # (MW 4, MH 2), INT4
    node = make_node(MVAU, ["x", "w"], ["y"], "MVAU_0", PE=2, SIMD=2, MW=4, MH=2, inputDataType="INT4",
                     weightDataType="INT4", outputDataType="INT32", accDataType="INT32", noActivation=1,
                     numInputVectors=[1, 1, 1])
    m = dataflow_graph([node], ("x", (1, 1, 1, 4), "INT4"), ("y", (1, 1, 1, 2), "INT32"), {"w": w})
    design = generate(m, tmp_path)
    words = design.layers[0].weight_words()
    assert len(words) == 2  # SF = 2 steps, 16 bits each
    assert [int(t, 16) for t in (design.rtl / "mem" / f"{design.layers[0].ident}_w_g000.mem").read_text().split()] \
        == words  # 16 bits: one column
    for sf, word in enumerate(words):
        for b in range(4):
            for p in range(2):
                for s in range(2):
                    code = int(w[sf * 2 + s, p]) & 15
                    assert (word >> (b * 4 + p * 2 + s)) & 1 == (code >> b) & 1


@pytest.mark.parametrize("depth,column", [(1, 36), (512, 36), (513, 18), (2048, 9), (4096, 4), (9216, 1),
                                          (20000, 1)])
def test_weight_memory_columns_fit_a_block_ram(depth, column):
    from onebit.hw.layers.mvau import weight_column_bits

    assert weight_column_bits(depth) == column


def test_wide_weight_words_split_into_columns(tmp_path):
    """A 4 x 16 x 1-bit word (64 bits) of a 512-deep memory: columns of 36 and 28 bits whose concatenation is
    the word, and the RTL computes exactly with them."""
    rng = np.random.default_rng(3)
    node, inits, out_dt = mvau_layer("MVAU_0", "x", "y", 16 * 8, 4 * 64, 4, 16, [1, 1, 2], "UINT2", rng)
    m = dataflow_graph([node], ("x", (1, 1, 2, 128), "UINT2"), ("y", (1, 1, 2, 256), out_dt), inits)
    design = generate(m, tmp_path / "g")
    layer = design.layers[0]
    assert layer.params()["WG"] == 36
    cols = [[int(t, 16) for t in (design.rtl / "mem" / f"{layer.ident}_w_g{g:03d}.mem").read_text().split()]
            for g in range(2)]
    assert [lo | hi << 36 for lo, hi in zip(*cols)] == layer.weight_words()
    assert not (design.rtl / "mem" / f"{layer.ident}_w_g002.mem").exists()
    assert_cosim(m, tmp_path / "c", frames=2)


def test_kbit_costs_k_adder_trees():
    """The LUT estimate of k-bit weights: about k times the 1-bit adder trees, far below a multiplier's."""
    def lut(wdt):
        return make_node(MVAU, ["x", "w"], ["y"], "M", PE=4, SIMD=16, MW=64, MH=64, inputDataType="UINT2",
                         weightDataType=wdt, outputDataType="INT32", accDataType="INT16", noActivation=1,
                         numInputVectors=[1])
    from onebit.export.dataflow import graph as dfg

    cost = {wdt: dfg.get_op(lut(wdt)).resources()["LUT"] for wdt in ("BIPOLAR", "INT2", "INT4", "INT5")}
    assert cost["BIPOLAR"] < cost["INT2"] < cost["INT4"] < cost["INT5"]
    assert cost["INT4"] < 4 * cost["BIPOLAR"]


def test_refuses_wider_weights(tmp_path):
    rng = np.random.default_rng(0)
    node, inits, out_dt = mvau_layer("MVAU_0", "x", "y", 4, 2, 1, 1, [1, 1, 1], "INT4", rng, wdt="INT5")
    m = dataflow_graph([node], ("x", (1, 1, 1, 4), "INT4"), ("y", (1, 1, 1, 2), out_dt), inits)
    with pytest.raises(UnsupportedError, match="node MVAU_0: MVAU with INT5 weights and INT4 inputs; .*UINT4"):
        generate(m, tmp_path)


def test_two_bit_net_builds(tmp_path, capsys):
    """A TFC-W2A2-like net by hand (INT2 weights, 2-bit activations, a BIPOLAR-input first layer and a raw
    accumulator output) through `onebit build --no-synth`: bit-exact and cycle-exact co-simulation."""
    rng = np.random.default_rng(3)
    n0, i0, a = mvau_layer("MVAU_0", "x", "a", 16, 8, 2, 4, [1], "BIPOLAR", rng, wdt="INT2", steps=3)
    n1, i1, b = mvau_layer("MVAU_1", "a", "b", 8, 8, 4, 2, [1], a, rng, wdt="INT2", steps=3)
    n2, i2, out_dt = mvau_layer("MVAU_2", "b", "y", 8, 4, 1, 4, [1], b, rng, wdt="TERNARY")
    m = dataflow_graph([n0, n1, n2], ("x", (1, 16), "BIPOLAR"), ("y", (1, 4), out_dt), {**i0, **i1, **i2},
                       {"a": a, "b": b})
    path = tmp_path / "w2a2.onnx"
    m.save(str(path))
    code, out, err = call(capsys, "build", path, "--out", tmp_path / "b", "--frames", 3, "--no-synth", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["rtl"]["lint"].startswith("clean")
    c = r["cosim"]
    assert c["outputs_equal"] and c["cycles_equal"] and not c["mismatches"]
    top = (tmp_path / "b" / "rtl" / "onebit_top.v").read_text()
    assert top.count("onebit_mvau #(") == 3 and "WBITS(2)" in top


@pytest.mark.parametrize("simd,in_dt,wdt,steps", [
    (64, "BIPOLAR", "BIPOLAR", 1),   # XNOR and popcount, six levels: six pipeline stages
    (27, "BIPOLAR", "BIPOLAR", 0),   # padded to 32 leaves, raw popcount sums
    (32, "BIPOLAR", "BINARY", 3),    # bipolar inputs, 0/1 weights: signed +-1 leaves
    (128, "UINT4", "BIPOLAR", 15),   # 1-bit weights x 4-bit codes, seven levels
    (96, "INT5", "BIPOLAR", 0),      # x or ~x leaves, signed: raw sums start from the -1 counts
    (33, "UINT8", "BIPOLAR", 0),     # x or ~x leaves one bit wider for unsigned codes, padded to 64
    (9, "INT8", "INT3", 0),          # bit planes after a four-level tree
])
def test_wide_pipelined_trees(tmp_path, simd, in_dt, wdt, steps):
    """Wide SIMD: the balanced, pipelined adder trees (and XNOR-popcount) stay bit- and cycle-exact, and the
    op's pipeline depth counts their stages."""
    rng = np.random.default_rng(simd)
    mw, mh, pe = 2 * simd, 4, 2
    node, inits, out_dt = mvau_layer("MVAU_0", "x", "y", mw, mh, pe, simd, [1, 2, 3], in_dt, rng, wdt, steps)
    m = dataflow_graph([node], ("x", (1, 2, 3, mw), in_dt), ("y", (1, 2, 3, mh), out_dt), inits)
    op = MVAU(m.graph.node[0])
    levels = (simd - 1).bit_length()
    assert op.tree_stages() == -(-levels // 2) + 3
    assert op.pipeline_depth(m) == op.tree_stages() + (max(1, steps.bit_length()) if steps else 0)
    assert_cosim(m, tmp_path, frames=3)


def test_tree_stages_are_checked_by_the_rtl(tmp_path):
    """A TREE_STAGES that differs from the tree the RTL builds fails the lint every build runs first (the
    simulator would be off by the difference)."""
    from onebit.hw import tools
    from onebit.hw.layers.base import RTL_DIR

    (tmp_path / "t.v").write_text("module t; onebit_mvau #(.SIMD(16), .TREE_STAGES(4)) u (); endmodule\n")
    with pytest.raises(Exception, match="TREE_STAGES differs"):
        tools.run([*tools.verilator_cmd(), "--lint-only", "-Wno-PINMISSING", "--top-module", "t",
                   "t.v", str(RTL_DIR / "onebit_mvau.v"), str(RTL_DIR / "onebit_thresh.v"),
                   str(RTL_DIR / "onebit_delay.v")], cwd=tmp_path, timeout=120, env=tools.verilator_env())


def test_bipolar_weights_start_from_their_minus_counts(tmp_path):
    """+1/-1 weights on 4-bit codes: one tree per PE of x or ~x (no second tree summing every x), and the
    accumulator of output channel nf*PE + p starts from its count of -1 weights, word nf of the c memory."""
    rng = np.random.default_rng(7)
    node, inits, out_dt = mvau_layer("MVAU_0", "x", "y", 12, 6, 2, 4, [1, 1, 2], "UINT4", rng, "BIPOLAR", 0)
    m = dataflow_graph([node], ("x", (1, 1, 2, 12), "UINT4"), ("y", (1, 1, 2, 6), out_dt), inits)
    from onebit.hw.layers import rtl_layer

    layer = rtl_layer(dfg.get_op(m.graph.node[0]), m)
    sw = layer.params()["SW"]
    files = layer.write_memories(tmp_path)
    words = [int(w, 16) for w in (tmp_path / f"{layer.ident}_c.mem").read_text().split()]
    minus = (inits["MVAU_0_w"] < 0).sum(0)
    assert words == [int(minus[2 * nf]) + (int(minus[2 * nf + 1]) << sw) for nf in range(3)]
    assert any(f.name.endswith("_c.mem") for f in files) and layer.params()["CMEM"].endswith("_c")
    assert_cosim(m, tmp_path / "cosim", frames=2)
