"""MVAU RTL against the reference executor and the simulator, through Verilator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qonnx.core.datatype import DataType

from hwkit import assert_cosim, dataflow_graph
from onebit.errors import UnsupportedError
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
    w = rng.choice([-1.0, 1.0] if wdt == "BIPOLAR" else [0.0, 1.0], (mw, mh))
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


def test_refuses_multibit_weights(tmp_path):
    rng = np.random.default_rng(0)
    node, inits, out_dt = mvau_layer("MVAU_0", "x", "y", 4, 2, 1, 1, [1, 1, 1], "INT4", rng)
    inits["MVAU_0_w"] = rng.integers(-2, 2, (4, 2))
    for a in node.attribute:
        if a.name == "weightDataType":
            a.s = b"INT2"
    m = dataflow_graph([node], ("x", (1, 1, 1, 4), "INT4"), ("y", (1, 1, 1, 2), out_dt), inits)
    with pytest.raises(UnsupportedError, match="MVAU_0"):
        generate(m, tmp_path)
