"""``onebit build``."""

from __future__ import annotations

import json

import click

from onebit.cli_args import FiniteFloat, load_npy, stderr_log
from onebit.errors import ConfigError, check_positive, renamed


@click.command("build")
@click.argument("graph", type=click.Path(dir_okay=False))
@click.option("--device", default=None,
              help="FPGA: ecp5-12k, ecp5-25k, ecp5-45k, ecp5-85k, ice40-up5k or gowin-gw1nr9 (default: the board's, "
                   "else ecp5-25k).")
@click.option("--board", default=None,
              help="Build for a board ('onebit boards', or a .toml profile): its pins, PLL and a serial host link.")
@click.option("--baud", type=click.IntRange(1), default=None, help="Host link baud rate (default: the board's).")
@click.option("--clock-mhz", type=FiniteFloat(), default=50.0, show_default=True,
              help="Target clock for place and route.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--frames", type=click.IntRange(1), default=2, show_default=True,
              help="Random frames for the co-simulation (ignored with --input).")
@click.option("--input", "inputs", type=click.Path(dir_okay=False), default=None,
              help="Frames for the co-simulation (.npy, N x H x W x C integers of the graph's input type).")
@click.option("--edge-frames", type=click.IntRange(1), default=4, show_default=True,
              help="Frames co-simulated edge by edge (every beat's value and cycle on every edge).")
@click.option("--cosim-seconds", type=FiniteFloat(), default=120.0, show_default=True,
              help="The remaining frames' outputs are co-simulated (values and each frame's end cycle) as far as "
                   "Verilator gets in about this long; 0: none.")
@click.option("--fifo-depths", type=click.Path(dir_okay=False), default=None,
              help="JSON of FIFO depths as for 'onebit sim' (default: the simulator's sizing).")
@click.option("--no-synth", is_flag=True, help="Stop after the co-simulation.")
@click.option("--no-pnr", is_flag=True, help="Synthesise only (no place and route, no bitstream).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def build_cmd(graph, device, board, baud, clock_mhz, out, frames, inputs, edge_frames, cosim_seconds, fifo_depths,
              no_synth, no_pnr, as_json):
    """RTL for a dataflow graph, Verilator co-simulation, synthesis, place and route and a bitstream."""
    from onebit.hw.build import build, format_build
    from onebit.hw.synth import check_device
    from onebit.cli_args import load_fifo_depths

    from onebit.hw.boards import check_board

    check_positive("clock_mhz", clock_mhz)
    profile = check_board(board) if board else None
    if baud is not None and profile is None:
        raise ConfigError("baud: the link's baud rate needs --board", param="baud")
    if profile is not None and device is not None and device != profile.device:
        raise ConfigError(f"device: {profile.name} carries a {profile.device}, got --device {device}", param="device")
    if profile is not None:  # before any work: a baud rate neither the oscillator nor the PLL'd clock can time
        from onebit.hw.board import check_baud
        from onebit.hw.pll import pll_config

        check_baud(profile, baud, pll_config(profile.family, profile.clock_hz, clock_mhz * 1e6).fout_hz)
    device = device or (profile.device if profile else "ecp5-25k")
    check_device(device)
    x = load_npy(inputs) if inputs else None
    depths = load_fifo_depths(fifo_depths) if fifo_depths else None
    with renamed({"depths": "fifo_depths"}):  # the depths came from --fifo-depths
        report = build(graph, out, device=device, clock_mhz=clock_mhz, frames=frames, inputs=x, depths=depths,
                       synth=not no_synth, pnr=not no_pnr, log=stderr_log(as_json), edge_frames=edge_frames,
                       cosim_seconds=cosim_seconds, board=profile, baud=baud)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo("\n".join(format_build(report)))
        click.echo(f"wrote {out}/build.json")
