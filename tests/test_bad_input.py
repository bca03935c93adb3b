"""Hostile or careless numbers and files: each gives one ``error:`` line naming what is wrong, exit status 2, no
traceback, and nothing written or damaged.

One tiny run (one epoch), its packed checkpoint and its export are made once for the whole file; each case runs
``python -m onebit`` as a user does. Most cases fail before any heavy work.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def made(tmp_path_factory, run_onebit):
    """A trained run (1 epoch) with packed.npz, its export, and a folder of bad files next to them."""
    root = tmp_path_factory.mktemp("bad_input")
    run = root / "run"
    for args in (["train", "--epochs", "1", "--out", run, "-q"], ["pack", run],
                 ["export", run, "--out", root / "exp", "--frames", "4", "--json"]):
        proc = run_onebit(*args)
        assert proc.returncode == 0, proc.stderr
    bad = root / "bad"
    bad.mkdir()
    (bad / "a_file").write_text("not a folder")
    return {"root": root, "run": run, "graph": root / "exp" / "model.dataflow.onnx",
            "qonnx": root / "exp" / "model.qonnx.onnx", "bad": bad}


def resolve(made: dict, args: list) -> list[str]:
    """``{run}``, ``{graph}`` ... in ``args`` -> the paths in ``made``."""
    return [str(a).format(**made) for a in args]


def assert_one_error(proc, *named: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in named:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# ----- numbers -------------------------------------------------------------------------------------------------
TRAIN = ["train", "--epochs", "1", "-q", "--out", "{bad}/never"]

NUMBER_FLAGS = [
    ([*TRAIN, "--lr", "nan"], "--lr"),
    ([*TRAIN, "--lr", "inf"], "--lr"),
    ([*TRAIN, "--wd", "nan"], "--wd"),
    ([*TRAIN, "--momentum", "inf"], "--momentum"),
    ([*TRAIN, "--temperature", "nan"], "--temperature"),
    ([*TRAIN, "--seed", str(2**70)], "--seed"),
    (["fold", "{graph}", "--target-fps", "nan", "--out", "{bad}/f.onnx"], "--target-fps"),
    (["fold", "{graph}", "--target-fps", "100", "--clock-mhz", "inf", "--out", "{bad}/f.onnx"], "--clock-mhz"),
    (["sim", "{graph}", "--clock-mhz", "inf", "--out", "{bad}/s", "--no-plots"], "--clock-mhz"),
    (["build", "{graph}", "--clock-mhz", "nan", "--out", "{bad}/b", "--no-synth"], "--clock-mhz"),
    (["run", "--target-fps", "nan", "--out", "{bad}/r", "--until", "train"], "--target-fps"),
    (["export", "{run}", "--out", "{bad}/e", "--finn", "{bad}/fi", "--clock-mhz", "nan"], "--clock-mhz"),
]


@pytest.mark.parametrize("args,flag", NUMBER_FLAGS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in NUMBER_FLAGS])
def test_non_finite_or_out_of_range_flag(made, run_onebit, args, flag):
    assert_one_error(run_onebit(*resolve(made, args)), flag)


CONFIG_VALUES = [
    ("[train]\nsgdr = [0]\n", "train.sgdr"),  # used to train at learning rate 0
    ("[train]\ncutout = -5\n", "train.cutout"),  # used to end in a traceback
    ("[train]\nlr = nan\n", "train.lr"),
    ("[train]\nseed = 9223372036854775807\n", "train.seed"),
    ("[model]\ntemperature = nan\n", "model.temperature"),
]


@pytest.mark.parametrize("text,key", CONFIG_VALUES, ids=[k for _, k in CONFIG_VALUES])
def test_config_file_value_gets_the_range_of_its_flag(made, run_onebit, tmp_path, text, key):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    proc = run_onebit("run", "--config", config, "--out", tmp_path / "run", "--until", "train", "-q")
    assert_one_error(proc, str(config), key)
    assert not (tmp_path / "run").exists()


FRAMES = [
    (["sim", "{graph}", "--frames", str(10**12), "--out", "{bad}/s", "--no-plots"]),
    (["lower", "{qonnx}", "--frames", str(10**12), "--out", "{bad}/lw", "--json"]),
    (["build", "{graph}", "--frames", str(10**12), "--out", "{bad}/bf", "--no-synth"]),
]


@pytest.mark.parametrize("args", FRAMES, ids=[a[0] for a in FRAMES])
def test_frames_beyond_the_machines_memory(made, run_onebit, args):
    line = assert_one_error(run_onebit(*resolve(made, args)), "--frames", "TiB", "this machine has")
    assert "1000000000000" in line


# ----- .npy inputs -----------------------------------------------------------------------------------------------
def frames_like(made, dtype=np.float32) -> np.ndarray:
    import onnx

    dims = [d.dim_value for d in onnx.load(made["graph"]).graph.input[0].type.tensor_type.shape.dim]
    return np.zeros((2, *dims[1:]), dtype)


BAD_ARRAYS = {
    "empty": lambda m: np.zeros((0,), np.float32),
    "scalar": lambda m: np.float32(3),
    "strings": lambda m: np.array(["a", "b"]),
    "bytes": lambda m: np.array([b"a"]),
    "complex": lambda m: frames_like(m, np.complex64),
    "bool": lambda m: frames_like(m, bool),
    "structured": lambda m: np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]),
    "nan": lambda m: np.full(frames_like(m).shape, np.nan, np.float32),
}


@pytest.mark.parametrize("kind", list(BAD_ARRAYS))
def test_bad_npy_input(made, run_onebit, tmp_path, kind):
    path = tmp_path / f"{kind}.npy"
    np.save(path, BAD_ARRAYS[kind](made))
    proc = run_onebit("sim", made["graph"], "--input", path, "--out", tmp_path / "s", "--no-plots")
    assert_one_error(proc, "--input", str(path))
    assert not list(tmp_path.glob("s.*"))


def test_bad_npy_input_to_lower(made, run_onebit, tmp_path):
    path = tmp_path / "strings.npy"
    np.save(path, np.array(["a", "b"]))
    proc = run_onebit("lower", made["qonnx"], "--input", path, "--out", tmp_path / "lw", "--json")
    assert_one_error(proc, "--input", str(path))
    assert not (tmp_path / "lw").exists()


# ----- checkpoints, packed checkpoints and run configurations ------------------------------------------------------
def copy_run(made, tmp_path, *, state=None, config=None, raw=None) -> Path:
    run = tmp_path / "run"
    shutil.copytree(made["run"], run)
    ckpt = run / "checkpoint.pt"
    if raw is not None:
        ckpt.write_bytes(raw(ckpt.read_bytes()))
    if state is not None:
        s = torch.load(ckpt, weights_only=True)
        state(s)
        torch.save(s, ckpt)
    if config is not None:
        c = json.loads((run / "config.json").read_text())
        config(c)
        (run / "config.json").write_text(json.dumps(c))
    return run


CHECKPOINTS = {
    "random bytes": (dict(raw=lambda b: bytes(range(256)) * 20), "onebit checkpoint"),
    "truncated": (dict(raw=lambda b: b[: len(b) // 2]), "not a readable onebit checkpoint"),
    "depth as a string": (dict(state=lambda s: s["arch"].update(depth="8")), "depth: expected an integer, got '8'"),
    "arch as a list": (dict(state=lambda s: s.__setitem__("arch", [8, 1])), "'arch' is a list"),
    "weights of another architecture": (dict(state=lambda s: s["arch"].update(width=2)), "tensor 'conv0.weight'"),
}


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_bad_checkpoint(made, run_onebit, tmp_path, case):
    change, says = CHECKPOINTS[case]
    run = copy_run(made, tmp_path, **change)
    assert_one_error(run_onebit("eval", run), str(run / "checkpoint.pt"), says)


def test_bad_checkpoint_export_writes_nothing(made, run_onebit, tmp_path):
    run = copy_run(made, tmp_path, state=lambda s: s["arch"].update(depth="8"))
    proc = run_onebit("export", run, "--out", tmp_path / "exp", "--json")
    assert_one_error(proc, str(run / "checkpoint.pt"), "depth")
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("change,says", [
    (lambda c: c["train"].update(lr="abc"), "lr: expected a number > 0, got 'abc'"),
    (lambda c: c["train"].update(sgdr=[0], epochs=2), "sgdr"),
], ids=["lr as a string", "sgdr [0]"])
def test_bad_run_configuration_on_resume(made, run_onebit, tmp_path, change, says):
    run = copy_run(made, tmp_path, config=change)
    before = (run / "checkpoint.pt").read_bytes()
    assert_one_error(run_onebit("train", "--resume", "--out", run, "-q"), str(run / "config.json"), says)
    assert (run / "checkpoint.pt").read_bytes() == before


def rewrite_packed(made, path: Path, change) -> Path:
    with np.load(made["run"] / "packed.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    change(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("change,says", [
    (lambda m: m["arch"].update(depth="8"), "depth: expected an integer"),
    (lambda m: m["shapes"].update({k: "abc" for k in m["shapes"]}), "the shape 'abc'"),
], ids=["depth as a string", "shape as a string"])
def test_bad_packed_metadata(made, run_onebit, tmp_path, change, says):
    path = rewrite_packed(made, tmp_path / "bad.npz", change)
    assert_one_error(run_onebit("eval", "--packed", path), str(path), says)


def test_truncated_packed_checkpoint(made, run_onebit, tmp_path):
    path = tmp_path / "cut.npz"
    data = (made["run"] / "packed.npz").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_one_error(run_onebit("eval", "--packed", path), str(path), "not a readable packed checkpoint")


# ----- data files ------------------------------------------------------------------------------------------------
def test_svhn_labels_that_are_not_numbers(run_onebit, tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    for name in ("train_32x32.mat", "test_32x32.mat"):
        scipy_io.savemat(tmp_path / name, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array(["a", "b"])})
    proc = run_onebit("train", "--data", f"svhn:{tmp_path}", "--epochs", "1", "--out", tmp_path / "run", "-q")
    assert_one_error(proc, "train_32x32.mat", "'y'")
    assert not (tmp_path / "run").exists()


def test_idx_header_larger_than_the_file(run_onebit, tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, 2**31 - 1, 2**31 - 1, 2**31 - 1))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, 2) + b"\0\0")
    proc = run_onebit("train", "--data", f"mnist:{tmp_path}", "--epochs", "1", "--out", tmp_path / "run", "-q")
    assert_one_error(proc, "train-images-idx3-ubyte", "truncated")


# ----- outputs -----------------------------------------------------------------------------------------------------
def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


PROTECTED = [
    (["pack", "{run}", "--out", "{run}/checkpoint.pt"], "{run}/checkpoint.pt"),
    (["pack", "{run}", "--out", "{run}/config.json"], "{run}/config.json"),
    (["lower", "{qonnx}", "--out", "{root}/exp", "--json"], "{qonnx}"),
    (["sim", "{graph}", "--output", "{graph}", "--no-plots", "--out", "{bad}/s"], "{graph}"),
    (["fold", "{graph}", "--target-fps", "100", "--out", "{graph}"], "{graph}"),
]


@pytest.mark.parametrize("args,protected", PROTECTED, ids=[" ".join(a[:1] + a[-2:]) for a, _ in PROTECTED])
def test_output_that_is_an_input(made, run_onebit, args, protected):
    protected = Path(resolve(made, [protected])[0])
    before = digest(protected)
    assert_one_error(run_onebit(*resolve(made, args)), "is this command's input")
    assert digest(protected) == before


UNDER_A_FILE = [
    ["train", "--epochs", "1", "-q", "--out", "{bad}/a_file/run"],
    ["pack", "{run}", "--out", "{bad}/a_file/p.npz"],
    ["export", "{run}", "--out", "{bad}/a_file/exp", "--json"],
    ["lower", "{qonnx}", "--out", "{bad}/a_file/lw", "--json"],
    ["sim", "{graph}", "--out", "{bad}/a_file/s", "--no-plots"],
    ["fold", "{graph}", "--target-fps", "100", "--out", "{bad}/a_file/f.onnx"],
    ["build", "{graph}", "--out", "{bad}/a_file/b", "--no-synth"],
    ["run", "--out", "{bad}/a_file/r", "--until", "train"],
    ["verify", "{run}", "--out", "{bad}/a_file/v"],
]


@pytest.mark.parametrize("args", UNDER_A_FILE, ids=[a[0] for a in UNDER_A_FILE])
def test_output_under_a_file(made, run_onebit, args):
    assert_one_error(run_onebit(*resolve(made, args)), "a_file is a file, not a folder")
    assert (made["bad"] / "a_file").read_text() == "not a folder"


def test_build_with_bad_inputs_creates_no_output_folder(made, run_onebit, tmp_path):
    path = tmp_path / "strings.npy"
    np.save(path, np.array(["a", "b"]))
    proc = run_onebit("build", made["graph"], "--input", path, "--out", tmp_path / "b", "--no-synth")
    assert_one_error(proc, "--input")
    assert not (tmp_path / "b").exists()
