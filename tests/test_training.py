"""SGDR, checkpoints (safe loading, corruption, resume), run-folder contents and the accuracy bar on digits."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from onebit.errors import CheckpointError, ConfigError
from onebit.training import checkpoint as ckpt
from onebit.training.data import load_dataset
from onebit.training.schedule import SGDR, parse_periods, sgdr_periods
from onebit.training.trainer import CHECKPOINT_FORMAT, TrainConfig, Trainer, evaluate

METRIC_KEYS = {"epoch", "lr", "train_loss", "train_err", "epoch_time_s", "train_images_per_s", "data_time_s",
               "data_share", "test_loss", "test_err", "test_acc"}
TIMING_KEYS = {"epoch_time_s", "train_images_per_s", "data_time_s", "data_share"}
DIGITS_TRAIN = 1437


def onebit_command(*args) -> list[str]:
    return [sys.executable, "-m", "onebit", *map(str, args)]


# --------------------------------------------------------------------------- SGDR


def test_sgdr_restarts_and_half_periods():
    s = SGDR(0.1, [2, 4, 8, 16])
    assert s.restarts() == [0, 2, 6, 14]
    for start, period in zip(s.restarts(), s.periods):
        assert s.lr_at(start) == 0.1
        assert s.lr_at(start + period / 2) == pytest.approx(0.05, abs=1e-15)
        assert s.lr_at(start + period * 0.999) < 1e-5
        lrs = [s.lr_at(start + period * i / 50) for i in range(50)]
        assert all(a > b for a, b in zip(lrs, lrs[1:]))  # strictly decreasing within a period
    assert s.lr_at(1) == pytest.approx(0.05)
    assert s.lr_at(4) == pytest.approx(0.05)
    assert s.lr_at(10) == pytest.approx(0.05)
    assert s.lr_at(22) == pytest.approx(0.05)
    assert s.lr_at(2 + 1) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)) / 2)
    assert s.lr_at(30) == 0.0


def test_sgdr_periods():
    assert sgdr_periods(30) == [2, 4, 8, 16]
    assert sgdr_periods(31) == [2, 4, 8, 16, 32]
    assert sgdr_periods(1) == [2]
    assert sgdr_periods(4) == [2, 4]
    assert sgdr_periods(62) == [2, 4, 8, 16, 32]
    assert TrainConfig().periods() == [2, 4, 8, 16] and TrainConfig().total_epochs() == 30
    assert TrainConfig(epochs=4).periods() == [2, 4] and TrainConfig(epochs=4).total_epochs() == 4
    assert TrainConfig(sgdr=[3, 3]).total_epochs() == 6
    assert parse_periods("2,4,8,16") == [2, 4, 8, 16]
    for bad in ("", "a,b", "2,0", "-1"):
        with pytest.raises(ConfigError, match="^sgdr: ") as info:
            parse_periods(bad)
        assert info.value.param == "sgdr"


@pytest.mark.parametrize("field, value", [("batch_size", 0), ("eval_batch_size", 0), ("epochs", 0), ("lr", 0.0),
                                          ("weight_decay", -1.0), ("momentum", 1.0), ("device", "tpu")])
def test_train_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value}).check()
    assert info.value.param == field and str(info.value).startswith(f"{field}: "), str(info.value)


# --------------------------------------------------------------------------- the trained run folder


@pytest.mark.slow
def test_checkpoint_loads_with_weights_only(trained_run):
    run, _ = trained_run
    state = torch.load(run / ckpt.CHECKPOINT, map_location="cpu", weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT
    assert state["epoch"] == 30
    assert state["arch"]["depth"] == 8 and state["arch"]["in_channels"] == 1
    assert state["scheduler"]["periods"] == [2, 4, 8, 16]
    assert set(state["rng"]) >= {"torch", "data", "augment"}
    assert state["optimizer"]["state"]
    model, _ = ckpt.load_trained(run)
    assert set(state["model"]) == set(model.state_dict())


@pytest.mark.slow
def test_metrics_and_curves(trained_run):
    run, summary = trained_run
    lines = (run / ckpt.METRICS).read_text().splitlines()
    assert len(lines) == 30
    metrics = [json.loads(line) for line in lines]
    schedule = SGDR(0.1, [2, 4, 8, 16])
    steps = math.ceil(DIGITS_TRAIN / 125)
    for i, m in enumerate(metrics):
        assert set(m) == METRIC_KEYS
        assert m["epoch"] == i + 1
        assert m["test_acc"] == pytest.approx(1 - m["test_err"], abs=1e-12)
        assert 0 <= m["train_err"] <= 1 and m["train_loss"] > 0 and m["test_loss"] > 0
        assert 0 < m["data_time_s"] < m["epoch_time_s"] and m["data_share"] == m["data_time_s"] / m["epoch_time_s"]
        assert m["lr"] == pytest.approx(schedule.lr_at(i + (steps - 1) / steps), rel=1e-12)  # per-batch schedule
    assert metrics[-1]["test_acc"] == summary["test_acc"]
    state = ckpt.load_checkpoint(run / ckpt.CHECKPOINT)
    assert state["metrics"] == metrics
    png = (run / ckpt.CURVES).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" in png[-12:]
    config = json.loads((run / ckpt.CONFIG).read_text())
    assert config["train"] == {**vars(TrainConfig()), "data": "digits"}
    assert config["arch"] == state["arch"]
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]  # no leftovers of atomic writes


@pytest.mark.slow
def test_default_training_on_digits_reaches_95_percent(trained_run):
    run, summary = trained_run
    assert summary["epochs"] == 30 and summary["dataset"] == "digits" and summary["params"] == 74_515
    assert summary["test_acc"] >= 0.95
    # the saved checkpoint is the model that scored it
    model, _ = ckpt.load_trained(run)
    ds = load_dataset("digits")
    assert evaluate(model, ds.x_test, ds.y_test)["acc"] == summary["test_acc"]


# --------------------------------------------------------------------------- resume


def tensors_equal(a, b, where="state") -> None:
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            tensors_equal(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            tensors_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def without_timings(metrics):
    return [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in metrics]


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path, run_onebit):
    a, b = tmp_path / "A", tmp_path / "B"
    args = ["train", "--epochs", "4", "-q"]
    uninterrupted = run_onebit(*args, "--out", a, cwd=tmp_path)
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    killed = subprocess.Popen(onebit_command(*args, "--out", b), cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = b / ckpt.METRICS
    try:
        while killed.poll() is None:
            if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
                killed.send_signal(signal.SIGKILL)  # kill -9 at whatever point epoch 3 has reached
                break
            time.sleep(0.005)
        killed.wait()
    finally:
        if killed.poll() is None:
            killed.kill()
    assert killed.returncode == -signal.SIGKILL
    interrupted_at = ckpt.load_checkpoint(b / ckpt.CHECKPOINT)["epoch"]
    assert 2 <= interrupted_at < 4

    resumed = run_onebit("train", "--out", b, "--resume", "-q", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr

    sa = torch.load(a / ckpt.CHECKPOINT, weights_only=True)
    sb = torch.load(b / ckpt.CHECKPOINT, weights_only=True)
    assert sa["epoch"] == sb["epoch"] == 4
    assert without_timings(sa.pop("metrics")) == without_timings(sb.pop("metrics"))
    tensors_equal(sa, sb)  # model, optimizer (momentum buffers), RNG states, schedule position, configs
    ma = [json.loads(x) for x in (a / ckpt.METRICS).read_text().splitlines()]
    mb = [json.loads(x) for x in (b / ckpt.METRICS).read_text().splitlines()]
    assert [m["epoch"] for m in mb] == [1, 2, 3, 4]
    assert without_timings(ma) == without_timings(mb)


@pytest.mark.slow
def test_out_holding_a_run_is_refused_without_resume(trained_run, keep_torch_globals):
    run, _ = trained_run
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(CheckpointError) as info:
        Trainer(TrainConfig(epochs=1), run, quiet=True)
    assert str(run) in str(info.value) and "resume" in str(info.value)  # the CLI says --resume
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


# --------------------------------------------------------------------------- refusing bad checkpoints


@pytest.fixture(scope="module")
def good_checkpoint(trained_run) -> bytes:
    run, _ = trained_run
    return (run / ckpt.CHECKPOINT).read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.0, 0.00005, 0.005, 0.02, 0.05, 0.1, 0.5, 0.9, 0.999])
def test_truncated_checkpoint_is_a_checkpoint_error(fraction, good_checkpoint, tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(good_checkpoint[: int(len(good_checkpoint) * fraction)])
    with pytest.raises(CheckpointError) as info:
        ckpt.load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


RANDOM_FILES = {
    **{f"random-{seed}": np.random.default_rng(seed).integers(0, 256, 2000, dtype=np.uint8).tobytes()
       for seed in range(8)},
    "text": b"hello, I am not a checkpoint\n",
    "pickle-opcodes-appends-without-mark": b"\x80\x02e.",
    "pickle-opcodes-get-unknown-memo": b"\x80\x02h\x07.",
    "pickle-opcodes-empty-stack": b"\x80\x02R.",
    "pickled-list": pickle.dumps([1, 2, 3], protocol=2),
}


@pytest.mark.parametrize("name", sorted(RANDOM_FILES))
def test_garbage_checkpoint_is_a_checkpoint_error(name, tmp_path):
    path = tmp_path / f"{name}.pt"
    path.write_bytes(RANDOM_FILES[name])
    with pytest.raises(CheckpointError) as info:
        ckpt.load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_wrong_content_checkpoints_are_checkpoint_errors(tmp_path, good_checkpoint):
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    missing = tmp_path / "missing.pt"
    mismatched = tmp_path / "mismatched.pt"
    state = torch.load(io.BytesIO(good_checkpoint), weights_only=True)
    state["arch"] = {**state["arch"], "width": 2}
    torch.save(state, mismatched)
    for path, load in ((tensor, ckpt.load_checkpoint), (missing, ckpt.load_checkpoint), (missing, ckpt.load_trained),
                       (mismatched, ckpt.load_trained)):
        with pytest.raises(CheckpointError) as info:
            load(path)
        assert str(path) in str(info.value)


class RunsCommand:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_checkpoint_that_would_run_code_is_refused(writer, tmp_path):
    marker = tmp_path / "pwned"
    payload = {"format": CHECKPOINT_FORMAT, "arch": {}, "model": {}, "x": RunsCommand(f"touch {shlex.quote(str(marker))}")}
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with path.open("wb") as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(CheckpointError) as info:
        ckpt.load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        ckpt.load_trained(path)
    assert not marker.exists()
    # the payload is real: an unrestricted load does run it
    with path.open("rb") as f:
        if writer == "torch.save":
            torch.load(f, weights_only=False)
        else:
            pickle.load(f)
    assert marker.exists()
