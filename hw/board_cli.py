"""``onebit boards``, ``onebit flash``, ``onebit infer`` and ``onebit emulate``."""

from __future__ import annotations

import json

import click

from onebit.cli_args import FiniteFloat, load_npy, stderr_log
from onebit.errors import ConfigError


@click.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
def boards_cmd(as_json):
    """The boards onebit builds for (built in, and *.toml files in $ONEBIT_BOARDS)."""
    from dataclasses import asdict

    from onebit.hw.boards import boards, format_boards

    if as_json:
        click.echo(json.dumps({name: asdict(b) for name, b in boards().items()}, indent=2))
    else:
        click.echo("\n".join(format_boards()))


@click.command("flash")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--write-flash", is_flag=True, help="Write the configuration flash (kept over power cycles) instead "
                                                  "of the FPGA's SRAM.")
@click.option("--cable", default=None, help="openFPGALoader cable, if not the board's default.")
@click.option("--dry-run", is_flag=True, help="Print the openFPGALoader command only.")
def flash_cmd(folder, write_flash, cable, dry_run):
    """Program the board of a board build (onebit build --board) with its bitstream, using openFPGALoader."""
    import shlex

    from onebit.hw.host import flash

    if cable is not None and not cable.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"cable: expected an openFPGALoader cable name (letters, digits, - and _), got {cable!r}",
                          param="cable")
    cmd = flash(folder, write_flash=write_flash, cable=cable, dry_run=dry_run)
    click.echo(("would run: " if dry_run else "programmed: ") + shlex.join(cmd))


@click.command("infer")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--port", required=True, help="Serial port of the board (or of 'onebit emulate').")
@click.option("--input", "inputs", type=click.Path(dir_okay=False), required=True,
              help="Frames (.npy, N x H x W x C integers of the graph's input type).")
@click.option("--labels", type=click.Path(dir_okay=False), default=None, help="True labels (.npy, N integers).")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Write the outputs here (.npy).")
@click.option("--baud", type=click.IntRange(1), default=None, help="Baud rate (default: the build's).")
@click.option("--timeout", "reply_timeout", type=FiniteFloat(), default=None,
              help="Seconds to wait for a reply before sending a frame again (default: from the baud rate).")
@click.option("--retries", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Times a lost or refused frame is sent again before giving up.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def infer_cmd(folder, port, inputs, labels, output, baud, reply_timeout, retries, as_json):
    """Classify frames on a board (or the virtual board) over its serial link; every reply's CRC is checked."""
    import numpy as np

    from onebit.atomic import check_output, write_bytes
    from onebit.hw.host import format_infer, infer

    if reply_timeout is not None and not reply_timeout > 0:
        raise ConfigError(f"reply_timeout: expected a positive number of seconds, got {reply_timeout}",
                          param="reply_timeout")
    if output:
        check_output(output, inputs=[inputs], param="output")
    x = load_npy(inputs)
    y = load_npy(labels, "labels") if labels else None
    log = stderr_log(as_json)
    step = max(1, len(x) // 10)
    out, report = infer(folder, port, x, labels=y, baud=baud, reply_timeout=reply_timeout, retries=retries,
                        progress=lambda done, total: done % step == 0 and log(f"  {done:,} / {total:,} frames"))
    if output:
        import io

        buf = io.BytesIO()
        np.save(buf, out)
        write_bytes(output, buf.getvalue())
        report["output"] = output
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo("\n".join(format_infer(report)))
        if output:
            click.echo(f"wrote {output}")


@click.command("emulate")
@click.argument("folder", type=click.Path(file_okay=False))
def emulate_cmd(folder):
    """The virtual board of a board build: Verilator behind a pseudo-terminal; 'onebit infer --port' talks to it.
    Runs until interrupted (Ctrl-C)."""
    from onebit.hw.board import load_plan
    from onebit.hw.emulate import Emulator

    p = load_plan(folder)
    click.echo(f"building the virtual board of {folder} (Verilator) ...", err=True)
    with Emulator(folder) as emu:
        bit = p["emulation"]["bit_clocks"]
        click.echo(f"virtual {p['board']} on {emu.port}: link clock {p['link']['clock_hz'] / 1e6:g} MHz, UART bit "
                   f"time scaled to {bit} link clocks ({p['link']['clock_hz'] / bit / 1e6:g} Mbaud in simulated "
                   f"time), accelerator at {p['accelerator']['clock_hz'] / 1e6:g} MHz; Ctrl-C stops it")
        click.echo(f"  onebit infer {folder} --port {emu.port} --input FRAMES.npy", err=True)
        emu.wait()
