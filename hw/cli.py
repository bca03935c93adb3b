"""``onebit build`` and ``onebit verify``."""

from __future__ import annotations

import json
import math

import click

from onebit.errors import ConfigError, GraphError


def _clock(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--clock-mhz: expected a positive number, got {value}")
    return value


def _log(as_json: bool):
    return (lambda s: None) if as_json else (lambda s: click.echo(s, err=True))


@click.command("build")
@click.argument("graph", type=click.Path(dir_okay=False))
@click.option("--device", default="ecp5-25k", show_default=True,
              help="FPGA: ecp5-25k, ecp5-45k, ecp5-85k or ice40-up5k.")
@click.option("--clock-mhz", type=float, default=50.0, show_default=True, help="Target clock for place and route.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--frames", type=click.IntRange(1), default=2, show_default=True,
              help="Random frames for the co-simulation (ignored with --input).")
@click.option("--input", "input_npy", type=click.Path(dir_okay=False), default=None,
              help="Frames for the co-simulation (.npy, N x H x W x C integers of the graph's input type).")
@click.option("--fifo-depths", type=click.Path(dir_okay=False), default=None,
              help="JSON of FIFO depths as for 'onebit sim' (default: the simulator's sizing).")
@click.option("--no-synth", is_flag=True, help="Stop after the co-simulation.")
@click.option("--no-pnr", is_flag=True, help="Synthesise only (no place and route, no bitstream).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def build_cmd(graph, device, clock_mhz, out, frames, input_npy, fifo_depths, no_synth, no_pnr, as_json):
    """RTL for a dataflow graph, Verilator co-simulation, synthesis, place and route and a bitstream."""
    from onebit.hw.build import build, format_build
    from onebit.sim.cli import _load_npy, load_depths

    _clock(clock_mhz)
    from onebit.hw.synth import check_device

    check_device(device)
    x = _load_npy(input_npy) if input_npy else None
    depths = load_depths(fifo_depths) if fifo_depths else None
    report = build(graph, out, device=device, clock_mhz=clock_mhz, frames=frames, inputs=x, depths=depths,
                   synth=not no_synth, pnr=not no_pnr, log=_log(as_json))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo("\n".join(format_build(report)))
        click.echo(f"wrote {out}/build.json")


@click.command("verify")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--frames", type=click.IntRange(1), default=8, show_default=True, help="Test images to verify on.")
@click.option("--graph", type=click.Path(dir_okay=False), default=None,
              help="The folded dataflow graph to build (default: the export's unfolded graph).")
@click.option("--fifo-depths", type=click.Path(dir_okay=False), default=None, help="JSON of FIFO depths.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_cmd(run, out, frames, graph, fifo_depths, as_json):
    """PyTorch = QONNX = integer = dataflow = simulator = RTL on a run's test images: a verdict per stage."""
    from onebit.hw.verify import format_verify, verify
    from onebit.sim.cli import load_depths

    depths = load_depths(fifo_depths) if fifo_depths else None
    report = verify(run, out, frames=frames, graph=graph, depths=depths, log=_log(as_json))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo("\n".join(format_verify(report)))
    if not report["all_identical"]:
        raise GraphError(f"onebit verify {run}: {next(r for r in report['stages'] if not r['ok'])['stage']} "
                         f"differs; see {out}/verify.json")
