"""Helpers shared by several test modules (on pytest's path via ``pythonpath`` in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import torch


def call(capsys, *args) -> tuple[int, str, str]:
    """Run ``onebit ARGS`` in this process; returns (exit status, stdout, stderr)."""
    from onebit.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def randomise_bn(model: torch.nn.Module, seed: int = 1) -> None:
    """Random running statistics (and affine parameters), so that bn-relu thresholds differ per channel."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.data.copy_(torch.rand(m.num_features, generator=gen) - 0.5)


def tiny_dataflow(folder: Path) -> Path:
    """The tiny WRN (1x8x8 input, random weights, seed 0) as an unfolded dataflow graph file in ``folder``."""
    from onebit.export.dataflow.convert import to_dataflow
    from onebit.export.graphs import clean, load_onnx
    from onebit.export.integer import to_integer_graph
    from onebit.export.qonnx_export import export_qonnx
    from onebit.training.config import parse_arch
    from onebit.training.model import build_model

    torch.manual_seed(0)
    m = build_model(parse_arch("tiny", in_channels=1)).eval()
    export_qonnx(m, torch.zeros(1, 1, 8, 8), folder / "q.onnx")
    path = folder / "tiny_df.onnx"
    to_dataflow(to_integer_graph(clean(load_onnx(folder / "q.onnx")))).save(str(path))
    return path
