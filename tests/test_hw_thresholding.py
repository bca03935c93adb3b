"""Thresholding RTL against the reference executor and the simulator, through Verilator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwkit import assert_cosim, dataflow_graph
from onebit.export.dataflow.base import make_node
from onebit.export.dataflow.ops.thresholding import Thresholding

pytestmark = pytest.mark.slow


def thresholding_graph(c, pe, h, w, steps, in_dt, out_dt, act, seed=0, shared=False):
    rng = np.random.default_rng(seed)
    from qonnx.core.datatype import DataType

    idt = DataType[in_dt]
    lo, hi = int(idt.min()), int(idt.max())
    rows = 1 if shared else c
    # thresholds partly outside the input range, with repeats (ties), as the exporter produces
    t = np.sort(rng.integers(lo - 3, hi + 4, (rows, steps)), axis=1).astype(np.float32)
    t[:, 0] -= 0.5  # a non-integer threshold: x >= t on integers is x >= ceil(t)
    node = make_node(Thresholding, ["x", "t"], ["y"], "Thresholding_0", PE=pe, NumChannels=c, numSteps=steps,
                     inputDataType=in_dt, weightDataType="INT32", outputDataType=out_dt,
                     numInputVectors=[1, h, w], ActVal=act)
    return dataflow_graph([node], ("x", (1, h, w, c), in_dt), ("y", (1, h, w, c), out_dt), {"t": t})


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_thresholding(tmp_path_factory, data):
    c = data.draw(st.sampled_from([1, 2, 3, 4, 6, 8]))
    pe = data.draw(st.sampled_from([d for d in range(1, c + 1) if c % d == 0]))
    in_dt = data.draw(st.sampled_from(["INT8", "UINT8", "INT5", "UINT3", "INT12"]))
    out_bits = data.draw(st.integers(1, 8))
    steps = data.draw(st.integers(1, 2 ** out_bits - 1))
    signed = data.draw(st.booleans())
    out_dt = (f"INT{out_bits + 1}" if signed else f"UINT{out_bits}")
    act = -(steps // 2) if signed else 0
    m = thresholding_graph(c, pe, data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), steps, in_dt, out_dt,
                           act, seed=data.draw(st.integers(0, 99)), shared=data.draw(st.booleans()))
    assert_cosim(m, tmp_path_factory.mktemp("thr"), frames=2)


def test_bipolar_output_and_stalls(tmp_path):
    m = thresholding_graph(4, 2, 2, 2, 1, "INT8", "BIPOLAR", 0)
    assert_cosim(m, tmp_path, frames=3)
