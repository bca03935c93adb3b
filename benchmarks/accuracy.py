"""Accuracy harness: the seeds' four WRN variants and the hardware-ready ones, trained the way ``onebit train`` does.

Configurations (weights + activation; activation bits, 0 = float):

    fp-bn          full-precision weights, BN (no affine) + ReLU, float activations
    1bit-bn        1-bit weights,          BN (no affine) + ReLU, float activations
    fp-srelu       full-precision weights, shifted ReLU,          float activations
    1bit-srelu     1-bit weights,          shifted ReLU,          float activations
    1bit-srelu-a4  1-bit weights,          shifted ReLU,          4-bit activations (hardware-ready)
    1bit-srelu-a2  1-bit weights,          shifted ReLU,          2-bit activations (hardware-ready)

Sets: ``seeds4`` (the first four, the seeds' table), ``hw`` (the last two), ``paper`` (all six, the default).
Every run goes through ``onebit.training.trainer.train`` with the seeds' recipe (SGD, SGDR periods, flips, shifts,
cutout: the TrainConfig defaults), exactly as ``onebit train``.

    python benchmarks/accuracy.py --data digits                     # six configs, tiny arch, 30 epochs
    python benchmarks/accuracy.py --data cifar10:~/data/cifar-10-batches-py --arch wrn-20-10 --device cuda
    python benchmarks/accuracy.py --data fashion-mnist --configs seeds4 --epochs 14

Output (``--out``, default ``benchmarks/results/accuracy/<data>-<arch>/``): one ``<config>-seed<S>.json`` per run,
``summary.json``, ``summary.md``, ``summary.png``; the run folders (checkpoints) under ``runs/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, command_line, format_table, machine_info, write_json  # noqa: E402

CONFIGS: dict[str, dict] = {
    "fp-bn": dict(fp=True, act="bn-relu", abits=0),
    "1bit-bn": dict(fp=False, act="bn-relu", abits=0),
    "fp-srelu": dict(fp=True, act="srelu", abits=0),
    "1bit-srelu": dict(fp=False, act="srelu", abits=0),
    "1bit-srelu-a4": dict(fp=False, act="srelu", abits=4),
    "1bit-srelu-a2": dict(fp=False, act="srelu", abits=2),
}
SETS: dict[str, list[str]] = {
    "seeds4": ["fp-bn", "1bit-bn", "fp-srelu", "1bit-srelu"],
    "hw": ["1bit-srelu-a4", "1bit-srelu-a2"],
    "paper": list(CONFIGS),
}
#: The seeds' published test accuracies (%) for WRN-20-10 (design.md section 1), shown next to ours when they apply.
PUBLISHED = {
    "cifar10": {"fp-bn": 96.62, "1bit-bn": 96.25, "fp-srelu": 95.66, "1bit-srelu": 96.52},
    "cifar100": {"fp-bn": 83.02, "1bit-bn": 81.83, "fp-srelu": 79.37, "1bit-srelu": 78.41},
}
LARGE_DATA = ("cifar10", "cifar100", "svhn")


def data_slug(spec: str) -> str:
    """``digits`` -> digits, ``cifar10:/x/y`` -> cifar10, ``/x/fashion`` -> fashion."""
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if sep and not re.match(r"^[A-Za-z]$", kind):  # KIND:PATH (not a Windows drive letter)
        return kind
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(spec).name or spec).strip("-") or "data"


def select_configs(text: str) -> list[str]:
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        group = SETS.get(part, [part])
        for name in group:
            if name not in CONFIGS:
                raise SystemExit(f"error: --configs: unknown config or set {part!r}; expected sets "
                                 f"{', '.join(SETS)} or configs {', '.join(CONFIGS)}")
            if name not in names:
                names.append(name)
    if not names:
        raise SystemExit("error: --configs: nothing selected")
    return names


def read_metrics(run: Path) -> list[dict]:
    from onebit.training.checkpoint import METRICS

    path = run / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def augment_settings(cfg, ds) -> dict:
    """The augmentation the trainer applies (its defaults resolved for this image size)."""
    from onebit.training.augment import default_cutout, default_shift

    hw = ds.image_shape[0]
    if not cfg.augment:
        return {"hflip": False, "shift": 0, "cutout": 0}
    return {"hflip": bool(ds.hflip), "shift": cfg.shift if cfg.shift is not None else default_shift(hw),
            "cutout": cfg.cutout if cfg.cutout is not None else default_cutout(hw)}


def run_one(name: str, args, ds, out: Path, machine: dict) -> dict:
    from onebit.training.trainer import TrainConfig, train

    spec = CONFIGS[name]
    cfg = TrainConfig(data=args.data, arch=args.arch, fp=spec["fp"], act=spec["act"], abits=spec["abits"],
                      temperature=args.temperature, epochs=args.epochs, sgdr=args.sgdr, batch_size=args.batch_size,
                      seed=args.seed, device=args.device, compile=args.compile)
    arch = cfg.arch_config(ds)
    run_dir = out / "runs" / f"{name}-seed{args.seed}"
    if run_dir.exists() and not args.resume:
        shutil.rmtree(run_dir)  # our own scratch folder: start the run afresh
    print(f"[accuracy] {name}: {arch.describe()}, {cfg.total_epochs()} epochs (SGDR {cfg.periods()}) ...",
          flush=True)
    t0 = time.perf_counter()
    summary = train(cfg, run_dir, resume=args.resume, quiet=not args.progress, dataset=ds)
    wall = time.perf_counter() - t0
    metrics = read_metrics(run_dir)
    best = max(metrics, key=lambda m: m["test_acc"]) if metrics else {}
    train_time = sum(m["epoch_time_s"] for m in metrics)
    images = len(ds.x_train) * len(metrics)
    result = {
        "benchmark": "accuracy",
        "config": name,
        "settings": spec,
        "description": arch.describe(),
        "dataset": {"spec": args.data, "name": ds.name, "train_images": int(len(ds.x_train)),
                    "test_images": int(len(ds.x_test)), "image_shape": list(ds.image_shape),
                    "num_classes": ds.num_classes},
        "train_config": dataclasses.asdict(cfg),
        "arch": arch.to_dict(),
        "logit_temperature": arch.logit_temperature,
        "sgdr_periods": cfg.periods(),
        "augment": augment_settings(cfg, ds),
        "epochs": len(metrics),
        "final_test_acc": summary["test_acc"],
        "best_test_acc": best.get("test_acc"),
        "best_epoch": best.get("epoch"),
        "final_train_err": metrics[-1]["train_err"] if metrics else None,
        "train_time_s": train_time,
        "wall_time_s": wall,
        "train_images_per_s": images / train_time if train_time else None,
        "params": summary["params"],
        "run_folder": str(run_dir.relative_to(out)),
        "metrics": metrics,
        "machine": machine,
        "onebit_version": machine.get("onebit"),
        "command": command_line(),
    }
    write_json(out / f"{name}-seed{args.seed}.json", result)
    print(f"[accuracy] {name}: test accuracy {100 * result['final_test_acc']:.2f} % "
          f"(best {100 * result['best_test_acc']:.2f} % at epoch {result['best_epoch']}), "
          f"{train_time:.1f} s training, {result['train_images_per_s']:.0f} images/s", flush=True)
    return result


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100, sharey=True)
    restarts, start = [], 0
    for p in results[0]["sgdr_periods"] if results else []:
        start += p
        restarts.append(start)
    for r in results:
        epochs = [m["epoch"] for m in r["metrics"]]
        style = "-" if r["settings"]["abits"] == 0 else "--"
        axes[0].plot(epochs, [100 * max(m["test_err"], 1e-4) for m in r["metrics"]], style,
                     label=f"{r['config']} ({100 * r['final_test_acc']:.2f} %)")
        axes[1].plot(epochs, [100 * max(m["train_err"], 1e-4) for m in r["metrics"]], style, label=r["config"])
    last = max((len(r["metrics"]) for r in results), default=0)
    for ax, what in zip(axes, ("test error", "train error")):
        for e in restarts:
            if 0 < e < last:
                ax.axvline(e, color="0.85", lw=0.8, zorder=0)
        ax.set_xlabel("epoch")
        ax.set_title(what, fontsize=10)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("error (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    path.write_bytes(buf.getvalue())


def with_finished_runs(results: list[dict], out: Path, seed: int) -> list[dict]:
    """This invocation's results and every other config's finished run in ``out`` (same seed, same
    schedule), in the order of CONFIGS: the summary covers each run committed so far."""
    done = {r["config"]: r for r in results}
    ref = results[0]
    for name in CONFIGS:
        path = out / f"{name}-seed{seed}.json"
        if name in done or not path.is_file():
            continue
        r = json.loads(path.read_text())
        if r.get("sgdr_periods") == ref["sgdr_periods"] and r.get("arch", {}).get("depth") == ref["arch"]["depth"] \
                and r.get("arch", {}).get("width") == ref["arch"]["width"]:
            done[name] = r
    return [done[name] for name in CONFIGS if name in done]


def machine_lines(results: list[dict], machine: dict) -> list[str]:
    def describe(m: dict) -> str:
        return (f"{m['device_name']} ({m['cpu_count']} CPUs), torch {m['torch']}, brevitas {m['brevitas']}, "
                f"onebit {m['onebit']}, {m['date']}")

    machines = {r["config"]: r.get("machine", machine) for r in results}
    if len({m["device_name"] for m in machines.values()}) == 1:
        return [f"- machine: {describe(machine)}"]
    return ["- machines (each run's JSON records its own):", *[f"  - {n}: {describe(m)}" for n, m in machines.items()]]


def command_lines(results: list[dict], command: str) -> list[str]:
    commands = {r["config"]: r.get("command", command) for r in results}
    if set(commands.values()) == {command}:
        return [f"- command: `{command}`"]
    return ["- commands:", *[f"  - {name}: `{c}`" for name, c in commands.items()]]


def logit_temperature(r: dict) -> float:
    from onebit.training.config import ArchConfig

    return ArchConfig(**r["arch"]).logit_temperature


def table_rows(results: list[dict], published: dict | None) -> tuple[list[str], list[list]]:
    headers = ["config", "weights", "activation", "act bits", "T", "test acc %", "best %", "epochs", "train s",
               "images/s", "params"]
    if published:
        headers.append("published %")
    rows = []
    for r in results:
        s = r["settings"]
        row = [r["config"], "fp32" if s["fp"] else "1-bit", s["act"], str(s["abits"]) if s["abits"] else "float",
               f"{logit_temperature(r):g}", f"{100 * r['final_test_acc']:.2f}",
               f"{100 * r['best_test_acc']:.2f} (ep {r['best_epoch']})",
               str(r["epochs"]), f"{r['train_time_s']:.1f}", f"{r['train_images_per_s']:.0f}", f"{r['params']:,}"]
        if published:
            row.append(f"{published[r['config']]:.2f}" if r["config"] in published else "-")
        rows.append(row)
    return headers, rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="digits",
                   help="digits, fashion-mnist, or KIND:PATH / PATH (cifar10, cifar100, mnist, svhn, folder)")
    p.add_argument("--arch", default=None,
                   help="tiny, wrn-20-10 or wrn-D-K (default: wrn-20-10 for cifar10/cifar100/svhn, else tiny)")
    p.add_argument("--configs", default="paper",
                   help=f"comma-separated configs and/or sets; sets: {', '.join(SETS)}; configs: {', '.join(CONFIGS)}")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the SGDR periods' sum, 30)")
    p.add_argument("--sgdr", default=None, help="SGDR periods, e.g. 2,4,8,16")
    p.add_argument("--temperature", type=float, default=None, help="logit temperature (default: the arch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--batch-size", type=int, default=125)
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads before training (default: torch's own choice)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step (as onebit train)")
    p.add_argument("--resume", action="store_true",
                   help="continue (or reuse, when complete) runs already in OUT/runs instead of starting afresh")
    p.add_argument("--progress", action="store_true", help="show the trainer's progress bars")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results/accuracy/<data>-<arch>/)")
    args = p.parse_args(argv)

    from onebit.training.data import load_dataset
    from onebit.training.schedule import parse_periods

    slug = data_slug(args.data)
    if args.arch is None:
        args.arch = "wrn-20-10" if slug in LARGE_DATA else "tiny"
    args.sgdr = parse_periods(args.sgdr) if args.sgdr else None
    names = select_configs(args.configs)
    out = Path(args.out) if args.out else RESULTS_DIR / "accuracy" / f"{slug}-{args.arch}"
    out.mkdir(parents=True, exist_ok=True)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    ds = load_dataset(args.data)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = machine_info(device)
    t0 = time.perf_counter()
    results = [run_one(name, args, ds, out, machine) for name in names]
    wall = time.perf_counter() - t0
    results = with_finished_runs(results, out, args.seed)

    published = PUBLISHED.get(slug) if args.arch == "wrn-20-10" else None
    headers, rows = table_rows(results, published)
    r0 = results[0]
    title = (f"{r0['dataset']['name']}, {args.arch}, {r0['epochs']} epochs (SGDR {r0['sgdr_periods']}), "
             f"seed {args.seed}, {machine['device_name']}")
    plot(results, out / "summary.png", title)
    summary = {
        "benchmark": "accuracy",
        "command": command_line(),
        "data": args.data,
        "arch": args.arch,
        "configs": [r["config"] for r in results],
        "seed": args.seed,
        "machine": machine,
        "wall_time_s": wall,
        "runs": [{k: v for k, v in r.items() if k not in ("metrics", "machine", "command")}
                 | {"result_file": f"{r['config']}-seed{args.seed}.json"} for r in results],
        "published_reference": published,
    }
    write_json(out / "summary.json", summary)
    md = [f"# Accuracy: {r0['dataset']['name']} ({r0['dataset']['train_images']} train / "
          f"{r0['dataset']['test_images']} test images), {args.arch}", "",
          f"- recipe: SGD lr 0.1 momentum 0.9 wd 5e-4, batch {args.batch_size}, SGDR periods {r0['sgdr_periods']} "
          f"({r0['epochs']} epochs), flips {'on' if r0['augment']['hflip'] else 'off'}, shifts up to "
          f"{r0['augment']['shift']} px, cutout {r0['augment']['cutout']}x{r0['augment']['cutout']}, seed {args.seed}",
          *machine_lines(results, machine),
          *command_lines(results, summary["command"]),
          "- test accuracy is after the last epoch; 'best' is the best epoch's (for reference only: picking it uses "
          "the test set)", "",
          format_table(headers, rows, markdown=True), "", "![test and train error per epoch](summary.png)", ""]
    (out / "summary.md").write_text("\n".join(md))
    print()
    print(title)
    print(format_table(headers, rows))
    print(f"\nwrote {out}/summary.md, summary.json, summary.png and {len(results)} run JSONs "
          f"({wall:.0f} s in all)")
    return summary


if __name__ == "__main__":
    main()
