"""A standing suite of hostile input: random bytes, truncations and mutations of real files through every command.

Each case starts from real inputs (a trained run, its packed checkpoint, a dataflow graph, a QONNX graph, frames,
IDX data files), breaks one of them the way a careless or hostile user would, and runs the command in this process.
For every case:

- the exit status is 2 (or 0 where the mutation happens to leave a valid input, for the properties that allow it);
- stderr holds exactly one ``error:`` line, it is the last line, it names the file, flag or node, and no traceback;
- no file outside the output folder changed, and no output already in it was damaged.

``ONEBIT_HOSTILE_EXAMPLES`` sets how many examples each property draws (default 12, to keep CI short; the
examples are derandomized so a CI failure reproduces).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testkit import call, tiny_dataflow

EXAMPLES = int(os.environ.get("ONEBIT_HOSTILE_EXAMPLES", "12"))
HOSTILE = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ----- the real inputs ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Real inputs under ``root/inputs`` and earlier outputs under ``root/out``."""
    import torch
    from onebit.training.pack import save_packed
    from onebit.training.checkpoint import load_trained
    from onebit.training.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("hostile")
    inputs = root / "inputs"
    inputs.mkdir()
    deterministic, rng = torch.are_deterministic_algorithms_enabled(), torch.get_rng_state()
    try:
        train(TrainConfig(epochs=1, device="cpu"), inputs / "run", quiet=True)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_rng_state(rng)
    model, state = load_trained(inputs / "run")
    save_packed(model, inputs / "packed.npz", {"data": "digits", "epoch": state.get("epoch")})
    graph = tiny_dataflow(inputs)
    x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1)).astype(np.float32)
    np.save(inputs / "frames.npy", x)
    (inputs / "depths.json").write_text(json.dumps({"default": 64}))
    idx = inputs / "idx"
    idx.mkdir()
    for split, n in (("train", 6), ("t10k", 4)):
        write_idx(idx / f"{split}-images-idx3-ubyte", 0x803, np.zeros((n, 28, 28), np.uint8))
        write_idx(idx / f"{split}-labels-idx1-ubyte", 0x801, np.arange(n, dtype=np.uint8) % 10)
    out = root / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier result\n")
    return {"root": root, "inputs": inputs, "out": out, "graph": graph, "qonnx": inputs / "q.onnx"}


def write_idx(path: Path, magic: int, data: np.ndarray) -> None:
    path.write_bytes(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in data.shape) + data.tobytes())


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Hash of every file under ``root`` outside ``skip``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and skip not in p.parents}


def case_dir(world) -> Path:
    """A fresh folder for one case's hostile file (the earlier one removed)."""
    case = world["root"] / "case"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir()
    return case


def refused(capsys, world, args: list, names: list[str], *, may_pass: bool = False) -> None:
    """Run ``onebit ARGS``; it must refuse with one ``error:`` line naming one of ``names`` (or, with
    ``may_pass``, succeed), changing nothing outside the output folder and no output already in it."""
    root, out = world["root"], world["out"]
    before_inputs, before_outputs = snapshot(root, out), snapshot(out, root / "nowhere")
    code, stdout, stderr = call(capsys, *args)
    assert "Traceback" not in stderr, (args, stderr)
    assert snapshot(root, out) == before_inputs, f"{args}: a file outside the output folder changed"
    if may_pass and code == 0:
        return
    assert code == 2, (args, code, stderr[-2000:])
    lines = stderr.rstrip("\n").split("\n")
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], (args, stderr[-2000:])
    assert any(name in errors[0] for name in names), (args, errors[0], names)
    after = snapshot(out, root / "nowhere")
    assert all(after.get(k) == v for k, v in before_outputs.items()), f"{args}: an earlier output was damaged"


# ----- strategies ----------------------------------------------------------------------------------------------
def mutilated(data: bytes):
    """``(bytes, must_refuse)``: random bytes (never a valid file: must be refused), or a truncation or a few
    flipped bytes of ``data`` (which may leave a valid file, e.g. a flipped pixel)."""
    flips = st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), min_size=1, max_size=8)
    return st.one_of(
        st.binary(max_size=512).map(lambda b: (b, True)),
        st.integers(0, len(data) - 1).map(lambda n: (data[:n], False)),
        flips.map(lambda fl: (_flip(data, fl), False)),
    )


def _flip(data: bytes, flips) -> bytes:
    b = bytearray(data)
    for at, xor in flips:
        b[at] ^= xor
    return bytes(b)


WEIRD_INTS = st.sampled_from([0, -1, -7, 3, 5, 2**31, 2**62, -(2**62)]) | st.integers(-1000, 1000)
WEIRD_TEXT = st.sampled_from(["", "INT99", "FLOAT32", "BIPOLAR", "x\ny", "*/ $finish; /*", "UINT0", "é∑"]) \
    | st.text(max_size=12)
JSON_SCALAR = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | WEIRD_TEXT
JSON_VALUE = st.recursive(JSON_SCALAR, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(WEIRD_TEXT, inner, max_size=3), max_leaves=6)


# ----- dataflow graphs: onebit sim, fold, build -----------------------------------------------------------------
GRAPH_COMMANDS = {
    "sim": lambda g, out: ["sim", g, "--out", out / "report", "--no-plots"],
    "fold": lambda g, out: ["fold", g, "--target-fps", "1000", "--out", out / "folded.onnx"],
}


@pytest.mark.parametrize("command", sorted(GRAPH_COMMANDS))
@HOSTILE
@given(data=st.data())
def test_broken_graph_files_are_refused(capsys, world, command, data):
    raw = world["graph"].read_bytes()
    bad, must_refuse = data.draw(mutilated(raw))
    path = case_dir(world) / "graph.onnx"
    path.write_bytes(bad)
    refused(capsys, world, GRAPH_COMMANDS[command](path, world["out"]), ["graph.onnx"], may_pass=not must_refuse)


def _set_attribute(attr: onnx.AttributeProto, value) -> None:
    """Replace the attribute's value (and type) with ``value``."""
    kind = onnx.AttributeProto.INTS if isinstance(value, list) and not value else None
    new = onnx.helper.make_attribute(attr.name, value, attr_type=kind)
    attr.CopyFrom(new)


def mutated_attribute(data, source: Path, path: Path) -> tuple[Path, str]:
    """``source`` with one attribute of one node set to a hostile value, saved as ``path``; (path, node name)."""
    model = onnx.load(source)
    node = data.draw(st.sampled_from([n for n in model.graph.node if n.attribute]), label="node")
    attr = data.draw(st.sampled_from(list(node.attribute)), label="attribute")
    value = data.draw(st.one_of(WEIRD_INTS, WEIRD_TEXT, st.lists(WEIRD_INTS, max_size=5),
                                st.floats(allow_nan=True, allow_infinity=True)), label="value")
    _set_attribute(attr, value)
    onnx.save(model, path)
    return path, node.name


@pytest.mark.parametrize("command", sorted(GRAPH_COMMANDS))
@HOSTILE
@given(data=st.data())
def test_mutated_graph_attributes_are_refused_or_valid(capsys, world, command, data):
    """An attribute of a real graph set to a hostile value: a valid graph still (then the command runs) or one
    line naming the node."""
    path, node = mutated_attribute(data, world["graph"], case_dir(world) / "graph.onnx")
    refused(capsys, world, GRAPH_COMMANDS[command](path, world["out"]), [node, "graph.onnx"], may_pass=True)


@HOSTILE
@given(data=st.data())
def test_mutated_graph_parameters_are_refused_or_valid(capsys, world, data):
    """A weight or threshold tensor of a real graph replaced: another shape, NaN, infinities, huge values."""
    from onnx import numpy_helper

    model = onnx.load(world["graph"])
    init = data.draw(st.sampled_from(list(model.graph.initializer)), label="initializer")
    old = numpy_helper.to_array(init)
    kind = data.draw(st.sampled_from(["shape", "nan", "inf", "huge", "fraction", "empty"]), label="kind")
    new = old.astype(np.float32).copy()
    if kind == "shape":
        new = np.zeros(data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)), np.float32)
    elif kind == "empty":
        new = np.zeros((0,), np.float32)
    elif new.size:
        at = data.draw(st.integers(0, new.size - 1))
        new.flat[at] = {"nan": np.nan, "inf": np.inf, "huge": 3e38, "fraction": 0.5}[kind]
    init.CopyFrom(numpy_helper.from_array(new, init.name))
    path = case_dir(world) / "graph.onnx"
    onnx.save(model, path)
    refused(capsys, world, GRAPH_COMMANDS["sim"](path, world["out"]), ["graph.onnx", init.name], may_pass=True)


# ----- arrays and JSON a command reads beside its graph --------------------------------------------------------
HOSTILE_ARRAYS = {
    "empty": np.zeros((0, 8, 8, 1), np.float32),
    "scalar": np.float32(3),
    "strings": np.array(["a", "b"]),
    "bytes": np.array([b"ab"]),
    "complex": np.ones((1, 8, 8, 1), np.complex64),
    "nan": np.full((1, 8, 8, 1), np.nan, np.float32),
    "inf": np.full((1, 8, 8, 1), np.inf, np.float32),
    "shape": np.zeros((1, 8, 1, 8), np.float32),
    "range": np.full((1, 8, 8, 1), 300, np.float32),
    "fractions": np.full((1, 8, 8, 1), 0.5, np.float32),
    "structured": np.zeros((1,), dtype=[("a", "f4"), ("b", "i4")]),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_ARRAYS))
def test_hostile_input_arrays_are_refused(capsys, world, kind):
    path = case_dir(world) / "frames.npy"
    np.save(path, HOSTILE_ARRAYS[kind])
    refused(capsys, world, ["sim", world["graph"], "--input", path, "--out", world["out"] / "report", "--no-plots"],
            ["frames.npy", "--input"])


@HOSTILE
@given(data=st.data())
def test_broken_npy_files_are_refused(capsys, world, data):
    bad, must_refuse = data.draw(mutilated((world["inputs"] / "frames.npy").read_bytes()))
    path = case_dir(world) / "frames.npy"
    path.write_bytes(bad)
    refused(capsys, world, ["sim", world["graph"], "--input", path, "--out", world["out"] / "report", "--no-plots"],
            ["frames.npy", "--input"], may_pass=not must_refuse)


@HOSTILE
@given(value=JSON_VALUE)
def test_hostile_fifo_depths_are_refused_or_valid(capsys, world, value):
    path = case_dir(world) / "depths.json"
    path.write_text(json.dumps(value))
    refused(capsys, world, ["sim", world["graph"], "--fifo-depths", path, "--out", world["out"] / "report",
                            "--no-plots"], ["depths.json", "--fifo-depths"], may_pass=True)


@HOSTILE
@given(value=JSON_VALUE)
def test_hostile_folding_configs_are_refused_or_valid(capsys, world, value):
    path = case_dir(world) / "folding.json"
    path.write_text(json.dumps(value))
    refused(capsys, world, ["fold", world["graph"], "--config", path, "--out", world["out"] / "folded.onnx"],
            ["folding.json", "--config"], may_pass=True)


# ----- runs, checkpoints and packed files: onebit eval, pack, export -----------------------------------------------
def copied_run(world) -> Path:
    run = case_dir(world) / "run"
    shutil.copytree(world["inputs"] / "run", run)
    return run


@pytest.mark.parametrize("name", ["checkpoint.pt", "config.json"])
@HOSTILE
@given(data=st.data())
def test_broken_run_files_are_refused(capsys, world, name, data):
    run = copied_run(world)
    raw = (run / name).read_bytes()
    bad, must_refuse = data.draw(mutilated(raw))
    (run / name).write_bytes(bad)
    refused(capsys, world, ["eval", run], [name, str(run)], may_pass=not must_refuse)


@HOSTILE
@given(data=st.data())
def test_mutated_run_configs_are_refused_or_valid(capsys, world, data):
    """One entry of a run's config.json replaced by any JSON value: the run evaluates, or one line names it."""
    run = copied_run(world)
    config = json.loads((run / "config.json").read_text())
    path = []
    node = config
    while isinstance(node, dict) and node:
        key = data.draw(st.sampled_from(sorted(node)), label="key")
        path.append(key)
        if not isinstance(node[key], dict) or data.draw(st.booleans()):
            node[key] = data.draw(JSON_VALUE, label="value")
            break
        node = node[key]
    (run / "config.json").write_text(json.dumps(config))
    refused(capsys, world, ["eval", run], ["config.json", str(run)], may_pass=True)


@HOSTILE
@given(data=st.data())
def test_broken_packed_files_are_refused(capsys, world, data):
    raw = (world["inputs"] / "packed.npz").read_bytes()
    bad, must_refuse = data.draw(mutilated(raw))
    path = case_dir(world) / "packed.npz"
    path.write_bytes(bad)
    refused(capsys, world, ["eval", path, "--packed"], ["packed.npz"], may_pass=not must_refuse)


def test_pack_never_overwrites_its_own_checkpoint(capsys, world):
    run = copied_run(world)
    for target in (run / "checkpoint.pt", run / "config.json"):
        before = target.read_bytes()
        code, _, err = call(capsys, "pack", run, "--out", target)
        assert code == 2 and err.startswith("error:") and target.name in err, err
        assert target.read_bytes() == before


@pytest.mark.parametrize("where", ["parent is a file", "is a folder"])
def test_outputs_that_cannot_be_written_are_refused_before_work(capsys, world, where):
    case = case_dir(world)
    blocker = case / "blocker"
    blocker.write_text("keep me\n")
    target = blocker / "packed.npz" if where == "parent is a file" else case
    refused(capsys, world, ["pack", world["inputs"] / "run", "--out", target], ["--out", str(target)])
    assert blocker.read_text() == "keep me\n"


# ----- data files ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
@HOSTILE
@given(data=st.data())
def test_broken_idx_files_are_refused(capsys, world, name, data):
    folder = case_dir(world) / "idx"
    shutil.copytree(world["inputs"] / "idx", folder)
    raw = (folder / name).read_bytes()
    header = data.draw(st.booleans(), label="header")
    must_refuse = False
    if header:  # a header whose dimensions lie (and may overflow when multiplied)
        dims = data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3))
        bad = raw[:3] + bytes([len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + raw[4 + 4 * len(dims):]
    else:
        bad, must_refuse = data.draw(mutilated(raw))
    (folder / name).write_bytes(bad)
    refused(capsys, world, ["eval", world["inputs"] / "run", "--data", f"mnist:{folder}"], [name, str(folder)],
            may_pass=not must_refuse)


# ----- QONNX files: onebit lower ----------------------------------------------------------------------------------
@HOSTILE
@given(data=st.data())
def test_broken_qonnx_files_are_refused(capsys, world, data):
    raw = world["qonnx"].read_bytes()
    bad, must_refuse = data.draw(mutilated(raw))
    path = case_dir(world) / "model.onnx"
    path.write_bytes(bad)
    refused(capsys, world, ["lower", path, "--out", world["out"] / "lowered", "--frames", "2"], ["model.onnx"],
            may_pass=not must_refuse)


@HOSTILE
@given(data=st.data())
def test_mutated_qonnx_attributes_are_refused_or_valid(capsys, world, data):
    path, node = mutated_attribute(data, world["qonnx"], case_dir(world) / "model.onnx")
    refused(capsys, world, ["lower", path, "--out", world["out"] / "lowered", "--frames", "2"],
            [node, "model.onnx"], may_pass=True)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where nothing can be created")
@pytest.mark.parametrize("command", ["sim", "fold", "pack", "build", "export", "lower", "train"])
def test_outputs_the_system_refuses_are_one_line(capsys, world, command):
    """An output folder the system will not create (root may write anywhere else, so /proc stands in for a
    read-only disk or a folder without permission)."""
    target = Path("/proc/onebit-cannot-create/out")
    inputs = world["inputs"]
    args = {"sim": ["sim", world["graph"], "--out", target, "--no-plots"],
            "fold": ["fold", world["graph"], "--target-fps", "1000", "--out", target / "folded.onnx"],
            "pack": ["pack", inputs / "run", "--out", target / "packed.npz"],
            "build": ["build", world["graph"], "--out", target, "--no-synth"],
            "export": ["export", inputs / "run", "--out", target, "--frames", "2"],
            "lower": ["lower", world["qonnx"], "--out", target, "--frames", "2"],
            "train": ["train", "--epochs", "1", "--out", target, "-q"]}[command]
    refused(capsys, world, args, ["/proc/onebit-cannot-create"])
