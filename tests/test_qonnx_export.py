"""The Brevitas models export to QONNX and qonnx's execution matches PyTorch bit for bit on quantized nets."""

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from onebit.export.qonnx_export import export_qonnx
from onebit.training.config import parse_arch
from onebit.training.model import build_model
from testkit import randomise_bn





def export_and_run(model, x, path):
    export_qonnx(model, x, path)
    wrapped = ModelWrapper(str(path))
    out = execute_onnx(wrapped, {wrapped.graph.input[0].name: x.numpy()})[wrapped.graph.output[0].name]
    return wrapped, out


@pytest.mark.parametrize("act", ["srelu", "bn-relu"])
@pytest.mark.parametrize("abits", [1, 2, 4, 8])
def test_quantized_tiny_exports_with_identical_outputs(tmp_path, act, abits):
    torch.manual_seed(abits)
    model = build_model(parse_arch("tiny", in_channels=1, act=act, abits=abits)).eval()
    randomise_bn(model)
    x = torch.randint(0, 256, (32, 1, 8, 8), generator=torch.Generator().manual_seed(0)).float() / 255
    wrapped, out = export_and_run(model, x, tmp_path / "m.onnx")
    ops = [n.op_type for n in wrapped.graph.node]
    assert ops.count("BipolarQuant") == 8  # every conv, the first and the last included
    assert "Quant" in ops
    with torch.no_grad():
        ref = model(x).numpy()
    # Activations are integer codes and convs exact sums with one scaling: only the float head differs.
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


def test_float_activation_model_exports(tmp_path):
    torch.manual_seed(0)
    model = build_model(parse_arch("wrn-8-1", in_channels=1, num_classes=10)).eval()
    x = torch.rand(8, 1, 8, 8)
    wrapped, out = export_and_run(model, x, tmp_path / "f.onnx")
    assert [n.op_type for n in wrapped.graph.node].count("BipolarQuant") == 8
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-5)
