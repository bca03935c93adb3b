"""Board profiles (hw/boards.py): the built-ins from amaranth-boards, user TOML boards and their checks, the
constraint files; PLL configurations and modules (hw/pll.py), checked against each primitive's formula, the
families' own PLL tools, Yosys and nextpnr."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

from onebit.errors import ConfigError
from onebit.hw import boards, tools
from onebit.hw.boards import BUILTINS, Pin, check_board, constraints, load_board, parse_constraints
from onebit.hw.pll import GOWIN_ODIVS, LIMITS, pll_config, pll_verilog

MHZ = 1e6


# ------------------------------------------------------------------------------------------- built-in boards

@pytest.mark.parametrize("name", list(BUILTINS))
def test_every_builtin_board_loads(name):
    board = check_board(name)
    spec = BUILTINS[name]
    assert (board.name, board.family, board.device, board.baud) == (name, spec.family, spec.device, spec.baud)
    assert board.source == f"amaranth-boards {spec.platform}"
    assert 1 <= len(board.leds) <= boards.MAX_LEDS
    assert board.clock_hz / board.baud >= boards.MIN_CLOCKS_PER_BIT


def test_ulx3s_85f_profile():
    board = check_board("ulx3s-85f")
    assert (board.clock.site, board.clock_hz) == ("G2", 25e6)
    assert (board.uart_rx.site, board.uart_tx.site) == ("M1", "L4")  # the FPGA's view: rx is its input
    assert [led.site for led in board.leds] == ["B2", "C2", "C1", "D2", "D1", "E2", "E1", "H3"]
    assert not any(led.invert for led in board.leds)
    assert (board.part, board.package, board.speed) == ("LFE5U-85F-6BG381C", "CABGA381", "6")
    assert ("IO_TYPE", "LVCMOS33") in board.clock.attrs
    assert board.programmer == ("-b", "ulx3s") and board.serial == "FT231X"


def test_icebreaker_profile():
    board = check_board("icebreaker")
    assert (board.clock.site, board.clock_hz) == ("35", 12e6)
    assert (board.uart_rx.site, board.uart_tx.site) == ("6", "9")
    assert [(led.site, led.invert) for led in board.leds] == [("11", True), ("37", True)]
    assert (board.part, board.package, board.speed) == ("iCE40UP5K-SG48", "sg48", "")
    assert board.baud == 1_500_000


def test_tang_nano_9k_profile():
    board = check_board("tang-nano-9k")
    assert (board.clock.site, board.clock_hz) == ("52", 27e6)
    assert (board.uart_rx.site, board.uart_tx.site) == ("18", "17")
    assert [led.site for led in board.leds] == ["10", "11", "13", "14", "15", "16"]
    assert all(led.invert for led in board.leds)
    assert (board.part, board.package, board.speed) == ("GW1NR-LV9QN88PC6/I5", "QN88P", "C6/I5")


@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtin_devices_are_in_the_device_table(name):
    from onebit.hw.synth import DEVICES

    board = check_board(name)
    assert board.device in DEVICES, f"{board.device} is not in hw/synth.py's DEVICES"
    assert DEVICES[board.device].family == board.family


def expected_ports(board) -> dict[str, str]:
    return {"clk_osc": board.clock.site, "uart_rx": board.uart_rx.site, "uart_tx": board.uart_tx.site,
            **{f"led[{i}]": led.site for i, led in enumerate(board.leds)}}


@pytest.mark.parametrize("name", list(BUILTINS))
def test_constraint_file_parses_back_to_the_profile(name):
    board = check_board(name)
    file_name, text = constraints(board)
    assert file_name == name + boards.EXTENSIONS[board.family]
    assert parse_constraints(board.family, text) == expected_ports(board)


def test_constraint_file_formats():
    _, lpf = constraints(check_board("ulx3s-85f"))
    assert 'LOCATE COMP "clk_osc" SITE "G2";' in lpf and 'IOBUF PORT "clk_osc" IO_TYPE=LVCMOS33;' in lpf
    assert 'FREQUENCY PORT "clk_osc" 25.0 MHZ;' in lpf and 'IOBUF PORT "led[0]" IO_TYPE=LVCMOS33 DRIVE=4;' in lpf
    _, pcf = constraints(check_board("icebreaker"))
    assert "set_io clk_osc 35" in pcf and "set_io -pullup yes uart_rx 6" in pcf
    assert "set_frequency clk_osc 12.0" in pcf
    _, cst = constraints(check_board("tang-nano-9k"))
    assert 'IO_LOC "clk_osc" 52;' in cst and 'IO_PORT "clk_osc" IO_TYPE=LVCMOS33;' in cst
    assert 'IO_PORT "uart_rx" PULL_MODE=UP IO_TYPE=LVCMOS33;' in cst
    for text in (lpf, pcf, cst):
        assert "invert" not in text.lower()


def test_constraint_port_names_are_checked():
    with pytest.raises(ConfigError, match="not a Verilog identifier"):
        constraints(check_board("icebreaker"), clock_port='clk"; LOCATE')


def test_unknown_board_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown board 'nope'; expected one of .*ulx3s-85f.*tang-nano-9k"):
        check_board("nope")


def test_format_boards_lists_every_board():
    lines = boards.format_boards()
    for name in BUILTINS:
        assert any(line.startswith(name + " ") for line in lines)
    row = next(line for line in lines if line.startswith("ulx3s-85f "))
    for cell in ("ULX3S (LFE5U-85F)", "ecp5/ecp5-85k", "25 MHz", "3000000", "FT231X", "ULX3S_85F_Platform"):
        assert cell in row


# ---------------------------------------------------------------------------------------------- user boards

GOOD = {
    "name": "my-board", "title": "My board (LFE5U-25F)", "family": "ecp5", "device": "ecp5-25k",
    "part": "LFE5U-25F-6BG381C", "package": "CABGA381", "speed": "6",
    "clock": {"site": "G2", "attrs": {"IO_TYPE": "LVCMOS33"}}, "clock_hz": 25e6,
    "uart_rx": "M1", "uart_tx": {"site": "L4", "attrs": {"IO_TYPE": "LVCMOS33", "DRIVE": 8}},
    "leds": [{"site": "B2", "invert": True}, "C2"], "baud": 115200,
    "programmer": ["-b", "ulx3s"], "serial": "FT231X",
}


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else "-inf" if value == -math.inf
                                               else repr(value))
    if isinstance(value, (int, str)):
        return json.dumps(value) if isinstance(value, str) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def write_board(folder: Path, table: dict, file_name: str = "my.toml") -> Path:
    path = folder / file_name
    path.write_text("".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in table.items()))
    return path


def changed(**changes) -> dict:
    table = {**GOOD, **changes}
    return {k: v for k, v in table.items() if v is not DROP}


DROP = object()


def test_a_good_user_board(tmp_path):
    board = load_board(write_board(tmp_path, GOOD))
    assert (board.name, board.family, board.device, board.source) == ("my-board", "ecp5", "ecp5-25k", "my.toml")
    assert board.clock == Pin("G2", (("IO_TYPE", "LVCMOS33"),))
    assert board.uart_rx == Pin("M1") and board.uart_tx.attrs == (("IO_TYPE", "LVCMOS33"), ("DRIVE", "8"))
    assert board.leds == (Pin("B2", (), True), Pin("C2"))
    assert board.clock_hz == 25e6 and board.baud == 115200 and board.programmer == ("-b", "ulx3s")
    _, text = constraints(board)
    assert parse_constraints("ecp5", text) == expected_ports(board)
    assert 'IOBUF PORT "uart_tx" IO_TYPE=LVCMOS33 DRIVE=8;' in text


def test_user_boards_folder(tmp_path, monkeypatch):
    write_board(tmp_path, GOOD)
    write_board(tmp_path, changed(name="other", family="ice40", device="ice40-up5k", part="iCE40UP5K-SG48",
                                  package="sg48", speed="", clock={"site": "35", "attrs": {"GLOBAL": True}},
                                  clock_hz=12e6, uart_tx="9", uart_rx={"site": "6", "attrs": {"PULLUP": 1}},
                                  leds=["11"]), "other.toml")
    (tmp_path / "notes.txt").write_text("not a board")
    monkeypatch.setenv(boards.BOARDS_ENV, str(tmp_path))
    table = boards.boards()
    assert {"my-board", "other", *BUILTINS} == set(table)
    assert check_board("other").clock.attrs == (("GLOBAL", "1"),)
    assert "set_io -pullup yes uart_rx 6" in constraints(check_board("other"))[1]
    assert check_board(str(tmp_path / "my.toml")).name == "my-board"
    assert any(line.startswith("my-board ") and line.endswith("my.toml") for line in boards.format_boards())


def test_user_boards_folder_problems(tmp_path, monkeypatch):
    monkeypatch.setenv(boards.BOARDS_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"\$ONEBIT_BOARDS: .*missing: no such folder"):
        boards.boards()
    write_board(tmp_path, GOOD, "a.toml")
    write_board(tmp_path, GOOD, "b.toml")
    monkeypatch.setenv(boards.BOARDS_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=r"b\.toml: name: 'my-board' is also the name of the board in a\.toml"):
        boards.boards()


def test_without_amaranth_boards(tmp_path, monkeypatch):
    for module in [m for m in sys.modules if m == "amaranth_boards" or m.startswith("amaranth_boards.")]:
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setitem(sys.modules, "amaranth_boards", None)
    boards.builtin_board.cache_clear()
    try:
        write_board(tmp_path, GOOD)
        monkeypatch.setenv(boards.BOARDS_ENV, str(tmp_path))
        assert set(boards.boards()) == {"my-board"}
        assert any("pip install amaranth-boards" in line for line in boards.format_boards())
        with pytest.raises(ConfigError, match="pip install amaranth-boards"):
            check_board("icebreaker")
    finally:
        boards.builtin_board.cache_clear()


INJECTED_SITE = 'G2" ;\nLOCATE COMP "uart_tx" SITE "A1'
BAD = [
    (changed(colour="red"), "colour: unknown key"),
    (changed(baud=DROP), "baud: missing"),
    (changed(clock_hz="25MHz"), "clock_hz: expected a number"),
    (changed(leds="B2"), "leds: expected an array of pins"),
    (changed(programmer="-b ulx3s"), "programmer: expected an array of strings"),
    (changed(title=["x"]), "title: expected a string"),
    (changed(family="xilinx"), "family: expected one of ecp5, ice40, gowin"),
    (changed(device="ice40-up5k"), "device: ice40-up5k is a ice40 device but the board's family is ecp5"),
    (changed(device="ecp5-1000k"), "device: unknown device 'ecp5-1000k'"),
    (changed(clock_hz=0), "clock_hz: expected a positive"),
    (changed(clock_hz=-25e6), "clock_hz: expected a positive"),
    (changed(clock_hz=math.inf), "clock_hz: expected a number"),
    (changed(clock_hz=math.nan), "clock_hz: expected a number"),
    (changed(clock_hz=10 ** 400), "clock_hz: expected a number"),
    (changed(baud=0), "baud: expected a positive integer"),
    (changed(baud=1.5), "baud: expected a positive integer"),
    (changed(baud=True), "baud: expected a positive integer"),
    (changed(baud=12_000_000), "baud: expected at most clock_hz / 8 = 3125000"),
    (changed(name="My Board"), "name: expected a lower-case name"),
    (changed(name="ulx3s-85f"), "name: 'ulx3s-85f' is a built-in board's name"),
    (changed(title="two\nlines"), "title: expected one line of printable text"),
    (changed(part='LFE5U"; x'), "part: expected letters, digits"),
    (changed(leds=[]), "leds: expected 1 to 8 pins"),
    (changed(leds=[f"A{i}" for i in range(9)]), "leds: expected 1 to 8 pins"),
    (changed(clock={"site": "G2", "pull": "up"}), "clock.pull: unknown key"),
    (changed(clock={"attrs": {}}), "clock.site: missing"),
    (changed(clock={"site": 2}), "clock.site: expected a string"),
    (changed(clock={"site": "G2", "invert": True}), "clock.invert: expected false (only LEDs can be active-low)"),
    (changed(leds=[{"site": "B2", "invert": "yes"}]), "leds[0].invert: expected true or false"),
    (changed(uart_rx=["M1"]), "uart_rx: expected a site string or a table"),
    (changed(uart_tx="G2"), "uart_tx.site: G2 is clock's site too"),
    (changed(programmer=["-b", "ulx3s; rm"]), "programmer: expected 1 to 16 openFPGALoader arguments"),
    (changed(programmer=[]), "programmer: expected 1 to 16 openFPGALoader arguments"),
    # what ends up in a constraint file can never open a line or close a quote
    (changed(clock={"site": INJECTED_SITE}), "clock.site: expected a pin name"),
    (changed(uart_rx="-pullup"), "uart_rx.site: expected a pin name"),
    (changed(leds=["B2 C2"]), "leds[0].site: expected a pin name"),
    (changed(clock={"site": "G2", "attrs": {"IO_TYPE": 'LVCMOS33;\nLOCATE COMP "x" SITE "A1"'}}),
     "clock.attrs.IO_TYPE: expected a value of letters"),
    (changed(clock={"site": "G2", "attrs": {'IO_TYPE" SITE': "LVCMOS33"}}), "clock.attrs: expected attribute names"),
    (changed(clock={"site": "G2", "attrs": {"IO_TYPE": 2.5}}), "clock.attrs.IO_TYPE: expected a string, an integer"),
    (changed(clock={"site": "G2", "attrs": ["IO_TYPE"]}), "clock.attrs: expected a table"),
    (changed(family="ice40", device="ice40-up5k", clock={"site": "35", "attrs": {"IO_TYPE": "LVCMOS33"}},
             clock_hz=12e6, baud=115200), "clock.attrs.IO_TYPE: not an iCE40 pin attribute"),
    (changed(family="ice40", device="ice40-up5k", clock={"site": "35", "attrs": {"PULLUP": "maybe"}},
             clock_hz=12e6), "clock.attrs.PULLUP: expected one of 0, 1, no, yes"),
]


@pytest.mark.parametrize("table, message", BAD, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(BAD)])
def test_a_bad_user_board_is_refused_naming_file_and_key(tmp_path, table, message):
    path = write_board(tmp_path, table)
    with pytest.raises(ConfigError) as e:
        load_board(path)
    assert str(e.value).startswith(f"{path}: "), str(e.value)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_unreadable_board_files(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.toml: no such file"):
        load_board(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("name = \n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_board(tmp_path / "broken.toml")
    with pytest.raises(ConfigError, match=r"board\.txt: expected a board's \.toml file"):
        load_board(tmp_path / "board.txt")


# --------------------------------------------------------------------------------------------------------- PLLs

def achieved(family: str, fin: float, params: dict) -> tuple[float, float, float]:
    """(output, PFD, VCO) by the primitive's own formula."""
    if family == "ecp5":
        pfd = fin / params["CLKI_DIV"]
        fout = pfd * params["CLKFB_DIV"]
        return fout, pfd, fout * params["CLKOP_DIV"]
    if family == "ice40":
        pfd = fin / (params["DIVR"] + 1)
        vco = pfd * (params["DIVF"] + 1)
        return vco / 2 ** params["DIVQ"], pfd, vco
    pfd = fin / (params["IDIV_SEL"] + 1)
    fout = pfd * (params["FBDIV_SEL"] + 1)
    return fout, pfd, fout * params["ODIV_SEL"]


def dividers_in_range(family: str, p: dict) -> bool:
    if family == "ecp5":
        return 1 <= p["CLKI_DIV"] <= 128 and 1 <= p["CLKFB_DIV"] <= 80 and 1 <= p["CLKOP_DIV"] <= 128
    if family == "ice40":
        return 0 <= p["DIVR"] <= 15 and 0 <= p["DIVF"] <= 127 and 1 <= p["DIVQ"] <= 6 and p["FEEDBACK_PATH"] == "SIMPLE"
    return 0 <= p["IDIV_SEL"] <= 63 and 0 <= p["FBDIV_SEL"] <= 63 and p["ODIV_SEL"] in GOWIN_ODIVS


REQUESTS = [("ecp5", 25, 100), ("ecp5", 25, 125), ("ecp5", 25, 66.6), ("ecp5", 25, 60), ("ecp5", 25, 10),
            ("ecp5", 25, 400), ("ecp5", 12, 100), ("ecp5", 100, 40), ("ecp5", 25, 87.3),
            ("ice40", 12, 48), ("ice40", 12, 30), ("ice40", 12, 100), ("ice40", 12, 16.2), ("ice40", 12, 270),
            ("ice40", 12, 37.5),
            ("gowin", 27, 81), ("gowin", 27, 100), ("gowin", 27, 50), ("gowin", 27, 300), ("gowin", 27, 12)]


@pytest.mark.parametrize("family, fin_mhz, fout_mhz", REQUESTS)
def test_pll_params_reproduce_the_frequency_within_range(family, fin_mhz, fout_mhz):
    fin, request = fin_mhz * MHZ, fout_mhz * MHZ
    pll = pll_config(family, fin, request)
    params = dict(pll.params)
    fout, pfd, vco = achieved(family, fin, params)
    assert math.isclose(fout, pll.fout_hz, rel_tol=1e-12)
    assert dividers_in_range(family, params)
    limits = LIMITS[family]
    assert float(limits.pfd.low) <= pfd <= float(limits.pfd.high)
    assert float(limits.vco.low) <= vco <= float(limits.vco.high)
    assert float(limits.fout.low) <= pll.fout_hz <= float(limits.fout.high)
    assert pll.fout_hz <= request
    assert pll.fout_hz >= 0.98 * request


def brute_force_best(family: str, fin: float, request: float) -> float:
    """The highest legal output at or below ``request``, every divider tried (the limits written out again)."""
    best = 0.0
    if family == "ecp5":
        for clki in range(1, 129):
            for clkfb in range(1, 81):
                fout = fin / clki * clkfb
                legal = 3.125e6 <= fin / clki <= 400e6 and 10e6 <= fout <= 400e6 and \
                    any(400e6 <= fout * clkop <= 800e6 for clkop in range(1, 129))
                if legal and best < fout <= request * (1 + 1e-12):
                    best = fout
    elif family == "ice40":
        for divr in range(16):
            for divf in range(128):
                for divq in range(7):
                    pfd, vco = fin / (divr + 1), fin / (divr + 1) * (divf + 1)
                    fout = vco / 2 ** divq
                    legal = 10e6 <= pfd <= 133e6 and 533e6 <= vco <= 1066e6 and 16e6 <= fout <= 275e6
                    if legal and best < fout <= request * (1 + 1e-12):
                        best = fout
    else:
        for idiv in range(64):
            for fbdiv in range(64):
                for odiv in GOWIN_ODIVS:
                    fout = fin / (idiv + 1) * (fbdiv + 1)
                    legal = 3e6 <= fin / (idiv + 1) <= 400e6 and 400e6 < fout * odiv < 1200e6 and 3.125e6 < fout < 600e6
                    if legal and best < fout <= request * (1 + 1e-12):
                        best = fout
    return best


@pytest.mark.slow
@pytest.mark.parametrize("family, fin_mhz, fout_mhz", [("ecp5", 25, 66.6), ("ecp5", 25, 48), ("ice40", 12, 100),
                                                       ("ice40", 12, 37.5), ("gowin", 27, 100), ("gowin", 27, 12.5)])
def test_pll_is_the_best_at_or_below_the_request(family, fin_mhz, fout_mhz):
    pll = pll_config(family, fin_mhz * MHZ, fout_mhz * MHZ)
    assert math.isclose(pll.fout_hz, brute_force_best(family, fin_mhz * MHZ, fout_mhz * MHZ), rel_tol=1e-12)


@pytest.mark.parametrize("family, fin_mhz, fout_mhz, expected", [
    ("ecp5", 25, 100, {"CLKI_DIV": 1, "CLKFB_DIV": 4, "CLKOP_DIV": 6, "CLKOP_CPHASE": 2}),
    ("ice40", 12, 48, {"DIVR": 0, "DIVF": 63, "DIVQ": 4, "FILTER_RANGE": 1}),
    ("gowin", 27, 81, {"IDIV_SEL": 0, "FBDIV_SEL": 2, "ODIV_SEL": 8, "FCLKIN": "27", "DEVICE": "GW1NR-9C"}),
])
def test_pll_exact_requests(family, fin_mhz, fout_mhz, expected):
    pll = pll_config(family, fin_mhz * MHZ, fout_mhz * MHZ)
    assert pll.fout_hz == fout_mhz * MHZ
    assert expected.items() <= dict(pll.params).items()


@pytest.mark.parametrize("family, fin_mhz, fout_mhz, message", [
    ("ecp5", 25, 500, r"clock_mhz: 500 MHz is out of reach of the EHXPLLL from 25 MHz: expected 10\.\.400 MHz"),
    ("ecp5", 25, 5, r"expected 10\.\.400 MHz"),
    ("ice40", 12, 300, r"out of reach of the SB_PLL40_PAD from 12 MHz: expected 16\.125\.\.270 MHz"),
    ("ice40", 12, 14, r"expected 16\.125\.\.270 MHz \(or 12, the clock itself, without a PLL\)"),
    ("ice40", 8, 48, r"clock_mhz: 48 MHz needs the ice40 PLL \(SB_PLL40_PAD\), which takes a 10\.\.133 MHz input"),
    ("gowin", 27, 700, r"out of reach of the rPLL from 27 MHz: expected [\d.]+\.\.[\d.]+ MHz"),
    ("ecp5", 25, math.nan, "clock_mhz: expected a positive frequency"),
    ("ecp5", 25, -1, "clock_mhz: expected a positive frequency"),
])
def test_unreachable_pll_requests(family, fin_mhz, fout_mhz, message):
    with pytest.raises(ConfigError, match=message) as e:
        pll_config(family, fin_mhz * MHZ, fout_mhz * MHZ)
    assert e.value.param == "clock_mhz"


def test_pll_unknown_family():
    with pytest.raises(ConfigError, match="family: expected one of ecp5, ice40, gowin"):
        pll_config("xilinx", 25e6, 100e6)


@pytest.mark.parametrize("family", list(LIMITS))
def test_pass_through_when_the_request_is_the_oscillator(family):
    pll = pll_config(family, 8e6, 8e6)  # below every PLL's input range: no PLL needed
    assert pll.params == () and pll.fout_hz == 8e6 and pll.primitive is None
    text = pll_verilog(pll)
    assert "assign clk_out = clk_in;" in text and "assign locked = 1'b1;" in text
    assert LIMITS[family].primitive not in text


def test_pll_module_interface_and_name():
    text = pll_verilog(pll_config("ecp5", 25e6, 100e6), module="my_pll")
    assert "module my_pll (\n    input  wire clk_in,\n    output wire clk_out,\n    output wire locked\n);" in text
    assert '.FEEDBK_PATH("CLKOP")' in text and ".CLKFB(clk_out)" in text and ".CLKOP(clk_out)" in text
    assert 'FREQUENCY_PIN_CLKI="25"' in text
    ice40 = pll_verilog(pll_config("ice40", 12e6, 48e6))
    assert "SB_PLL40_PAD #(" in ice40 and ".PACKAGEPIN(clk_in)" in ice40 and ".DIVF(7'b0111111)" in ice40
    core = pll_verilog(pll_config("ice40", 12e6, 48e6), pad=False)
    assert "SB_PLL40_CORE #(" in core and ".REFERENCECLK(clk_in)" in core
    both = pll_verilog(pll_config("ice40", 12e6, 48e6), reference=True)
    assert "SB_PLL40_2_PAD #(" in both and ".PLLOUTGLOBALA(clk_ref), .PLLOUTGLOBALB(clk_out)" in both
    assert "output wire clk_ref," in both and "assign clk_ref" not in both
    for pll in (pll_config("ecp5", 25e6, 100e6), pll_config("gowin", 27e6, 27e6)):
        assert "assign clk_ref = clk_in;" in pll_verilog(pll, reference=True)
        assert "clk_ref" not in pll_verilog(pll)
    with pytest.raises(ConfigError, match="module: expected a Verilog identifier"):
        pll_verilog(pll_config("ecp5", 25e6, 100e6), module="x; endmodule")


def run_tool(tool: str, args: list[str], cwd: Path) -> str:
    command = tools.yowasp(tool)  # the tools are dependencies: a missing one fails the test
    return tools.run(command + args, cwd=cwd, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("fout_mhz", [100, 125, 50, 40, 75, 200])
def test_ecp5_dividers_match_ecppll(tmp_path, fout_mhz):
    pll = pll_config("ecp5", 25e6, fout_mhz * MHZ)
    run_tool("ecppll", ["-i", "25", "-o", str(fout_mhz), "-f", "pll.v"], tmp_path)
    theirs = {k: int(v) for k, v in re.findall(r"\.(CLKI_DIV|CLKFB_DIV|CLKOP_DIV|CLKOP_CPHASE|CLKOP_FPHASE)\((\d+)\)",
                                                 (tmp_path / "pll.v").read_text())}
    assert len(theirs) == 5 and theirs == {k: v for k, v in pll.params if k in theirs}


@pytest.mark.slow
@pytest.mark.parametrize("fout_mhz", [48, 30, 99, 60, 36])
def test_ice40_dividers_match_icepll(tmp_path, fout_mhz):
    pll = pll_config("ice40", 12e6, fout_mhz * MHZ)
    assert pll.fout_hz == fout_mhz * MHZ
    out = run_tool("icepll", ["-i", "12", "-o", str(fout_mhz), "-q", "-m", "-f", "-"], tmp_path)
    theirs = {k: int(v) for k, v in re.findall(r"// (DIVR|DIVF|DIVQ|FILTER_RANGE) = +(\d+)", out)}
    assert len(theirs) == 4 and theirs == {k: v for k, v in pll.params if k in theirs}


PLL_CASES = [("ecp5", 25e6, 100e6, True, False, "EHXPLLL"), ("ice40", 12e6, 48e6, True, False, "SB_PLL40_PAD"),
             ("ice40", 12e6, 48e6, True, True, "SB_PLL40_2_PAD"), ("ice40", 12e6, 48e6, False, False, "SB_PLL40_CORE"),
             ("gowin", 27e6, 81e6, True, True, "rPLL")]


@pytest.mark.slow
@pytest.mark.parametrize("family, fin, fout, pad, reference, primitive", PLL_CASES)
def test_pll_module_synthesises(tmp_path, family, fin, fout, pad, reference, primitive):
    (tmp_path / "pll.v").write_text(pll_verilog(pll_config(family, fin, fout), pad=pad, reference=reference))
    log = run_tool("yosys", ["-p", f"read_verilog pll.v; synth_{family} -top onebit_pll; stat"], tmp_path)
    stat = log.rsplit("Printing statistics", 1)[-1]
    assert re.search(rf"^\s*1\s+{primitive}\s*$", stat, re.MULTILINE), stat


def board_test_top(board, pll) -> str:
    """A tiny board-level top: the PLL, counters on the LEDs from its clock and from the oscillator (as the
    host link runs), the link's rx looped back to tx."""
    n = len(board.leds)
    return f"""module board_top (input wire clk_osc, input wire uart_rx, output wire uart_tx,
    output wire [{n - 1}:0] led);
    wire clk, clk_ref, locked;
    onebit_pll pll (.clk_in(clk_osc), .clk_out(clk), .clk_ref(clk_ref), .locked(locked));
    reg [25:0] count = 0, count_ref = 0;
    always @(posedge clk) count <= count + 1;
    always @(posedge clk_ref) count_ref <= count_ref + 1;
    assign led = count[25 -: {n}] ^ count_ref[25 -: {n}] ^ {{{n}{{locked}}}};
    assign uart_tx = uart_rx;
endmodule
""" + pll_verilog(pll, reference=True)


PNR = {
    "icebreaker": ("nextpnr-ice40", 48e6, ["--up5k", "--package", "sg48", "--pcf", "{file}", "--asc", "out.asc"]),
    "ulx3s-25f": ("nextpnr-ecp5", 100e6, ["--25k", "--package", "CABGA381", "--lpf", "{file}",
                                          "--textcfg", "out.config"]),
    "tang-nano-9k": ("nextpnr-himbaechel-gowin", 81e6, ["--device", "GW1NR-LV9QN88PC6/I5", "--vopt",
                                                        "family=GW1N-9C", "--vopt", "cst={file}", "--write",
                                                        "out.json"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PNR))
def test_constraints_and_pll_place_and_route(tmp_path, name):
    """nextpnr takes the constraint file (every port constrained to its pin) and the PLL module."""
    board = check_board(name)
    tool, fout, args = PNR[name]
    (tmp_path / "top.v").write_text(board_test_top(board, pll_config(board.family, board.clock_hz, fout)))
    file_name, text = constraints(board)
    (tmp_path / file_name).write_text(text)
    run_tool("yosys", ["-q", "-p", f"read_verilog top.v; synth_{board.family} -top board_top -json top.json"],
             tmp_path)
    log = run_tool(tool, ["--json", "top.json", *(a.format(file=file_name) for a in args)], tmp_path)
    for port in expected_ports(board):
        if board.family == "ice40":
            assert f"constrained '{port}' to bel" in log
        elif board.family == "ecp5":
            assert f"pin '{port}$tr_io' constrained to Bel" in log
        else:
            assert f"Cell {port} not found" not in log
    assert "Invalid constraint" not in log and "unmatched constraint" not in log
