"""What a long tool run is doing, as it goes: Yosys's and nextpnr's phase from their own output, the elapsed
time, and how long the last comparable run took (the same tool and device, the nearest design size), from a
small history file in the user's cache folder (``$ONEBIT_CACHE``, else ``~/.cache/onebit``)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Callable

from onebit.atomic import write_json

HISTORY_FILE = "tool_times.json"
HISTORY_RUNS = 50  # per tool and device
REPORT_EVERY_S = 15.0

#: (pattern on a line of the tool's output, the phase it starts)
_YOSYS_PASS = re.compile(r"^\d+(?:\.\d+)*\. Executing ([A-Z0-9_]+) pass")
_NEXTPNR_PHASES = (  # the first that matches
    (re.compile(r"^Info: Packing"), "packing"),
    (re.compile(r"^Info: Running simulated annealing|^Info: Running detail"), "refining the placement"),
    (re.compile(r"^Info: Creating initial .*placement|^Info: Running main analytical placer"), "placing"),
    (re.compile(r"^Info: Routing|^Info: Router2"), "routing"),
    (re.compile(r"^Info: Critical path report"), "timing analysis"),
)
#: Yosys passes worth naming (the rest are steps of the current one)
_YOSYS_PHASES = {"HIERARCHY": "elaborating", "PROC": "elaborating", "FLATTEN": "flattening",
                 "SYNTH_ECP5": "synthesis", "SYNTH_ICE40": "synthesis", "MEMORY_LIBMAP": "mapping memories",
                 "TECHMAP": "mapping logic", "ABC": "optimising logic (ABC)", "ABC9": "optimising logic (ABC)",
                 "DFFLEGALIZE": "mapping flip-flops"}
MIN_GAP_S = 5.0  # a phase change is reported at once unless the last report is more recent than this


def cache_dir() -> Path:
    return Path(os.environ.get("ONEBIT_CACHE") or Path.home() / ".cache" / "onebit")


def _history() -> dict:
    try:
        data = json.loads((cache_dir() / HISTORY_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def last_comparable(tool: str, device: str, size: int) -> dict | None:
    """The recorded run of ``tool`` on ``device`` nearest in design size (within a factor of 2), if any."""
    runs = [r for r in _history().get(f"{tool}/{device}", []) if isinstance(r, dict)
            and isinstance(r.get("size"), int) and isinstance(r.get("seconds"), (int, float)) and r["size"] > 0]
    near = [r for r in runs if size / 2 <= r["size"] <= size * 2]
    return min(near, key=lambda r: (abs(r["size"] - size), -r.get("when", 0))) if near else None


def record(tool: str, device: str, size: int, seconds: float) -> None:
    """Add a finished run to the history (best effort: an unwritable cache folder is no error)."""
    data = _history()
    key = f"{tool}/{device}"
    data[key] = [*data.get(key, []), {"size": int(size), "seconds": round(seconds, 1), "when": int(time.time())}]
    data[key] = data[key][-HISTORY_RUNS:]
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        write_json(cache_dir() / HISTORY_FILE, data)
    except OSError:
        pass


class ToolProgress:
    """Follows one tool run: ``line`` for each output line, ``tick`` now and then; reports through ``log`` when
    the phase changes and every ``every_s`` seconds, each report with the elapsed time and the last comparable
    run's time."""

    def __init__(self, tool: str, device: str, size: int, log: Callable[[str], None],
                 every_s: float = REPORT_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.tool, self.device, self.size, self.log, self.every_s, self.clock = tool, device, size, log, every_s, clock
        self.phase = "starting"
        self.start = self.last_report = clock()
        prev = last_comparable(tool, device, size)
        self.previous = None if prev is None else float(prev["seconds"])
        note = f"; the last comparable run took {self.previous:.0f} s" if self.previous is not None else ""
        log(f"    {tool}: started{note}")

    def line(self, text: str) -> None:
        phase = self._phase(text)
        if phase and phase != self.phase:
            self.phase = phase
            if self.clock() - self.last_report >= MIN_GAP_S:
                self._report()

    def tick(self) -> None:
        if self.clock() - self.last_report >= self.every_s:
            self._report()

    def done(self) -> float:
        seconds = self.clock() - self.start
        record(self.tool, self.device, self.size, seconds)
        return seconds

    def _phase(self, text: str) -> str | None:
        if self.tool == "yosys":
            m = _YOSYS_PASS.match(text)
            return _YOSYS_PHASES.get(m.group(1)) if m else None
        for pattern, phase in _NEXTPNR_PHASES:
            if pattern.search(text):
                return phase
        return None

    def _report(self) -> None:
        now = self.clock()
        self.last_report = now
        of = f" (last comparable run: {self.previous:.0f} s)" if self.previous is not None else ""
        self.log(f"    {self.tool}: {self.phase}, {now - self.start:.0f} s{of}")
