"""The streaming simulator: single layers (random shapes, folding, bit widths) bit-exact against direct numpy
references and their cycles against FINN's closed forms; the residual pipeline's II, latency and FIFO depths;
deadlocks named in bounded time; the ``onebit sim`` command; and that sim/ never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from onebit.export.dataflow.base import FINN_DOMAIN, ONEBIT_DOMAIN
from onebit.export.dataflow.executor import execute
from onebit.export.dataflow.graph import load_dataflow
from onebit.export.dataflow.ops import OPS
from onebit.sim.deadlock import DeadlockError
from onebit.sim.network import Network
from onebit.sim.simulation import simulate
from testkit import count_window_cycles
from onebit.sim.solver import solve
from testkit import call, tiny_dataflow

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----- hand-built graphs ------------------------------------------------------------------------------------
class G:
    """A tiny dataflow-graph builder: nodes in order, tensor shapes and data types, initializers."""

    def __init__(self, shape, dtype: str):
        self.nodes, self.shapes, self.dtypes, self.inits = [], {"global_in": tuple(shape)}, {"global_in": dtype}, {}
        self.count = {}

    def param(self, value, dtype: str) -> str:
        name = f"p{len(self.inits)}"
        self.inits[name] = (np.asarray(value, np.float32), dtype)
        return name

    def add(self, op_type, inputs, shape, dtype, n_out=1, **attrs):
        cls = OPS[op_type]
        k = self.count[op_type] = self.count.get(op_type, -1) + 1
        name = f"{op_type}_{k}"
        outs = [f"{name}_out{j}" for j in range(n_out)]
        extra = {"backend": "fpgadataflow"} if cls.domain == FINN_DOMAIN else {}
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, domain=cls.domain, **extra,
                                           **attrs))
        for o in outs:
            self.shapes[o], self.dtypes[o] = tuple(shape), dtype
        return outs if n_out > 1 else outs[0]

    def build(self, out: str) -> ModelWrapper:
        vi = helper.make_tensor_value_info
        graph = helper.make_graph(
            self.nodes, "g", [vi("global_in", TensorProto.FLOAT, list(self.shapes["global_in"]))],
            [vi(out, TensorProto.FLOAT, list(self.shapes[out]))],
            initializer=[helper.make_tensor(k, TensorProto.FLOAT, v.shape, v.ravel()) for k, (v, _) in
                         self.inits.items()],
            value_info=[vi(t, TensorProto.FLOAT, list(s)) for t, s in self.shapes.items()
                        if t not in ("global_in", out)])
        opsets = [helper.make_opsetid("", 13), helper.make_opsetid(FINN_DOMAIN, 1),
                  helper.make_opsetid(ONEBIT_DOMAIN, 1)]
        model = ModelWrapper(qonnx_make_model(graph, opset_imports=opsets, producer_name="test"))
        for t, dt in self.dtypes.items():
            model.set_tensor_datatype(t, DataType[dt])
        for k, (_, dt) in self.inits.items():
            model.set_tensor_datatype(k, DataType[dt])
        return model


def rand_frames(rng, n, shape, dtype: str) -> np.ndarray:
    dt = DataType[dtype]
    return rng.integers(int(dt.min()), int(dt.max()) + 1, (n, *shape[1:])).astype(np.float32)


def divisor(draw, n: int) -> int:
    return draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))


def check_single(model, x, expected, closed_form: int):
    """Bit-exact outputs; the layer's period equals its closed form and every frame takes exactly that many
    cycles (the II); fed a beat per cycle, no layer ever waits; a single layer's first frame leaves one hop
    after its last write step."""
    res = simulate(model, inputs=x)
    out = res.outputs[model.graph.output[0].name]
    np.testing.assert_array_equal(out, expected.reshape(out.shape))
    lm = res.net.layers[-1]
    assert lm.period == closed_form
    assert res.ii == res.ii_model == closed_form
    assert np.all(np.diff(res.done) == closed_form)
    for i in range(len(res.net.layers)):
        stalls = res.schedule.layer_stalls(i)
        assert stalls["stall_in"] == 0 and stalls["stall_out"] == 0 and stalls["utilisation"] == 1.0
    if len(res.net.layers) == 1:  # the schedule's first frame is what a cycle-by-cycle walk of the steps gives
        first_read, last_taken = walk_first_frame(lm.op, model)
        assert (int(res.start[0]), int(res.done[0])) == (first_read, last_taken)
        assert res.latency == last_taken - first_read + 1
    return res


def walk_first_frame(op, model) -> tuple[int, int]:
    """(cycle of the first input read, cycle the sink takes the last output beat) of a single layer's first frame,
    walked one step per cycle: the source offers input beat j from cycle j, a reading step waits for its beats,
    the sink always has room, and a written beat reaches the sink 1 + pipeline depth cycles after its step."""
    layout = op.step_layout()
    waits = {}
    for reads in layout.reads:
        for beat, step in enumerate(reads.tolist()):
            waits[int(step)] = max(waits.get(int(step), -1), beat)
    last_write = int(layout.writes[-1])
    cycle, first_read = -1, None
    for step in range(last_write + 1):
        cycle = max(cycle + 1, waits.get(step, -1))
        if step in waits and first_read is None:
            first_read = cycle
    return first_read, cycle + 1 + op.pipeline_depth(model)



DTYPES = ["UINT2", "UINT4", "INT4", "INT8", "BIPOLAR"]


# ----- single layers ------------------------------------------------------------------------------------------
@st.composite
def mvau_cases(draw):
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    mw, mh = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 9, 12, 18])), draw(st.sampled_from([1, 2, 4, 5, 6, 8]))
    return dict(h=h, w=w, mw=mw, mh=mh, simd=divisor(draw, mw), pe=divisor(draw, mh), idt=draw(st.sampled_from(DTYPES)),
                steps=draw(st.integers(0, 7)), act=draw(st.booleans()), actval=draw(st.integers(-2, 0)),
                seed=draw(st.integers(0, 2**16)), n=draw(st.integers(1, 3)))


@SETTINGS
@given(mvau_cases())
def test_mvau_bit_exact_and_finn_cycles(c):
    rng = np.random.default_rng(c["seed"])
    g = G((1, c["h"], c["w"], c["mw"]), c["idt"])
    wts = rng.choice([-1.0, 1.0], (c["mw"], c["mh"]))
    x = rand_frames(rng, c["n"], (1, c["h"], c["w"], c["mw"]), c["idt"])
    acc = np.einsum("nhwk,kc->nhwc", x.astype(np.int64), wts.astype(np.int64))
    attrs = dict(PE=c["pe"], SIMD=c["simd"], MW=c["mw"], MH=c["mh"], inputDataType=c["idt"], weightDataType="BIPOLAR",
                 accDataType="INT32", numInputVectors=[1, c["h"], c["w"]], binaryXnorMode=0)
    ins = ["global_in", g.param(wts, "BIPOLAR")]
    if c["act"] and c["steps"]:
        lim = int(np.abs(acc).max()) + 2
        thr = np.sort(rng.integers(-lim, lim + 1, (c["mh"], c["steps"])), axis=1).astype(np.float32)
        odt = "INT8"
        out = g.add("MVAU", ins + [g.param(thr, "INT32")], (1, c["h"], c["w"], c["mh"]), odt, noActivation=0,
                    outputDataType=odt, ActVal=c["actval"], **attrs)
        expected = (acc[..., None] >= thr[None, None, None]).sum(-1) + c["actval"]
    else:
        out = g.add("MVAU", ins, (1, c["h"], c["w"], c["mh"]), "INT32", noActivation=1, outputDataType="INT32", **attrs)
        expected = acc
    finn = (c["mh"] // c["pe"]) * (c["mw"] // c["simd"]) * c["h"] * c["w"]  # FINN: (MH/PE)*(MW/SIMD)*H*W
    check_single(g.build(out), x, expected, finn)


@st.composite
def swg_cases(draw):
    k = draw(st.sampled_from([1, 2, 3]))
    s = draw(st.sampled_from([1, 2])) if k > 1 else draw(st.sampled_from([1, 2]))
    h = draw(st.integers(k, k + 5))
    w = draw(st.integers(k, k + 5))
    c = draw(st.sampled_from([1, 2, 3, 4, 6]))
    simd = divisor(draw, c)
    depthwise = draw(st.booleans())
    parallel = (not depthwise) and simd == c and k > 1 and draw(st.booleans())
    return dict(k=k, s=s, h=h, w=w, c=c, simd=simd, depthwise=int(depthwise), parallel=int(parallel),
                dt=draw(st.sampled_from(DTYPES)), seed=draw(st.integers(0, 2**16)), n=draw(st.integers(1, 3)))


@SETTINGS
@given(swg_cases())
def test_sliding_window_bit_exact_and_finn_cycles(c):
    rng = np.random.default_rng(c["seed"])
    k, s, h, w, ch = c["k"], c["s"], c["h"], c["w"], c["c"]
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    g = G((1, h, w, ch), c["dt"])
    out = g.add("ConvolutionInputGenerator", ["global_in"], (1, oh, ow, k * k * ch), c["dt"], ConvKernelDim=[k, k],
                IFMChannels=ch, IFMDim=[h, w], OFMDim=[oh, ow], SIMD=c["simd"], Stride=[s, s], Dilation=[1, 1],
                inputDataType=c["dt"], outputDataType=c["dt"], depthwise=c["depthwise"],
                parallel_window=c["parallel"])
    x = rand_frames(rng, c["n"], (1, h, w, ch), c["dt"])
    expected = np.zeros((c["n"], oh, ow, k * k * ch), np.float32)
    for oy in range(oh):
        for ox in range(ow):
            for ky in range(k):
                for kx in range(k):
                    t = ky * k + kx
                    expected[:, oy, ox, t * ch:(t + 1) * ch] = x[:, oy * s + ky, ox * s + kx, :]
    cf = ch // c["simd"]
    finn = count_window_cycles(h, w, k, s, cf, bool(c["depthwise"]), k == 1 or bool(c["parallel"]))
    check_single(g.build(out), x, expected, finn)


@st.composite
def simple_cases(draw):
    kind = draw(st.sampled_from(["Thresholding", "FMPadding", "ChannelPad", "Pool", "GlobalAccPool", "LabelSelect",
                                 "StreamingDataWidthConverter", "DuplicateStreams+ElementwiseAdd"]))
    return dict(kind=kind, h=draw(st.integers(1, 4)), w=draw(st.integers(1, 4)), c=draw(st.sampled_from([1, 2, 4, 6])),
                extra=draw(st.sampled_from([1, 2, 4])), dt=draw(st.sampled_from(["UINT3", "INT4", "INT8", "UINT8"])),
                pads=draw(st.lists(st.integers(0, 2), min_size=4, max_size=4)), fold=draw(st.integers(0, 8)),
                fold2=draw(st.integers(0, 8)), k=draw(st.integers(1, 4)), steps=draw(st.integers(1, 6)),
                seed=draw(st.integers(0, 2**16)), n=draw(st.integers(1, 3)),
                fn=draw(st.sampled_from(["AccPool", "MaxPool"])))


def _div(n: int, pick: int) -> int:
    ds = [d for d in range(1, n + 1) if n % d == 0]
    return ds[pick % len(ds)]


@SETTINGS
@given(simple_cases())
def test_streaming_layers_bit_exact_and_cycles(c):
    rng = np.random.default_rng(c["seed"])
    h, w, ch, dt, n = c["h"], c["w"], c["c"], c["dt"], c["n"]
    shape = (1, h, w, ch)
    g = G(shape, dt)
    x = rand_frames(rng, n, shape, dt)
    kind = c["kind"]
    if kind == "Thresholding":
        pe = _div(ch, c["fold"])
        dtv = DataType[dt]
        thr = np.sort(rng.integers(int(dtv.min()), int(dtv.max()) + 2, (ch, c["steps"])), axis=1).astype(np.float32)
        odt = DataType.get_smallest_possible(c["steps"]).name
        out = g.add("Thresholding", ["global_in", g.param(thr, "INT10")], shape, odt, PE=pe, NumChannels=ch,
                    numSteps=c["steps"], inputDataType=dt, weightDataType="INT10", outputDataType=odt,
                    numInputVectors=[1, h, w], ActVal=0)
        expected = (x[..., None] >= thr).sum(-1)
        closed = h * w * ch // pe
    elif kind == "FMPadding":
        t, l, b, r = c["pads"]
        simd = _div(ch, c["fold"])
        oshape = (1, h + t + b, w + l + r, ch)
        out = g.add("FMPadding", ["global_in"], oshape, dt, ImgDim=[h, w], Padding=[t, l, b, r], NumChannels=ch,
                    SIMD=simd, inputDataType=dt)
        expected = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
        closed = oshape[1] * oshape[2] * ch // simd
    elif kind == "ChannelPad":
        co = ch * c["extra"]
        pe = _div(ch, c["fold"])
        out = g.add("ChannelPad", ["global_in"], (1, h, w, co), dt, NumChannels=ch, OutChannels=co, PE=pe,
                    inputDataType=dt, numInputVectors=[1, h, w])
        expected = np.concatenate([x, np.zeros((n, h, w, co - ch), np.float32)], axis=-1)
        closed = h * w * co // pe
    elif kind == "Pool":
        taps = c["k"]
        kh, kw = (taps, 1)
        g = G((1, h, w, taps * ch), dt)
        x = rand_frames(rng, n, (1, h, w, taps * ch), dt)
        pe = _div(ch, c["fold"])
        odt = "INT16"
        out = g.add("Pool", ["global_in"], (1, h, w, ch), odt, Channels=ch, PE=pe, KernelSize=[kh, kw],
                    Function=c["fn"], OutImgDims=[h, w], InputDataType=dt, OutputDataType=odt)
        win = x.reshape(n, h, w, taps, ch)
        expected = win.sum(3) if c["fn"] == "AccPool" else win.max(3)
        closed = ch * taps // pe * h * w
    elif kind == "GlobalAccPool":
        pe = _div(ch, c["fold"])
        odt = "INT16"
        out = g.add("GlobalAccPool", ["global_in"], (1, 1, 1, ch), odt, NumChannels=ch, PE=pe, inputDataType=dt,
                    numInputVectors=[1, h, w])
        expected = x.astype(np.int64).sum(axis=(1, 2), keepdims=True)
        closed = h * w * ch // pe + ch // pe
    elif kind == "LabelSelect":
        labels = h * w * ch
        g = G((1, 1, 1, labels), dt)
        x = rand_frames(rng, n, (1, 1, 1, labels), dt)
        k = min(c["k"], labels)
        pe = _div(labels, c["fold"])
        out = g.add("LabelSelect", ["global_in"], (1, 1, 1, k), "UINT8", Labels=labels, PE=pe, K=k, inputDataType=dt,
                    outputDataType="UINT8", numInputVectors=[1, 1, 1])
        flat = x.reshape(n, labels)
        expected = np.stack([np.lexsort((np.arange(labels), -row))[:k] for row in flat]).reshape(n, 1, 1, k)
        closed = labels // pe + k - 1  # FINN's formula counts Labels/PE; the k labels follow the last read
    elif kind == "StreamingDataWidthConverter":
        bits = DataType[dt].bitwidth()
        f_in, f_out = _div(ch, c["fold"]), _div(ch, c["fold2"])
        out = g.add("StreamingDataWidthConverter", ["global_in"], shape, dt, inShape=list(shape), outShape=list(shape),
                    inWidth=f_in * bits, outWidth=f_out * bits, dataType=dt)
        expected = x
        closed = max(h * w * ch // f_in, h * w * ch // f_out)
    else:  # a fork and a join: y = x + x
        pe = _div(ch, c["fold"])
        a, b = g.add("DuplicateStreams", ["global_in"], shape, dt, n_out=2, NumChannels=ch, PE=pe,
                     NumOutputStreams=2, inputDataType=dt, numInputVectors=[1, h, w])
        odt = "INT10"
        out = g.add("ElementwiseAdd", [a, b], shape, odt, lhs_dtype=dt, rhs_dtype=dt, out_dtype=odt,
                    lhs_shape=list(shape), rhs_shape=list(shape), out_shape=list(shape), PE=pe)
        expected = 2 * x
        closed = h * w * ch // pe
    model = g.build(out)
    res = check_single(model, x, expected, closed)
    op = res.net.layers[-1]
    assert op.period == (op.exp_cycles() + (op.op.attr("K") - 1 if kind == "LabelSelect" else 0))


def test_stall_semantics_backpressure_slows_producer():
    """A fast layer feeding a slow one through a 2-beat FIFO runs at the slow one's pace (it stalls on the full
    FIFO); with the depth the simulator asks for, nothing changes against unbounded FIFOs."""
    g = G((1, 4, 4, 8), "UINT4")
    rng = np.random.default_rng(0)
    t = g.add("Thresholding", ["global_in", g.param(np.sort(rng.integers(0, 16, (8, 3)), 1), "INT6")], (1, 4, 4, 8),
              "UINT2", PE=8, NumChannels=8, numSteps=3, inputDataType="UINT4", weightDataType="INT6",
              outputDataType="UINT2", numInputVectors=[1, 4, 4], ActVal=0)
    out = g.add("MVAU", [t, g.param(rng.choice([-1.0, 1.0], (8, 4)), "BIPOLAR")], (1, 4, 4, 4), "INT32", PE=1,
                SIMD=8, MW=8, MH=4, inputDataType="UINT2", weightDataType="BIPOLAR", accDataType="INT32",
                outputDataType="INT32", numInputVectors=[1, 4, 4], noActivation=1)
    model = g.build(out)
    free = simulate(model, frames=2)
    bounded = simulate(model, frames=2, depths={"default": 2})
    assert bounded.schedule.layer_stalls(0)["stall_out"] > 0  # Thresholding is held back by the MVAU
    assert free.schedule.layer_stalls(0)["stall_out"] == 0
    np.testing.assert_array_equal(bounded.done, free.done)  # the MVAU sets the pace either way
    assert free.ii == bounded.ii == 4 * 16


# ----- a residual block built by hand -------------------------------------------------------------------------
def residual_block(c=4, hw=6, simd=1, pe=1):
    """Fork -> [FMPadding -> 3x3 SWG -> MVAU] + shortcut -> ElementwiseAdd."""
    rng = np.random.default_rng(1)
    shape = (1, hw, hw, c)
    g = G(shape, "INT4")
    a, b = g.add("DuplicateStreams", ["global_in"], shape, "INT4", n_out=2, NumChannels=c, PE=1, NumOutputStreams=2,
                 inputDataType="INT4", numInputVectors=[1, hw, hw])
    p = g.add("FMPadding", [a], (1, hw + 2, hw + 2, c), "INT4", ImgDim=[hw, hw], Padding=[1, 1, 1, 1], NumChannels=c,
              SIMD=simd, inputDataType="INT4")
    s = g.add("ConvolutionInputGenerator", [p], (1, hw, hw, 9 * c), "INT4", ConvKernelDim=[3, 3], IFMChannels=c,
              IFMDim=[hw + 2, hw + 2], OFMDim=[hw, hw], SIMD=simd, Stride=[1, 1], Dilation=[1, 1],
              inputDataType="INT4", outputDataType="INT4", depthwise=0)
    wts = rng.choice([-1.0, 1.0], (9 * c, c))
    m = g.add("MVAU", [s, g.param(wts, "BIPOLAR")], (1, hw, hw, c), "INT12", PE=pe, SIMD=simd, MW=9 * c, MH=c,
              inputDataType="INT4", weightDataType="BIPOLAR", accDataType="INT12", outputDataType="INT12",
              numInputVectors=[1, hw, hw], noActivation=1)
    out = g.add("ElementwiseAdd", [m, b], shape, "INT13", lhs_dtype="INT12", rhs_dtype="INT4", out_dtype="INT13",
                lhs_shape=list(shape), rhs_shape=list(shape), out_shape=list(shape), PE=1)
    return g.build(out), wts


def test_residual_block_bit_exact_ii_and_shortcut_depth():
    model, wts = residual_block()
    x = rand_frames(np.random.default_rng(2), 3, (1, 6, 6, 4), "INT4")
    res = simulate(model, inputs=x)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.stack([xp[:, i:i + 6, j:j + 6, :] for i in range(3) for j in range(3)], axis=3).reshape(3, 6, 6, -1)
    expected = cols @ wts + x
    np.testing.assert_array_equal(res.outputs[model.graph.output[0].name], expected)
    mvau = next(lm for lm in res.net.layers if lm.op_type == "MVAU")
    assert res.ii == res.ii_model == mvau.period == 4 * 36 * 36  # (MH/PE)*(MW/SIMD)*H*W
    shortcut = next(e for e in res.net.internal_edges if e.name == "DuplicateStreams_0 -> ElementwiseAdd_0")
    # the shortcut buffers what the conv branch delays: the first window needs a row and a pixel more
    assert res.needed[shortcut.index] >= (6 + 2) * 4
    again = simulate(model, frames=3, depths={f"{e.pname} -> {e.cname}": res.needed[e.index]
                                              for e in res.net.internal_edges})
    np.testing.assert_array_equal(again.done, res.done)  # with the needed depths: no slowdown at all


def test_shallow_shortcut_fifo_is_a_named_deadlock():
    model, _ = residual_block()
    with pytest.raises(DeadlockError) as err:
        simulate(model, frames=2, depths={"DuplicateStreams_0 -> ElementwiseAdd_0": 3})
    msg = str(err.value)
    assert msg.startswith("deadlock: FIFO on edge DuplicateStreams_0 -> ElementwiseAdd_0 holds 3 beats but needs "
                          "at least "), msg
    assert "ElementwiseAdd_0 waits for MVAU_0" in msg
    need = err.value.info["needed"]
    assert err.value.info["fixes_alone"] is True
    solve_ok = simulate(model, frames=2, depths={"DuplicateStreams_0 -> ElementwiseAdd_0": need})
    assert solve_ok.schedule.converged
    with pytest.raises(DeadlockError):
        simulate(model, frames=1, depths={"DuplicateStreams_0 -> ElementwiseAdd_0": need - 1})


# ----- the tiny WRN through the export path ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_dataflow(tmp_path_factory.mktemp("sim"))


@pytest.fixture(scope="module")
def tiny_frames(tiny):
    m = load_dataflow(tiny)
    return rand_frames(np.random.default_rng(0), 4, tuple(m.get_tensor_shape("global_in")), m.get_tensor_datatype(
        "global_in").name)


def test_tiny_pipeline_outputs_ii_latency(tiny, tiny_frames):
    model = load_dataflow(tiny)
    res = simulate(model, inputs=tiny_frames)
    ref = execute(model, tiny_frames)
    for k, v in ref.items():
        np.testing.assert_array_equal(res.outputs[k], v)
    periods = {lm.name: lm.period for lm in res.net.layers}
    assert res.ii == res.ii_model == max(periods.values())
    assert res.bottleneck == max(periods, key=periods.get)
    # the first frame passes every layer on its longest path; it cannot be faster than the slowest layer alone
    assert res.latency > res.ii
    assert np.all(np.diff(res.done) == res.ii)  # unbounded FIFOs: one frame per II from the second on


def test_tiny_with_fifo_nodes_needed_depths_keep_the_schedule(tiny, tiny_frames, tmp_path):
    from onebit.export.dataflow.insert import insert_fifos

    model = load_dataflow(tiny)
    res = simulate(model, frames=3)
    depths = {(e.pname, e.cname): res.needed[e.index] for e in res.net.internal_edges}
    fifo = insert_fifos(load_dataflow(tiny), depths)
    path = tmp_path / "fifo.onnx"
    fifo.save(str(path))
    fifo = load_dataflow(path)
    net = Network(fifo)
    assert net.finite and all(e.fifos and e.depth == depths[(e.pname, e.cname)] for e in net.internal_edges)
    again = simulate(fifo, inputs=tiny_frames[:3])
    np.testing.assert_array_equal(again.done, res.done)
    np.testing.assert_array_equal(again.outputs[fifo.graph.output[0].name],
                                  execute(model, tiny_frames[:3])[model.graph.output[0].name])


def test_tiny_default_fifos_deadlock_names_the_shortcut(tiny):
    from onebit.export.dataflow.insert import insert_fifos

    model = insert_fifos(load_dataflow(tiny), default=2)
    with pytest.raises(DeadlockError) as err:
        simulate(model, frames=4)
    info = err.value.info
    assert (info["producer"], info["consumer"]) == ("DuplicateStreams_0", "ElementwiseAdd_0")
    assert info["fifo"].startswith("StreamingFIFO_") and info["fifo"] in str(err.value)
    assert info["depth"] == 2 and info["needed"] > 2
    # the other blocks' shortcuts are too shallow as well, and the message says so
    assert info["fixes_alone"] is False and "another FIFO" in str(err.value)


def test_finite_fixed_point_equals_plain_sweeps(tiny):
    """Policy iteration reaches the same least fixed point as Gauss-Seidel sweeps run to the end."""
    import onebit.sim.solver as N

    net = Network(load_dataflow(tiny))
    base = solve(net, 2, False)
    for e in net.internal_edges:  # 2 beats everywhere but at the joins, which get a frame's worth (no deadlock)
        e.depth = e.beats if len(net.in_edges[e.consumer]) > 1 else 2
    fast = solve(net, 2, True)
    old = N.GS_SWEEPS
    try:
        N.GS_SWEEPS = 100_000
        slow = solve(net, 2, True)
    finally:
        N.GS_SWEEPS = old
    assert fast.converged and slow.converged and fast.iterations > 0 and slow.iterations == 0
    for a, b in zip(fast.step_times, slow.step_times):
        np.testing.assert_array_equal(a, b)
    assert np.all(fast.frame_done() >= base.frame_done())


# ----- the command --------------------------------------------------------------------------------------------



def test_cli_json_report_plots_and_output(tiny, tiny_frames, tmp_path, capsys):
    xin = tmp_path / "x.npy"
    np.save(xin, tiny_frames)
    yout = tmp_path / "y.npy"
    stem = tmp_path / "rep"
    code, out, err = call(capsys, "sim", tiny, "--frames", 2, "--clock-mhz", 250, "--input", xin, "--output", yout,
                          "--out", stem, "--json")
    assert code == 0, err
    rep = json.loads(out)
    t = rep["totals"]
    assert t["frames"] == 2 and t["clock_mhz"] == 250
    assert t["fps"] == pytest.approx(250e6 / t["ii_cycles"])
    assert t["bottleneck"] in {r["name"] for r in rep["layers"]}
    assert {"cycles", "share", "utilisation", "fifo_depth"} <= set(rep["layers"][0])
    assert max(r["share"] for r in rep["layers"]) == 1.0
    for name in ("rep.sim.json", "rep.sim_cycles.png", "rep.sim_timeline.png"):
        assert (tmp_path / name).is_file()
    model = load_dataflow(tiny)
    np.testing.assert_array_equal(np.load(yout), execute(model, tiny_frames[:2])[model.graph.output[0].name])
    # the report's FIFO depths feed back in: same schedule
    code, out2, err = call(capsys, "sim", tiny, "--frames", 2, "--fifo-depths", tmp_path / "rep.sim.json",
                           "--out", tmp_path / "rep2", "--no-plots", "--json")
    assert code == 0, err
    rep2 = json.loads(out2)
    assert rep2["totals"]["fifo_mode"] == "finite"
    assert rep2["frame_done_cycles"] == rep["frame_done_cycles"]
    # many frames: a few simulated, the rest extended exactly once the schedule repeats, and the text says so
    code, out3, err = call(capsys, "sim", tiny, "--frames", 400, "--fifo-depths", tmp_path / "rep.sim.json",
                           "--out", tmp_path / "rep3", "--no-plots")
    assert code == 0, err
    rep3 = json.loads((tmp_path / "rep3.sim.json").read_text())
    q, d = rep3["totals"]["steady_state"]
    assert rep3["totals"]["simulated_frames"] < 400 and rep3["totals"]["ii_cycles"] == round(d / q)
    assert "rest extended exactly" in out3


def test_cli_text_and_one_line_errors(tiny, tmp_path, capsys):
    code, out, err = call(capsys, "sim", tiny, "--out", tmp_path / "r", "--no-plots")
    assert code == 0, err
    assert "bottleneck" in out and "frames/s" in out and "latency" in out
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 3, 3, 1), np.float32))
    depths = tmp_path / "d.json"
    depths.write_text(json.dumps({"DuplicateStreams_0 -> ElementwiseAdd_0": 2, "default": 2}))
    unknown = tmp_path / "u.json"
    unknown.write_text(json.dumps({"Nope -> Nothing": 4}))
    cases = [
        (("--clock-mhz", 0), "--clock-mhz"),
        (("--frames", 0), "--frames"),
        (("--input", bad), "(N, 8, 8, 1)"),
        (("--input", tmp_path / "missing.npy"), "missing.npy"),
        (("--fifo-depths", unknown), "Nope -> Nothing"),
        (("--fifo-depths", tmp_path / "none.json"), "none.json"),
        (("--fifo-depths", depths), "deadlock: FIFO on edge DuplicateStreams_0 -> ElementwiseAdd_0 holds 2 beats"),
    ]
    for args, named in cases:
        code, out, err = call(capsys, "sim", tiny, "--out", tmp_path / "r", "--no-plots", *args)
        assert code == 2, (args, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], (args, err)
    code, out, err = call(capsys, "sim", tmp_path / "nothing.onnx")
    assert code == 2 and "nothing.onnx" in err


def test_sim_imports_neither_torch_nor_training(tiny, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from onebit.cli import cli, main
        from onebit.sim.cli import sim_cmd
        cli.add_command(sim_cmd)
        try:
            main(["sim", {str(tiny)!r}, "--frames", "2", "--output", {str(tmp_path / 'y.npy')!r},
                  "--out", {str(tmp_path / 'r')!r}])
        except SystemExit as e:
            assert not e.code, e.code
        bad = [m for m in sys.modules if m == "torch" or m.startswith("torch.") or m.startswith("onebit.training")
               or m.startswith("brevitas")]
        assert not bad, bad
        print("clean")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("clean")
    assert (tmp_path / "r.sim_timeline.png").is_file()


@pytest.mark.parametrize("fold_fps", [None, 5000])
def test_steady_state_extension_is_exact(tiny, fold_fps):
    """Frames past a proven steady state are extended, not simulated, and land on the same cycles as simulating
    every frame; the sizing holds the throughput (every frame leaves one II after the one before, on average)."""
    from onebit.export.dataflow.folding_search import fold_for_target

    model = load_dataflow(tiny)
    if fold_fps:
        model, _ = fold_for_target(model, fold_fps, 50)
    sized = simulate(model, frames=1)
    assert sized.depth_frames >= 4
    depths = {e.tensor: sized.needed[e.index] for e in sized.net.internal_edges}
    fast = simulate(model, frames=40, depths=depths, fifo_sizing=False)
    full = simulate(model, frames=40, depths=depths, fifo_sizing=False, extend=False)
    assert fast.steady is not None and fast.simulated_frames < 40 and full.simulated_frames == 40
    np.testing.assert_array_equal(fast.done, full.done)
    np.testing.assert_array_equal(fast.start, full.start)
    assert fast.ii == fast.ii_model
    assert fast.done[-1] - fast.done[19] == 20 * fast.ii_model


def test_multithreshold_fast_paths_equal_the_definition():
    """Sorted thresholds go through a count table or one searchsorted; both equal counting ``x >= t``."""
    from onebit.export.dataflow.base import multithreshold

    rng = np.random.default_rng(1)
    for trial in range(120):
        c, steps = int(rng.integers(1, 20)), int(rng.integers(9, 300))
        t = np.sort(rng.integers(-300, 300, (c, steps)), axis=1).astype(np.float32)
        if trial % 3 == 0:
            t[:, :2] -= 0.5
        if trial % 5 == 0:
            t = t[:1]
        elif trial % 7 == 0:
            t = np.broadcast_to(t[:1], (c, steps)).copy()
        x = rng.integers(-400, 400, (int(rng.integers(1, 200)), 4, 5, c)).astype(np.float32)
        integer = trial % 4 != 0
        if not integer and trial % 8 == 0:  # not integers: the table path must step aside
            x += 0.5
        tt = np.broadcast_to(t, (c, steps))
        want = sum((x >= tt[:, j]).astype(np.int64) for j in range(steps)) - 3
        got = multithreshold(x, t, -3.0, integer=integer)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("k,stride,dilation", [(3, 1, 1), (3, 2, 1), (2, 2, 1), (3, 1, 2), (3, 2, 2), (1, 2, 1)])
def test_window_executor_equals_the_definition(k, stride, dilation):
    """The sliding-window executor (one strided copy) against taps gathered one by one: output pixel (y, x)
    holds input pixel (y*s + i*d, x*s + j*d) for tap (i, j), taps outer, channels inner."""
    from onebit.export.dataflow.base import make_node
    from onebit.export.dataflow.ops.swg import ConvolutionInputGenerator

    h, w, c = 9, 8, 3
    oh, ow = (h - dilation * (k - 1) - 1) // stride + 1, (w - dilation * (k - 1) - 1) // stride + 1
    node = make_node(ConvolutionInputGenerator, ["x"], ["y"], "SWG_0", ConvKernelDim=[k, k], IFMChannels=c,
                     IFMDim=[h, w], OFMDim=[oh, ow], SIMD=1, Stride=[stride, stride], Dilation=[dilation, dilation],
                     inputDataType="INT4", outputDataType="INT4")
    x = np.random.default_rng(0).integers(-8, 8, (5, h, w, c)).astype(np.float32)
    got = ConvolutionInputGenerator(node).execute([x])[0]
    want = np.empty((5, oh, ow, k * k * c), np.float32)
    for y in range(oh):
        for xx in range(ow):
            taps = [x[:, y * stride + i * dilation, xx * stride + j * dilation, :] for i in range(k) for j in range(k)]
            want[:, y, xx, :] = np.concatenate(taps, axis=-1)
    np.testing.assert_array_equal(got, want)
