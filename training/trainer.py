"""The trainer: SGD with momentum and weight decay, SGDR, the seeds' augmentation, atomic per-epoch checkpoints.

Deterministic on CPU: every random draw comes from the global torch RNG (weight init) or from two
generators (batch order, augmentation) whose states are checkpointed, so a run killed at any point and
resumed with ``resume=True`` ends with bit-identical weights. On CUDA: bf16 autocast and channels_last.
Under ``torchrun`` each process takes its share of every batch (DistributedDataParallel); rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from onebit.atomic import atomic_open, check_output, make_folder, write_json
from onebit.errors import CheckpointError, ConfigError, check_positive, check_range
from onebit.training import checkpoint as ckpt
from onebit.training.augment import augment, default_cutout, default_shift
from onebit.training.config import ArchConfig, parse_arch
from onebit.training.data import Dataset, load_dataset
from onebit.training.model import build_model
from onebit.training.plot import plot_curves
from onebit.training.schedule import SGDR, sgdr_periods

CHECKPOINT_FORMAT = "onebit-checkpoint-v1"
#: the largest seed: the trainer seeds its generators with seed, seed + 1 and seed + 2 (64-bit in torch)
SEED_MAX = 2**62


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` so the run can be repeated exactly."""

    data: str = "digits"
    arch: str = "tiny"
    fp: bool = False
    act: str | None = None
    abits: int | None = None
    temperature: float | None = None
    epochs: int | None = None
    sgdr: list[int] | None = None
    batch_size: int = 125
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    augment: bool = True
    shift: int | None = None
    cutout: int | None = None
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    deterministic: bool = True
    eval_batch_size: int = 1000

    def periods(self) -> list[int]:
        """SGDR periods; default 2, 4, 8, 16 (30 epochs), or doubling periods covering ``epochs``."""
        if self.sgdr:
            return list(self.sgdr)
        return sgdr_periods(self.epochs) if self.epochs else [2, 4, 8, 16]

    def total_epochs(self) -> int:
        return self.epochs if self.epochs else sum(self.periods())

    def check(self) -> None:
        """Every value in range (a value from a configuration file gets the same checks as its flag)."""
        for name in ("batch_size", "eval_batch_size", "epochs"):
            if name != "epochs" or self.epochs is not None:
                check_range(name, getattr(self, name), low=1, integer=True)
        for name in ("shift", "cutout"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), low=0, integer=True)
        check_range("lr", self.lr, low=0, low_open=True)
        check_range("weight_decay", self.weight_decay, low=0)
        check_range("momentum", self.momentum, low=0, high=1, high_open=True, expected="0 <= momentum < 1")
        check_range("seed", self.seed, low=0, high=SEED_MAX, integer=True)
        if self.sgdr is not None and (not isinstance(self.sgdr, list) or not self.sgdr or not all(
                isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in self.sgdr)):
            raise ConfigError(f"sgdr: expected a list of positive epoch counts like [2, 4, 8, 16], got {self.sgdr!r}",
                              param="sgdr")
        for name in ("data", "arch", "device"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name}: expected a string, got {getattr(self, name)!r}", param=name)
        for name in ("fp", "augment", "compile", "deterministic"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected true or false, got {getattr(self, name)!r}", param=name)
        if self.abits is not None:
            check_range("abits", self.abits, low=0, high=8, integer=True)
        if self.temperature is not None:
            check_positive("temperature", self.temperature)
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"device: expected auto, cpu or cuda[:N], got {self.device!r}", param="device")

    def arch_config(self, ds: Dataset) -> ArchConfig:
        h, w, c = ds.image_shape
        if h % 4 or w % 4:
            raise ConfigError(f"data {self.data}: images are {h}x{w}; the WRN halves them twice (stride-2 conv "
                              f"and 2x2 average pooling must agree), so both sides must be multiples of 4",
                              param="data")
        return parse_arch(self.arch, binary=False if self.fp else None, act=self.act, abits=self.abits,
                          temperature=self.temperature, in_channels=c, num_classes=ds.num_classes,
                          image_size=h)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"train config: expected a table of settings, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"train config: unknown keys {sorted(unknown)}")
        return cls(**d)


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(cfg: TrainConfig, dist: Distributed) -> torch.device:
    if cfg.device == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        name = cfg.device
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {cfg.device}: CUDA is not available on this machine", param="device")
        if name == "cuda":
            name = f"cuda:{dist.local_rank}"
    return torch.device(name)


def as_input(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW ``pixel / 255`` (the model's input convention)."""
    return x_u8.permute(0, 3, 1, 2).float().div_(255.0)


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, batch_size: int = 1000,
            device: torch.device | str = "cpu") -> np.ndarray:
    """Logits for uint8 NHWC images, in float32 (no autocast: predictions are exact)."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(images))
    out = [model(as_input(x[i:i + batch_size]).to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def evaluate(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000,
             device: torch.device | str = "cpu") -> dict:
    logits = predict(model, images, batch_size, device)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    preds = logits.argmax(1)
    acc = float((preds == labels).mean())
    return {"loss": loss, "acc": acc, "err": 1.0 - acc, "preds": preds}


class Trainer:
    def __init__(self, cfg: TrainConfig, out: str | Path, *, resume: bool = False, quiet: bool = False,
                 dataset: Dataset | None = None):
        cfg.check()
        self.cfg, self.out, self.quiet = cfg, check_output(out, folder=True), quiet
        self.dist = init_distributed(cfg.device)
        self.device = pick_device(cfg, self.dist)
        cuda = self.device.type == "cuda"
        self.amp = cfg.amp if cfg.amp is not None else cuda
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else cuda
        if cfg.deterministic and not cuda:
            torch.use_deterministic_algorithms(True)
        self.ds = dataset if dataset is not None else load_dataset(cfg.data)
        self.arch = cfg.arch_config(self.ds)
        self.epochs = cfg.total_epochs()
        self.schedule = SGDR(cfg.lr, cfg.periods())
        hw = self.ds.image_shape[0]
        self.shift = cfg.shift if cfg.shift is not None else default_shift(hw)
        self.cutout = cfg.cutout if cfg.cutout is not None else default_cutout(hw)

        torch.manual_seed(cfg.seed)
        self.model = build_model(self.arch).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 2)
        self.epoch, self.metrics = 0, []
        self._prepare_run_folder(resume)

        self.train_model: torch.nn.Module = self.model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.train_model = DistributedDataParallel(self.model, device_ids=[self.device] if cuda else None)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.x_train = torch.from_numpy(self.ds.x_train)
        self.y_train = torch.from_numpy(self.ds.y_train)

    # ----- run folder -------------------------------------------------------------------------------
    def _prepare_run_folder(self, resume: bool) -> None:
        path = self.out / ckpt.CHECKPOINT
        if path.exists() and not resume:
            raise CheckpointError(f"{self.out}: already holds a run; resume it (resume=True) or choose another "
                                  f"folder")
        if resume and path.exists():
            self._restore(ckpt.load_checkpoint(path))
        elif self.dist.main:
            make_folder(self.out)
            write_json(self.out / ckpt.CONFIG, {"train": dataclasses.asdict(self.cfg), "arch": self.arch.to_dict()})

    def _restore(self, state: dict) -> None:
        if state.get("arch") != self.arch.to_dict():
            raise CheckpointError(f"{self.out / ckpt.CHECKPOINT}: architecture {state.get('arch')} differs from "
                                  f"this run's {self.arch.to_dict()}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        self.data_gen.set_state(rng["data"])
        self.aug_gen.set_state(rng["augment"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.epoch = int(state["epoch"])
        self.metrics = list(state["metrics"])

    def _state(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "data": self.data_gen.get_state(), "augment": self.aug_gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": CHECKPOINT_FORMAT,
            "arch": self.arch.to_dict(),
            "train": dataclasses.asdict(self.cfg),
            "dataset": {"name": self.ds.name, "source": self.ds.source, "num_classes": self.ds.num_classes,
                        "image_shape": list(self.ds.image_shape)},
            "epoch": self.epoch,
            "scheduler": {"periods": self.schedule.periods, "lr_max": self.schedule.lr_max,
                          "step": self.epoch * self.steps_per_epoch},
            "model": {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,
            "metrics": self.metrics,
        }

    def _save(self) -> None:
        ckpt.save_checkpoint(self.out / ckpt.CHECKPOINT, self._state())
        with atomic_open(self.out / ckpt.METRICS, "w") as f:
            for m in self.metrics:
                f.write(json.dumps(m) + "\n")
        plot_curves(self.metrics, self.out / ckpt.CURVES, f"{self.arch.describe()} on {self.ds.name}",
                    self.schedule.restarts())

    # ----- training ---------------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.ds.x_train) / self.cfg.batch_size)

    def _batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = as_input(self.x_train[idx]).to(self.device, non_blocking=True)
        y = self.y_train[idx].to(self.device, non_blocking=True)
        if self.cfg.augment:
            x = augment(x, self.aug_gen, hflip=self.ds.hflip, shift=self.shift, cutout=self.cutout)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def train_epoch(self) -> dict:
        self.train_model.train()
        n, steps = len(self.x_train), self.steps_per_epoch
        perm = torch.randperm(n, generator=self.data_gen)
        loss_sum = torch.zeros((), device=self.device)
        wrong = torch.zeros((), device=self.device, dtype=torch.long)
        seen, data_s = 0, 0.0
        t0 = time.perf_counter()
        for step in range(steps):
            lr = self.schedule.lr_at(self.epoch + step / steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            idx = perm[step * self.cfg.batch_size:(step + 1) * self.cfg.batch_size]
            idx = idx[self.dist.rank::self.dist.world]
            t_data = time.perf_counter()
            x, y = self._batch(idx)
            data_s += time.perf_counter() - t_data  # on a GPU, the time to queue the batch's work
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                logits = self.train_model(x)
                loss = F.cross_entropy(logits.float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach() * len(y)
            wrong += (logits.detach().argmax(1) != y).sum()
            seen += len(y)
        elapsed = time.perf_counter() - t0
        return {"lr": lr, "train_loss": loss_sum.item() / seen, "train_err": wrong.item() / seen,
                "epoch_time_s": elapsed, "train_images_per_s": seen * self.dist.world / elapsed,
                "data_time_s": data_s, "data_share": data_s / elapsed if elapsed > 0 else 0.0}

    def run(self) -> dict:
        from tqdm import tqdm

        bar = tqdm(total=self.epochs, initial=self.epoch, desc=f"train {self.arch.name}", unit="epoch",
                   disable=self.quiet or not self.dist.main, dynamic_ncols=True)
        while self.epoch < self.epochs:
            stats = self.train_epoch()
            test = evaluate(self.model, self.ds.x_test, self.ds.y_test, self.cfg.eval_batch_size, self.device)
            self.epoch += 1
            self.metrics.append({"epoch": self.epoch, **stats, "test_loss": test["loss"], "test_err": test["err"],
                                 "test_acc": test["acc"]})
            if self.dist.main:
                self._save()
            bar.update(1)
            bar.set_postfix(train_err=f"{stats['train_err']:.3f}", test_acc=f"{test['acc']:.4f}")
        bar.close()
        if self.dist.world > 1:
            import torch.distributed

            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        return self.summary()

    def summary(self) -> dict:
        last = self.metrics[-1] if self.metrics else {}
        return {
            "run": str(self.out),
            "rank": self.dist.rank,
            "world_size": self.dist.world,
            "arch": self.arch.describe(),
            "dataset": self.ds.name,
            "epochs": self.epoch,
            "test_acc": last.get("test_acc"),
            "train_time_s": sum(m["epoch_time_s"] for m in self.metrics),
            "params": sum(p.numel() for p in self.model.parameters()),
        }


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, quiet: bool = False,
          dataset: Dataset | None = None) -> dict:
    """Train (or continue, with ``resume``) a run in folder ``out``; returns a summary dict."""
    return Trainer(cfg, out, resume=resume, quiet=quiet, dataset=dataset).run()


def load_train_config(run: str | Path) -> TrainConfig:
    """The ``config.json`` of a run folder, checked as a fresh run's flags are."""
    path = Path(run) / ckpt.CONFIG
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; expected a run folder written by 'onebit train'")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a onebit run configuration ({type(e).__name__}: {e})") from None
    if not isinstance(saved, dict) or "train" not in saved:
        raise CheckpointError(f"{path}: not a onebit run configuration; expected an object with a 'train' entry")
    try:
        cfg = TrainConfig.from_dict(saved["train"])
        cfg.check()
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return cfg
