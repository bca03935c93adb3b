"""WRN-20-10 (26.7M 1-bit weights, random init) goes through the whole chain with identical outputs."""

import numpy as np
import torch

from onebit.export.dataflow import graph as dfg
from onebit.export.pipeline import Passes, export_model
from onebit.training.config import parse_arch
from onebit.training.model import build_model


def test_wrn_20_10_chain_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    model = build_model(parse_arch("wrn-20-10", abits=4)).eval()
    codes = np.random.default_rng(0).integers(0, 256, size=(2, 3, 32, 32)).astype(np.float32)
    report = export_model(model, codes, codes / np.float32(255), tmp_path, Passes())
    assert report["pytorch_vs_qonnx"]["max_abs_diff"] < 1e-5
    assert report["pytorch_integer_view_vs_integer"]["identical"]
    assert report["integer_vs_dataflow"] == {"scores_identical": True, "labels_identical": True}
    dataflow = dfg.load_dataflow(tmp_path / "model.dataflow.onnx")
    mvaus = [n for n in dataflow.graph.node if n.op_type == "MVAU"]
    assert len(mvaus) == 20  # 19 convs of 3x3 plus the 1x1 head
    weights = sum(int(np.prod(dataflow.get_initializer(n.input[1]).shape)) for n in mvaus)
    assert weights == 26_737_120
    assert all(dataflow.get_tensor_datatype(n.input[1]).name == "BIPOLAR" for n in mvaus)
