"""``onebit run`` (train, pack, export, fold, simulate, build and verify the hardware, and write the report) and
``onebit verify`` (the whole chain on a trained run's test images).

Registered in :mod:`onebit.cli`. Only click is imported here, so that every other command starts fast.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from onebit.cli_args import FiniteFloat, stderr_log
from onebit.errors import renamed

DEFAULT_OUT = "onebit-run"


def _flag_layer(**flags) -> dict:
    """The flags the user gave, as a partial configuration."""
    from onebit.flow.config import FLAGS

    by_flag = {flag: key for key, flag in FLAGS.items()}
    layer: dict = {}
    for opt, value in flags.items():
        if value is not None:
            section, key = by_flag["--" + opt.replace("_", "-")].split(".")
            layer.setdefault(section, {})[key] = value
    return layer


def config_layers(out: Path, config_file: str | None, flags: dict, log) -> tuple[dict, dict, str | None]:
    """The base configuration (the --config file, else the run folder's saved run.toml, else none), the flags
    as a configuration, and the base's name in messages."""
    from onebit.flow import config

    saved = out / config.CONFIG_FILE
    if config_file:
        source = f"--config {config_file}"
        base = config.load_file(config_file)
    elif saved.is_file():
        source = f"saved configuration {saved}"
        base = config.load_file(saved, flag="saved configuration")
        log(f"configuration: {saved} (this folder's run), then the flags")
    else:
        source, base = None, {}
    return base, config.check(_flag_layer(**flags), "flags"), source


def _refuse_arch_beside_checkpoint(cfg: dict, flag_layer: dict) -> None:
    """A flag that asks for another network than the trained run's (merge took the run's own)."""
    from onebit.errors import ConfigError
    from onebit.flow.config import ARCH_PARAMS

    given = flag_layer.get("model", {})
    for key in ARCH_PARAMS:
        if cfg["model"]["checkpoint"] is not None and key in given and given[key] != cfg["model"][key]:
            raise ConfigError(f"model.{key}: the trained run {cfg['model']['checkpoint']} has {key} "
                              f"{cfg['model'][key]!r}, not {given[key]!r}; leave it out (the run's network is used "
                              f"as it is)", param=f"model.{key}")


_RUN_OPTIONS = {"config_file", "out", "until", "quiet", "as_json"}  # run's options that are not configuration


@contextlib.contextmanager
def named_as_given(flag_layer: dict, source: str | None):
    """An error about a configuration key names it as the user gave it: by its flag if a flag set it, else by
    the key (in ``source``, the configuration file, if that set it). A library parameter that no stage renamed
    to its key keeps its name (click's option of that name may mean something else in ``onebit run``)."""
    from onebit.errors import OnebitError
    from onebit.flow.config import FLAGS, config_keys

    try:
        yield
    except OnebitError as e:
        if e.param in config_keys():
            section, key = e.param.split(".")
            if key in flag_layer.get(section, {}):
                e.rename(FLAGS[e.param])
            else:
                e.rename(f"{source}: {e.param}" if source else e.param)
        elif e.param not in _RUN_OPTIONS:
            e.rename(None)
        raise


def resolve_config(out: Path, config_file: str | None, flags: dict, log) -> dict:
    """Defaults < the --config file (else the run folder's saved run.toml) < flags."""
    from onebit.flow import config

    base, flag_layer, source = config_layers(out, config_file, flags, log)
    with named_as_given(flag_layer, source):
        return config.merge(base, flag_layer)


def _summary_lines(results: dict, cfg: dict, out: Path) -> list[str]:
    from onebit.flow import config
    from onebit.flow.stages import REPORT
    from onebit.flow.verify import summary_line

    lines = []
    if "lower" in results:
        r = results["lower"]
        acc = r.get("labels_vs_dataset", {}).get("test_accuracy")
        lines.append(f"{r['arch']}: lowered, checked on {r['frames']} frames ({r['inputs']})" +
                     (f", dataflow accuracy {100 * acc:.2f} %" if acc is not None else ""))
    if "train" in results:
        t = results["train"]
        lines.append(f"{t['arch']} on {t['dataset']}: test accuracy {100 * t['test_acc']:.2f} % after "
                     f"{t['epochs']} epochs")
    if "sim" in results:
        s = results["sim"]
        lines.append(f"simulator: {s['fps']:,.0f} frames/s at {cfg['hw']['clock_mhz']:g} MHz, latency "
                     f"{s['latency_us']:,.1f} us")
    hw = results.get("hw") or {}
    b = hw.get("board")
    if b:
        em = ("virtual board " + ("equal to the reference" if b["board_outputs_equal"] else "DIFFERENT") +
              f" on {b['board_frames']} frames; " if b.get("board_frames") else "")
        lines.append(f"board {b['name']}: pins in {out / 'hw' / 'rtl' / b['constraints']}; {em}link "
                     f"{b['link_frames_per_second'] or 0:,.0f} frames/s at {b['baud']:,} baud, accelerator "
                     f"{b['accelerator_frames_per_second'] or 0:,.0f} frames/s: limited by the {b['limited_by']}")
    if hw.get("fmax_mhz"):
        lines.append(f"{config.device(cfg)}: fmax {hw['fmax_mhz']:.1f} MHz, "
                     f"{hw.get('frames_per_second') or 0:,.0f} frames/s; " +
                     ", ".join(f"{k} {v}" for k, v in (hw.get("resources") or {}).items()))
    if "verify" in results:
        lines.append(f"verification: {summary_line(results['verify'])}")
    if "report" in results:
        lines.append(f"report: {out / REPORT}")
    return lines


@click.command("run")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Run configuration (.toml, .yaml); flags override it. Default: OUT/run.toml if it exists.")
@click.option("--out", type=click.Path(file_okay=False), default=DEFAULT_OUT, show_default=True,
              help="Run folder; the resolved configuration is saved in it as run.toml.")
@click.option("--data", default=None, help="digits (default), fashion-mnist, or KIND:PATH / PATH as for `train`.")
@click.option("--arch", default=None, help="tiny (default), wrn-D-K.")
@click.option("--act", type=click.Choice(["bn-relu", "srelu"]), default=None, help="Activation (default srelu).")
@click.option("--abits", type=click.IntRange(1, 8), default=None, help="Activation bits (default 4).")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Training epochs (default as `train`: 30).")
@click.option("--seed", type=int, default=None, help="Random seed of the training (default 0).")
@click.option("--frames", type=click.IntRange(1), default=None,
              help="Test images checked through pack, export and the simulator (default: all).")
@click.option("--target-fps", type=FiniteFloat(), default=None, help="Frames/s the folding must reach (default 1000).")
@click.option("--device", default=None,
              help="FPGA for synthesis and place and route (default: the board's, else ecp5-25k).")
@click.option("--board", default=None,
              help="Build for a board ('onebit boards', or a .toml profile): pins, PLL, a UART host link, and a "
                   "virtual-board check.")
@click.option("--baud", type=click.IntRange(1), default=None, help="With --board: the host link's baud rate.")
@click.option("--clock-mhz", type=FiniteFloat(), default=None,
              help="Clock for folding, simulation and timing (default 50).")
@click.option("--checkpoint", default=None,
              help="A run folder 'onebit train' wrote, instead of training: the flow goes on from its checkpoint "
                   "as it is.")
@click.option("--model", default=None,
              help="A QONNX file of your own (Brevitas' export_qonnx) instead of training: lower, fold, sim, hw.")
@click.option("--input-type", default=None,
              help="With --model: the integer type the float input is made of (e.g. UINT8), as `onebit lower`.")
@click.option("--input-scale", default=None, help="With --model: float input = scale x code (e.g. 1/255).")
@click.option("--until", default=None,
              help="Stop after this stage: train, pack, export (lower with --model), fold, sim, hw, verify.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or per-step lines, only one line per stage.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary on stdout.")
def run_cmd(config_file, out, until, quiet, as_json, **flags):
    """The whole flow on one dataset: train, export, fold, simulate, RTL co-simulation, bitstream, report.

    With --model FILE.onnx the network is yours: it is lowered (as `onebit lower`) and checked on the data
    set's test images where they are its input, else on random codes of its input type.

    Stages whose inputs have not changed since the last run in OUT are skipped; an interrupted run continues
    where it stopped (training from its last epoch).
    """
    from onebit.atomic import check_output, write_bytes
    from onebit.errors import ConfigError
    from onebit.flow.config import CONFIG_FILE, merge, to_toml
    from onebit.flow.engine import Context, locked, run_stages
    from onebit.flow.stages import REPORT, stages_for
    from onebit.flow.verify import require_passed

    def log(line):
        click.echo(line, err=True)

    out = check_output(out, folder=True)
    base, flag_layer, source = config_layers(out, config_file, flags, log)
    with named_as_given(flag_layer, source):
        cfg = merge(base, flag_layer)
        _refuse_arch_beside_checkpoint(cfg, flag_layer)
        stages = stages_for(cfg)
        names = [s.name for s in stages]
        if until is not None and until not in names:
            raise ConfigError(f"--until: unknown stage {until!r}; expected one of {', '.join(names)}")
        with locked(out):
            saved, text = out / CONFIG_FILE, to_toml(cfg)
            if not saved.is_file() or saved.read_text() != text:
                write_bytes(saved, text.encode())
            ctx = Context(cfg, out, log, quiet=quiet or as_json)
            rows = run_stages(stages, ctx, until)
    if as_json:
        click.echo(json.dumps({"out": str(out), "config": cfg, "stages": rows, "results": ctx.results}, indent=2))
    else:
        for line in _summary_lines(ctx.results, cfg, out):
            click.echo(line)
    if "verify" in ctx.results:
        require_passed(ctx.results["verify"], out / REPORT)


@click.command("verify")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--frames", type=click.IntRange(1), default=8, show_default=True, help="Test images to verify on.")
@click.option("--graph", type=click.Path(dir_okay=False), default=None,
              help="The folded dataflow graph to simulate and build (default: the export's unfolded graph).")
@click.option("--fifo-depths", type=click.Path(dir_okay=False), default=None, help="JSON of FIFO depths.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_cmd(run, out, frames, graph, fifo_depths, as_json):
    """PyTorch = QONNX = integer = dataflow = simulator = RTL on a run's test images: a verdict per check."""
    from onebit.flow.verify import REPORT_FILE, format_checks, require_passed, summary_line, verify_chain
    from onebit.atomic import check_output
    from onebit.cli_args import load_fifo_depths

    check_output(out, folder=True)
    depths = load_fifo_depths(fifo_depths) if fifo_depths else None
    with renamed({"depths": "fifo_depths"}):  # the depths came from --fifo-depths
        report = verify_chain(run, out, frames=frames, graph=graph, depths=depths, log=stderr_log(as_json))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo("\n".join([*format_checks(report["checks"]), f"verification: {summary_line(report)}"]))
    require_passed(report, Path(out) / REPORT_FILE)
