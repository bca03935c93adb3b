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


def count_window_cycles(h: int, w: int, k: int, s: int, cf: int, depthwise: bool, streaming: bool) -> int:
    """Cycles of one frame of FINN+'s RTL sliding-window generator, counted step by step. Streaming (1x1 or
    parallel windows): one input beat per step, then 2 steps. Default: it reads until the first window's last
    beat is in the buffer; then per output row each step moves the write pointer over the row's window beats
    and the read pointer over the next ``s`` input rows, both at once, until both are through; depthwise windows
    are replayed once per channel fold, with ``s - 1`` steps between replays, and ``s - 1`` rows end the frame."""
    if streaming:
        return sum(1 for _ in range(h * w * cf)) + 2
    cycles = ((k - 1) * w + (k - 1)) * cf + cf  # the first window's last beat, read one per step
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    for _ in range(oh):
        to_write, to_read = ow * k * k * cf, s * w * cf
        while to_write or to_read:
            cycles += 1
            to_write, to_read = max(0, to_write - 1), max(0, to_read - 1)
        if depthwise:
            cycles += ow * (s - 1) * (cf - 1)
    return cycles + ((s - 1) * w * cf if depthwise else 0)
