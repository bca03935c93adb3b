"""`onebit run`: the configuration (TOML, YAML, flags, the saved run.toml), stage stamps (skip, re-run, resume),
the verdict table, and the whole flow end to end on the digits: killed mid-training, resumed, every stage run,
the HTML report, and a second run that skips every stage."""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from onebit.errors import ConfigError
from onebit.flow import config as C
from onebit.flow.cli import resolve_config
from onebit.flow.engine import Context, Stage, locked, read_stamp, run_stages, stamp_path
from onebit.flow.stages import STAGE_NAMES
from onebit.flow.verify import FAIL, PASS, WARN, hw_rows
from testkit import call

HW_CFG = {"device": "ecp5-25k", "clock_mhz": 50.0, "frames": 2, "synth": True, "pnr": True}


def assert_one_error_line(code: int, err: str, *named: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for thing in named:
        assert thing in lines[0], (thing, lines[0])


# ----- configuration ---------------------------------------------------------------------------------------
def test_defaults_are_the_embedded_default():
    cfg = C.merge()
    assert cfg["data"]["dataset"] == "digits"
    assert (cfg["model"]["arch"], cfg["model"]["act"], cfg["model"]["abits"]) == ("tiny", "srelu", 4)
    assert C.train_config(cfg).epochs is None  # `onebit train`'s default schedule


def test_toml_then_flags(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[train]\nepochs = 3\nlr = 1\n[fold]\ntarget_fps = 500\n[hw]\nclock_mhz = 40\n')
    cfg = resolve_config(tmp_path / "out", str(f), {"epochs": None, "target_fps": 800.0}, print)
    assert cfg["train"]["epochs"] == 3 and cfg["train"]["lr"] == 1.0 and isinstance(cfg["train"]["lr"], float)
    assert cfg["fold"]["target_fps"] == 800.0  # the flag wins
    assert cfg["hw"]["clock_mhz"] == 40.0 and cfg["hw"]["device"] == "ecp5-25k"


def test_yaml_equals_toml(tmp_path):
    (tmp_path / "c.toml").write_text('[model]\nact = "bn-relu"\nabits = 2\n[train]\nsgdr = [1, 2]\n')
    (tmp_path / "c.yaml").write_text("model:\n  act: bn-relu\n  abits: 2\ntrain:\n  sgdr: [1, 2]\n")
    assert C.load_file(tmp_path / "c.toml") == C.load_file(tmp_path / "c.yaml")


def test_saved_toml_repeats_the_configuration(tmp_path):
    cfg = C.merge(C.check({"train": {"epochs": 2, "sgdr": [1, 1]}, "fold": {"max_luts": 20000}}, "t"))
    (tmp_path / "run.toml").write_text(C.to_toml(cfg))
    assert C.merge(C.load_file(tmp_path / "run.toml")) == cfg


def test_run_folder_config_is_the_base(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.toml").write_text("[train]\nepochs = 7\n[hw]\nframes = 3\n")
    lines = []
    cfg = resolve_config(out, None, {"epochs": 2}, lines.append)
    assert cfg["train"]["epochs"] == 2 and cfg["hw"]["frames"] == 3
    assert "run.toml" in lines[0]


@pytest.mark.parametrize("text, named", [
    ("[trian]\nepochs = 2\n", ["c.toml", "[trian]"]),
    ("[train]\nepoch = 2\n", ["c.toml", "[train]", "'epoch'"]),
    ('[train]\nepochs = "2"\n', ["c.toml", "epochs", "integer"]),
    ("[hw]\npnr = 1\n", ["c.toml", "pnr", "true or false"]),
    ("[train\n", ["c.toml", "TOML"]),
    ("[model]\nabits = 0\n", ["abits", "1..8"]),
    ("[model]\narch = \"wrn-7-1\"\n", ["depth"]),
    ("[hw]\nclock_mhz = -5\n", ["clock_mhz", "--clock-mhz", "positive"]),
    ("[hw]\nsynth = false\n", ["pnr", "synth"]),
])
def test_bad_config_file_is_one_error_line(tmp_path, capsys, text, named):
    (tmp_path / "c.toml").write_text(text)
    code, _, err = call(capsys, "run", "--config", tmp_path / "c.toml", "--out", tmp_path / "out")
    assert_one_error_line(code, err, *named)
    assert not (tmp_path / "out" / "train").exists()


@pytest.mark.parametrize("args, named", [
    (["--config", "missing.toml"], ["--config", "missing.toml", "no such file"]),
    (["--config", "c.json"], ["--config", "c.json", ".toml"]),
    (["--until", "synth"], ["--until", "'synth'"]),
    (["--target-fps", "0"], ["--target-fps", "positive"]),
    (["--arch", "resnet"], ["--arch", "resnet"]),
    (["--device", "xc7z020"], ["--device", "xc7z020", "ecp5-25k"]),
])
def test_bad_flags_are_one_error_line(tmp_path, capsys, monkeypatch, args, named):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.json").write_text("{}")
    code, _, err = call(capsys, "run", "--out", "out", *args)
    assert_one_error_line(code, err, *named)


def test_bad_yaml_is_one_error_line(tmp_path, capsys):
    (tmp_path / "c.yml").write_text("train: [epochs: 2\n")
    code, _, err = call(capsys, "run", "--config", tmp_path / "c.yml", "--out", tmp_path / "out")
    assert_one_error_line(code, err, "c.yml", "YAML")


# ----- stages and stamps -----------------------------------------------------------------------------------
def toy_stages(calls: list[str], fail: set[str] = frozenset()) -> list[Stage]:
    def make(name, src, dst):
        def fn(ctx):
            calls.append(name)
            if name in fail:
                raise KeyboardInterrupt
            text = ctx.path(src).read_text() if src else str(ctx.cfg["fold"]["target_fps"])
            ctx.path(dst).write_text(text + name)
            return {"resumed": ctx.resuming}
        return fn

    return [Stage("a", make("a", None, "a.txt"), config=("fold",), writes=("a.txt",)),
            Stage("b", make("b", "a.txt", "b.txt"), config=("hw.clock_mhz",), reads=("a.txt",), writes=("b.txt",))]


def test_stamps_skip_rerun_and_resume(tmp_path):
    calls, log = [], []
    cfg = C.merge()
    ctx = lambda c=cfg: Context(c, tmp_path, log.append)  # noqa: E731
    rows = run_stages(toy_stages(calls), ctx())
    assert [r["status"] for r in rows] == ["ran", "ran"] and calls == ["a", "b"]

    rows = run_stages(toy_stages(calls), ctx())
    assert [r["status"] for r in rows] == ["skipped", "skipped"] and calls == ["a", "b"]
    assert "skipped (inputs unchanged)" in log[-1]

    other = C.merge(C.check({"hw": {"clock_mhz": 80}}, "t"))
    run_stages(toy_stages(calls), ctx(other))
    assert calls == ["a", "b", "b"]  # only b depends on the clock

    (tmp_path / "b.txt").write_text("edited")  # an output that is no longer what the stage wrote
    run_stages(toy_stages(calls), ctx(other))
    assert calls[-1] == "b"

    (tmp_path / "a.txt").write_text("new input")  # a changed input re-runs its reader only
    calls.clear()
    run_stages(toy_stages(calls)[1:], ctx(other))
    assert calls == ["b"]

    with pytest.raises(KeyboardInterrupt):  # interrupted: the stamp says running, the next run resumes
        run_stages(toy_stages(calls, fail={"a"}), ctx(C.merge(C.check({"fold": {"target_fps": 5}}, "t"))))
    assert read_stamp(stamp_path(ctx(), "a"))["status"] == "running"
    c = ctx(C.merge(C.check({"fold": {"target_fps": 5}}, "t")))
    run_stages(toy_stages(calls), c)
    assert c.results["a"] == {"resumed": True}


def test_until_stops_after_the_stage(tmp_path):
    calls = []
    rows = run_stages(toy_stages(calls), Context(C.merge(), tmp_path), until="a")
    assert [r["stage"] for r in rows] == ["a"] and calls == ["a"]


def test_one_run_per_folder(tmp_path):
    with locked(tmp_path):
        with pytest.raises(ConfigError, match="another onebit run"):
            with locked(tmp_path):
                pass


# ----- verdicts --------------------------------------------------------------------------------------------
def test_hw_verdicts():
    good = {"cosim": {"frames": 2, "outputs_equal": True, "cycles_equal": True, "mismatches": []},
            "synth": {"fmax_mhz": 60.0, "bitstream": "onebit.bit"}}
    assert [r["verdict"] for r in hw_rows(good, HW_CFG)] == [PASS] * 4
    slow = {**good, "synth": {"fmax_mhz": 40.0, "bitstream": "onebit.bit"}}
    assert [r["verdict"] for r in hw_rows(slow, HW_CFG)] == [PASS, PASS, WARN, PASS]
    bad = {"cosim": {"frames": 2, "outputs_equal": False, "cycles_equal": True,
                     "mismatches": ["MVAU_0: frame 0 element [0, 1] 3 vs 4"]}, "synth": None}
    rows = hw_rows(bad, HW_CFG)
    assert rows[0]["verdict"] == FAIL and "MVAU_0" in rows[0]["detail"]
