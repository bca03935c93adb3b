"""Boards as data: part, package, clock pin and frequency, the host link's pins, LEDs, and how to program it.

The built-in boards take their pins from the ``amaranth-boards`` package (an optional dependency, imported only
when a built-in board is asked for); what it does not hold (the onebit device, the USB-serial chip, the link's
default baud rate, openFPGALoader's board name) is in :data:`BUILTINS`. More boards come from small TOML files
with one key per :class:`Board` field (``source`` excepted: it is the file's name), read from the folder named by
``$ONEBIT_BOARDS`` or given by path::

    name = "my-board"
    title = "My board (LFE5U-25F)"
    family = "ecp5"
    device = "ecp5-25k"
    part = "LFE5U-25F-6BG381C"
    package = "CABGA381"
    speed = "6"
    clock = { site = "G2", attrs = { IO_TYPE = "LVCMOS33" } }
    clock_hz = 25e6
    uart_rx = "M1"            # a bare site: no attributes, not inverted
    uart_tx = "L4"
    leds = [{ site = "B2", invert = true }]
    baud = 115200
    programmer = ["-b", "ulx3s"]
    serial = "FT231X"

Everything read from a file is checked before use: the sites and attributes end up in constraint files, so they
are restricted to letters, digits and ``_ . / -`` and can never start a new line or close a quote.

:func:`constraints` writes the board's constraint file (ECP5 ``.lpf``, iCE40 ``.pcf``, Gowin ``.cst``) for a
board-level top with ports ``clk_osc``, ``uart_rx``, ``uart_tx`` and ``led[N-1:0]``. An active-low LED
(``Pin.invert``) is the top's to invert; the constraint file says nothing about it.

The iCEBreaker's link defaults to 1.5 Mbaud: it runs from the 12 MHz oscillator and needs at least
:data:`MIN_CLOCKS_PER_BIT` clocks per bit, so its FT2232H's 12 Mbaud would need a faster link clock.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

from onebit.errors import ConfigError
from onebit.hw.idents import IDENT, KEYWORDS

FAMILIES = ("ecp5", "ice40", "gowin")
MAX_LEDS = 8
#: the UART link samples each bit at least this many times, so a board's baud rate is at most clock_hz / 8
MIN_CLOCKS_PER_BIT = 8
BOARDS_ENV = "ONEBIT_BOARDS"
EXTENSIONS = {"ecp5": ".lpf", "ice40": ".pcf", "gowin": ".cst"}

BOARD_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
MAX_NAME_LEN = 40
#: a package pin ("G2", "35", "IOB12A"); never a leading '-' (nextpnr's PCF reads that as an option)
SITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]*")
ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ATTR_VALUE = re.compile(r"[A-Za-z0-9_./-]+")
#: part, package and speed grade reach the tools' command lines
PART_WORD = re.compile(r"[A-Za-z0-9_./-]*")
PROGRAMMER_ARG = re.compile(r"[A-Za-z0-9_.,:=/+-]+")
MAX_TEXT_LEN = 80
#: what a PCF can say about an iCE40 pin (nextpnr-ice40's set_io options); IO_STANDARD and GLOBAL are SB_IO's
ICE40_ATTRS = {"IO_STANDARD": None, "GLOBAL": ("0", "1"), "PULLUP": ("0", "1", "no", "yes"),
               "PULLUP_RESISTOR": ("3P3K", "6P8K", "10K", "100K")}


@dataclass(frozen=True)
class Pin:
    site: str  # package pin, e.g. "G2" (ECP5), "35" (iCE40), "52" (Gowin)
    attrs: tuple[tuple[str, str], ...] = ()  # IO attributes, e.g. (("IO_TYPE", "LVCMOS33"),)
    invert: bool = False  # active-low (amaranth's PinsN), e.g. iCEBreaker's LED


@dataclass(frozen=True)
class Board:
    name: str  # lower-case id used on the command line: "ulx3s-85f"
    title: str  # "ULX3S (LFE5U-85F)"
    family: str  # "ecp5" | "ice40" | "gowin"
    device: str  # onebit device name (key of hw.synth.DEVICES): "ecp5-85k", "ice40-up5k", "gowin-gw1nr9"
    part: str  # full part: "LFE5U-85F-6BG381C", "iCE40UP5K-SG48", "GW1NR-LV9QN88PC6/I5"
    package: str  # as the family's nextpnr wants it: "CABGA381", "sg48", "QN88P"
    speed: str  # "6", "", "C6/I5"
    clock: Pin
    clock_hz: float
    uart_rx: Pin  # FPGA input (host -> board)
    uart_tx: Pin  # FPGA output (board -> host)
    leds: tuple[Pin, ...]
    baud: int  # default baud rate of the host link
    programmer: tuple[str, ...]  # openFPGALoader arguments selecting the board, e.g. ("-b", "ulx3s")
    serial: str  # the USB-serial chip, e.g. "FT231X"
    source: str  # where the pins came from: "amaranth-boards ULX3S_85F_Platform" or the TOML file name


@dataclass(frozen=True)
class Builtin:
    """What a built-in board needs beyond amaranth-boards' platform class ``module.platform``."""

    module: str
    platform: str
    title: str
    family: str
    device: str
    baud: int
    programmer: tuple[str, ...]
    serial: str


def _ulx3s(size: str) -> Builtin:
    return Builtin("ulx3s", f"ULX3S_{size}F_Platform", f"ULX3S (LFE5U-{size}F)", "ecp5", f"ecp5-{size}k",
                   3_000_000, ("-b", "ulx3s"), "FT231X")


BUILTINS: dict[str, Builtin] = {
    **{f"ulx3s-{size}f": _ulx3s(size) for size in ("12", "25", "45", "85")},
    "icebreaker": Builtin("icebreaker", "ICEBreakerPlatform", "iCEBreaker (iCE40UP5K)", "ice40", "ice40-up5k",
                          1_500_000, ("-b", "ice40_generic"), "FT2232H"),
    "tang-nano-9k": Builtin("tang_nano_9k", "TangNano9kPlatform", "Tang Nano 9K (GW1NR-9C)", "gowin",
                            "gowin-gw1nr9", 1_000_000, ("-b", "tangnano9k"), "BL702"),
}

#: amaranth-boards' ECP5 package names as nextpnr-ecp5's --package takes them
_ECP5_PACKAGES = {"BG256": "CABGA256", "BG381": "CABGA381", "BG554": "CABGA554", "BG756": "CABGA756",
                  "MG285": "CSFBGA285"}


# ---------------------------------------------------------------------------------------------- the board table

def boards() -> dict[str, Board]:
    """Every board: the built-ins (when amaranth-boards is installed) and those in ``$ONEBIT_BOARDS``."""
    found = dict(builtin_boards()) if _have_amaranth_boards() else {}
    found.update(user_boards())
    return found


def builtin_boards() -> dict[str, Board]:
    return {name: builtin_board(name) for name in BUILTINS}


@cache
def builtin_board(name: str) -> Board:
    """The built-in board ``name``, its pins read from amaranth-boards (ConfigError if that is missing)."""
    spec = BUILTINS[name]
    platform = _platform(spec)
    board = _from_platform(name, spec, platform)
    check_profile(board, f"amaranth-boards {spec.platform}")
    return board


def user_boards() -> dict[str, Board]:
    """The boards in ``$ONEBIT_BOARDS``'s ``*.toml`` files (none if it is not set), by name."""
    folder = os.environ.get(BOARDS_ENV)
    if not folder:
        return {}
    if not Path(folder).is_dir():
        raise ConfigError(f"${BOARDS_ENV}: {folder}: no such folder")
    found: dict[str, Board] = {}
    for path in sorted(Path(folder).glob("*.toml")):
        board = load_board(path)
        if board.name in found:
            other = found[board.name].source
            raise ConfigError(f"{path}: name: {board.name!r} is also the name of the board in {other}")
        found[board.name] = board
    return found


def check_board(name_or_path: str | os.PathLike | Board) -> Board:
    """The board of that name, or the one in that ``.toml`` file (ConfigError naming the known ones if none)."""
    if isinstance(name_or_path, Board):
        return name_or_path
    text = str(name_or_path)
    if isinstance(name_or_path, os.PathLike) or text.endswith(".toml"):
        return load_board(name_or_path)
    if text in BUILTINS:
        return builtin_board(text)
    users = user_boards()
    if text not in users:
        known = [*BUILTINS, *users]
        raise ConfigError(f"unknown board {text!r}; expected one of {', '.join(known)} or a board's .toml file")
    return users[text]


def format_boards() -> list[str]:
    """The lines of ``onebit boards``: one per board (name, title, family/device, clock, default baud, USB-serial
    chip, source), then where user boards come from."""
    table = boards()
    rows = [("name", "title", "family/device", "clock", "baud", "serial", "source")]
    rows += [(b.name, b.title, f"{b.family}/{b.device}", f"{_mhz(b.clock_hz)} MHz", str(b.baud), b.serial, b.source)
             for b in table.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows]
    if not _have_amaranth_boards():
        lines.append(f"built-in boards {', '.join(BUILTINS)}: need amaranth-boards (pip install amaranth-boards)")
    folder = os.environ.get(BOARDS_ENV)
    lines.append(f"user boards: *.toml in ${BOARDS_ENV} ({folder if folder else 'not set'})")
    return lines


# ------------------------------------------------------------------------------------------------ amaranth-boards

def _have_amaranth_boards() -> bool:
    try:
        import amaranth_boards  # noqa: F401
    except ImportError:
        return False
    return True


def _platform(spec: Builtin):
    import importlib

    try:
        module = importlib.import_module(f"amaranth_boards.{spec.module}")
    except ImportError as e:
        raise ConfigError(f"the built-in boards need amaranth-boards (pip install amaranth-boards): {e}") from None
    return getattr(module, spec.platform)()


def _from_platform(name: str, spec: Builtin, platform) -> Board:
    clock = platform.lookup(platform.default_clk, 0)
    part, package, speed = _part(spec.family, platform)
    return Board(name=name, title=spec.title, family=spec.family, device=spec.device, part=part, package=package,
                 speed=speed, clock=_amaranth_pin(clock, clock.attrs, "i"), clock_hz=float(clock.clock.frequency),
                 uart_rx=_uart_pin(platform, "rx", "i"), uart_tx=_uart_pin(platform, "tx", "o"),
                 leds=_amaranth_leds(platform), baud=spec.baud, programmer=spec.programmer, serial=spec.serial,
                 source=f"amaranth-boards {spec.platform}")


def _part(family: str, platform) -> tuple[str, str, str]:
    """(part, package as nextpnr takes it, speed grade) from the platform's own names."""
    if family == "ecp5":
        package = _ECP5_PACKAGES.get(platform.package, platform.package)
        return f"{platform.device}-{platform.speed}{platform.package}C", package, platform.speed
    if family == "ice40":
        return f"{platform.device}-{platform.package}", platform.package.lower(), ""
    return platform.part, platform.package, platform.speed


def _uart_pin(platform, name: str, direction: str) -> Pin:
    uart = platform.lookup("uart", 0)
    subsignal = next(s for s in uart.ios if s.name == name)
    return _amaranth_pin(subsignal, {**uart.attrs, **subsignal.attrs}, direction)


def _amaranth_leds(platform) -> tuple[Pin, ...]:
    from amaranth.build import ResourceError

    leds = []
    for number in range(MAX_LEDS):
        try:
            led = platform.lookup("led", number)
        except ResourceError:
            break
        leds.append(_amaranth_pin(led, led.attrs, "o"))
    return tuple(leds)


def _amaranth_pin(resource, attrs, direction: str) -> Pin:
    """The one pin of an amaranth Resource or Subsignal (its ``ios[0]``, a ``Pins``) with these attributes."""
    pins = resource.ios[0]
    if len(pins.names) != 1 or pins.dir != direction:
        raise ConfigError(f"amaranth-boards: {resource.name}: expected one {direction!r} pin, got {pins!r}")
    return Pin(pins.names[0], tuple((key, _attr_text(value)) for key, value in attrs.items()), bool(pins.invert))


def _attr_text(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


# ----------------------------------------------------------------------------------------------------- TOML files

def load_board(path: str | os.PathLike) -> Board:
    """The board in a TOML file, every key checked (ConfigError naming the file and the key)."""
    path = Path(path)
    where = str(path)
    if path.suffix != ".toml":
        raise ConfigError(f"{where}: expected a board's .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: not readable ({type(e).__name__}: {e})") from None
    board = board_from_table(_parse_toml(text, where), where, source=path.name)
    if board.name in BUILTINS:
        raise ConfigError(f"{where}: name: {board.name!r} is a built-in board's name; choose another")
    return board


def _parse_toml(text: str, where: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML ({e})") from None


#: the TOML keys: every Board field but ``source``
_KEYS = tuple(f.name for f in fields(Board) if f.name != "source")
_PIN_KEYS = ("site", "attrs", "invert")


def board_from_table(table: dict, where: str, source: str) -> Board:
    """A Board from a parsed TOML table; ``where`` (the file) starts every error message."""
    _check_keys(table, _KEYS, where, "")
    values = {key: table[key] for key in _KEYS}
    for key in ("name", "title", "family", "device", "part", "package", "speed", "serial"):
        _expect(isinstance(values[key], str), where, key, "a string", values[key])
    for key in ("clock", "uart_rx", "uart_tx"):
        values[key] = _toml_pin(values[key], where, key)
    leds = values["leds"]
    _expect(isinstance(leds, list), where, "leds", "an array of pins", leds)
    values["leds"] = tuple(_toml_pin(led, where, f"leds[{i}]") for i, led in enumerate(leds))
    programmer = values["programmer"]
    _expect(isinstance(programmer, list) and all(isinstance(a, str) for a in programmer), where, "programmer",
            "an array of strings", programmer)
    values["programmer"] = tuple(programmer)
    clock_hz = values["clock_hz"]
    _expect(_is_number(clock_hz), where, "clock_hz", "a number of Hz", clock_hz)
    values["clock_hz"] = float(clock_hz)
    _expect(isinstance(values["baud"], int) and not isinstance(values["baud"], bool), where, "baud",
            "a positive integer", values["baud"])
    board = Board(**values, source=source)
    check_profile(board, where)
    _check_device(board, where)
    return board


def _check_keys(table, keys: tuple[str, ...], where: str, prefix: str, optional: tuple[str, ...] = ()) -> None:
    unknown = [k for k in table if k not in keys]
    if unknown:
        raise ConfigError(f"{where}: {prefix}{_shown_key(unknown[0])}: unknown key; expected {', '.join(keys)}")
    required = [k for k in keys if k not in table and k not in optional]
    if required:
        raise ConfigError(f"{where}: {prefix}{required[0]}: missing")


def _toml_pin(value, where: str, key: str) -> Pin:
    """A pin: a bare site string or a table ``{site, attrs, invert}`` (types checked here, values later)."""
    if isinstance(value, str):
        return Pin(value)
    _expect(isinstance(value, dict), where, key, "a site string or a table {site, attrs, invert}", value)
    _check_keys(value, _PIN_KEYS, where, f"{key}.", optional=("attrs", "invert"))
    site, attrs, invert = value["site"], value.get("attrs", {}), value.get("invert", False)
    _expect(isinstance(site, str), where, f"{key}.site", "a string", site)
    _expect(isinstance(attrs, dict), where, f"{key}.attrs", "a table of attribute = value", attrs)
    for name, attr in attrs.items():
        ok = isinstance(attr, (str, int))
        _expect(ok, where, f"{key}.attrs.{_shown_key(name)}", "a string, an integer or a boolean", attr)
    _expect(isinstance(invert, bool), where, f"{key}.invert", "true or false", invert)
    return Pin(site, tuple((name, _attr_text(attr)) for name, attr in attrs.items()), invert)


def _check_device(board: Board, where: str) -> None:
    from onebit.hw.synth import DEVICES

    if board.device not in DEVICES:
        raise ConfigError(f"{where}: device: unknown device {board.device!r}; expected one of {', '.join(DEVICES)}")
    family = DEVICES[board.device].family
    if family != board.family:
        raise ConfigError(f"{where}: device: {board.device} is a {family} device but the board's family is "
                          f"{board.family}")


# -------------------------------------------------------------------------------------------------- the checks

def check_profile(board: Board, where: str) -> Board:
    """Every value of ``board`` as a constraint file and a tool command line may take it; ConfigError naming
    ``where`` and the key otherwise. (The device table is checked for user boards only: a built-in may name a
    device that hw/synth.py does not support yet.)"""
    name_ok = BOARD_NAME.fullmatch(board.name) is not None and len(board.name) <= MAX_NAME_LEN
    _expect(name_ok, where, "name", f"a lower-case name of letters, digits and '-' (at most {MAX_NAME_LEN})",
            board.name)
    for key in ("title", "serial"):
        value = getattr(board, key)
        ok = 0 < len(value) <= MAX_TEXT_LEN and value.isprintable()
        _expect(ok, where, key, f"one line of printable text (at most {MAX_TEXT_LEN} characters)", value)
    _expect(board.family in FAMILIES, where, "family", f"one of {', '.join(FAMILIES)}", board.family)
    _expect(BOARD_NAME.fullmatch(board.device) is not None, where, "device", "a device name", board.device)
    for key in ("part", "package", "speed"):
        value = getattr(board, key)
        ok = PART_WORD.fullmatch(value) is not None and len(value) <= MAX_TEXT_LEN and (key == "speed" or value)
        _expect(ok, where, key, "letters, digits, '_', '.', '/', '-'", value)
    _check_pins(board, where)
    clock_ok = _is_number(board.clock_hz) and board.clock_hz > 0
    _expect(clock_ok, where, "clock_hz", "a positive, finite number of Hz", board.clock_hz)
    baud_ok = isinstance(board.baud, int) and not isinstance(board.baud, bool) and board.baud > 0
    _expect(baud_ok, where, "baud", "a positive integer", board.baud)
    most = int(board.clock_hz // MIN_CLOCKS_PER_BIT)
    _expect(board.baud <= most, where, "baud", f"at most clock_hz / {MIN_CLOCKS_PER_BIT} = {most} (the link "
            f"needs {MIN_CLOCKS_PER_BIT} clocks per bit)", board.baud)
    args_ok = 0 < len(board.programmer) <= 16 and all(PROGRAMMER_ARG.fullmatch(a) for a in board.programmer)
    _expect(args_ok, where, "programmer", "1 to 16 openFPGALoader arguments of letters, digits and '_.,:=/+-'",
            list(board.programmer))
    return board


def _check_pins(board: Board, where: str) -> None:
    _expect(0 < len(board.leds) <= MAX_LEDS, where, "leds", f"1 to {MAX_LEDS} pins", len(board.leds))
    named = [("clock", board.clock), ("uart_rx", board.uart_rx), ("uart_tx", board.uart_tx),
             *((f"leds[{i}]", led) for i, led in enumerate(board.leds))]
    first_at: dict[str, str] = {}
    for key, pin in named:
        _check_pin(pin, board.family, where, key)
        _expect(not pin.invert or key.startswith("leds"), where, f"{key}.invert", "false (only LEDs can be "
                "active-low)", pin.invert)
        if pin.site in first_at:
            raise ConfigError(f"{where}: {key}.site: {pin.site} is {first_at[pin.site]}'s site too")
        first_at[pin.site] = key


def _check_pin(pin: Pin, family: str, where: str, key: str) -> None:
    ok = isinstance(pin.site, str) and SITE.fullmatch(pin.site) is not None and len(pin.site) <= 16
    _expect(ok, where, f"{key}.site", "a pin name of letters, digits, '_', '.', '/', '-'", pin.site)
    for name, value in pin.attrs:
        _expect(ATTR_NAME.fullmatch(name) is not None, where, f"{key}.attrs", "attribute names of letters, "
                "digits and '_'", name)
        allowed = ICE40_ATTRS.get(name) if family == "ice40" else None
        if family == "ice40" and name not in ICE40_ATTRS:
            raise ConfigError(f"{where}: {key}.attrs.{name}: not an iCE40 pin attribute; expected one of "
                              f"{', '.join(ICE40_ATTRS)}")
        ok = ATTR_VALUE.fullmatch(value) is not None and (allowed is None or value in allowed)
        expected = f"one of {', '.join(allowed)}" if allowed else "a value of letters, digits, '_', '.', '/', '-'"
        _expect(ok, where, f"{key}.attrs.{name}", expected, value)


def _expect(ok: bool, where: str, key: str, expected: str, value) -> None:
    if not ok:
        raise ConfigError(f"{where}: {key}: expected {expected}, got {_shown(value)}")


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _shown_key(key) -> str:
    return key if isinstance(key, str) and ATTR_NAME.fullmatch(key) else _shown(key)


def _is_number(value) -> bool:
    """A finite int or float (TOML integers are unbounded: one beyond float's range is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _mhz(hz: float) -> str:
    return f"{hz / 1e6:.6f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------------------------------------- constraint files

def constraints(board: Board, clock_port: str = "clk_osc", rx_port: str = "uart_rx", tx_port: str = "uart_tx",
                led_port: str = "led") -> tuple[str, str]:
    """(file name, text) of the board's constraint file: each port's site and IO attributes, and the clock's
    frequency where the format has one (LPF, PCF; nextpnr-himbaechel's CST has none). LEDs are the bits of a
    bus port ``led_port[N-1:0]``."""
    for port in (clock_port, rx_port, tx_port, led_port):
        if IDENT.fullmatch(port) is None or port in KEYWORDS:
            raise ConfigError(f"constraints: port name {port!r} is not a Verilog identifier")
    check_profile(board, board.source)
    ports = [(clock_port, board.clock), (rx_port, board.uart_rx), (tx_port, board.uart_tx),
             *((f"{led_port}[{i}]", led) for i, led in enumerate(board.leds))]
    write = {"ecp5": _lpf, "ice40": _pcf, "gowin": _cst}[board.family]
    lines = write(ports, clock_port, board.clock_hz)
    comment = "//" if board.family == "gowin" else "#"
    header = f"{comment} Generated by onebit for board {board.name}"
    return f"{board.name}{EXTENSIONS[board.family]}", "\n".join([header, *lines]) + "\n"


def _lpf(ports: list[tuple[str, Pin]], clock_port: str, clock_hz: float) -> list[str]:
    lines = []
    for port, pin in ports:
        lines.append(f'LOCATE COMP "{port}" SITE "{pin.site}";')
        if pin.attrs:
            lines.append(f'IOBUF PORT "{port}" ' + " ".join(f"{k}={v}" for k, v in pin.attrs) + ";")
    return [*lines, f'FREQUENCY PORT "{clock_port}" {clock_hz / 1e6!r} MHZ;']


def _pcf(ports: list[tuple[str, Pin]], clock_port: str, clock_hz: float) -> list[str]:
    lines = []
    for port, pin in ports:
        attrs = dict(pin.attrs)
        options = ""
        if "PULLUP" in attrs:
            options += f" -pullup {'yes' if attrs['PULLUP'] in ('1', 'yes') else 'no'}"
        if "PULLUP_RESISTOR" in attrs:
            options += f" -pullup_resistor {attrs['PULLUP_RESISTOR']}"
        lines.append(f"set_io{options} {port} {pin.site}")
    return [*lines, f"set_frequency {clock_port} {clock_hz / 1e6!r}"]


def _cst(ports: list[tuple[str, Pin]], clock_port: str, clock_hz: float) -> list[str]:
    lines = []
    for port, pin in ports:
        lines.append(f'IO_LOC "{port}" {pin.site};')
        if pin.attrs:
            lines.append(f'IO_PORT "{port}" ' + " ".join(f"{k}={v}" for k, v in pin.attrs) + ";")
    return lines


_LPF_LOCATE = re.compile(r'^\s*LOCATE\s+COMP\s+"([^"]+)"\s+SITE\s+"([^"]+)"\s*;', re.MULTILINE)
_CST_LOC = re.compile(r'^\s*IO_LOC\s+"([^"]+)"\s+([^\s;,]+)\s*[;,]', re.MULTILINE)
_PCF_VALUED_OPTIONS = ("-pullup", "-pullup_resistor")


def parse_constraints(family: str, text: str) -> dict[str, str]:
    """{port: site} of a constraint file of ``family`` (LOCATE COMP / set_io / IO_LOC lines)."""
    if family == "ecp5":
        return dict(_LPF_LOCATE.findall(text))
    if family == "gowin":
        return dict(_CST_LOC.findall(text))
    if family == "ice40":
        return dict(_pcf_set_io(line) for line in text.splitlines() if line.split()[:1] == ["set_io"])
    raise ConfigError(f"family: expected one of {', '.join(FAMILIES)}, got {family!r}")


def _pcf_set_io(line: str) -> tuple[str, str]:
    words = line.split("#")[0].split()[1:]
    i = 0
    while i < len(words) and words[i].startswith("-"):
        i += 2 if words[i] in _PCF_VALUED_OPTIONS else 1
    if len(words) - i != 2:
        raise ConfigError(f"PCF: expected 'set_io [options] port pin', got {line!r}")
    return words[i], words[i + 1]
