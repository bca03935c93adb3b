"""The data path's share of the training step: reading, augmenting and moving each batch, against the step.

Runs the trainer's own epoch loop (``Trainer.train_epoch``) on the first ``--steps`` batches of the training
set, after one warm-up pass, and reports the time spent preparing batches (indexing, flips, shifts, cutout)
as a share of the whole step. The goal of the Fashion-MNIST flow is under 10 %.

    python benchmarks/data_path.py                                  # fashion-mnist, wrn-8-2, 1-bit srelu a4
    python benchmarks/data_path.py --data digits --arch tiny --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, command_line, format_table, machine_info, write_json  # noqa: E402


def measure(data: str, arch: str, fp: bool, act: str, abits: int | None, steps: int, batch: int, ds) -> dict:
    from onebit.training.trainer import TrainConfig, Trainer

    part = dataclasses.replace(ds, x_train=ds.x_train[: steps * batch], y_train=ds.y_train[: steps * batch])
    folder = Path(tempfile.mkdtemp(prefix="onebit-data-path-"))
    try:
        cfg = TrainConfig(data=data, arch=arch, fp=fp, act=act, abits=abits, batch_size=batch, epochs=2)
        trainer = Trainer(cfg, folder, quiet=True, dataset=part)
        trainer.train_epoch()  # warm-up: first-call allocations and kernel choices
        stats = trainer.train_epoch()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"data": data, "arch": arch, "fp": fp, "act": act, "abits": abits, "steps": steps, "batch_size": batch,
            "step_ms": 1000 * stats["epoch_time_s"] / steps, "data_ms": 1000 * stats["data_time_s"] / steps,
            "data_share": stats["data_share"], "images_per_s": stats["train_images_per_s"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--arch", default="wrn-8-2")
    p.add_argument("--configs", default="1bit-srelu-a4,fp-bn", help="comma-separated: 1bit-srelu-a4, fp-bn, ...")
    p.add_argument("--steps", type=int, default=60, help="batches timed (after as many for warm-up)")
    p.add_argument("--batch-size", type=int, default=125)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(RESULTS_DIR / "data_path.json"))
    args = p.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from accuracy import CONFIGS, select_configs

    import torch
    from onebit.training.data import load_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(args.data)
    rows = []
    for name in select_configs(args.configs):
        spec = CONFIGS[name]
        r = measure(args.data, args.arch, spec["fp"], spec["act"], spec["abits"] or None, args.steps,
                    args.batch_size, ds)
        rows.append({"config": name, **r})
        print(f"[data path] {name}: {r['data_ms']:.1f} ms of {r['step_ms']:.1f} ms per step on data "
              f"({100 * r['data_share']:.1f} %)", flush=True)
    result = {"benchmark": "data_path", "command": command_line(), "machine": machine_info("cpu"),
              "threads": torch.get_num_threads(), "runs": rows, "goal_share": 0.10,
              "max_share": max(r["data_share"] for r in rows)}
    print(format_table(["config", "step ms", "data ms", "data share", "images/s"],
                       [[r["config"], f"{r['step_ms']:.1f}", f"{r['data_ms']:.2f}", f"{100 * r['data_share']:.1f} %",
                         f"{r['images_per_s']:.0f}"] for r in rows]))
    write_json(Path(args.out), result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
