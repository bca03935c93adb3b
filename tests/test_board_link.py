"""The board-level design in Verilator behind a pseudo-terminal (the virtual board): UART, framing and CRC on
random frames, with the accelerator back-pressured by the link and corrupted, cut-short and unknown requests;
`onebit infer` and `onebit emulate` against it; `onebit build --board` end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from hwkit import random_frames
from test_hw_thresholding import thresholding_graph
from testkit import call, tiny_dataflow
from onebit.export.dataflow.executor import execute
from onebit.hw import link
from onebit.hw.board import decode_outputs, encode_frames, load_plan, reply_bytes, write_board
from onebit.hw.boards import check_board
from onebit.hw.emulate import Emulator, build_emulator
from onebit.hw.host import infer, open_port
from onebit.hw.top import generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def board_build(tmp_path_factory):
    """A thresholding layer with 128 input and output beats a frame (more than the board's output FIFO holds,
    so the accelerator waits for the link) and two-byte input beats, as a ULX3S-85F board design."""
    folder = tmp_path_factory.mktemp("board")
    model = thresholding_graph(8, 1, 4, 4, 7, "INT12", "UINT3", 0, seed=3)
    design = generate(model, folder)
    plan = write_board(design, check_board("ulx3s-85f"), clock_mhz=50)
    exe = build_emulator(folder)
    return folder, model, plan, exe


def read_replies(ser, reader, want: int, timeout: float = 20.0) -> list[link.Reply]:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += reader.feed(ser.read(max(1, ser.in_waiting)))
    return got


def test_plan_and_info(board_build):
    folder, model, plan, exe = board_build
    assert plan["input"]["beat_bytes"] == 2 and plan["input"]["beats"] == 128
    assert plan["output"]["beats"] == 128 and plan["out_fifo"] < plan["output"]["beats"]
    with Emulator(folder, exe) as emu, open_port(emu.port, 115200) as ser:
        ln = link.Link(ser)
        info = ln.info()
        assert info["design_id"] == plan["design_id"] and info["window"] == plan["window"]
        assert info["in_beats"] == 128 and info["out_beats"] == 128
        assert info["bit_q8"] == 256 * plan["emulation"]["bit_clocks"]
        rng = np.random.default_rng(0)
        for n in (0, 1, 17, plan["loop_bytes"]):
            data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            assert ln.loopback(data) == data


def test_random_frames_through_the_link_equal_the_executor(board_build):
    folder, model, plan, exe = board_build
    x = random_frames(model, 6, seed=1)
    want = execute(model, x)["y"]
    with Emulator(folder, exe) as emu:
        got, report = infer(folder, emu.port, x)
    assert np.array_equal(got, want)
    assert report["retries"] == 0 and report["frames"] == 6
    assert report["accelerator_cycles"]["min"] >= 128  # one input beat a cycle at most


def test_corrupt_cut_short_and_unknown_requests_get_a_nak_and_the_link_recovers(board_build):
    folder, model, plan, exe = board_build
    x = random_frames(model, 2, seed=2)
    frame = encode_frames(x, plan)[0]
    good = link.request(link.INFER, 1, frame)
    flipped = bytearray(link.request(link.INFER, 2, frame))
    flipped[40] ^= 0x08
    with Emulator(folder, exe) as emu, open_port(emu.port, 115200) as ser:
        reader = link.ReplyReader(1 << 12)
        ser.write(b"\x00\x13\x5a" + bytes(flipped))  # garbage before the sync byte, then a payload bit flipped
        ser.write(link.request(link.INFER, 3, frame[:-2]))  # a frame two bytes short
        ser.write(link.request(0x42, 4))  # an unknown type
        ser.write(link.request(link.LOOPBACK, 5, bytes(plan["loop_bytes"] + 1)))  # longer than the buffer
        got = read_replies(ser, reader, 4)
        assert [(r.kind, r.seq, r.payload) for r in got] == [
            (link.NAK, 2, b"\x01"), (link.NAK, 3, b"\x02"), (link.NAK, 4, b"\x03"), (link.NAK, 5, b"\x02")]
        ser.write(good[:30])  # cut short: the board gives up after its idle time
        got = read_replies(ser, reader, 1)
        assert [(r.kind, r.seq, r.payload) for r in got] == [(link.NAK, 1, b"\x05")]
        ser.write(good)
        got = read_replies(ser, reader, 1)
        assert got[0].kind == link.INFER | link.REPLY and got[0].seq == 1
        out = decode_outputs([got[0].payload[:reply_bytes(plan)]], plan)
        assert np.array_equal(out[0], execute(model, x[:1])["y"][0])


def test_frames_beyond_the_window_are_refused_whole_never_mixed(board_build, tmp_path):
    """With a window of one, a frame that arrives while the one before is still unanswered gets NAK 4 (busy)
    and is dropped whole; the frames taken are answered correctly."""
    folder, model, plan, exe = board_build
    one = tmp_path / "window1"
    shutil.copytree(folder / "rtl", one / "rtl", ignore=shutil.ignore_patterns("obj_*"))
    (one / "board.json").write_text(json.dumps({**plan, "window": 1}))
    x = random_frames(model, 4, seed=4)
    want = execute(model, x)["y"]
    frames = encode_frames(x, plan)
    with Emulator(one) as emu, open_port(emu.port, 115200) as ser:
        reader = link.ReplyReader(1 << 12)
        ser.write(b"".join(link.request(link.INFER, 10 + k, f) for k, f in enumerate(frames)))
        got = {r.seq: r for r in read_replies(ser, reader, 4)}
    assert sorted(got) == [10, 11, 12, 13]
    assert any(r.kind == link.NAK for r in got.values())
    for k in range(4):
        r = got[10 + k]
        if r.kind == link.NAK:
            assert r.payload == b"\x04"
        else:
            assert np.array_equal(decode_outputs([r.payload[:reply_bytes(plan)]], plan)[0], want[k])


class Flaky:
    """A serial port that flips a bit in every third request it sends: the board NAKs, the host retries."""

    def __init__(self, ser):
        self.ser, self.n = ser, 0

    def write(self, data):
        self.n += 1
        if self.n % 3 == 0 and len(data) > 8:
            data = bytearray(data)
            data[len(data) // 2] ^= 0x01
        return self.ser.write(bytes(data))

    def read(self, n):
        return self.ser.read(n)

    @property
    def in_waiting(self):
        return self.ser.in_waiting


def test_corrupted_requests_are_retried_not_dropped(board_build):
    folder, model, plan, exe = board_build
    x = random_frames(model, 6, seed=5)
    with Emulator(folder, exe) as emu, open_port(emu.port, 115200) as ser:
        ln = link.Link(Flaky(ser), reply_timeout=10)
        results = ln.run(encode_frames(x, plan), window=plan["window"], reply_bytes=reply_bytes(plan))
    assert ln.stats.retries >= 1 and ln.stats.naks.get("bad CRC", 0) >= 1
    assert np.array_equal(decode_outputs([r.payload for r in results], plan), execute(model, x)["y"])


def test_infer_and_emulate_commands(board_build, tmp_path, capsys):
    folder, model, plan, exe = board_build
    x = random_frames(model, 3, seed=6)
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "onebit", "emulate", str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("virtual ulx3s-85f on "), line
        port = line.split(" on ", 1)[1].split(":", 1)[0]
        code, out, err = call(capsys, "infer", folder, "--port", port, "--input", tmp_path / "x.npy", "--output",
                              tmp_path / "y.npy", "--json")
        assert code == 0, err
        r = json.loads(out)
        assert r["frames"] == 3 and r["limited_by"] in ("link", "accelerator")
        assert np.array_equal(np.load(tmp_path / "y.npy"), execute(model, x)["y"])
        # the port is held exclusively while a host talks to it
        with open_port(port, 115200):
            code, out, err = call(capsys, "infer", folder, "--port", port, "--input", tmp_path / "x.npy")
        assert code == 2 and err.startswith("error: --port") and err.count("\n") == 1, err
    finally:
        proc.terminate()
        proc.wait(10)


def test_infer_refuses_bad_ports_inputs_and_other_designs(board_build, tmp_path, capsys):
    folder, model, plan, exe = board_build
    np.save(tmp_path / "x.npy", random_frames(model, 1))
    np.save(tmp_path / "bad.npy", np.zeros((1, 3, 3, 8), np.float32))
    code, out, err = call(capsys, "infer", folder, "--port", tmp_path / "nope", "--input", tmp_path / "x.npy")
    assert code == 2 and err.startswith("error: --port") and "cannot open" in err, err
    code, out, err = call(capsys, "infer", folder, "--port", "/dev/null", "--input", tmp_path / "bad.npy")
    assert code == 2 and "expected frames of shape (N, 4, 4, 8)" in err, err
    other = tmp_path / "other"
    other.mkdir()
    p = load_plan(folder)
    p["design_id"] ^= 1
    (other / "board.json").write_text(json.dumps(p))
    with Emulator(folder, exe) as emu:
        code, out, err = call(capsys, "infer", other, "--port", emu.port, "--input", tmp_path / "x.npy")
    assert code == 2 and "runs a different design" in err, err
    (other / "board.json").write_text(json.dumps({**p, "window": "two"}))
    code, out, err = call(capsys, "infer", other, "--port", "/dev/null", "--input", tmp_path / "x.npy")
    assert code == 2 and "window is missing or not valid" in err, err


def test_build_for_a_board_runs_the_virtual_board(tmp_path, capsys):
    """`onebit build --board`: the board top, its constraint file and the virtual board's check on frames run
    through onebit infer's protocol; Yosys synthesises the board top with its PLL."""
    from onebit.export.dataflow.folding_search import fold_for_target
    from onebit.export.dataflow.graph import load_dataflow
    from onebit.hw.boards import parse_constraints

    model, _ = fold_for_target(load_dataflow(tiny_dataflow(tmp_path)), 1000, 50)
    model.save(str(tmp_path / "f.onnx"))
    capsys.readouterr()  # what the export printed
    code, out, err = call(capsys, "build", tmp_path / "f.onnx", "--board", "ulx3s-85f", "--out", tmp_path / "b",
                          "--frames", 5, "--no-pnr", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["device"] == "ecp5-85k" and r["board"]["emulation"]["outputs_equal"]
    assert r["board"]["emulation"]["frames"] == 4
    assert r["synth"]["top"] == "onebit_board_top" and r["synth"]["resources"]["luts"] > 0
    assert any(k.startswith("EHXPLLL") for k in r["synth"]["cells"]), r["synth"]["cells"]
    pins = parse_constraints("ecp5", (tmp_path / "b" / "rtl" / r["board"]["constraints"]).read_text())
    board = check_board("ulx3s-85f")
    assert pins["clk_osc"] == board.clock.site and pins["uart_rx"] == board.uart_rx.site
    assert pins["uart_tx"] == board.uart_tx.site


def test_unknown_board_and_baud_without_board(tmp_path, capsys):
    code, out, err = call(capsys, "build", tmp_path / "g.onnx", "--board", "nosuch", "--out", tmp_path / "b")
    assert code == 2 and "unknown board 'nosuch'" in err and "ulx3s-85f" in err, err
    code, out, err = call(capsys, "build", tmp_path / "g.onnx", "--baud", "9600", "--out", tmp_path / "b")
    assert code == 2 and err.startswith("error: --baud"), err
    code, out, err = call(capsys, "build", tmp_path / "g.onnx", "--board", "icebreaker", "--baud", "9000000",
                          "--out", tmp_path / "b")
    assert code == 2 and "too fast" in err, err


USER_BOARD = """\
name = "my-board"
title = "My board (LFE5U-25F)"
family = "ecp5"
device = "ecp5-25k"
part = "LFE5U-25F-6BG381C"
package = "CABGA381"
speed = "6"
clock = { site = "P3", attrs = { IO_TYPE = "LVCMOS33" } }
clock_hz = 25e6
uart_rx = "M1"
uart_tx = "L4"
leds = ["B2"]
baud = 115200
serial = "FT231X"
programmer = ["-b", "ulx3s"]
"""


def test_run_for_a_board_adds_the_virtual_board_to_the_verification(tmp_path, capsys):
    """`onebit run --board` on a user's TFC (a board given as its own .toml file): the hw stage builds the board
    top and runs test images through the virtual board; the verification table, the summary and the HTML report
    show it, with the link's frames/s beside the accelerator's and what the design uses of the board's FPGA."""
    bnn_pynq = pytest.importorskip("brevitas_examples.bnn_pynq.models")
    import contextlib
    import io

    import torch
    from brevitas.export import export_qonnx

    torch.manual_seed(0)
    model, _ = bnn_pynq.model_with_cfg("tfc_1w1a", pretrained=False)
    with contextlib.redirect_stdout(io.StringIO()):
        export_qonnx(model.eval(), torch.rand(1, 1, 28, 28), str(tmp_path / "tfc.onnx"))
    board = tmp_path / "myboard.toml"
    board.write_text(USER_BOARD)
    (tmp_path / "c.toml").write_text(f"[model]\nonnx = {json.dumps(str(tmp_path / 'tfc.onnx'))}\n"
                                     "[verify]\nframes = 24\n[hw]\nsynth = false\npnr = false\nframes = 2\n"
                                     "board_frames = 6\n")
    capsys.readouterr()
    code, out, err = call(capsys, "run", "--config", tmp_path / "c.toml", "--input-type", "UINT8",
                          "--input-scale", "1/255", "--board", board, "--baud", "1000000", "--out", tmp_path / "r",
                          "-q")
    assert code == 0, err
    assert "board my-board: pins in" in out and "virtual board equal to the reference on 6 frames" in out, out
    assert "1,000,000 baud" in out and "limited by the" in out, out
    checks = json.loads((tmp_path / "r" / "verify.json").read_text())["checks"]
    row = [c for c in checks if c["check"].startswith("virtual my-board")]
    assert len(row) == 1 and row[0]["verdict"] == "pass" and row[0]["frames"] == 6, checks
    assert "link " in row[0]["detail"] and "accelerator " in row[0]["detail"]
    build = json.loads((tmp_path / "r" / "hw" / "build.json").read_text())
    assert build["device"] == "ecp5-25k" and build["board"]["baud"] == 1_000_000
    pins = (tmp_path / "r" / "hw" / "rtl" / build["board"]["constraints"]).read_text()
    assert '"P3"' in pins and '"M1"' in pins and '"L4"' in pins, pins
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<h3>Board</h3>" in html and "my-board" in html and "link frames/s" in html
    # the board's file is part of the hw stage's key: editing it rebuilds the hardware
    board.write_text(USER_BOARD.replace('"L4"', '"L5"'))
    code, out, err = call(capsys, "run", "--config", tmp_path / "c.toml", "--input-type", "UINT8",
                          "--input-scale", "1/255", "--board", board, "--baud", "1000000", "--out", tmp_path / "r",
                          "-q", "--until", "hw")
    assert code == 0 and "[4/6] hw: running" in err, err
    assert '"L5"' in (tmp_path / "r" / "hw" / "rtl" / build["board"]["constraints"]).read_text()


@pytest.mark.parametrize("args, named", [
    (["--board", "nosuch"], ["--board", "unknown board 'nosuch'", "ulx3s-85f"]),
    (["--board", "ulx3s-85f", "--device", "ecp5-25k"], ["--device", "ulx3s-85f", "ecp5-85k"]),
    (["--baud", "9600"], ["--baud", "board"]),
    (["--board", "icebreaker", "--baud", "9000000"], ["--baud", "too fast"]),
    (["--board", "ulx3s-85f", "--clock-mhz", "2000"], ["--clock-mhz", "EHXPLLL"]),
    (["--board", "missing.toml"], ["--board", "missing.toml"]),
])
def test_run_refuses_bad_boards_before_training(tmp_path, capsys, monkeypatch, args, named):
    monkeypatch.chdir(tmp_path)
    code, _, err = call(capsys, "run", "--out", "out", *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for thing in named:
        assert thing in lines[0], (thing, lines[0])
    assert not (tmp_path / "out" / "train").exists()


def test_a_baud_rate_too_fast_for_the_oscillator_runs_the_link_from_the_pll(tmp_path):
    """iCEBreaker at 12 Mbaud (its FT2232H's top rate): the 12 MHz oscillator cannot time a bit, so the link runs
    from the 48 MHz PLL clock, 4 clocks a bit, and its reset waits for lock; the virtual board runs that bit time
    as it is (not scaled) and its outputs equal the executor's."""
    from onebit.errors import ConfigError
    from onebit.hw.board import check_baud

    board = check_board("icebreaker")
    with pytest.raises(ConfigError, match="^baud: 12,000,000 is too fast .*--clock-mhz 48"):
        check_baud(board, 12_000_000, 50e6)  # 50 MHz / 12 Mbaud = 4.17 clocks: not whole, and under 8
    assert check_baud(board, 1_500_000, 50e6) == (1_500_000, "oscillator")
    model = thresholding_graph(8, 1, 4, 4, 7, "INT12", "UINT3", 0, seed=5)
    design = generate(model, tmp_path)
    plan = write_board(design, board, clock_mhz=48, baud=12_000_000)
    assert plan["link"] == {**plan["link"], "source": "pll", "clock_hz": 48e6, "bit_q8": 1024, "baud": 12_000_000}
    assert plan["emulation"]["bit_clocks"] == 4
    top = (tmp_path / "rtl" / "onebit_board_top.v").read_text()
    assert "assign clk_link = clk_acc;" in top and ".LINK_ON_PLL(1)" in top
    build_emulator(tmp_path)
    x = random_frames(model, 5, seed=2)
    with Emulator(tmp_path) as emu:
        got, report = infer(tmp_path, emu.port, x)
    assert np.array_equal(got, execute(model, x)[model.graph.output[0].name])
    assert report["retries"] == 0
