"""FINN's reference BNNs (Brevitas' ``bnn_pynq`` examples: TFC, SFC, LFC and CNV at W1A1, W1A2, W2A2) lower with
identical outputs at every stage, and the simulator reproduces the dataflow executor bit for bit; TFC's RTL
(1- and 2-bit weights) co-simulates bit- and cycle-exact in Verilator.

The nets are built as FINN's end-to-end tests build them: random weights, BatchNorm statistics settled on a few
random batches in train mode, then eval, exported with Brevitas' ``export_qonnx``. Their float front end (a
Reshape to the flat vector and ``2x - 1`` for the MLPs, ``2x - 1`` for CNV) reads the graph input directly: the
accelerator's input is named with ``input_type`` UINT8 and ``input_scale`` 1/255 and the front end folds into the
first threshold stage. A small net checks the other pre-processing users write (``x/255``, per-channel mean/std,
an NHWC input transposed to NCHW), and every refusal is one line naming the node or the setting.

``ONEBIT_ALL_CNV=0`` leaves out CNV-W1A2 and CNV-W2A2 (about 7 s each; CNV-W1A1 always runs).
"""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stdout

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from brevitas.export import export_qonnx
from brevitas.quant import SignedBinaryWeightPerTensorConst
from onebit.cli import main
from onebit.errors import ConfigError, UnsupportedError
from onebit.export.dataflow import graph as dfg
from onebit.export.dataflow.executor import execute
from onebit.export.integer_input import parse_input_scale
from onebit.export.pipeline import DATAFLOW_FILE, REPORT_FILE, lower_file
from onebit.sim.simulation import simulate
from testkit import call
from torch import nn

bnn_pynq = pytest.importorskip("brevitas_examples.bnn_pynq.models")

MLPS = ["tfc_1w1a", "tfc_1w2a", "tfc_2w2a", "sfc_1w1a", "sfc_1w2a", "sfc_2w2a", "lfc_1w1a", "lfc_1w2a"]
CNVS = ["cnv_1w1a"] + (["cnv_1w2a", "cnv_2w2a"] if os.environ.get("ONEBIT_ALL_CNV", "1") != "0" else [])
UINT8 = {"input_type": "UINT8", "input_scale": "1/255"}
FRAMES = 8


def settle(model: nn.Module, shape: tuple, seed: int = 0) -> nn.Module:
    """BatchNorm (and TensorNorm) statistics from a few random batches in train mode, then eval."""
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(32, *shape))
    return model.eval()


def export(model: nn.Module, shape: tuple, path) -> str:
    with redirect_stdout(io.StringIO()):  # torch.onnx reports its progress on stdout
        export_qonnx(model, torch.randn(1, *shape), str(path))
    return str(path)


def reference(name: str) -> tuple[nn.Module, tuple]:
    model, _ = bnn_pynq.model_with_cfg(name, pretrained=False)
    shape = (3, 32, 32) if name.startswith("cnv") else (1, 28, 28)
    return settle(model, shape), shape


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    cache: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in cache:
            model, shape = reference(name)
            cache[name] = export(model, shape, folder / f"{name}.onnx")
        return cache[name]

    return get


def check_report(report: dict, argmax: bool = True) -> None:
    """``argmax``: also the same top class from QONNX (the small nets' random logits tie, up to float rounding)."""
    q = report["qonnx_vs_integer"]
    assert q["max_abs_diff"] <= q["tolerance"] and (q["argmax_agreement"] == 1.0 or not argmax)
    assert report["integer_vs_dataflow"] == {"scores_identical": True, "labels_identical": True}
    assert report["tail_keeps_order"] is True  # TensorNorm's positive scale: the scores' order is the logits'


def check_simulator(out) -> None:
    model = dfg.load_dataflow(out / DATAFLOW_FILE)
    shape = model.get_tensor_shape("global_in")
    x = np.random.default_rng(1).integers(0, 256, size=(3, *shape[1:])).astype(np.float32)
    ref = execute(model, x)
    res = simulate(model, inputs=x, fifo_sizing=False)
    for k, v in ref.items():
        np.testing.assert_array_equal(res.outputs[k], v)


@pytest.mark.parametrize("name", MLPS + CNVS)
def test_reference_net_lowers_with_identical_outputs(exported, name, tmp_path):
    out = tmp_path / "o"
    report = lower_file(exported(name), out, frames=FRAMES, **UINT8)
    check_report(report)
    assert report["input"] == {"type": "UINT8", "scale": float(np.float32(1 / 255))}
    assert json.loads((out / REPORT_FILE).read_text())["integer_vs_dataflow"]["scores_identical"]
    model = dfg.load_dataflow(out / DATAFLOW_FILE)
    assert model.get_tensor_datatype("global_in").name == "UINT8"
    # the stream is the flattened vector for the MLPs, NHWC for CNV
    assert model.get_tensor_shape("global_in") == ([1, 784] if name[:3] in ("tfc", "sfc", "lfc") else [1, 32, 32, 3])
    check_simulator(out)


@pytest.mark.parametrize("name", ["tfc_1w1a", "tfc_2w2a"])
def test_small_reference_nets_cosimulate_in_verilator(exported, name, tmp_path, capsys):
    """The RTL of TFC with 1- and 2-bit weights: bit-exact on every edge, every beat's cycle the simulator's."""
    lower_file(exported(name), tmp_path / "o", frames=2, **UINT8)
    code, out, err = call(capsys, "build", tmp_path / "o" / DATAFLOW_FILE, "--out", tmp_path / "b", "--frames", 2,
                          "--no-synth", "--json")
    assert code == 0, err
    cosim = json.loads(out)["cosim"]
    assert cosim["outputs_equal"] and cosim["cycles_equal"] and not cosim["mismatches"]


def test_reference_net_without_an_input_type_is_one_line(exported, tmp_path, capsys):
    path = exported("tfc_1w1a")
    with pytest.raises(UnsupportedError, match=r"feeds \['Reshape'\].*input type UINT8 and input scale 1/255"):
        lower_file(path, tmp_path / "o", frames=2)
    with pytest.raises(SystemExit) as exc:
        main(["lower", path, "--out", str(tmp_path / "o"), "--json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and not (tmp_path / "o").exists()


def test_cli_lower_with_input_type(exported, tmp_path, capsys):
    main(["lower", exported("tfc_1w2a"), "--out", str(tmp_path / "o"), "--frames", "4", "--input-type", "UINT8",
          "--input-scale", "1/255", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["integer_vs_dataflow"] == {"scores_identical": True, "labels_identical": True}
    assert report["input"]["type"] == "UINT8"


@pytest.mark.parametrize("flags, message", [
    (["--input-type", "FLOAT32"], "error: --input-type: 'FLOAT32' is not an integer type"),
    (["--input-type", "UINT8", "--input-scale", "0"], "error: --input-scale: expected a positive number"),
    (["--input-type", "UINT8", "--input-scale", "1/0"], "error: --input-scale: expected a positive number"),
    (["--input-scale", "1/255"], "error: --input-scale: given without an input type"),
])
def test_bad_input_settings_are_one_line(exported, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exc:
        main(["lower", exported("tfc_1w1a"), "--out", str(tmp_path / "o"), "--json", *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)


def test_negative_tensor_norm_scale_is_refused(tmp_path):
    """A negative scale on the logits reverses the order of the classes: the integer scores' top-k would be
    wrong, so the head is refused, naming its node."""
    model, shape = reference("tfc_1w1a")
    norm = next(m for m in model.modules() if type(m).__name__ == "TensorNorm")
    norm.weight.data.fill_(-0.5)
    path = export(model, shape, tmp_path / "neg.onnx")
    reversed_order = r"^graph output: the float tail \[\S+ \(Mul\).*\] decreases class 0's logit as its score grows"
    with pytest.raises(UnsupportedError, match=reversed_order):
        lower_file(path, tmp_path / "o", frames=2, **UINT8)


# ----- the pre-processing users write in front of the first quantizer -----------------------------------------
class Small(nn.Module):
    """``pre`` -> 8-bit (or binary) input quantizer -> binary conv -> BN -> 2-bit ReLU -> MaxPool -> Flatten ->
    binary linear, with a float bias per class if ``head_bias`` (the flatten reorders NCHW features; the stream
    is NHWC)."""

    def __init__(self, pre, signed: bool = True, nhwc: bool = False, head_bias: bool = False):
        super().__init__()
        self.pre, self.nhwc = pre, nhwc
        self.inp = qnn.QuantIdentity(bit_width=8, signed=signed, return_quant_tensor=True)
        w = {"weight_quant": SignedBinaryWeightPerTensorConst}
        self.conv = qnn.QuantConv2d(3, 8, 3, padding=1, bias=True, **w)
        self.bn, self.act = nn.BatchNorm2d(8), qnn.QuantReLU(bit_width=2, return_quant_tensor=True)
        self.pool, self.flatten = nn.MaxPool2d(2), nn.Flatten()
        self.fc = qnn.QuantLinear(8 * 4 * 4, 10, bias=head_bias, **w)

    def forward(self, x):
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        x = self.inp(self.pre(x))
        return self.fc(self.flatten(self.pool(self.act(self.bn(self.conv(x))))))


MEAN = torch.tensor([0.49, 0.48, 0.45]).reshape(1, 3, 1, 1)
STD = torch.tensor([0.25, 0.24, 0.26]).reshape(1, 3, 1, 1)
PRE = {  # name -> (net, input shape, input type, input scale)
    "x/255": (lambda: Small(lambda x: x / 255.0, signed=False), (3, 8, 8), "UINT8", "1"),
    "2x-1": (lambda: Small(lambda x: 2.0 * x - 1.0), (3, 8, 8), "UINT8", "1/255"),
    "mean/std": (lambda: Small(lambda x: (x - MEAN) / STD), (3, 8, 8), "UINT8", "1/255"),
    "nhwc mean/std": (lambda: Small(lambda x: (x - MEAN) / STD, nhwc=True), (8, 8, 3), "UINT8", "1/255"),
    "int8 codes": (lambda: Small(lambda x: x * 0.5), (3, 8, 8), "INT8", "0.125"),
}


@pytest.mark.parametrize("name", list(PRE))
def test_pre_processing_folds_into_the_first_thresholds(name, tmp_path):
    make, shape, dtype, scale = PRE[name]
    torch.manual_seed(0)
    model = make()
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.randn(8))
        model.bn.running_var.copy_(torch.rand(8) + 0.5)
    model.eval()
    path = export(model, shape, tmp_path / "pre.onnx")
    report = lower_file(path, tmp_path / "o", frames=FRAMES, input_type=dtype, input_scale=scale)
    check_report(report, argmax=False)
    dataflow = dfg.load_dataflow(tmp_path / "o" / DATAFLOW_FILE)
    assert dataflow.get_tensor_datatype("global_in").name == dtype
    assert dataflow.get_tensor_shape("global_in") == [1, 8, 8, 3]  # NHWC, whatever the user's layout
    first = [n.op_type for n in dataflow.graph.node][:1]
    assert first == ["Thresholding"]  # the front end and the input quantizer: one threshold stage
    # the user's own float frames give the same labels through QONNX and the dataflow graph
    codes = np.random.default_rng(2).integers(0, 128, size=(4, *shape)).astype(np.float32)
    user = lower_file(path, tmp_path / "u", inputs=codes * parse_input_scale(scale), input_type=dtype,
                      input_scale=scale)
    check_report(user, argmax=False)


def test_per_class_bias_head_ranks_the_scores_and_cosimulates(tmp_path, capsys):
    """A float bias per class after the last layer changes the order of the integer scores: a Thresholding maps
    each class's score to its rank among the logits, so the labels are the logits' argmax, in the executor, the
    simulator and the RTL."""
    torch.manual_seed(3)
    model = Small(lambda x: x / 255.0, signed=False, head_bias=True)
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.randn(8))
        model.bn.running_var.copy_(torch.rand(8) + 0.5)
        model.fc.bias.copy_(torch.randn(10) * 4)  # large enough to reorder the scores
    model.eval()
    path = export(model, (3, 8, 8), tmp_path / "bias.onnx")
    codes = np.random.default_rng(4).integers(0, 256, size=(32, 3, 8, 8)).astype(np.float32)
    report = lower_file(path, tmp_path / "o", inputs=codes, input_type="UINT8", input_scale="1")
    assert report["integer_vs_dataflow"] == {"scores_identical": True, "labels_identical": True}
    assert report["tail_keeps_order"] is False
    with torch.no_grad():
        logits = model(torch.from_numpy(codes)).numpy()
    dataflow = dfg.load_dataflow(tmp_path / "o" / DATAFLOW_FILE)
    assert [n.op_type for n in dataflow.graph.node][-3:] == ["MVAU", "Thresholding", "LabelSelect"]
    res = execute(dataflow, codes.transpose(0, 2, 3, 1))
    scores = res[dfg.scores_name(dataflow)].reshape(len(codes), -1)
    labels = res[dataflow.graph.output[0].name].reshape(-1)
    np.testing.assert_array_equal(labels, logits.argmax(1))
    assert not np.array_equal(labels, scores.argmax(1))  # the bias did reorder: top-k on the scores is wrong
    check_simulator(tmp_path / "o")
    code, out, err = call(capsys, "build", tmp_path / "o" / DATAFLOW_FILE, "--out", tmp_path / "b", "--frames", 3,
                          "--no-synth", "--json")
    assert code == 0, err
    cosim = json.loads(out)["cosim"]
    assert cosim["outputs_equal"] and cosim["cycles_equal"] and not cosim["mismatches"]


def test_dropout_and_identities_vanish(tmp_path):
    """Dropout (an identity at inference, as exported in eval mode) and nn.Identity between the layers: the same
    graph as without them."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            w = {"weight_quant": SignedBinaryWeightPerTensorConst}
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.fc1 = qnn.QuantLinear(48, 32, bias=False, **w)
            self.bn, self.act = nn.BatchNorm1d(32), qnn.QuantReLU(bit_width=2, return_quant_tensor=True)
            self.drop, self.same = nn.Dropout(0.3), nn.Identity()
            self.fc2 = qnn.QuantLinear(32, 10, bias=False, **w)

        def forward(self, x):
            x = torch.flatten(self.same(self.inp(x)), 1)
            return self.fc2(self.drop(self.act(self.same(self.bn(self.fc1(self.drop(x)))))))

    torch.manual_seed(0)
    model = settle(Net(), (3, 4, 4))
    report = lower_file(export(model, (3, 4, 4), tmp_path / "drop.onnx"), tmp_path / "o", frames=FRAMES)
    check_report(report, argmax=False)
    ops = [n.op_type for n in dfg.load_dataflow(tmp_path / "o" / DATAFLOW_FILE).graph.node]
    assert ops == ["MVAU", "MVAU", "LabelSelect"]


def test_per_channel_op_before_a_reshape_of_the_input_is_refused(tmp_path):
    """A per-channel Mul, then a Flatten, then the quantizer: the Flatten would have to reorder the pending
    per-channel float op; refused, naming the Flatten."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(3 * 4 * 4, 10, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)

        def forward(self, x):
            return self.fc(self.inp(torch.flatten(x * MEAN, 1)))

    path = export(Net().eval(), (3, 4, 4), tmp_path / "net.onnx")
    with pytest.raises(UnsupportedError, match=r"^node \S+ \((Flatten|Reshape)\): input .* passed through float ops"):
        lower_file(path, tmp_path / "o", frames=2, **UINT8)


def test_input_spec_parsing():
    from onebit.export.integer_input import input_spec

    spec = input_spec("uint8", "1/255")
    assert spec.dtype.name == "UINT8" and spec.scale == np.float32(1 / 255) and spec.levels == (0, 255)
    assert input_spec("INT4", None).levels == (-8, 7) and input_spec("INT4").scale == 1
    assert input_spec() is None
    for bad in ("-1", "nan", "1/0", "x", "1e60"):
        with pytest.raises(ConfigError, match="^input_scale: "):
            input_spec("UINT8", bad)
    for bad in ("BIPOLAR", "FLOAT32", "UINT32", "INT"):
        with pytest.raises(ConfigError, match="^input_type: "):
            input_spec(bad, "1")
