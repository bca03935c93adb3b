"""QONNX files from plain Brevitas models (not onebit's model code) lower to identical integer and dataflow graphs.

The nets use the common Brevitas patterns: an unsigned or signed 8-bit input quantizer, binary and 2-bit
(narrow-range, per-tensor or per-output-channel) weights, convs with and without padding, float and Int32 biases,
BatchNorm2d/BatchNorm1d, learned-scale QuantReLU and binary QuantHardTanh activations, MaxPool, Flatten into a
QuantLinear, and a residual Add whose branches share one QuantIdentity. They are exported with Brevitas' own
``export_qonnx``; nothing is trained (random weights, randomised BatchNorm statistics, eval mode).
"""

from __future__ import annotations

import json

import brevitas.nn as qnn
import numpy as np
import pytest
import onnx
import torch
from brevitas.export import export_qonnx
from brevitas.quant import (Int8ActPerTensorFloat, Int32Bias, Int8WeightPerChannelFloat, Int8WeightPerTensorFloat,
                            SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat)
from torch import nn

from onebit.cli import main
from onebit.errors import UnsupportedError
from onebit.export import graphs
from onebit.export.dataflow import graph as dfg
from onebit.export.dataflow.executor import execute
from onebit.export.integer import META_OUTPUT
from onebit.export.integer_lowering import Lowering
from onebit.export.integer_thresholds import quant_params
from onebit.export.pipeline import (DATAFLOW_FILE, INTEGER_FILE, QONNX_FILE, REPORT_FILE, input_quantizer,
                                    lower_file)

FRAMES = 16


def weights(bits: int, per_channel: bool = False) -> dict:
    if bits == 1:
        return dict(weight_quant=SignedBinaryWeightPerTensorConst)
    quant = Int8WeightPerChannelFloat if per_channel else Int8WeightPerTensorFloat  # both narrow range
    return dict(weight_quant=quant, weight_bit_width=bits)


class CNV(nn.Module):
    """A small CNV-like net: [conv-BN-act] (padded) -> MaxPool -> [conv-BN-act] (no padding) -> Flatten ->
    [linear-BN1d-act] -> linear."""

    def __init__(self, wbits: int = 1, per_channel: bool = False, bias: bool = False, binary_acts: bool = False,
                 signed_input: bool = False):
        super().__init__()
        if signed_input:
            self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True)
        elif wbits == 1:
            self.inp = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True)
        else:
            self.inp = qnn.QuantIdentity(bit_width=8, signed=False, return_quant_tensor=True)

        def act():
            if binary_acts:
                return qnn.QuantHardTanh(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True)
            return qnn.QuantReLU(bit_width=2, return_quant_tensor=True)

        w = weights(wbits, per_channel)
        int_bias = dict(bias_quant=Int32Bias) if bias else {}  # a 32-bit quantized bias; the others are float
        self.conv1 = qnn.QuantConv2d(3, 8, 3, padding=1, bias=bias, **w, **int_bias)
        self.bn1, self.act1 = nn.BatchNorm2d(8), act()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = qnn.QuantConv2d(8, 16, 3, padding=0, bias=bias, **w)
        self.bn2, self.act2 = nn.BatchNorm2d(16), act()
        self.flatten = nn.Flatten()
        self.fc1 = qnn.QuantLinear(16 * 6 * 6, 32, bias=bias, **weights(1 if not per_channel else wbits, per_channel))
        self.bn3, self.act3 = nn.BatchNorm1d(32), act()
        self.fc2 = qnn.QuantLinear(32, 10, bias=bias, **weights(1), **int_bias)

    def forward(self, x):
        x = self.inp(x)
        x = self.pool(self.act1(self.bn1(self.conv1(x))))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.act3(self.bn3(self.fc1(self.flatten(x))))
        return self.fc2(x)


class Residual(nn.Module):
    """conv -> BN -> q ; q -> conv -> BN -> ReLU-quant -> conv -> BN -> q ; add ; ReLU-quant -> GAP -> linear.

    ``q`` is one QuantIdentity shared by both branches of the Add (``shared=False``: two quantizers with
    different scales, which an integer add cannot join)."""

    def __init__(self, shared: bool = True):
        super().__init__()
        self.inp = qnn.QuantIdentity(bit_width=8, signed=False, return_quant_tensor=True)
        self.conv0 = qnn.QuantConv2d(3, 8, 3, padding=1, bias=False, **weights(1))
        self.bn0 = nn.BatchNorm2d(8)
        self.q = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
        self.conv1 = qnn.QuantConv2d(8, 8, 3, padding=1, bias=False, **weights(1))
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = qnn.QuantReLU(bit_width=2, return_quant_tensor=True)
        self.conv2 = qnn.QuantConv2d(8, 8, 3, padding=1, bias=False, **weights(1))
        self.bn2 = nn.BatchNorm2d(8)
        self.q_branch = self.q if shared else qnn.QuantIdentity(bit_width=3)  # scale 1/4
        self.act2 = qnn.QuantReLU(bit_width=2, return_quant_tensor=True)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = qnn.QuantLinear(8, 10, bias=False, **weights(1))

    def forward(self, x):
        a = self.q(self.bn0(self.conv0(self.inp(x))))
        y = self.act1(self.bn1(self.conv1(a)))
        y = self.q_branch(self.bn2(self.conv2(y)))
        return self.fc(self.flatten(self.gap(self.act2(a + y))))


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.5)
    return model.eval()


NETS = {
    "cnv-w1": lambda: CNV(wbits=1),
    "cnv-w2": lambda: CNV(wbits=2),
    "cnv-w2-per-channel-bias": lambda: CNV(wbits=2, per_channel=True, bias=True),
    "bnn-bipolar-acts": lambda: CNV(wbits=1, binary_acts=True, signed_input=True),
    "residual-shared-quant": lambda: Residual(shared=True),
}


def with_per_channel_act_scale() -> CNV:
    net = CNV(wbits=1)
    net.act1 = qnn.QuantReLU(bit_width=2, scaling_per_output_channel=True, per_channel_broadcastable_shape=(1, 8, 1, 1),
                             scaling_stats_permute_dims=(1, 0, 2, 3), return_quant_tensor=True)
    return net


def with_trunc_avg_pool() -> CNV:
    net = CNV(wbits=1)
    net.pool = qnn.TruncAvgPool2d(2, bit_width=4)
    return net


def with_float_head() -> CNV:
    net = CNV(wbits=1)
    net.fc2 = nn.Linear(32, 10, bias=False)  # a float weight: no integer MVAU can hold it
    return net


def with_ceil_mode_pool() -> CNV:
    net = CNV(wbits=1)
    net.pool = nn.AvgPool2d(2, ceil_mode=True)  # 16x16 -> 8x8: the same here, but not a plain pool in general
    return net


class FloatOpAfterQuant(CNV):
    """A sigmoid between a quantizer and the next conv: a float activation the integer graph cannot carry."""

    def forward(self, x):
        x = torch.sigmoid(self.pool(self.act1(self.bn1(self.conv1(self.inp(x))))))
        x = self.act2(self.bn2(self.conv2(x)))
        return self.fc2(self.act3(self.bn3(self.fc1(self.flatten(x)))))


#: Legitimately unsupported: (net, the node the error must name, what it must say).
UNSUPPORTED = {
    "residual-two-scales": lambda: Residual(shared=False),
    "per-channel-act-scale": with_per_channel_act_scale,
    "trunc-avg-pool": with_trunc_avg_pool,
    "float-weight-head": with_float_head,
    "ceil-mode-pool": with_ceil_mode_pool,
    "float-op-after-quant": lambda: FloatOpAfterQuant(wbits=1),
}
UNSUPPORTED_ERRORS = {
    "residual-two-scales": r"^node \S+ \(Add\): .*same scale",
    "per-channel-act-scale": r"^node \S+ \(Conv\): per-channel input scale",
    "trunc-avg-pool": r"^node \S+ \(Trunc\): op type not supported",
    "float-weight-head": r"^node \S+ \((MatMul|Gemm)\): weight \S+ is a float constant; expected a quantized weight",
    "ceil-mode-pool": r"^node \S+ \(AveragePool\): padding or ceil_mode; expected a plain pool",
    "float-op-after-quant": r"^node \S+ \(Sigmoid\): op type not supported; expected one of ",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(name)`` -> (Brevitas model, QONNX file), each exported once with Brevitas' export_qonnx."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            torch.manual_seed(0)
            model = randomise((NETS | UNSUPPORTED)[name]())
            path = tmp_path_factory.mktemp(name) / f"{name}.onnx"
            export_qonnx(model, torch.randn(1, 3, 16, 16), export_path=str(path))
            cache[name] = model, path
        return cache[name]

    return get


def input_codes(path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random codes of the file's input quantizer and the same frames as float inputs (codes * scale)."""
    qonnx = graphs.clean(graphs.load_onnx(path))
    scale, _, levels = quant_params(Lowering(qonnx), input_quantizer(qonnx))
    shape = qonnx.get_tensor_shape(qonnx.graph.input[0].name)
    codes = np.random.default_rng(seed).integers(int(levels[0]), int(levels[-1]) + 1, (n, *shape[1:]))
    codes = codes.astype(np.float32)
    return codes, (codes * np.float32(np.asarray(scale).reshape(-1)[0])).astype(np.float32)


@pytest.mark.parametrize("name", list(NETS))
def test_brevitas_net_lowers_with_identical_outputs(exported, name, tmp_path):
    model, path = exported(name)
    codes, x = input_codes(path, FRAMES)
    if "bias" in name:  # the Int32Bias quantizers are in the file (and must not be enumerated level by level)
        src = graphs.clean(graphs.load_onnx(path))
        widths = [int(src.get_initializer(n.input[3])) for n in src.graph.node if n.op_type == "Quant"]
        assert 32 in widths
    out = tmp_path / "lowered"
    report = lower_file(path, out, inputs=x)
    assert report["frames"] == FRAMES
    assert report["integer_vs_dataflow"] == {"scores_identical": True, "labels_identical": True}
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    tol = 1e-5 * max(1.0, float(np.abs(ref).max()))
    assert report["qonnx_vs_integer"]["max_abs_diff"] <= tol
    for f in (QONNX_FILE, INTEGER_FILE, DATAFLOW_FILE, REPORT_FILE):
        assert (out / f).is_file()

    # PyTorch (Brevitas) = integer graph, on the same frames.
    integer = graphs.load_onnx(out / INTEGER_FILE)
    logits = graphs.run(integer, codes)
    assert np.abs(logits - ref).max() <= tol
    # The dataflow graph alone: only HW layers, and its scores times the recorded scale are PyTorch's outputs
    # up to the float tail (the last layer's bias, if any).
    df = dfg.load_dataflow(out / DATAFLOW_FILE)
    ops = {n.op_type for n in df.graph.node}
    assert {"MVAU", "LabelSelect"} <= ops
    res = execute(df, codes.transpose(0, 2, 3, 1))
    scores = res[dfg.scores_name(df)].reshape(FRAMES, -1)
    assert np.array_equal(scores, np.round(scores))
    if not json.loads(df.get_metadata_prop(dfg.META_TAIL)) == ["Mul", "Add"]:  # no bias in the tail
        np.testing.assert_allclose(scores * dfg.score_scale(df), ref, rtol=0, atol=tol)
    labels = res[df.graph.output[0].name].reshape(-1)
    np.testing.assert_array_equal(labels, np.argmax(logits.reshape(FRAMES, -1), axis=1))
    # a per-class bias after the last layer changes the scores' order: their ranks (a Thresholding) feed top-k
    ranked = json.loads(integer.get_metadata_prop(META_OUTPUT))["tail_keeps_order"] is False
    assert ranked == ("bias" in name)
    assert [n.op_type for n in df.graph.node][-2] == ("Thresholding" if ranked else "MVAU")


def test_structure_of_the_lowered_cnv(exported, tmp_path):
    """MaxPool, padding, the Flatten -> MatMul and the BN + ReLU quantizers become the expected HW layers."""
    _, path = exported("cnv-w2")
    lower_file(path, tmp_path, frames=4)
    df = dfg.load_dataflow(tmp_path / DATAFLOW_FILE)
    ops = [n.op_type for n in df.graph.node]
    assert ops.count("MVAU") == 4  # two convs, two linears
    assert "FMPadding" in ops and ops.count("ConvolutionInputGenerator") == 3  # conv1 (padded), pool, conv2
    pools = [dfg.get_op(n) for n in df.graph.node if n.op_type == "Pool"]
    assert [p.attr("Function") for p in pools] == ["MaxPool"]
    mvaus = [dfg.get_op(n) for n in df.graph.node if n.op_type == "MVAU"]
    assert [m.has_thresholds() for m in mvaus] == [True, True, True, False]  # BN + QuantReLU fused
    assert mvaus[0].attr_dtype("weightDataType").bitwidth() == 2  # narrow-range 2-bit weights: {-1, 0, 1}
    assert mvaus[2].attr_dtype("weightDataType").name == "BIPOLAR"
    assert [m.attr("MW") for m in mvaus] == [27, 72, 576, 32]


def test_cli_lower_json(exported, tmp_path, capsys):
    _, path = exported("residual-shared-quant")
    main(["lower", str(path), "--out", str(tmp_path / "o"), "--frames", "8", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 8
    assert report["integer_vs_dataflow"] == {"scores_identical": True, "labels_identical": True}
    assert report["qonnx_vs_integer"]["max_abs_diff"] < 1e-4
    assert "ElementwiseAdd" in {n.op_type for n in dfg.load_dataflow(tmp_path / "o" / DATAFLOW_FILE).graph.node}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_unsupported_pattern_is_a_clean_error(exported, name, tmp_path, capsys):
    """Different quantizer scales on the branches of an Add (not an integer add), per-channel activation scales
    into a conv (integer weights cannot absorb them), Brevitas' TruncAvgPool2d (a Trunc node), a float weight,
    a ceil-mode pool and a float activation: each is an UnsupportedError naming the node, and one ``error:``
    line from ``onebit lower``."""
    _, path = exported(name)
    with pytest.raises(UnsupportedError, match=UNSUPPORTED_ERRORS[name]) as info:
        lower_file(path, tmp_path / "o", frames=4)
    named = str(info.value).split()[1]
    assert named in {n.name for n in onnx.load(str(path)).graph.node}  # the user's node, by the user's name
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as exc:
        main(["lower", str(path), "--out", str(tmp_path / "o"), "--json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: node ")
