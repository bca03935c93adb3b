"""``onebit sim``: simulate a folded dataflow graph: bit-exact outputs and cycles, throughput, latency, FIFO
depths and deadlocks. Reads only the graph file (no torch, no training code).

Mistakes raise :class:`onebit.errors.OnebitError` subclasses, which ``onebit.cli.main`` prints as one
``error:`` line (exit status 2); a deadlock is a :class:`onebit.sim.deadlock.DeadlockError` (a GraphError).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from onebit.cli_args import FiniteFloat, load_fifo_depths, load_npy
from onebit.errors import check_fits_memory, check_positive, renamed



@click.command("sim")
@click.argument("graph", type=click.Path(dir_okay=False))
@click.option("--frames", type=int, default=None,
              help="Frames to simulate (default: all frames of --input, else 1).")
@click.option("--clock-mhz", type=FiniteFloat(), default=100.0, show_default=True,
              help="Clock for frames/s and us.")
@click.option("--input", "inputs", type=click.Path(dir_okay=False), default=None,
              help="Frames to execute bit-exactly (.npy, N x H x W x C integers of the graph's input type).")
@click.option("--output", "output_npy", type=click.Path(dir_okay=False), default=None,
              help="Write the graph's output (the top-k labels) here as .npy; without --input, random frames "
                   "(seed 0) are executed.")
@click.option("--fifo-depths", "fifo_depths", type=click.Path(dir_okay=False), default=None,
              help="JSON {tensor | StreamingFIFO name | 'producer -> consumer' | 'default': depth} (a .sim.json "
                   "report's fifo_depths work too); edges with neither a StreamingFIFO nor an entry are unbounded.")
@click.option("--out", "out_stem", type=click.Path(dir_okay=False), default=None,
              help="Report stem: writes <stem>.sim.json, <stem>.sim_cycles.png, <stem>.sim_timeline.png "
                   "(default: GRAPH without its suffix).")
@click.option("--no-plots", is_flag=True, help="Write the JSON report only.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of the table.")
def sim_cmd(graph, frames, clock_mhz, inputs, output_npy, fifo_depths, out_stem, no_plots, as_json):
    """Simulate a dataflow graph: bit-exact outputs, cycles per layer, II, latency, FIFO depths, deadlocks."""
    import numpy as np

    from onebit.atomic import atomic_open, check_output
    from onebit.export.dataflow.graph import load_dataflow, random_frames
    from onebit.sim.simulation import simulate
    from onebit.sim.report import build_report, format_report, write_report

    check_positive("clock_mhz", clock_mhz)
    if frames is not None:
        check_positive("frames", frames, integer=True)
    stem = out_stem or str(Path(graph).with_suffix(""))
    sources = [graph, inputs, fifo_depths]
    if output_npy:
        check_output(output_npy, inputs=sources, param="output_npy")
    for suffix in (".sim.json", *(() if no_plots else (".sim_cycles.png", ".sim_timeline.png"))):
        check_output(stem + suffix, inputs=[*sources, output_npy], param="out_stem")
    if frames is not None:  # the schedule holds a few int64 values per frame
        check_fits_memory("frames", frames, 64, "simulated frames (their cycle schedule)")
    depths = load_fifo_depths(fifo_depths) if fifo_depths else None
    model = load_dataflow(graph)
    x = None
    if inputs:
        x = load_npy(inputs)
    elif output_npy:
        x = random_frames(model, frames or 1)
    with renamed({"depths": "fifo_depths"}):  # the depths came from --fifo-depths
        res = simulate(model, frames=frames, inputs=x, depths=depths)
    report = build_report(res, clock_mhz, str(graph))
    if output_npy:
        out_name = model.graph.output[0].name
        with atomic_open(output_npy, "wb") as f:
            np.save(f, res.outputs[out_name])
        report["output_file"] = str(output_npy)
    write_report(res, report, stem, plots=not no_plots)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_report(report))
        click.echo(f"wrote {', '.join(report['files'].values())}"
                   + (f" and {output_npy}" if output_npy else ""))
