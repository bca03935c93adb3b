"""Progress of long tool runs: phases from Yosys's and nextpnr's output, periodic reports, the history of
comparable runs, and the streaming runner (lines as they come, its time limit, a failing tool)."""

from __future__ import annotations

import sys

import pytest

from onebit.errors import ToolError
from onebit.hw import progress, tools


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONEBIT_CACHE", str(tmp_path / "cache"))


def test_nextpnr_phases_and_periodic_reports():
    clock, said = FakeClock(), []
    p = progress.ToolProgress("nextpnr", "ecp5-25k", 9000, said.append, every_s=15, clock=clock)
    assert said == ["    nextpnr: started"]
    for t, line in [(1, "Info: Packing IOs.."), (2, "Info: Packing LUTs..."),
                    (10, "Info: Creating initial analytic placement for 7646 cells"),
                    (20, "Info: Running main analytical placer, max placement attempts per cell = 3"),
                    (70, "Info: Running simulated annealing placer for refinement."),
                    (130, "Info: Routing globals..."), (150, "Info: Critical path report for clock 'clk'")]:
        clock.t = t
        p.line(line)
    # packing at 1 s came too soon after the start to be told apart
    assert [s.split(": ", 1)[1] for s in said[1:]] == ["placing, 10 s",
                                                      "refining the placement, 70 s", "routing, 130 s",
                                                      "timing analysis, 150 s"]
    clock.t = 170
    p.tick()
    assert said[-1] == "    nextpnr: timing analysis, 170 s"
    clock.t = 171
    p.tick()  # within every_s of the last report: quiet
    assert len(said) == 6
    assert p.done() == 171


def test_yosys_passes_name_phases_without_flooding():
    clock, said = FakeClock(), []
    p = progress.ToolProgress("yosys", "ecp5-25k", 10_000, said.append, clock=clock)
    clock.t = 6
    p.line("2. Executing HIERARCHY pass (managing design hierarchy).")
    clock.t = 7
    p.line("3. Executing PROC pass (convert processes to netlists).")  # same phase: nothing new
    p.line("4.2. Executing FLATTEN pass (flatten design).")  # 1 s after the last report: held back
    assert said[1:] == ["    yosys: elaborating, 6 s"]
    clock.t = 30
    p.tick()
    assert said[-1] == "    yosys: flattening, 30 s"


def test_the_last_comparable_run_is_named():
    progress.record("nextpnr", "ecp5-25k", 10_000, 200.0)
    progress.record("nextpnr", "ecp5-25k", 40_000, 900.0)
    progress.record("nextpnr", "ecp5-85k", 11_000, 50.0)
    assert progress.last_comparable("nextpnr", "ecp5-25k", 12_000)["seconds"] == 200.0
    assert progress.last_comparable("nextpnr", "ecp5-25k", 35_000)["seconds"] == 900.0
    assert progress.last_comparable("nextpnr", "ecp5-25k", 100) is None  # nothing within a factor of 2
    said = []
    progress.ToolProgress("nextpnr", "ecp5-25k", 9_000, said.append, clock=FakeClock())
    assert said == ["    nextpnr: started; the last comparable run took 200 s"]


def test_a_corrupt_history_is_ignored(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / progress.HISTORY_FILE).write_text("{not json")
    assert progress.last_comparable("yosys", "ecp5-25k", 10) is None
    progress.record("yosys", "ecp5-25k", 10, 1.0)
    assert progress.last_comparable("yosys", "ecp5-25k", 10)["seconds"] == 1.0


def test_run_watched_streams_lines_and_ticks(tmp_path):
    script = "import time\nfor i in range(3):\n    print(f'line {i}', flush=True)\n    time.sleep(0.3)\n"
    lines, ticks = [], []
    out = tools.run_watched([sys.executable, "-c", script], cwd=tmp_path, timeout=30, log=tmp_path / "log",
                            on_line=lines.append, on_tick=lambda: ticks.append(1), tick_s=0.1)
    assert lines == ["line 0", "line 1", "line 2"]
    assert len(ticks) > 3 and out == "line 0\nline 1\nline 2\n" == (tmp_path / "log").read_text()


def test_run_watched_limits_and_failures(tmp_path):
    with pytest.raises(ToolError, match="ran past its 1 s limit: started"):
        tools.run_watched([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"],
                          cwd=tmp_path, timeout=1, what="slowtool", tick_s=0.1)
    with pytest.raises(ToolError, match="exit status 3.*broken"):
        tools.run_watched([sys.executable, "-c", "print('broken'); raise SystemExit(3)"], cwd=tmp_path,
                          timeout=30)
    with pytest.raises(ToolError, match="cannot run"):
        tools.run_watched([str(tmp_path / "missing")], cwd=tmp_path, timeout=30)
