"""Dataflow graphs of onebit WRNs with random weights (seed 0), folded for a frame rate: the designs the
simulator and hardware benchmarks measure."""

from __future__ import annotations

from pathlib import Path


def folded_wrn(folder: Path, arch: str, target_fps: float, clock_mhz: float, in_channels: int = 3,
               size: int | None = None, **arch_kw) -> Path:
    """Export ``arch`` (random weights), lower it to a dataflow graph, fold it; returns the graph file."""
    import torch

    from onebit.export.dataflow.convert import to_dataflow
    from onebit.export.dataflow.folding_search import fold_for_target
    from onebit.export.graphs import clean, load_onnx
    from onebit.export.integer import to_integer_graph
    from onebit.export.qonnx_export import export_qonnx
    from onebit.training.config import parse_arch
    from onebit.training.model import build_model

    torch.manual_seed(0)
    cfg = parse_arch(arch, in_channels=in_channels, **arch_kw)
    size = size or cfg.image_size
    model = build_model(cfg).eval()
    export_qonnx(model, torch.zeros(1, in_channels, size, size), folder / f"{arch}.qonnx.onnx")
    dataflow = to_dataflow(to_integer_graph(clean(load_onnx(folder / f"{arch}.qonnx.onnx"))))
    folded, _ = fold_for_target(dataflow, target_fps, clock_mhz)
    path = folder / f"{arch}.folded.onnx"
    folded.save(str(path))
    return path
