"""The `onebit` command line: summary, train -> pack -> eval end to end, and one-line errors with status 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from testkit import call


def assert_one_error_line(code: int, err: str, *named: str) -> None:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for thing in named:
        assert thing in lines[0], (thing, lines[0])


def test_summary_wrn_20_10_json(capsys):
    code, out, err = call(capsys, "summary", "--arch", "wrn-20-10", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["params"] == 26_737_126
    assert info["binary_params"] == 26_737_120
    assert info["binary_bytes"] == 3_342_140
    assert 3_342_140 < info["packed_bytes"] < 4_000_000
    assert info["float_bytes"] == 4 * (26_737_126 + 2 * 3)  # + the input BN's running mean and var
    assert info["config"]["depth"] == 20 and info["config"]["width"] == 10


def test_summary_text_tiny(capsys):
    code, out, err = call(capsys, "summary", "--arch", "tiny", "--in-channels", "1")
    assert code == 0, err
    assert "74,515" in out and "74,512 binary" in out


@pytest.mark.slow
def test_train_pack_eval_agree(tmp_path, run_onebit, capsys):
    run = tmp_path / "run"
    proc = run_onebit("train", "--epochs", "2", "--json", "-q", "--out", run, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    trained = json.loads(proc.stdout)
    assert trained["epochs"] == 2 and trained["dataset"] == "digits" and trained["run"] == str(run)
    assert {"checkpoint.pt", "config.json", "metrics.jsonl", "curves.png"} <= {p.name for p in run.iterdir()}

    code, out, err = call(capsys, "pack", run, "--json")
    assert code == 0, err
    packed = json.loads(out)
    assert Path(packed["packed"]) == run / "packed.npz"
    assert packed["packed_bytes"] == (run / "packed.npz").stat().st_size < 20_000

    results = {}
    cases = {"packed": (run, "--packed"), "npz": (run / "packed.npz", "--packed"), "checkpoint": (run,)}
    for name, args in cases.items():
        code, out, err = call(capsys, "eval", *args, "--json")
        assert code == 0, err
        results[name] = json.loads(out)
    for info in results.values():
        assert info["dataset"] == "digits" and info["test_images"] == 360
    assert results["packed"]["packed"] is True and results["checkpoint"]["packed"] is False
    assert results["packed"]["test_acc"] == results["checkpoint"]["test_acc"] == results["npz"]["test_acc"]
    assert results["packed"]["test_loss"] == results["checkpoint"]["test_loss"]
    assert results["checkpoint"]["test_acc"] == trained["test_acc"]


# --------------------------------------------------------------------------- mistakes


def test_unknown_arch(capsys):
    code, _, err = call(capsys, "summary", "--arch", "foo")
    assert_one_error_line(code, err, "--arch", "foo")


def test_unknown_arch_in_train(capsys, tmp_path, keep_torch_globals):
    code, _, err = call(capsys, "train", "--arch", "foo", "--out", tmp_path / "r", "-q")
    assert_one_error_line(code, err, "--arch", "foo")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_bad_depth(capsys):
    code, _, err = call(capsys, "summary", "--arch", "wrn-9-1")
    assert_one_error_line(code, err, "depth")


def test_bad_sgdr(capsys, tmp_path):
    code, _, err = call(capsys, "train", "--sgdr", "2,x", "--out", tmp_path / "r")
    assert_one_error_line(code, err, "--sgdr")


def test_missing_data(capsys, tmp_path, keep_torch_globals):
    code, _, err = call(capsys, "train", "--data", "/nonexistent", "--out", tmp_path / "r", "-q")
    assert_one_error_line(code, err, "/nonexistent")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_eval_of_missing_run(capsys, tmp_path):
    missing = tmp_path / "no-such-run"
    code, _, err = call(capsys, "eval", missing)
    assert_one_error_line(code, err, str(missing))


def test_pack_of_missing_run(capsys, tmp_path):
    missing = tmp_path / "no-such-run"
    code, _, err = call(capsys, "pack", missing)
    assert_one_error_line(code, err, str(missing))


@pytest.mark.slow
def test_eval_packed_of_run_without_packed_file(capsys, trained_run):
    run, _ = trained_run
    assert not (run / "packed.npz").exists()
    code, _, err = call(capsys, "eval", run, "--packed")
    assert_one_error_line(code, err, str(run / "packed.npz"))


@pytest.fixture
def corrupt_run(tmp_path, trained_run) -> Path:
    run, _ = trained_run
    data = (run / "checkpoint.pt").read_bytes()
    bad = tmp_path / "corrupt-run"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    return bad


@pytest.mark.slow
def test_eval_of_corrupt_checkpoint_file(capsys, corrupt_run):
    path = corrupt_run / "checkpoint.pt"
    code, _, err = call(capsys, "eval", path)
    assert_one_error_line(code, err, str(path))
    code, _, err = call(capsys, "eval", corrupt_run)
    assert_one_error_line(code, err, str(path))
    code, _, err = call(capsys, "pack", corrupt_run)
    assert_one_error_line(code, err, str(path))


def test_eval_of_garbage_checkpoint_file(capsys, tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello, these are my notes\n")
    code, _, err = call(capsys, "eval", path)
    assert_one_error_line(code, err, str(path))


@pytest.mark.slow
def test_train_into_existing_run_is_refused(capsys, trained_run, keep_torch_globals):
    run, _ = trained_run
    before = (run / "checkpoint.pt").read_bytes()
    code, _, err = call(capsys, "train", "--out", run, "-q")
    assert_one_error_line(code, err, str(run), "--resume")
    assert (run / "checkpoint.pt").read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("case", ["arch", "corrupt"])
def test_errors_from_a_real_process(case, run_onebit, tmp_path, corrupt_run):
    if case == "arch":
        proc, named = run_onebit("summary", "--arch", "foo", cwd=tmp_path), "--arch"
    else:
        path = corrupt_run / "checkpoint.pt"
        proc, named = run_onebit("eval", path, cwd=tmp_path), str(path)
    assert_one_error_line(proc.returncode, proc.stderr, named)
    assert proc.stdout == ""


# --------------------------------------------------------------------------- parameters and flags


@pytest.mark.parametrize("args, flag", [
    (["summary", "--temperature", "0"], "--temperature: expected a positive number"),
    (["train", "--wd", "-1", "--out", "r", "-q"], "--wd: expected a number >= 0, got -1.0"),
    (["train", "--lr", "0", "--out", "r", "-q"], "--lr: expected a number > 0"),
    (["train", "--momentum", "1", "--out", "r", "-q"], "--momentum: expected 0 <= momentum < 1"),
])
def test_library_errors_are_named_by_the_flag_typed(capsys, tmp_path, monkeypatch, args, flag):
    monkeypatch.chdir(tmp_path)
    code, _, err = call(capsys, *args)
    assert_one_error_line(code, err, flag)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.parametrize("command, param, flag", [
    ("fold", "target_fps", "--target-fps"), ("fold", "clock_mhz", "--clock-mhz"), ("fold", "max_luts", "--max-luts"),
    ("sim", "frames", "--frames"), ("sim", "inputs", "--input"), ("build", "clock_mhz", "--clock-mhz"),
    ("verify", "frames", "--frames"), ("train", "weight_decay", "--wd"), ("lower", "inputs", "--input"),
])
def test_main_names_a_parameter_by_the_invoked_commands_flag(command, param, flag):
    from onebit.cli import user_message
    from onebit.errors import FoldingError

    err = FoldingError(f"{param} 7: expected something else", param=param)
    assert user_message(err, [command, "x"]) == f"{flag} 7: expected something else"
    assert user_message(err, ["summary"]) == str(err)  # no such option: the parameter's own name
    assert user_message(FoldingError("frames: no param"), [command]) == "frames: no param"


def test_cli_helpers(tmp_path):
    import numpy as np

    from onebit.cli_args import load_fifo_depths, load_json_object, load_npy
    from onebit.errors import ConfigError, FoldingError, GraphError
    from onebit.errors import check_positive as positive

    assert positive("clock_mhz", 50.0) == 50.0 and positive("max_luts", 3, integer=True) == 3
    for value, integer in [(0, False), (-1.5, False), (float("nan"), False), (float("inf"), False), (True, False),
                           (2.5, True)]:
        with pytest.raises(ConfigError) as info:
            positive("max_luts", value, integer=integer)
        assert info.value.param == "max_luts" and str(info.value).startswith("max_luts: expected a positive")
    with pytest.raises(FoldingError):
        positive("target_fps", 0, error=FoldingError)

    np.save(tmp_path / "x.npy", np.arange(3))
    assert load_npy(tmp_path / "x.npy").tolist() == [0, 1, 2]
    (tmp_path / "bad.npy").write_text("not numpy")
    for path in ("bad.npy", "missing.npy"):
        with pytest.raises(GraphError, match=rf"^inputs \S*{path}: ") as info:
            load_npy(tmp_path / path)
        assert info.value.param == "inputs"

    (tmp_path / "o.json").write_text('{"a": 1}')
    (tmp_path / "l.json").write_text("[1]")
    (tmp_path / "b.json").write_text("{")
    assert load_json_object(tmp_path / "o.json", "config", "a folding") == {"a": 1}
    for name, says in [("l.json", "expected a folding (an object), got list"), ("b.json", "not a folding"),
                       ("none.json", "no such file")]:
        with pytest.raises(ConfigError, match=f"^config .*{name}: {re.escape(says)}"):
            load_json_object(tmp_path / name, "config", "a folding")
    (tmp_path / "report.sim.json").write_text('{"fifo_depths": {"t": 4}, "ii": 9}')
    assert load_fifo_depths(tmp_path / "report.sim.json") == {"t": 4} and load_fifo_depths(tmp_path / "o.json") == {"a": 1}
    with pytest.raises(GraphError, match="^fifo_depths .*l.json: expected a JSON object of FIFO depths"):
        load_fifo_depths(tmp_path / "l.json")


def test_parity_lines_come_from_the_verdict_rows():
    from onebit.cli import print_parity
    from onebit.flow.verify import export_rows, format_checks

    parity = {"frames": 4, "qonnx_vs_integer": {"max_abs_diff": 1e-7, "argmax_agreement": 1.0, "tolerance": 1e-4},
              "integer_vs_dataflow": {"scores_identical": True, "labels_identical": True}}
    lines = print_parity(parity)
    assert lines[0] == "parity on 4 frames:"
    assert [line.strip() for line in lines[1:]] == [line.strip() for line in format_checks(export_rows(parity))]
    assert lines[-1].split()[0] == "pass"


def test_float_bytes_counts_every_float32_tensor():
    from onebit.training.config import parse_arch
    from onebit.training.model import build_model
    from onebit.training.pack import float_bytes

    model = build_model(parse_arch("tiny", in_channels=1))
    assert float_bytes(model) == 4 * sum(t.numel() for k, t in model.state_dict().items()
                                         if "num_batches_tracked" not in k)


# --------------------------------------------------------------------------- the FINN+ build folder (--finn)


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory) -> Path:
    """A run folder holding the tiny WRN as initialised (no training): enough for the export's plumbing."""
    import torch

    from onebit.training.checkpoint import CHECKPOINT, save_checkpoint
    from onebit.training.config import parse_arch
    from onebit.training.model import build_model

    torch.manual_seed(0)
    cfg = parse_arch("tiny", in_channels=1)
    run = tmp_path_factory.mktemp("untrained") / "run"
    run.mkdir()
    save_checkpoint(run / CHECKPOINT, {"arch": cfg.to_dict(), "model": build_model(cfg).state_dict(),
                                       "train": {"data": "digits"}})
    return run


FINN_FILES = {"model.onnx", "folding_config.json", "dataflow_build_config.json", "build.py", "onebit_handoff.json"}


def test_export_and_lower_write_a_finn_build_folder(untrained_run, tmp_path, capsys):
    finn = tmp_path / "finn"
    code, out, err = call(capsys, "export", untrained_run, "--out", tmp_path / "exp", "--frames", "4",
                          "--finn", finn, "--finn-board", "Pynq-Z2", "--clock-mhz", "125")
    assert code == 0, err
    assert {p.name for p in finn.iterdir()} == FINN_FILES
    config = json.loads((finn / "dataflow_build_config.json").read_text())
    assert config["board"] == "Pynq-Z2" and config["synth_clk_period_ns"] == 8.0
    assert config["folding_config_file"] == "folding_config.json" and "bitfile" in config["generate_outputs"]
    assert f"wrote FINN+ build folder {finn}/: " in out.splitlines()[-1]

    finn = tmp_path / "finn-lowered"
    code, out, err = call(capsys, "lower", tmp_path / "exp" / "model.qonnx.onnx", "--out", tmp_path / "low",
                          "--frames", "2", "--finn", finn, "--finn-part", "xczu3eg-sbva484-1-e",
                          "--target-fps", "1000", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report["finn_build"]) == {"model", "build_config", "build_script", "handoff"}
    assert {p.name for p in finn.iterdir()} == FINN_FILES - {"folding_config.json"}
    config = json.loads((finn / "dataflow_build_config.json").read_text())
    assert config["fpga_part"] == "xczu3eg-sbva484-1-e" and config["target_fps"] == 1000
    assert "step_target_fps_parallelization" in config["steps"] and "bitfile" not in config["generate_outputs"]


@pytest.mark.parametrize("args, named", [
    (["--finn", "f", "--finn-board", "NoSuchBoard"], ["--finn-board", "NoSuchBoard"]),
    (["--finn", "f"], ["--finn-board"]),
    (["--finn", "f", "--finn-board", "ZCU104", "--finn-part", "xc7z020clg400-1"], ["--finn-part", "xc7z020clg400-1"]),
    (["--finn", "f", "--finn-board", "ZCU104", "--clock-mhz", "0"], ["--clock-mhz", "positive"]),
    (["--finn", "f", "--finn-board", "ZCU104", "--target-fps", "-5"], ["--target-fps", "positive"]),
    (["--finn-board", "ZCU104"], ["--finn-board", "--finn FINN_DIR"]),
])
@pytest.mark.parametrize("command", ["export", "lower"])
def test_bad_finn_flags_fail_before_the_export(untrained_run, tmp_path, monkeypatch, capsys, command, args, named):
    monkeypatch.chdir(tmp_path)
    source = untrained_run if command == "export" else tmp_path / "model.qonnx.onnx"
    code, _, err = call(capsys, command, source, "--out", "out", *args)
    assert_one_error_line(code, err, *named)
    assert not (tmp_path / "out").exists() and not (tmp_path / "f").exists()


def test_finn_flags_stand_for_write_finn_build_parameters():
    from onebit.cli import cli
    from onebit.cli_args import flag_of

    for command in ("export", "lower"):
        flags = {param: flag_of(cli.commands[command], param) for param in ("board", "fpga_part", "clock_mhz",
                                                                            "target_fps")}
        assert flags == {"board": "--finn-board", "fpga_part": "--finn-part", "clock_mhz": "--clock-mhz",
                         "target_fps": "--target-fps"}
