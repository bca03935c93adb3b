"""A dataflow graph file is checked on load, node by node, against what each op class declares: every hostile
edit of a real graph (the tiny WRN's, and a small FIFO/width-converter chain) is one GraphError or
UnsupportedError line naming the file and the node, never a numpy, qonnx or Verilator error."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hwkit import dataflow_graph
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from testkit import tiny_dataflow

from onebit.errors import GraphError, OnebitError, UnsupportedError
from onebit.export.dataflow import graph as dfg
from onebit.export.dataflow.insert import dwc_node
from onebit.export.dataflow.ops import OPS, StreamingFIFO
from onebit.export.dataflow.validate import check_dataflow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> ModelWrapper:
    return dfg.load_dataflow(tiny_dataflow(tmp_path_factory.mktemp("tiny")))


def stream_chain() -> ModelWrapper:
    """graph input (1, 4, 4, 8) INT4 -> StreamingFIFO (2 values a beat) -> DWC (2 -> 4 values a beat) -> output."""
    fifo = helper.make_node("StreamingFIFO", ["x"], ["f"], name="fifo_0", domain=StreamingFIFO.domain,
                            depth=4, folded_shape=[1, 4, 4, 4, 2], normal_shape=[1, 4, 4, 8], dataType="INT4")
    dwc = dwc_node("dwc_0", "f", "y", [1, 4, 4, 8], [1, 4, 4, 8], 8, 16, "INT4")
    return dataflow_graph([fifo, dwc], ("x", (1, 4, 4, 8), "INT4"), ("y", (1, 4, 4, 8), "INT4"), dtypes={"f": "INT4"})


def node(model: ModelWrapper, name: str):
    return next(n for n in model.graph.node if n.name == name)


def set_attr(model: ModelWrapper, name: str, attr: str, value) -> ModelWrapper:
    n = node(model, name)
    for a in list(n.attribute):
        if a.name == attr:
            n.attribute.remove(a)
    if value is not None:
        n.attribute.append(helper.make_attribute(attr, value))
    return model


def set_init(model: ModelWrapper, name: str, edit) -> ModelWrapper:
    model.set_initializer(name, edit(model.get_initializer(name).copy()).astype(np.float32))
    return model


def assert_refused(model: ModelWrapper, folder, *words: str, error=GraphError) -> str:
    """Saved and loaded, ``model`` is refused with one line naming the file and each of ``words``."""
    path = folder / "hostile.onnx"
    model.save(str(path))
    with pytest.raises(OnebitError) as info:
        dfg.load_dataflow(path)
    msg = str(info.value)
    assert isinstance(info.value, error), msg
    assert "\n" not in msg and msg.startswith(str(path)), msg
    for w in words:
        assert w in msg, msg
    return msg


# (node, attribute, value, words the message holds)
ATTRIBUTE_EDITS = [
    ("MVAU_1", "PE", 0, ["MVAU_1", "PE 0 must be positive"]),
    ("MVAU_1", "PE", -1, ["MVAU_1", "PE -1 must be positive"]),
    ("MVAU_1", "PE", 3, ["node MVAU_1 (MVAU): PE 3 must divide MH 16"]),
    ("MVAU_1", "SIMD", 5, ["SIMD 5 must divide MW 144"]),
    ("Thresholding_1", "PE", 3, ["Thresholding_1", "PE 3 must divide NumChannels 16"]),
    ("ConvolutionInputGenerator_1", "SIMD", 6, ["SIMD 6 must divide IFMChannels 16"]),
    ("ChannelPad_0", "PE", 32, ["ChannelPad_0", "PE 32 must divide"]),
    ("MVAU_1", "MW", [144], ["attribute MW is a list of integers; expected an integer"]),
    ("ConvolutionInputGenerator_1", "ConvKernelDim", 3, ["ConvKernelDim is an integer; expected a list"]),
    ("MVAU_1", "outputDataType", "INT99", ["outputDataType 'INT99' is not a data type"]),
    ("Thresholding_1", "inputDataType", "FLOAT8", ["inputDataType 'FLOAT8' is not a data type"]),
    ("FMPadding_1", "ImgDim", [8, 8, 8], ["ImgDim has 3 values; expected 2"]),
    ("FMPadding_1", "Padding", [1, -1, 1, 1], ["Padding [1, -1, 1, 1] must be non-negative"]),
    ("Thresholding_1", "numSteps", 0, ["numSteps 0 must be positive"]),
    ("Thresholding_1", "numInputVectors", [1, 0, 8], ["numInputVectors [1, 0, 8] must be positive"]),
    ("Thresholding_1", "ActVal", 5, ["outside outputDataType INT5"]),
    ("ConvolutionInputGenerator_1", "OFMDim", [9, 9], ["OFMDim [9, 9] does not follow"]),
    ("ConvolutionInputGenerator_1", "Stride", [0, 1], ["Stride [0, 1] must be positive"]),
    ("ConvolutionInputGenerator_1", "parallel_window", 1, ["parallel_window needs SIMD = IFMChannels"]),
    ("DuplicateStreams_0", "NumOutputStreams", 3, ["2 outputs; expected 3"]),
    ("LabelSelect_0", "K", 11, ["K 11 is more than the 10 Labels"]),
    ("ElementwiseAdd_0", "out_dtype", "INT8", ["out_dtype INT8 does not hold the sums"]),
    ("ElementwiseAdd_0", "rhs_shape", [1, 8, 8, 8], ["differ; expected one shape"]),
    ("ChannelPad_0", "OutChannels", 8, ["OutChannels 8 is below NumChannels 16"]),
    ("MVAU_1", "noActivation", 1, ["3 inputs; expected 2"]),
    # shapes and data types between layers
    ("FMPadding_1", "ImgDim", [7, 7], ["FMPadding_1", "has shape (1, 8, 8, 16) from node Thresholding_1",
                                       "reads (1, 7, 7, 16)"]),
    ("ConvolutionInputGenerator_1", "IFMChannels", 8, ["from node FMPadding_1; the layer reads (1, 10, 10, 8)"]),
    ("FMPadding_1", "inputDataType", "INT8", ["carries INT5 from node Thresholding_1; the layer reads INT8"]),
]


@pytest.mark.parametrize("name, attr, value, words", ATTRIBUTE_EDITS,
                         ids=[f"{n}-{a}={v}" for n, a, v, _ in ATTRIBUTE_EDITS])
def test_attribute_edits_are_refused(tiny, tmp_path, name, attr, value, words):
    assert_refused(set_attr(copy.deepcopy(tiny), name, attr, value), tmp_path, *words)


def test_pool_function_unsupported(tiny, tmp_path):
    assert_refused(set_attr(copy.deepcopy(tiny), "Pool_0", "Function", "AvgPool"), tmp_path,
                   "node Pool_0 (Pool): Function 'AvgPool'", error=UnsupportedError)


def required_attributes():
    """(op type, node of the tiny graph or the stream chain, required attribute) for every op class."""
    chain_nodes = {"StreamingFIFO": "fifo_0", "StreamingDataWidthConverter": "dwc_0"}
    for op_type, cls in sorted(OPS.items()):
        if op_type == "AddStreams":
            continue
        name = chain_nodes.get(op_type, f"{op_type}_0")
        for attr, (_kind, required, _default) in cls(helper.make_node(op_type, [], [])).get_nodeattr_types().items():
            if required:
                yield op_type, name, attr


@pytest.mark.parametrize("op_type, name, attr", list(required_attributes()))
def test_missing_required_attribute(tiny, tmp_path, op_type, name, attr):
    base = stream_chain() if name in ("fifo_0", "dwc_0") else tiny
    assert_refused(set_attr(copy.deepcopy(base), name, attr, None), tmp_path,
                   f"node {name} ({op_type}): required attribute {attr} is missing")


def test_project_graphs_pass(tiny):
    check_dataflow(tiny)
    check_dataflow(stream_chain())


@pytest.mark.parametrize("name, attr, value, words", [
    ("fifo_0", "depth", 0, ["fifo_0", "depth 0 must be positive"]),
    ("fifo_0", "folded_shape", [1, 4, 4, 3, 3], ["folded_shape [1, 4, 4, 3, 3] is not a folding"]),
    ("dwc_0", "inWidth", 10, ["dwc_0", "inWidth 10 must be a multiple of the 4 bits of dataType INT4"]),
    ("dwc_0", "outWidth", 12, ["outWidth 12 moves 3 values a beat, which must divide the 8 channels"]),
    ("dwc_0", "outWidth", 0, ["outWidth 0 must be positive"]),
    ("dwc_0", "outShape", [1, 4, 4, 4], ["hold different numbers of values"]),
    ("dwc_0", "dataType", "INT8", ["carries INT4 from node fifo_0; the layer reads INT8"]),
])
def test_stream_node_edits_are_refused(tmp_path, name, attr, value, words):
    assert_refused(set_attr(stream_chain(), name, attr, value), tmp_path, *words)


INITIALIZER_EDITS = [
    ("weights_1", lambda w: w[:, :15], ["MVAU_1", "weights 'weights_1' have shape (144, 15); expected (144, 16)"]),
    ("weights_1", lambda w: np.where(np.arange(w.size).reshape(w.shape) == 7, np.nan, w), ["NaN or infinite"]),
    ("weights_1", lambda w: np.where(np.arange(w.size).reshape(w.shape) == 7, np.inf, w), ["NaN or infinite"]),
    ("weights_1", lambda w: np.where(np.arange(w.size).reshape(w.shape) == 7, 0.0, w),
     ["outside weightDataType BIPOLAR"]),
    ("thresholds_3", lambda t: t[:15], ["MVAU_1", "'thresholds_3' have shape (15, 15); expected (16, n) or (1, n)"]),
    ("thresholds_3", lambda t: np.concatenate([t, t], axis=1), ["30 thresholds", "outside outputDataType INT5"]),
    ("thresholds_2", lambda t: t[:, :14], ["Thresholding_1", "expected (16, 15) or (1, 15)"]),
    ("thresholds_2", lambda t: t + 0.5, ["Thresholding_1", "outside weightDataType INT8"]),
    ("thresholds_2", lambda t: t * 100, ["outside weightDataType INT8"]),
]


@pytest.mark.parametrize("init, edit, words", INITIALIZER_EDITS, ids=[f"{i}-{k}" for k, (i, _, _) in
                                                                       enumerate(INITIALIZER_EDITS)])
def test_initializer_edits_are_refused(tiny, tmp_path, init, edit, words):
    assert_refused(set_init(copy.deepcopy(tiny), init, edit), tmp_path, *words)


def test_weights_that_are_not_initializers(tiny, tmp_path):
    m = copy.deepcopy(tiny)
    node(m, "MVAU_1").input[1] = "MVAU_0_out"
    assert_refused(m, tmp_path, "node MVAU_1 (MVAU): weights 'MVAU_0_out' is not an initializer")


def test_graph_input_shape_must_fit_the_first_layer(tiny, tmp_path):
    m = copy.deepcopy(tiny)
    m.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 3
    assert_refused(m, tmp_path, "node Thresholding_0", "has shape (1, 8, 8, 3) from the graph input")


def test_declared_output_shape_must_fit_the_layer(tiny, tmp_path):
    m = copy.deepcopy(tiny)
    m.set_tensor_shape("MVAU_1_out", [1, 8, 8, 17])
    assert_refused(m, tmp_path, "node MVAU_1 (MVAU): output 'MVAU_1_out' is declared (1, 8, 8, 17)")


def test_annotated_dtype_must_fit_the_layer(tiny, tmp_path):
    from qonnx.core.datatype import DataType

    m = copy.deepcopy(tiny)
    m.set_tensor_datatype("MVAU_1_out", DataType["INT6"])
    assert_refused(m, tmp_path, "output 'MVAU_1_out' is annotated INT6; the layer writes INT5")


def test_dangling_input_and_cycle(tiny, tmp_path):
    m = copy.deepcopy(tiny)
    node(m, "FMPadding_1").input[0] = "nowhere"
    assert_refused(m, tmp_path, "FMPadding_1")  # onnx's checker, on load
    with pytest.raises(GraphError, match="node FMPadding_1 .*'nowhere' is produced by no node"):
        check_dataflow(m)
    m = copy.deepcopy(tiny)
    node(m, "Thresholding_1").input[0] = "MVAU_1_out"  # MVAU_1 reads what Thresholding_1 writes: a loop
    with pytest.raises(GraphError, match="node Thresholding_1 .*written by a later node"):
        check_dataflow(m)


def test_score_metadata(tiny, tmp_path):
    m = copy.deepcopy(tiny)
    m.set_metadata_prop(dfg.META_SCORES, "missing")
    assert_refused(m, tmp_path, "metadata onebit.scores names 'missing'")
    m = copy.deepcopy(tiny)
    m.set_metadata_prop(dfg.META_SCORE_SCALE, "[0.5, ")
    assert_refused(m, tmp_path, "metadata onebit.score_scale")


@pytest.mark.parametrize("frames, words", [
    (np.zeros((2, 8, 8, 3)), "takes frames of shape (N, 8, 8, 1)"),
    (np.full((2, 8, 8, 1), np.nan), "NaN or infinite"),
    (np.array([["a"] * 64]).reshape(1, 8, 8, 1), "frames of dtype <U1; expected numbers"),
    (np.full((1, 8, 8, 1), 256.0), "integers in [0, 255]"),
])
def test_check_frames(tiny, frames, words):
    with pytest.raises(GraphError) as info:
        dfg.check_frames(tiny, frames, "inputs")
    assert words in str(info.value) and "\n" not in str(info.value)


# ----- through the command line: exit status 2, one line, no traceback --------------------------------------
def assert_cli_error(proc, *words):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_cli_refuses_hostile_graphs(tiny, tmp_path, run_onebit):
    hostile = tmp_path / "pe0.onnx"
    set_attr(copy.deepcopy(tiny), "MVAU_1", "PE", 0).save(str(hostile))
    assert_cli_error(run_onebit("sim", hostile, "--frames", "1", "--no-plots"), str(hostile), "MVAU_1", "PE 0")
    no_mw = tmp_path / "no_mw.onnx"
    set_attr(copy.deepcopy(tiny), "MVAU_2", "MW", None).save(str(no_mw))
    assert_cli_error(run_onebit("build", no_mw, "--out", tmp_path / "b", "--no-synth"), "MVAU_2",
                     "required attribute MW is missing")


def test_cli_refuses_frames_of_the_wrong_shape(tiny, tmp_path, run_onebit):
    graph = tmp_path / "tiny.onnx"
    tiny.save(str(graph))
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 8, 8, 3), np.float32))
    assert_cli_error(run_onebit("sim", graph, "--input", bad, "--no-plots"), "(N, 8, 8, 1)")
    out = tmp_path / "build"
    assert_cli_error(run_onebit("build", graph, "--input", bad, "--out", out, "--no-synth"), "(N, 8, 8, 1)")
    assert not (out / "rtl").exists()  # refused before any RTL was generated or compiled
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((1, 8, 8, 1), np.nan, np.float32))
    assert_cli_error(run_onebit("sim", graph, "--input", nan, "--no-plots"), "--input", "nan.npy", "value nan",
                     "expected finite numbers")


def test_unknown_op_named_by_node(tiny, tmp_path):
    m = copy.deepcopy(tiny)
    node(m, "Pool_0").op_type = "AveragePoolHW"
    assert_refused(m, tmp_path, "node Pool_0 (AveragePoolHW)")

