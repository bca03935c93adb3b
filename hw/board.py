"""The board-level design around a generated accelerator: ``onebit_board`` (UART host link, ring buffer, clock
crossing; ``rtl/onebit_board.v``) under a generated top with the board's PLL and pins, the board's constraint
file, and ``board.json``: what the host (``onebit infer``) and the virtual board (``onebit emulate``) need to
know about the design -- frame layout, link and clock parameters, the design id the board reports.

Everything generated here is numbers from the design and the board profile (the profile's pins are validated
in ``hw/boards.py``): no text from a user's graph reaches the Verilog or the constraint file.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType

from onebit.atomic import write_json
from onebit.errors import ConfigError, OnebitError
from onebit.hw import link
from onebit.hw.boards import Board, constraints
from onebit.hw.encode import beats_hex, hex_beats
from onebit.hw.pll import pll_config, pll_verilog
from onebit.hw.top import Design

BOARD_TOP = "onebit_board_top"
BOARD_FILE = "board.json"
RTL_FILES = ("onebit_uart.v", "onebit_async_fifo.v", "onebit_board.v")
WINDOW = 2  # frames the board's ring holds: one arriving while the one before runs
MIN_BIT_CLOCKS = 8  # link clocks per UART bit at least (the receiver samples each bit in its middle) ...
MIN_WHOLE_BIT_CLOCKS = 4  # ... or this many when a bit is a whole number of clocks (no fractional jitter)
EMULATED_BIT_CLOCKS = 8  # the virtual board's UART bit time, in link clocks (at most)
LOOP_BYTES = 64
IDLE_BYTES = 64  # byte times of silence that abandon a request


def design_id(design: Design) -> int:
    """CRC-32 of the accelerator's Verilog and memory files: a board reports it, so the host knows the design."""
    crc = 0
    mems = sorted(p.relative_to(design.rtl).as_posix() for p in (design.rtl / "mem").glob("*"))
    for f in sorted(design.files) + mems:
        crc = zlib.crc32(f.encode() + b"\0" + (design.rtl / f).read_bytes(), crc)
    return crc


def _stream(design: Design, edge, width: int) -> dict:
    model = design.model
    if edge.producer is None:
        layer = design.layers[edge.consumer]
        lanes = layer.op.fold_of_input(layer.op.stream_inputs()[edge.slot])
        name = model.graph.input[0].name
    else:
        op = design.net.layers[edge.producer].op
        lanes = op.fold_of_output()
        name = model.graph.output[0].name
    shape = [int(d) for d in model.get_tensor_shape(name)[1:]]
    dt = model.get_tensor_datatype(name)
    return {"shape": shape, "dtype": dt.name, "lanes": int(lanes), "beats": int(edge.beats), "width": int(width),
            "beat_bytes": -(-width // 8)}


def _times_bits(clock_hz: float, baud: int) -> bool:
    clocks = clock_hz / baud
    return clocks >= MIN_BIT_CLOCKS or (clocks >= MIN_WHOLE_BIT_CLOCKS and clocks == int(clocks))


def check_baud(board: Board, baud: int | None, acc_clock_hz: float | None = None) -> tuple[int, str]:
    """The link's baud rate (default: the board's) and its clock: ``"oscillator"`` (the board's), else, for a
    rate too fast for it, ``"pll"`` (the accelerator's clock ``acc_clock_hz``, as the PLL makes it). A clock
    times a bit with at least MIN_BIT_CLOCKS clocks, or MIN_WHOLE_BIT_CLOCKS when the bit is a whole number of
    clocks (12 Mbaud from 48 MHz); ConfigError if neither clock can."""
    baud = board.baud if baud is None else baud
    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise ConfigError(f"baud: expected a positive whole number, got {baud!r}", param="baud")
    if _times_bits(board.clock_hz, baud):
        return baud, "oscillator"
    if acc_clock_hz is not None and _times_bits(acc_clock_hz, baud):
        return baud, "pll"
    acc = "" if acc_clock_hz is None else f" or the {acc_clock_hz / 1e6:g} MHz accelerator clock"
    raise ConfigError(f"baud: {baud:,} is too fast for {board.name}'s {board.clock_hz / 1e6:g} MHz link clock{acc}: "
                      f"a bit needs {MIN_BIT_CLOCKS} clocks, or {MIN_WHOLE_BIT_CLOCKS} or more when it is a whole "
                      f"number of them (the link runs from the accelerator's clock when the oscillator is too slow: "
                      f"12 Mbaud with --clock-mhz 48 or 60, say)", param="baud")


def plan(design: Design, board: Board, clock_mhz: float, baud: int | None = None) -> dict:
    """What ``board.json`` holds: streams, link and clock parameters; ConfigError for a baud rate the link clock
    cannot time or a clock the board's PLL cannot make."""
    pll = pll_config(board.family, board.clock_hz, clock_mhz * 1e6)
    baud, source = check_baud(board, baud, pll.fout_hz)
    link_hz = board.clock_hz if source == "oscillator" else pll.fout_hz
    ins = _stream(design, design.in_edge, design.in_width())
    outs = _stream(design, design.out_edge, design.out_width())
    frame_bytes = ins["beat_bytes"] * ins["beats"]
    if frame_bytes >= 1 << 16:
        raise ConfigError(f"the design's input frame is {frame_bytes:,} bytes; the link's frames hold at most "
                          f"65,535")
    last = design.layers[design.out_edge.producer]
    bit_q8 = round(link_hz / baud * 256)
    return {
        "board": board.name, "family": board.family, "device": board.device, "part": board.part,
        "design_id": design_id(design), "input": ins, "output": outs, "window": WINDOW,
        "ring_bytes": 1 << max(4, math.ceil(math.log2(WINDOW * frame_bytes))),
        "out_fifo": 1 << max(4, math.ceil(math.log2(last.pipeline_depth() + 8))),  # beats wait here for the link
        "out_slack": last.pipeline_depth() + 1,
        "loop_bytes": LOOP_BYTES,
        "link": {"clock_hz": link_hz, "source": source, "baud": baud, "bit_q8": bit_q8,
                 "baud_actual": round(link_hz * 256 / bit_q8)},
        "accelerator": {"clock_hz": pll.fout_hz, "requested_hz": clock_mhz * 1e6, "pll": dict(pll.params)},
        # the virtual board's bit: EMULATED_BIT_CLOCKS, or the real one where that is shorter (12 Mbaud: 4)
        "emulation": {"bit_clocks": min(EMULATED_BIT_CLOCKS, bit_q8 // 256)},
        "top": BOARD_TOP,
    }


def info_fields(p: dict, bit_q8: int) -> dict:
    return {"version": link.PROTOCOL_VERSION, "window": p["window"], "in_beat_bytes": p["input"]["beat_bytes"],
            "in_beats": p["input"]["beats"], "out_beat_bytes": p["output"]["beat_bytes"],
            "out_beats": p["output"]["beats"], "design_id": p["design_id"],
            "acc_clock_hz": round(p["accelerator"]["clock_hz"]), "link_clock_hz": round(p["link"]["clock_hz"]),
            "bit_q8": bit_q8, "loop_bytes": p["loop_bytes"]}


def board_params(p: dict, bit_q8: int) -> str:
    """``onebit_board``'s parameters (all integers) for a link bit time of ``bit_q8``."""
    info = link.info_payload(**info_fields(p, bit_q8))
    values = {"IW": p["input"]["width"], "OW": p["output"]["width"], "IN_BEATS": p["input"]["beats"],
              "OUT_BEATS": p["output"]["beats"], "BUFFERS": p["window"],
              "RING_AW": int(math.log2(p["ring_bytes"])), "LOOP_AW": int(math.log2(p["loop_bytes"])),
              "OUT_AW": int(math.log2(p["out_fifo"])), "OUT_SLACK": p["out_slack"], "BIT_Q8": bit_q8,
              "IDLE_CLOCKS": IDLE_BYTES * 10 * max(1, bit_q8 // 256)}
    if p["link"].get("source") == "pll":  # only then: a build folder written before the parameter still emulates
        values["LINK_ON_PLL"] = 1
    text = ", ".join(f".{k}({int(v)})" for k, v in values.items())
    return text + f", .INFO_BYTES({len(info)}), .INFO({8 * len(info)}'h{int.from_bytes(info, 'little'):x})"


def top_verilog(p: dict, board: Board) -> str:
    n = len(board.leds)
    invert = sum(1 << i for i, pin in enumerate(board.leds) if pin.invert)
    lines = ["// Generated by onebit: the accelerator behind a UART host link on a board's pins.",
             "`default_nettype none", f"module {BOARD_TOP} (", "    input  wire clk_osc,",
             "    input  wire uart_rx,", "    output wire uart_tx" + ("," if n else "")]
    if n:
        lines.append(f"    output wire [{n - 1}:0] led")
    # the link runs from the oscillator as the PLL passes it on (an iCE40 pad that feeds a PLL drives nothing
    # else), or from the accelerator's clock when the oscillator is too slow for the baud rate
    on_pll = p["link"].get("source") == "pll"
    lines += [");", "    wire clk_link, clk_ref, clk_acc, acc_locked;", "    wire [3:0] status;",
              "    onebit_pll pll (.clk_in(clk_osc), .clk_out(clk_acc), .clk_ref(clk_ref), .locked(acc_locked));",
              f"    assign clk_link = {'clk_acc' if on_pll else 'clk_ref'};",
              f"    onebit_board #({board_params(p, p['link']['bit_q8'])}) board (",
              "        .clk_link(clk_link), .clk_acc(clk_acc), .acc_locked(acc_locked), .uart_rx(uart_rx),",
              "        .uart_tx(uart_tx), .status(status), .busy());"]
    if n:
        # heartbeat, busy, error, locked on the first four LEDs; active-low ones inverted
        bits = ", ".join(["1'b0"] * max(0, n - 4) + [f"status[{i}]" for i in reversed(range(min(n, 4)))])
        lines.append(f"    assign led = {{{bits}}} ^ {n}'d{invert};")
    lines += ["endmodule", "`default_nettype wire", ""]
    return "\n".join(lines)


def write_board(design: Design, board: Board, clock_mhz: float, baud: int | None = None) -> dict:
    """The board files in ``rtl/`` (top, PLL, link modules, constraint file) and ``board.json`` beside it."""
    from onebit.hw.layers.base import RTL_DIR

    p = plan(design, board, clock_mhz, baud)
    rtl = design.rtl
    for f in RTL_FILES:
        (rtl / f).write_text((RTL_DIR / f).read_text())
    pll = pll_config(board.family, board.clock_hz, clock_mhz * 1e6)
    (rtl / "onebit_pll.v").write_text(pll_verilog(pll, reference=True))
    (rtl / f"{BOARD_TOP}.v").write_text(top_verilog(p, board))
    name, text = constraints(board, clock_port="clk_osc", rx_port="uart_rx", tx_port="uart_tx", led_port="led")
    (rtl / name).write_text(text)
    p["files"] = [*RTL_FILES, "onebit_pll.v", f"{BOARD_TOP}.v"]
    p["constraints"] = name
    write_json(design.folder / BOARD_FILE, p)
    return p


# ---- the host's view: frames <-> bytes


def load_plan(folder: str | Path) -> dict:
    """``board.json`` of a board build, validated (it is a file a user may have edited)."""
    path = Path(folder) / BOARD_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; expected a folder written by 'onebit build --board'")
    try:
        p = json.loads(path.read_text())
        for side in ("input", "output"):
            s = p[side]
            DataType[s["dtype"]]
            for k in ("lanes", "beats", "width", "beat_bytes"):
                if not isinstance(s[k], int) or not 0 < s[k] < 1 << 24:
                    raise ValueError(f"{side}.{k}")
            if not all(isinstance(d, int) and d > 0 for d in s["shape"]):
                raise ValueError(f"{side}.shape")
        for k in ("window", "design_id", "ring_bytes", "out_fifo", "out_slack", "loop_bytes"):
            if not isinstance(p[k], int) or p[k] < 0:
                raise ValueError(k)
        for k in ("clock_hz", "baud", "bit_q8"):
            if not isinstance(p["link"][k], (int, float)) or not 0 < p["link"][k] < 1e10:
                raise ValueError(f"link.{k}")
        if not isinstance(p["accelerator"]["clock_hz"], (int, float)) or not 0 < p["accelerator"]["clock_hz"] < 1e10:
            raise ValueError("accelerator.clock_hz")
        if not isinstance(p["emulation"]["bit_clocks"], int) or not 4 <= p["emulation"]["bit_clocks"] <= 1 << 16:
            raise ValueError("emulation.bit_clocks")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        what = e.args[0] if e.args else type(e).__name__
        raise ConfigError(f"{path}: {what} is missing or not valid; rebuild with 'onebit build --board'") from None
    return p


def encode_frames(x: np.ndarray, p: dict) -> list[bytes]:
    """Frames (N, *shape) of the graph's input type -> each frame's request payload."""
    s = p["input"]
    x = np.asarray(x)
    if x.ndim != len(s["shape"]) + 1 or list(x.shape[1:]) != s["shape"]:
        raise ConfigError(f"input: expected frames of shape (N, {', '.join(map(str, s['shape']))}), got "
                          f"{tuple(x.shape)}", param="input")
    dt = DataType[s["dtype"]]
    if not np.all(np.isfinite(x)) or np.any(x != np.round(x)) or x.min() < dt.min() or x.max() > dt.max():
        raise ConfigError(f"input: expected integers of {dt.name} ({dt.min():g} .. {dt.max():g})", param="input")
    n = s["beat_bytes"]
    out = []
    for frame in x:
        words = beats_hex(frame.reshape(-1), dt, s["lanes"])
        out.append(b"".join(int(h, 16).to_bytes(n, "little") for h in words))
    return out


def decode_outputs(payloads: list[bytes], p: dict) -> np.ndarray:
    """Reply payloads (output beats) -> outputs (N, *shape) of the graph's output type."""
    s = p["output"]
    n = s["beat_bytes"]
    digits = max(1, -(-s["width"] // 4))
    frames = []
    for data in payloads:
        words = [format(int.from_bytes(data[i:i + n], "little") & ((1 << s["width"]) - 1), f"0{digits}x")
                 for i in range(0, len(data), n)]
        frames.append(hex_beats(words, DataType[s["dtype"]], s["lanes"]).reshape(s["shape"]))
    return np.stack(frames) if frames else np.zeros((0, *s["shape"]), np.int64)


def reply_bytes(p: dict) -> int:
    return p["output"]["beat_bytes"] * p["output"]["beats"]


FRAMING_BYTES = 7  # sync, type, sequence, length (2), CRC (2)
CYCLES_BYTES = 4  # the accelerator's cycle count in every INFER reply


def link_frames_per_second(p: dict, clock_hz: float, bit_q8: int) -> float:
    """Frames/s the UART carries at a bit time of ``bit_q8 / 256`` clocks of ``clock_hz`` (8N1: 10 bits a byte),
    in its busier direction: the request with the input codes, or the reply with the outputs and cycle count."""
    request = p["input"]["beat_bytes"] * p["input"]["beats"] + FRAMING_BYTES
    reply = reply_bytes(p) + CYCLES_BYTES + FRAMING_BYTES
    return clock_hz * 256 / bit_q8 / 10 / max(request, reply)


def check_info(info: dict, p: dict, port: str) -> None:
    """The board's INFO against ``board.json``: the same design, frame layout and window."""
    if info["version"] != link.PROTOCOL_VERSION:
        raise OnebitError(f"{port}: the board speaks protocol version {info['version']}, expected "
                          f"{link.PROTOCOL_VERSION}")
    want = info_fields(p, info["bit_q8"])
    diff = [k for k in ("design_id", "in_beat_bytes", "in_beats", "out_beat_bytes", "out_beats", "window")
            if info[k] != want[k]]
    if diff:
        k = diff[0]
        raise ConfigError(f"{port}: the board runs a different design ({k} {info[k]:#x}, this build's is "
                          f"{want[k]:#x}); load this build's bitstream first (onebit flash)")
