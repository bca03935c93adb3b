"""The export stage: PyTorch (integer view) = QONNX = integer graph = dataflow graph, minimal data types, a
trained run's accuracy kept exactly, and one-line errors for every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from onebit.cli import main
from onebit.export.dataflow import graph as dfg
from onebit.export.dataflow.executor import execute
from onebit.export.integer_lowering import dtype_for
from onebit.export.pipeline import (DATAFLOW_FILE, INTEGER_FILE, QONNX_FILE, REPORT_FILE, Passes, export_model,
                                    export_run)
from onebit.training.config import parse_arch
from onebit.training.model import build_model
from testkit import randomise_bn

ACTS = ["srelu", "bn-relu"]
ABITS = [1, 2, 4, 8]
FRAMES = 32





@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """32 random uint8 frames, NCHW (the tiny net's digits input: 1 x 8 x 8)."""
    return np.random.default_rng(0).integers(0, 256, (FRAMES, 1, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, frames):
    """``exported(act, abits)`` -> (out folder, report): each variant is exported once per module."""
    cache: dict = {}

    def get(act: str, abits: int):
        if (act, abits) not in cache:
            torch.manual_seed(abits)
            model = build_model(parse_arch("tiny", in_channels=1, act=act, abits=abits)).eval()
            randomise_bn(model)
            out = tmp_path_factory.mktemp(f"tiny-{act}-a{abits}")
            report = export_model(model, frames, frames / np.float32(255.0), out, Passes())
            cache[act, abits] = out, report
        return cache[act, abits]

    return get


@pytest.mark.parametrize("abits", ABITS)
@pytest.mark.parametrize("act", ACTS)
def test_every_stage_identical(exported, act, abits):
    out, report = exported(act, abits)
    assert report["frames"] == FRAMES
    assert report["pytorch_vs_qonnx"]["max_abs_diff"] < 1e-5
    assert report["pytorch_integer_view_vs_integer"]["identical"]
    assert report["pytorch_integer_view_vs_integer"]["differing_scores"] == 0
    assert report["qonnx_vs_integer"]["max_abs_diff"] < 1e-5
    assert report["integer_vs_dataflow"]["scores_identical"]
    assert report["integer_vs_dataflow"]["labels_identical"]
    for name in (QONNX_FILE, INTEGER_FILE, DATAFLOW_FILE):
        assert (out / name).is_file()
    if act == "bn-relu":  # the randomised BN statistics give each channel its own threshold table
        integer = ModelWrapper(str(out / INTEGER_FILE))
        tables = [integer.get_initializer(n.input[1]) for n in integer.graph.node if n.op_type == "MultiThreshold"]
        assert sum(t.shape[0] > 1 and np.unique(t, axis=0).shape[0] > 1 for t in tables) >= 4


def annotated_tensors(model: ModelWrapper) -> set[str]:
    names = {t.name for t in model.graph.initializer} | {model.graph.input[0].name}
    for node in model.graph.node:
        names |= {t for t in (*node.input, *node.output) if t}
    return names


def dtype_attributes(model: ModelWrapper):
    for node in model.graph.node:
        for a in node.attribute:
            if a.type == a.STRING and (a.name.lower().endswith("datatype") or a.name.endswith("_dtype")):
                yield node, a.name, DataType[a.s.decode()]


@pytest.mark.parametrize("abits", ABITS)
@pytest.mark.parametrize("act", ACTS)
def test_data_types_are_minimal(exported, frames, act, abits):
    out, _ = exported(act, abits)
    model = ModelWrapper(str(out / DATAFLOW_FILE))
    annotated = {a.tensor_name for a in model.graph.quantization_annotation}
    wide = {DataType["INT32"], DataType["FLOAT32"]}
    for name in annotated_tensors(model):
        assert name in annotated, f"{name} has no data type annotation"
        assert model.get_tensor_datatype(name) not in wide, f"{name}: {model.get_tensor_datatype(name)}"
    for node, attr, dt in dtype_attributes(model):
        assert dt not in wide, f"{node.name}.{attr} = {dt.name}"
    # Accumulators: never wider than the worst case of their MW binary products, and 16 bits suffice for
    # the tiny net up to 4-bit activations (8-bit codes need up to 18: 3*3*32*255 > 2**15).
    accs = []
    for node in model.graph.node:
        if node.op_type == "MVAU":
            op = dfg.get_op(node)
            acc, idt = op.attr_dtype("accDataType"), op.input_dtype()
            bound = op.attr("MW") * max(abs(idt.min()), abs(idt.max()))
            assert acc.bitwidth() <= dtype_for(-bound, bound).bitwidth(), node.name
            accs.append(acc.bitwidth())
    assert accs
    if abits <= 4:
        assert max(accs) <= 16
    # Every stream's values lie in its annotated type (the narrow types are also sound).
    taps = execute(model, frames.transpose(0, 2, 3, 1), taps=True)
    for name, value in taps.items():
        if name in annotated_tensors(model):
            dt = model.get_tensor_datatype(name)
            assert value.min() >= dt.min() and value.max() <= dt.max(), f"{name}: {dt.name}"


# ----- a trained run, on the whole test set --------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``onebit train`` for 3 epochs on the digits (tiny: 1-bit weights, srelu, 4-bit activations)."""
    from onebit.training.trainer import TrainConfig, train

    deterministic, rng = torch.are_deterministic_algorithms_enabled(), torch.get_rng_state()
    run = tmp_path_factory.mktemp("trained") / "run"
    try:
        summary = train(TrainConfig(epochs=3, device="cpu"), run, quiet=True)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_rng_state(rng)
    return run, summary


@pytest.fixture(scope="module")
def trained_export(trained, tmp_path_factory):
    run, _ = trained
    out = tmp_path_factory.mktemp("trained-export")
    return out, export_run(run, out)


def test_trained_run_keeps_its_accuracy_exactly(trained, trained_export):
    from onebit.training.checkpoint import load_trained
    from onebit.training.data import load_dataset
    from onebit.training.trainer import evaluate

    run, summary = trained
    out, report = trained_export
    ds = load_dataset("digits")
    model, _ = load_trained(run)
    ref = evaluate(model, ds.x_test, ds.y_test)
    assert report["frames"] == len(ds.y_test) == 360
    assert ref["acc"] > 0.5  # it learned something, so the check below is not about a constant predictor
    preds = np.asarray(report["predictions"])
    assert ref["acc"] == summary["test_acc"]
    assert report["pytorch_integer_view_vs_integer"]["identical"]
    # PyTorch's float logits break a tie of two classes' integer scores by rounding, the integer graph and the
    # hardware to the lower class: the labels may differ there, and only there
    with torch.no_grad():
        logits = model(torch.from_numpy(ds.x_test.astype(np.float32) / 255).permute(0, 3, 1, 2)).numpy()
    differ = np.flatnonzero(preds != np.asarray(ref["preds"]))
    top = logits[differ, np.asarray(ref["preds"])[differ]]
    assert np.allclose(logits[differ, preds[differ]], top, rtol=1e-5, atol=0), (differ, logits[differ])
    assert len(differ) <= 0.02 * len(preds)
    assert report["labels_vs_dataset"]["test_accuracy"] == float((preds == ds.y_test).mean())
    assert report["integer_vs_dataflow"]["scores_identical"] and report["integer_vs_dataflow"]["labels_identical"]
    for name in (QONNX_FILE, INTEGER_FILE, DATAFLOW_FILE, REPORT_FILE):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert json.loads((out / REPORT_FILE).read_text())["predictions"] == report["predictions"]
    # The written dataflow graph alone reproduces the predictions.
    df = ModelWrapper(str(out / DATAFLOW_FILE))
    labels = execute(df, ds.x_test.astype(np.float32))[df.graph.output[0].name]
    np.testing.assert_array_equal(labels.reshape(-1), preds)
    accs = [dfg.get_op(n).attr_dtype("accDataType").bitwidth() for n in df.graph.node if n.op_type == "MVAU"]
    assert accs and max(accs) <= 16


def test_export_json_has_the_parity_fields(trained, tmp_path, capsys):
    run, _ = trained
    main(["export", str(run), "--out", str(tmp_path / "exp"), "--frames", "32", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 32
    assert report["pytorch_vs_qonnx"]["max_abs_diff"] < 1e-5
    assert report["pytorch_integer_view_vs_integer"]["identical"] is True
    assert report["integer_vs_dataflow"] == {"scores_identical": True, "labels_identical": True}
    assert 0 <= report["labels_vs_dataset"]["test_accuracy"] <= 1
    assert set(report["files"].values()) == {QONNX_FILE, INTEGER_FILE, DATAFLOW_FILE}


# ----- bad input: one line, naming the file or node ----------------------------------------------------------
def cli_error(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    if "--json" not in args:  # the progress lines of the passes come first
        lines = lines[-1:] if sum(line.startswith("error:") for line in lines) == 1 else lines
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.fixture(scope="module")
def real_qonnx(exported):
    out, _ = exported("srelu", 4)
    return out / QONNX_FILE


def test_truncated_onnx_file(real_qonnx, tmp_path, capsys):
    data = real_qonnx.read_bytes()
    bad = tmp_path / "half.onnx"
    bad.write_bytes(data[: len(data) // 2])
    for extra in (["--json"], []):
        line = cli_error(capsys, "lower", bad, "--out", tmp_path / "o", *extra)
        assert str(bad) in line and "not a readable ONNX model" in line
    assert not (tmp_path / "o").exists()


def test_random_bytes_file(tmp_path, capsys):
    bad = tmp_path / "noise.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    line = cli_error(capsys, "lower", bad, "--out", tmp_path / "o", "--json")
    assert str(bad) in line


def test_missing_file(tmp_path, capsys):
    line = cli_error(capsys, "lower", tmp_path / "nope.onnx", "--out", tmp_path / "o", "--json")
    assert "nope.onnx" in line and "no such" in line


def test_float_model_without_quantizers(tmp_path, capsys):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 10)).eval()
    path = tmp_path / "float.onnx"
    torch.onnx.export(net, (torch.randn(1, 1, 8, 8),), str(path))
    line = cli_error(capsys, "lower", path, "--out", tmp_path / "o", "--json")
    assert "no Quant" in line and str(path) in line


def test_unsupported_op_names_the_node(tmp_path, capsys):
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat

    class Sigmoidal(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(1, 4, 3, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)
            self.act = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(4 * 6 * 6, 10, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)

        def forward(self, x):
            x = torch.sigmoid(self.conv(self.inp(x)))
            return self.fc(torch.flatten(self.act(x), 1))

    path = tmp_path / "sigmoid.onnx"
    export_qonnx(Sigmoidal().eval(), torch.rand(1, 1, 8, 8), export_path=str(path))
    line = cli_error(capsys, "lower", path, "--out", tmp_path / "o", "--json")
    import onnx

    sigmoid = next(n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Sigmoid")
    assert f"node {sigmoid} (Sigmoid): op type not supported" in line  # the name in the user's file


def test_mismatched_input_shape(real_qonnx, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 9, 9), np.float32))
    line = cli_error(capsys, "lower", real_qonnx, "--out", tmp_path / "o", "--input", x, "--json")
    assert "--input" in line and "(N, 1, 8, 8)" in line and "(2, 1, 9, 9)" in line


def test_float_activation_run_is_refused(tmp_path, capsys):
    from onebit.training.checkpoint import CHECKPOINT, save_checkpoint

    cfg = parse_arch("tiny", in_channels=1, abits=0)
    assert not cfg.quantized
    run = tmp_path / "float-run"
    run.mkdir()
    model = build_model(cfg)
    save_checkpoint(run / CHECKPOINT, {"arch": cfg.to_dict(), "model": model.state_dict(),
                                       "train": {"data": "digits"}})
    line = cli_error(capsys, "export", run, "--out", tmp_path / "o", "--json")
    assert "--abits" in line and str(run) in line


def test_a_head_whose_map_is_no_power_of_two_reloads(tmp_path):
    """A 28x28 input leaves a 7x7 map at the head: the exact range of a sum of 49 values can fit a narrower type
    than the global pool's rule (49 times the extreme, which the RTL sizes its sums by; wrn-8-2: INT17 against
    INT18). The dataflow graph must carry the op's type, or it fails its own check when read back, as
    `onebit run`'s sim stage reads the folded graph."""
    from onebit.export.dataflow.ops import OPS

    torch.manual_seed(0)
    model = build_model(parse_arch("wrn-8-2", in_channels=1, abits=4)).eval()
    codes = np.random.default_rng(1).integers(0, 256, (2, 1, 28, 28)).astype(np.float32)
    report = export_model(model, codes, codes / np.float32(255.0), tmp_path, Passes())
    assert report["integer_vs_dataflow"]["labels_identical"]
    graph = dfg.load_dataflow(tmp_path / DATAFLOW_FILE)  # validates every annotation against its op
    pool = [n for n in graph.graph.node if n.op_type == "GlobalAccPool"]
    assert len(pool) == 1
    assert graph.get_tensor_datatype(pool[0].output[0]) == OPS["GlobalAccPool"](pool[0]).output_dtype()
