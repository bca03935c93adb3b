"""``onebit fold``: choose the PE/SIMD folding of a dataflow graph for a frame rate and/or a LUT budget.

Registered in :mod:`onebit.cli`; mistakes raise :class:`onebit.errors.OnebitError` subclasses, which
``onebit.cli.main`` prints as one ``error:`` line (exit status 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from onebit.atomic import check_output, write_bytes, write_json
from onebit.cli_args import FiniteFloat, load_json_object
from onebit.errors import FoldingError, OnebitError, check_positive, one_line


def default_out(graph: Path) -> Path:
    return graph.with_name(f"{graph.stem}_folded{graph.suffix or '.onnx'}")


def report_path(out: Path) -> Path:
    """``<out stem>.folding.json`` beside the folded graph."""
    return out.with_suffix(".folding.json")


def load_folding_config(path: str) -> dict:
    """A folding config (FINN's node -> {PE, SIMD}), or the folding of a .folding.json report of this command."""
    cfg = load_json_object(path, "config", "a JSON folding config", error=FoldingError)
    if isinstance(cfg.get("folding"), dict) and "layers" in cfg:
        cfg = cfg["folding"]
    return cfg


@click.command("fold")
@click.argument("graph", type=click.Path(dir_okay=False))
@click.option("--target-fps", type=FiniteFloat(), default=None, help="Frames per second every layer must sustain.")
@click.option("--clock-mhz", type=FiniteFloat(), default=100.0, show_default=True,
              help="Clock the cycles are counted at.")
@click.option("--max-luts", type=int, default=None,
              help="LUT budget (estimate, width converters included); alone: the fastest folding that fits.")
@click.option("--device", default=None,
              help="Fold for the highest frame rate whose estimate fits this FPGA (its LUTs as the budget; "
                   "with --target-fps, that rate within them), and check the memory against its block RAM. The "
                   "estimate counts about twice the LUTs place and route uses today.")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="Apply this folding config (node -> {PE, SIMD}, FINN's format, or a .folding.json) "
                   "instead of searching.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Folded graph (default GRAPH with a _folded suffix); the report goes beside it as "
                   "<stem>.folding.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of the table.")
def fold_cmd(graph, target_fps, clock_mhz, max_luts, device, config, out, as_json):
    """Fold a dataflow graph (PE/SIMD per layer), insert width converters, and report cycles and LUTs."""
    from onebit.export.dataflow.folding import apply_folding, strip_stream_nodes
    from onebit.export.dataflow.folding_report import folding_report, format_report
    from onebit.export.dataflow.folding_search import fold as fold_search
    from onebit.export.dataflow.graph import load_dataflow
    from onebit.export.dataflow.insert import InsertDWC

    graph = Path(graph)
    if config is not None and (target_fps is not None or max_luts is not None or device is not None):
        raise FoldingError("--config applies a given folding; it cannot be combined with --target-fps, --max-luts "
                           "or --device")
    if config is None and target_fps is None and max_luts is None and device is None:
        raise FoldingError("fold: give --target-fps, --max-luts or --device (or a rate and a budget), or --config")
    dev = None
    if device is not None:
        if max_luts is not None:
            raise FoldingError("--device sets the LUT budget to the device's; give --device or --max-luts")
        from onebit.hw.synth import check_device

        try:
            dev = check_device(device)
        except OnebitError as e:
            raise FoldingError(f"--device: {e}") from None
        max_luts = dev.luts
    check_positive("clock_mhz", clock_mhz, error=FoldingError)
    if target_fps is not None:
        check_positive("target_fps", target_fps, error=FoldingError)
    if max_luts is not None:
        check_positive("max_luts", max_luts, integer=True, error=FoldingError)
    out = Path(out) if out else default_out(graph)
    rpath = report_path(out)
    for path in (out, rpath):
        check_output(path, inputs=[graph, config])
    cfg = load_folding_config(config) if config is not None else None
    model = load_dataflow(graph)
    if cfg is not None:
        removed = strip_stream_nodes(model)
        try:
            apply_folding(model, cfg)
        except OnebitError as e:  # whatever is wrong, the config says it
            raise type(e)(f"--config {config}: {one_line(str(e))}") from None
        InsertDWC().apply(model)
        report = folding_report(model, clock_mhz)
        report["search"] = {"config": str(config), "target_fps": None, "max_luts": None,
                            "removed_stream_nodes": removed, "stop": f"folding from {config}"}
    else:
        try:
            model, report = fold_search(model, target_fps=target_fps, clock_mhz=clock_mhz, max_luts=max_luts)
        except FoldingError as e:
            if dev is None or e.param != "max_luts":
                raise
            raise FoldingError(f"--device {dev.name} ({dev.luts:,} LUTs): {str(e).split(': ', 1)[-1]}") from None
    if dev is not None:
        report["device"] = _device_fit(report["totals"], dev)
    report = {"graph": str(out), "source": str(graph), "report": str(rpath), **report}
    write_bytes(out, model.model.SerializeToString())
    write_json(rpath, report)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_report(report))
        if "device" in report:
            d = report["device"]
            click.echo(f"{d['name']}: about {d['LUT']:,} of {d['luts']:,} LUTs and {d['mem_bits']:,} of "
                       f"{d['bram_bits']:,} block-RAM bits (estimates)" +
                       ("" if d["memory_fits"] else "; the memory does NOT fit its block RAM"))
        click.echo(f"wrote {out} and {rpath}")


def _device_fit(totals: dict, dev) -> dict:
    """The folded estimate against the device: LUTs (the budget the search kept to) and memory bits."""
    return {"name": dev.name, "luts": dev.luts, "LUT": totals["LUT"], "bram_bits": dev.bram_bits,
            "mem_bits": totals["mem_bits"], "memory_fits": totals["mem_bits"] <= dev.bram_bits}
