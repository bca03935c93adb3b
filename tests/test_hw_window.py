"""Sliding-window RTL (ConvolutionInputGenerator, FMPadding, Pool) against the reference executor and the
simulator, through Verilator: random configurations alone and in the chains the WRN uses, with and without
one-beat FIFOs (stalls on both sides of every layer)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from qonnx.core.datatype import DataType

from hwkit import assert_cosim, dataflow_graph
from onebit.errors import UnsupportedError
from onebit.export.dataflow import graph as dfg
from onebit.export.dataflow.base import make_node
from onebit.export.dataflow.ops.fmpadding import FMPadding
from onebit.export.dataflow.ops.pool import Pool
from onebit.export.dataflow.ops.swg import ConvolutionInputGenerator
from onebit.hw.layers import rtl_layer
from onebit.sim.model import layer_model

pytestmark = pytest.mark.slow

DTYPES = ["UINT2", "INT3", "UINT4", "INT8", "BIPOLAR"]
SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))


def fmpadding_node(x, y, name, h, w, c, simd, pads, dt):
    return make_node(FMPadding, [x], [y], name, ImgDim=[h, w], Padding=list(pads), NumChannels=c, SIMD=simd,
                     inputDataType=dt)


def swg_node(x, y, name, h, w, c, simd, kernel, stride, dt, depthwise=0, parallel=0):
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    return make_node(ConvolutionInputGenerator, [x], [y], name, ConvKernelDim=[kh, kw], IFMChannels=c,
                     IFMDim=[h, w], OFMDim=[oh, ow], SIMD=simd, Stride=[sh, sw], Dilation=[1, 1],
                     inputDataType=dt, outputDataType=dt, depthwise=depthwise, parallel_window=parallel), (oh, ow)


def pool_node(x, y, name, c, pe, kernel, out_dims, fn, idt, odt):
    return make_node(Pool, [x], [y], name, Channels=c, PE=pe, KernelSize=list(kernel), Function=fn,
                     OutImgDims=list(out_dims), InputDataType=idt, OutputDataType=odt)


def chain(nodes, in_shape, dtypes):
    """A graph of ``nodes`` in a row, tensors t0 -> t1 -> ..., every tensor of type ``dtypes[k]``."""
    out_shape = dfg.get_op(nodes[-1]).output_shape()
    n = len(nodes)
    return dataflow_graph(nodes, ("t0", in_shape, dtypes[0]), (f"t{n}", out_shape, dtypes[n]),
                          dtypes={f"t{k}": dtypes[k] for k in range(1, n)})


def modelled(model) -> bool:
    """Whether the simulator and the RTL both take every node (some strides the simulator refuses)."""
    try:
        for node in model.graph.node:
            op = dfg.get_op(node)
            layer_model(op)
            rtl_layer(op, model).params()
    except UnsupportedError:
        return False
    return True


def divisor(data, c):
    return data.draw(st.sampled_from([d for d in range(1, c + 1) if c % d == 0]))


def acc_dtype(idt: str, taps: int) -> str:
    """The smallest INT/UINT type holding the sum of ``taps`` values of ``idt``."""
    dt = DataType[idt]
    lo, hi = int(dt.min()) * taps, int(dt.max()) * taps
    bits = 1
    if lo >= 0:
        while hi >= 1 << bits:
            bits += 1
        return f"UINT{bits}"
    while not (-(1 << (bits - 1)) <= lo and hi < 1 << (bits - 1)):
        bits += 1
    return f"INT{bits}"


def draw_swg(data, h, w, c, dt, name="SWG_0", x="t0", y="t1", depthwise=None, simd=None):
    kernel = (data.draw(st.integers(1, min(3, h))), data.draw(st.integers(1, min(3, w))))
    stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    depthwise = data.draw(st.booleans()) if depthwise is None else depthwise
    parallel = 0 if depthwise or simd not in (None, c) else int(data.draw(st.booleans()))
    simd = c if parallel else (simd or divisor(data, c))
    return swg_node(x, y, name, h, w, c, simd, kernel, stride, dt, int(depthwise), parallel) + (kernel,)


@SETTINGS
@given(st.data())
def test_random_swg(tmp_path_factory, data):
    h, w = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    c = data.draw(st.sampled_from([1, 2, 3, 4, 6]))
    dt = data.draw(st.sampled_from(DTYPES))
    node, _, _ = draw_swg(data, h, w, c, dt)
    m = chain([node], (1, h, w, c), [dt, dt])
    assume(modelled(m))
    assert_cosim(m, tmp_path_factory.mktemp("swg"), frames=2, seed=data.draw(st.integers(0, 99)))


@SETTINGS
@given(st.data())
def test_random_fmpadding(tmp_path_factory, data):
    h, w = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    c = data.draw(st.sampled_from([1, 2, 3, 4, 6]))
    dt = data.draw(st.sampled_from(DTYPES[:-1]))
    pads = [data.draw(st.integers(0, 2)) for _ in range(4)]
    m = chain([fmpadding_node("t0", "t1", "FMPadding_0", h, w, c, divisor(data, c), pads, dt)], (1, h, w, c),
              [dt, dt])
    assert_cosim(m, tmp_path_factory.mktemp("pad"), frames=2, seed=data.draw(st.integers(0, 99)))


@SETTINGS
@given(st.data())
def test_random_pool(tmp_path_factory, data):
    c = data.draw(st.sampled_from([1, 2, 3, 4, 6]))
    kernel = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    dims = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    idt = data.draw(st.sampled_from(DTYPES))
    fn = data.draw(st.sampled_from(["AccPool", "MaxPool"]))
    odt = acc_dtype(idt, kernel[0] * kernel[1]) if fn == "AccPool" else idt
    m = chain([pool_node("t0", "t1", "Pool_0", c, divisor(data, c), kernel, dims, fn, idt, odt)],
              (1, *dims, kernel[0] * kernel[1] * c), [idt, odt])
    assert_cosim(m, tmp_path_factory.mktemp("pool"), frames=2, seed=data.draw(st.integers(0, 99)))


@SETTINGS
@given(st.data())
def test_random_chain(tmp_path_factory, data):
    """FMPadding -> SWG -> MVAU-side FMPadding (non-depthwise) or -> Pool -> FMPadding (depthwise); the last
    FMPadding makes more beats than it takes, so it stalls its producer when the FIFOs are one beat deep."""
    h, w = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    c = data.draw(st.sampled_from([1, 2, 4, 6]))
    dt = data.draw(st.sampled_from(DTYPES[:-1]))
    simd = divisor(data, c)
    pads = [data.draw(st.integers(0, 1)) for _ in range(4)]
    ph, pw = h + pads[0] + pads[2], w + pads[1] + pads[3]
    depthwise = data.draw(st.booleans())
    pad = fmpadding_node("t0", "t1", "FMPadding_0", h, w, c, simd, pads, dt)
    swg, (oh, ow), kernel = draw_swg(data, ph, pw, c, dt, x="t1", y="t2", depthwise=depthwise, simd=simd)
    k = kernel[0] * kernel[1]
    if depthwise:
        fn = data.draw(st.sampled_from(["AccPool", "MaxPool"]))
        odt = acc_dtype(dt, k) if fn == "AccPool" else dt
        nodes = [pad, swg, pool_node("t2", "t3", "Pool_0", c, simd, kernel, (oh, ow), fn, dt, odt),
                 fmpadding_node("t3", "t4", "FMPadding_1", oh, ow, c, simd, [1, 0, 0, 1], odt)]
        dtypes = [dt, dt, dt, odt, odt]
    else:
        lanes = dfg.get_op(swg).fold_of_output()
        nodes = [pad, swg, fmpadding_node("t2", "t3", "FMPadding_1", oh, ow, k * c, lanes, [0, 1, 1, 0], dt)]
        dtypes = [dt] * 4
    m = chain(nodes, (1, h, w, c), dtypes)
    assume(modelled(m))
    depths = data.draw(st.sampled_from([None, {"default": 1}]))
    assert_cosim(m, tmp_path_factory.mktemp("chain"), frames=2, seed=data.draw(st.integers(0, 99)), depths=depths)


def test_wrn_stages_with_stalls(tmp_path):
    """As the WRN: padded 3x3 stride-2 window for an MVAU, and a padded depthwise 3x3 max pool, both with
    one-beat FIFOs; three frames back to back."""
    dt = "UINT4"
    pad = fmpadding_node("t0", "t1", "FMPadding_0", 5, 4, 4, 2, [1, 1, 1, 1], dt)
    swg, (oh, ow) = swg_node("t1", "t2", "SWG_0", 7, 6, 4, 2, (3, 3), (2, 2), dt)
    tail = fmpadding_node("t2", "t3", "FMPadding_1", oh, ow, 36, 2, [0, 0, 1, 1], dt)
    assert_cosim(chain([pad, swg, tail], (1, 5, 4, 4), [dt] * 4), tmp_path / "conv", frames=3,
                 depths={"default": 1})
    pad = fmpadding_node("t0", "t1", "FMPadding_0", 4, 6, 2, 1, [1, 1, 1, 1], dt)
    swg, (oh, ow) = swg_node("t1", "t2", "SWG_0", 6, 8, 2, 1, (3, 3), (2, 2), dt, depthwise=1)
    pool = pool_node("t2", "t3", "Pool_0", 2, 1, (3, 3), (oh, ow), "MaxPool", dt, dt)
    assert_cosim(chain([pad, swg, pool], (1, 4, 6, 2), [dt] * 4), tmp_path / "pool", frames=3,
                 depths={"default": 1})


def test_stream_styles_with_stalls(tmp_path):
    """The streaming generator: parallel windows (as the first conv, C=3) with even kernel and stride, a 1x1
    stride-2 kernel moving one of two channel folds per beat, and 3x3 windows with the line delays in a memory
    and in a shift register; one-beat FIFOs behind them."""
    dt = "INT8"
    swg, (oh, ow) = swg_node("t0", "t1", "SWG_0", 5, 6, 3, 3, (2, 2), (2, 2), dt, parallel=1)
    tail = fmpadding_node("t1", "t2", "FMPadding_0", oh, ow, 12, 12, [1, 0, 0, 1], dt)
    assert_cosim(chain([swg, tail], (1, 5, 6, 3), [dt] * 3), tmp_path / "par", frames=2, depths={"default": 1})
    swg, (oh, ow) = swg_node("t0", "t1", "SWG_0", 5, 4, 4, 2, (1, 1), (2, 2), dt)
    tail = fmpadding_node("t1", "t2", "FMPadding_0", oh, ow, 4, 2, [0, 1, 1, 0], dt)
    assert_cosim(chain([swg, tail], (1, 5, 4, 4), [dt] * 3), tmp_path / "1x1", frames=2, depths={"default": 1})
    # 3x3 parallel windows over maps wide enough for the line delays in a memory (W >= 4), stride 1 and 2,
    # and one too narrow for it (W = 3, the shift register); three frames back to back
    for h, w, stride in ((5, 9, (1, 1)), (6, 7, (2, 2)), (4, 3, (1, 1))):
        swg, (oh, ow) = swg_node("t0", "t1", "SWG_0", h, w, 2, 2, (3, 3), stride, dt, parallel=1)
        tail = fmpadding_node("t1", "t2", "FMPadding_0", oh, ow, 18, 18, [0, 1, 1, 0], dt)
        assert_cosim(chain([swg, tail], (1, h, w, 2), [dt] * 3), tmp_path / f"lines{w}", frames=3,
                     depths={"default": 1})


def test_stride_beyond_kernel(tmp_path):
    """A 1x2 kernel with column stride 3: the simulator's layout sends some window beats in the step right after
    the one that reads them (the line buffer's bypass)."""
    dt = "INT3"
    swg, (oh, ow) = swg_node("t0", "t1", "SWG_0", 3, 7, 2, 2, (1, 2), (1, 3), dt)
    tail = fmpadding_node("t1", "t2", "FMPadding_0", oh, ow, 4, 2, [0, 1, 0, 0], dt)
    m = chain([swg, tail], (1, 3, 7, 2), [dt] * 3)
    assert_cosim(m, tmp_path / "a", frames=2)
    assert_cosim(m, tmp_path / "b", frames=2, depths={"default": 1})


def test_unsupported_configurations():
    dt = "UINT2"
    node, _ = swg_node("t0", "t1", "SWG_0", 5, 5, 2, 1, (3, 3), (1, 1), dt)
    node.attribute[[a.name for a in node.attribute].index("Dilation")].ints[:] = [2, 2]
    m = chain([node], (1, 5, 5, 2), [dt, dt])
    with pytest.raises(UnsupportedError, match="SWG_0.*dilation"):
        rtl_layer(dfg.get_op(m.graph.node[0]), m).params()
    m = chain([fmpadding_node("t0", "t1", "FMPadding_0", 2, 2, 1, 1, [1, 1, 1, 1], "BIPOLAR")], (1, 2, 2, 1),
              ["BIPOLAR", "BIPOLAR"])
    with pytest.raises(UnsupportedError, match="FMPadding_0.*BIPOLAR"):
        rtl_layer(dfg.get_op(m.graph.node[0]), m).params()
