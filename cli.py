"""The ``onebit`` command line. Mistakes a user can fix print one ``error:`` line and exit with status 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from onebit.cli_args import FiniteFloat, flag_of, load_npy, stderr_log
from onebit.errors import CheckpointError, ConfigError, OnebitError, check_positive, one_line


def emit(as_json: bool, payload: dict, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2))
    else:
        for line in lines:
            click.echo(line)


def arch_options(f):
    f = click.option("--temperature", type=FiniteFloat(), default=None,
                     help="Logit temperature T (logits = GAP / T).")(f)
    f = click.option("--abits", type=click.IntRange(0, 8), default=None,
                     help="Activation bits 1..8 (hardware variants); 0 = float activations.")(f)
    f = click.option("--act", type=click.Choice(["bn-relu", "srelu"]), default=None,
                     help="bn-relu: BN without affine + ReLU; srelu: max(x, -1), no BN in the body.")(f)
    f = click.option("--fp", is_flag=True, help="Full-precision weights (the baseline) instead of 1-bit.")(f)
    f = click.option("--arch", default="tiny", show_default=True, help="tiny, wrn-20-10 or wrn-D-K.")(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onebit")
def cli():
    """onebit: 1-bit-per-weight Wide ResNets from quantization-aware training to FPGA dataflow."""


@cli.command()
@arch_options
@click.option("--in-channels", type=click.IntRange(1), default=3, show_default=True)
@click.option("--classes", type=click.IntRange(2), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def summary(arch, fp, act, abits, temperature, in_channels, classes, as_json):
    """Parameter counts and deployed sizes of an architecture."""
    from onebit.training.config import parse_arch
    from onebit.training.model import build_model
    from onebit.training.pack import float_bytes, packed_bytes, payload_bytes

    cfg = parse_arch(arch, binary=False if fp else None, act=act, abits=abits, temperature=temperature,
                     in_channels=in_channels, num_classes=classes)
    model = build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    binary = sum(m.weight.numel() for _, m in model.binary_convs())
    payload = payload_bytes(model)
    packed = len(packed_bytes(model))
    floats = float_bytes(model)
    info = {"arch": cfg.name, "description": cfg.describe(), "config": cfg.to_dict(), "params": params,
            "binary_params": binary, "packed_bytes": packed, **payload, "float_bytes": floats,
            "compression": round(floats / packed, 2)}
    emit(as_json, info, [
        f"{cfg.describe()}",
        f"  parameters        {params:,} ({binary:,} binary)",
        f"  packed checkpoint {packed:,} bytes ({packed / 2**20:.2f} MiB)",
        f"  float32 weights   {floats:,} bytes ({floats / 2**20:.2f} MiB), {info['compression']}x larger",
    ])


@cli.command()
@click.option("--data", default="digits", show_default=True,
              help="digits, fashion-mnist, or KIND:PATH / PATH (cifar10, cifar100, mnist, svhn, folder).")
@arch_options
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Epochs (default: the sum of the SGDR periods, 2+4+8+16 = 30).")
@click.option("--sgdr", default=None, help="SGDR periods in epochs, e.g. 2,4,8,16.")
@click.option("--batch-size", type=click.IntRange(1), default=125, show_default=True)
@click.option("--lr", type=FiniteFloat(), default=0.1, show_default=True)
@click.option("--wd", "weight_decay", type=FiniteFloat(), default=5e-4, show_default=True, help="Weight decay.")
@click.option("--momentum", type=FiniteFloat(), default=0.9, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-augment", is_flag=True, help="Train without flips, shifts and cutout.")
@click.option("--cutout", type=click.IntRange(0), default=None, help="Cutout side in pixels (0 = off).")
@click.option("--shift", type=click.IntRange(0), default=None, help="Largest random shift in pixels.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the training step.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder (default runs/<arch>-<data>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
def train(data, arch, fp, act, abits, temperature, epochs, sgdr, batch_size, lr, weight_decay, momentum, seed,
          no_augment, cutout, shift, device, compile_, out, resume, quiet, as_json):
    """Train a 1-bit WRN (runs under torchrun too). The run folder holds checkpoint, metrics and curves."""
    from onebit.atomic import check_output
    from onebit.training.checkpoint import CHECKPOINT
    from onebit.training.schedule import parse_periods
    from onebit.training.trainer import TrainConfig, load_train_config
    from onebit.training.trainer import train as run_training

    if not out:
        variant = "".join(["-fp" if fp else "", f"-{act}" if act else "", f"-a{abits}" if abits is not None else ""])
        out = Path("runs") / f"{arch}{variant}-{Path(data).name.replace(':', '-')}"
    out = check_output(out, folder=True)
    if not resume and (out / CHECKPOINT).exists():
        raise CheckpointError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
    if resume and (out / "config.json").is_file():
        cfg = load_train_config(out)
    else:
        cfg = TrainConfig(data=data, arch=arch, fp=fp, act=act, abits=abits, temperature=temperature,
                          epochs=epochs, sgdr=parse_periods(sgdr) if sgdr else None, batch_size=batch_size,
                          lr=lr, momentum=momentum, weight_decay=weight_decay, seed=seed, augment=not no_augment,
                          shift=shift, cutout=cutout, device=device, compile=compile_)
    result = run_training(cfg, out, resume=resume, quiet=quiet or as_json)
    if result["rank"] != 0:  # under torchrun only rank 0 reports
        return
    emit(as_json, result, [
        f"{result['arch']} on {result['dataset']}: test accuracy {100 * result['test_acc']:.2f} % after "
        f"{result['epochs']} epochs ({result['train_time_s']:.1f} s training)",
        f"run folder: {result['run']}",
    ])


@cli.command("eval")
@click.argument("run", type=click.Path())
@click.option("--packed", is_flag=True, help="Evaluate RUN/packed.npz (or RUN itself if it is a .npz file).")
@click.option("--data", default=None, help="Dataset (default: the one the run was trained on).")
@click.option("--batch-size", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def eval_cmd(run, packed, data, batch_size, as_json):
    """Test accuracy of a run's checkpoint, or of its packed 1-bit checkpoint."""
    from onebit.training.checkpoint import PACKED, load_trained
    from onebit.training.data import load_dataset
    from onebit.training.pack import load_packed
    from onebit.training.trainer import evaluate

    run_path = Path(run)
    if packed:
        source = run_path if run_path.suffix == ".npz" else run_path / PACKED
        model, meta = load_packed(source)
        data = data or meta.get("data")
    else:
        model, state = load_trained(run_path)
        source = run_path
        data = data or state.get("train", {}).get("data")
    if not data:
        raise OnebitError(f"{source}: the dataset it was trained on is not recorded; pass --data")
    ds = load_dataset(data)
    result = evaluate(model, ds.x_test, ds.y_test, batch_size)
    info = {"source": str(source), "dataset": ds.name, "test_images": int(len(ds.y_test)),
            "test_acc": result["acc"], "test_loss": result["loss"], "packed": packed}
    emit(as_json, info, [f"{source}: test accuracy {100 * result['acc']:.2f} % on {len(ds.y_test)} {ds.name} images"])


@cli.command()
@click.argument("run", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Output file (default RUN/packed.npz).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def pack(run, out, as_json):
    """Store each binary weight as one bit (np.packbits) plus the few float tensors, in a .npz."""
    from onebit.atomic import check_output
    from onebit.training.checkpoint import CONFIG, PACKED, load_trained, resolve_checkpoint
    from onebit.training.pack import float_bytes, save_packed

    checkpoint = resolve_checkpoint(run)
    out = check_output(Path(out) if out else Path(run) / PACKED, inputs=[checkpoint, checkpoint.parent / CONFIG])
    model, state = load_trained(checkpoint)
    size = save_packed(model, out, {"data": state.get("train", {}).get("data"), "epoch": state.get("epoch")})
    floats = float_bytes(model)
    info = {"packed": str(out), "packed_bytes": size, "float_bytes": floats, "compression": round(floats / size, 2)}
    emit(as_json, info, [f"{out}: {size:,} bytes ({floats / size:.1f}x smaller than float32 weights)"])


def print_parity(report: dict) -> list[str]:
    """The export's parity checks, as ``onebit verify`` words them."""
    from onebit.flow.verify import export_rows, format_checks

    return [f"parity on {report['frames']} frames:", *("  " + line for line in format_checks(export_rows(report)))]


def finn_options(f):
    """``--finn FINN_DIR`` and its target: a FINN+ build folder for the dataflow graph the command writes."""
    f = click.option("--target-fps", type=int, default=None,
                     help="With --finn: let FINN+'s SetFolding choose PE/SIMD for this many frames/s "
                          "(default: the graph's own folding).")(f)
    f = click.option("--clock-mhz", type=FiniteFloat(), default=None,
                     help="With --finn: FINN+'s target clock (default 100).")(f)
    f = click.option("--finn-part", "fpga_part", default=None,
                     help="With --finn: an FPGA part instead of a board (stitched IP and estimates, no bitfile).")(f)
    f = click.option("--finn-board", "board", default=None,
                     help="With --finn: FINN+'s board name, e.g. Pynq-Z2, ZCU104, U250.")(f)
    f = click.option("--finn", "finn_dir", type=click.Path(file_okay=False), default=None,
                     help="Also write a FINN+ build folder for the dataflow graph here (see --finn-board).")(f)
    return f


def finn_build_options(finn_dir, board, fpga_part, clock_mhz, target_fps) -> dict | None:
    """write_finn_build's keyword arguments for the ``--finn`` flags (checked before the export runs);
    ``None`` without ``--finn``."""
    from onebit.export.finn_handoff import check_build_options

    given = {"--finn-board": board, "--finn-part": fpga_part, "--clock-mhz": clock_mhz, "--target-fps": target_fps}
    if finn_dir is None:
        stray = [flag for flag, value in given.items() if value is not None]
        if stray:
            raise ConfigError(f"{stray[0]}: applies to the FINN+ build folder; add --finn FINN_DIR")
        return None
    clock_mhz = check_positive("clock_mhz", 100.0 if clock_mhz is None else clock_mhz)
    if target_fps is not None:
        check_positive("target_fps", target_fps, integer=True)
    options = {"board": board, "fpga_part": fpga_part, "clock_mhz": clock_mhz,
               "target_fps": target_fps, "folding": "onebit" if target_fps is None else "finn"}
    check_build_options(**options)
    return options


def write_finn(report: dict, out, finn_dir, options: dict | None) -> list[str]:
    """Write the FINN+ build folder (with ``--finn``) for the graph the command wrote; its lines of output."""
    if options is None:
        return []
    from onebit.export.finn_handoff import write_finn_build

    files = write_finn_build(Path(out) / report["files"]["dataflow"], finn_dir, **options)
    report["finn_build"] = {role: str(path) for role, path in files.items()}
    return [f"wrote FINN+ build folder {finn_dir}/: {', '.join(p.name for p in files.values())} "
            f"(run 'python build.py' there; '--estimate-only' needs no Vivado)"]


@cli.command("export")
@click.argument("run", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--frames", type=click.IntRange(1), default=None,
              help="Test images used for the parity checks (default: the whole test set).")
@click.option("--top-k", type=click.IntRange(1), default=1, show_default=True, help="Labels the graph outputs.")
@finn_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def export_cmd(run, out, frames, top_k, finn_dir, board, fpga_part, clock_mhz, target_fps, as_json):
    """Export a run to QONNX, an integer graph and a dataflow graph, checking each against the last."""
    from onebit.export.pipeline import export_run

    finn = finn_build_options(finn_dir, board, fpga_part, clock_mhz, target_fps)
    report = export_run(run, out, frames=frames, top_k=top_k, log=stderr_log(as_json))
    finn_lines = write_finn(report, out, finn_dir, finn)
    emit(as_json, report, [*print_parity(report),
                           f"dataflow-graph accuracy on the test frames: "
                           f"{100 * report['labels_vs_dataset']['test_accuracy']:.2f} %",
                           f"wrote {out}/: {', '.join(report['files'].values())}, parity.json", *finn_lines])


@cli.command("lower")
@click.argument("file", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default FILE stem).")
@click.option("--frames", type=click.IntRange(1), default=16, show_default=True,
              help="Random inputs of the input quantizer's type used for the parity checks.")
@click.option("--input", "inputs", type=click.Path(dir_okay=False), default=None,
              help="Your own inputs (.npy, the QONNX graph's float input layout) instead of random ones.")
@click.option("--top-k", type=click.IntRange(1), default=1, show_default=True)
@click.option("--input-type", default=None,
              help="Integer type of the accelerator's input (e.g. UINT8), where the graph's float input does not "
                   "feed a quantizer directly: float input = input-scale * code.")
@click.option("--input-scale", default=None, help="What one input code is worth in the float input (1/255 or 0.5; "
                                                  "default 1).")
@finn_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def lower_cmd(file, out, frames, inputs, top_k, input_type, input_scale, finn_dir, board, fpga_part, clock_mhz,
              target_fps, as_json):
    """Lower a QONNX file from elsewhere (your own Brevitas model) to integer and dataflow graphs."""
    import numpy as np

    from onebit.export.pipeline import lower_file

    finn = finn_build_options(finn_dir, board, fpga_part, clock_mhz, target_fps)
    x = load_npy(inputs).astype(np.float32) if inputs else None
    out = out or str(Path(file).with_suffix("")) + "_lowered"
    report = lower_file(file, out, frames=frames, inputs=x, top_k=top_k, input_type=input_type,
                        input_scale=input_scale, log=stderr_log(as_json))
    finn_lines = write_finn(report, out, finn_dir, finn)
    emit(as_json, report, [*print_parity(report), f"wrote {out}/: {', '.join(report['files'].values())}, parity.json",
                           *finn_lines])


def _register_stage_commands():
    from onebit.export.dataflow.fold_cli import fold_cmd
    from onebit.flow.cli import run_cmd, verify_cmd
    from onebit.hw.board_cli import boards_cmd, emulate_cmd, flash_cmd, infer_cmd
    from onebit.hw.cli import build_cmd
    from onebit.sim.cli import sim_cmd

    for command in (fold_cmd, run_cmd, sim_cmd, build_cmd, verify_cmd, boards_cmd, flash_cmd, infer_cmd, emulate_cmd):
        cli.add_command(command)


_register_stage_commands()


def _invoked(argv: list[str]) -> click.Command | None:
    """The subcommand in ``argv`` (the group's own options take no values)."""
    name = next((a for a in argv if not a.startswith("-")), None)
    return cli.commands.get(name)


def user_message(err: OnebitError, argv: list[str]) -> str:
    """The error's message with its parameter called by the flag of the invoked command's option of that name."""
    command = _invoked(argv)
    flag = flag_of(command, err.param) if command is not None and err.param else None
    return err.named(flag) if flag else str(err)


def usage_message(err: click.UsageError) -> str:
    """Click's own complaint about the command line (an unknown option, a value out of range), as onebit words
    its errors: the command, the complaint, where to read more."""
    command = err.ctx.command_path if err.ctx is not None else "onebit"
    return f"{command}: {err.format_message().rstrip('.')}; see '{command} --help'"


def fail(message: str, status: int = 2) -> None:
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(status)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        cli.main(args=argv, prog_name="onebit", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt) as e:
        if isinstance(e.__cause__, EOFError):  # click turns every EOFError into Abort: a reader's bug, not ^C
            internal_error(e.__cause__, argv)
        fail("interrupted", 130)
    except click.exceptions.NoArgsIsHelpError as e:  # plain `onebit`, or a group without its command
        click.echo(e.ctx.get_help())
    except click.UsageError as e:
        fail(usage_message(e))
    except click.ClickException as e:
        fail(e.format_message())
    except OnebitError as e:
        fail(user_message(e, argv))
    except MemoryError:
        out_of_memory(argv)
    except RuntimeError as e:
        if not is_allocation_failure(e):
            internal_error(e, argv)
        out_of_memory(argv)
    except Exception as e:
        internal_error(e, argv)


def is_allocation_failure(e: RuntimeError) -> bool:
    """torch's allocator reports a failed allocation as a RuntimeError, not a MemoryError."""
    return "can't allocate memory" in str(e) or "out of memory" in str(e).lower()


def out_of_memory(argv: list[str]) -> None:
    fail(f"onebit {' '.join(argv[:1])}: not enough memory for what was asked (the architecture, the frames or "
         f"the batch size); ask for less")


def internal_error(e: BaseException, argv: list[str]) -> None:
    """A bug in onebit, not the user's mistake: say so, in one line (``ONEBIT_TRACEBACK=1``: the traceback)."""
    if os.environ.get("ONEBIT_TRACEBACK"):
        raise e
    fail(f"internal error in 'onebit {' '.join(argv[:1])}' ({type(e).__name__}: {e}); please report it "
         f"(ONEBIT_TRACEBACK=1 shows where)", 1)
