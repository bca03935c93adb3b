"""PLL configurations: from a board's oscillator to the folded design's clock, the way each family's own tool
computes them, and the Verilog module that instantiates the primitive.

- ECP5 ``EHXPLLL``, as Project Trellis's ``ecppll``: f_out = f_in / CLKI_DIV * CLKFB_DIV (feedback from CLKOP),
  VCO = f_out * CLKOP_DIV; CLKI_DIV 1..128, CLKFB_DIV 1..80, CLKOP_DIV 1..128; input 8..400 MHz, PFD
  3.125..400 MHz, VCO 400..800 MHz, output 10..400 MHz. Of the dividers that give one frequency, the VCO
  nearest 600 MHz, and CLKOP_CPHASE as ecppll writes it.
- iCE40 ``SB_PLL40_PAD`` (``SB_PLL40_2_PAD`` when logic also runs from the oscillator, ``SB_PLL40_CORE`` when
  the clock does not come straight from a PLL-capable pin), as
  IceStorm's ``icepll``: FEEDBACK_PATH "SIMPLE", f_out = f_in / (DIVR + 1) * (DIVF + 1) / 2^DIVQ; DIVR 0..15,
  DIVF 0..127, DIVQ 1..6; input and PFD 10..133 MHz, VCO 533..1066 MHz, output 16..275 MHz; FILTER_RANGE
  from the PFD.
- Gowin ``rPLL`` of the GW1NR-9C (C6/I5), as apicula's ``gowin_pll``: CLKOUT = FCLKIN * (FBDIV_SEL + 1) /
  (IDIV_SEL + 1), VCO = CLKOUT * ODIV_SEL; IDIV_SEL and FBDIV_SEL 0..63, ODIV_SEL one of 2, 4, 8, 16, 32,
  48 .. 128; input and PFD 3..400 MHz, VCO strictly within 400..1200 MHz, CLKOUT strictly within
  3.125..600 MHz (Gowin's DS117 data sheet, as apicula quotes it).

:func:`pll_config` picks the highest achievable frequency at or below the request (a design timed for the
request also meets any lower clock); the arithmetic is exact (fractions of Hz), so a request the PLL can meet
exactly is met exactly. A request equal to the oscillator's frequency needs no PLL: :func:`pll_verilog` then
writes a pass-through module.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Iterator

from onebit.errors import ConfigError
from onebit.hw.idents import IDENT, KEYWORDS

MHZ = 1_000_000
FAMILIES = ("ecp5", "ice40", "gowin")
GOWIN_DEVICE = "GW1NR-9C"
ECP5_VCO_TARGET = 600 * MHZ  # ecppll prefers the VCO nearest this among equal outputs
GOWIN_ODIVS = (2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128)
#: iCE40 parameters that are bit vectors (widths as icepll writes them)
ICE40_BITS = {"DIVR": 4, "DIVF": 7, "DIVQ": 3, "FILTER_RANGE": 3}


@dataclass(frozen=True)
class PLL:
    """A PLL configuration: ``fout_hz`` is what it achieves; ``params`` are the primitive's parameters (none for
    a pass-through, where ``fout_hz == fin_hz``). ``primitive``: the family's (SB_PLL40_PAD on iCE40, whose
    parameters SB_PLL40_CORE takes too), None for a pass-through."""

    family: str
    fin_hz: float
    fout_hz: float
    params: tuple[tuple[str, int | str], ...]

    @property
    def primitive(self) -> str | None:
        return LIMITS[self.family].primitive if self.params else None


@dataclass(frozen=True)
class Span:
    """A frequency range in Hz, each end closed unless marked open."""

    low: Fraction
    high: Fraction
    open_ends: bool = False

    def __contains__(self, f: Fraction) -> bool:
        if self.open_ends:
            return self.low < f < self.high
        return self.low <= f <= self.high

    def text(self) -> str:
        return f"{_mhz(self.low)}..{_mhz(self.high)} MHz" + (" (ends excluded)" if self.open_ends else "")


def _span(low_mhz: str | int, high_mhz: str | int, open_ends: bool = False) -> Span:
    return Span(Fraction(low_mhz) * MHZ, Fraction(high_mhz) * MHZ, open_ends)


@dataclass(frozen=True)
class Limits:
    primitive: str
    fin: Span
    pfd: Span
    vco: Span
    fout: Span


LIMITS = {
    "ecp5": Limits("EHXPLLL", fin=_span(8, 400), pfd=_span("3.125", 400), vco=_span(400, 800),
                   fout=_span(10, 400)),
    "ice40": Limits("SB_PLL40_PAD", fin=_span(10, 133), pfd=_span(10, 133), vco=_span(533, 1066),
                    fout=_span(16, 275)),
    "gowin": Limits("rPLL", fin=_span(3, 400), pfd=_span(3, 400), vco=_span(400, 1200, open_ends=True),
                    fout=_span("3.125", 600, open_ends=True)),
}


# ----------------------------------------------------------------------------------------------- the search

def pll_config(family: str, fin_hz: float, fout_hz: float) -> PLL:
    """The PLL of ``family`` that turns ``fin_hz`` into the highest frequency at or below ``fout_hz``.

    ConfigError (``param="clock_mhz"``) if ``fout_hz`` is out of the PLL's reach from ``fin_hz``, naming the
    reachable range; ``fout_hz == fin_hz`` is always possible (no PLL)."""
    if family not in LIMITS:
        raise ConfigError(f"family: expected one of {', '.join(FAMILIES)}, got {family!r}", param="family")
    _check_hz("fin_hz", fin_hz)
    _check_hz("clock_mhz", fout_hz)
    if fout_hz == fin_hz:
        return PLL(family, float(fin_hz), float(fin_hz), ())
    limits = LIMITS[family]
    fin, request = Fraction(fin_hz), Fraction(fout_hz)
    if fin not in limits.fin:
        raise ConfigError(f"clock_mhz: {_mhz(request)} MHz needs the {family} PLL ({limits.primitive}), which takes "
                          f"a {limits.fin.text()} input clock; this clock is {_mhz(fin)} MHz (clock_mhz="
                          f"{_mhz(fin)} needs no PLL)", param="clock_mhz")
    options = _options(family, fin)
    lowest, highest = min(o[0] for o in options), max(o[0] for o in options)
    if not lowest <= request <= highest:
        raise ConfigError(f"clock_mhz: {_mhz(request)} MHz is out of reach of the {limits.primitive} from "
                          f"{_mhz(fin)} MHz: expected {_mhz(lowest)}..{_mhz(highest)} MHz (or {_mhz(fin)}, "
                          f"the clock itself, without a PLL)", param="clock_mhz")
    fout, _, params = _best(o for o in options if o[0] <= request)
    return PLL(family, float(fin_hz), float(fout), params)


def _check_hz(param: str, hz) -> None:
    number = isinstance(hz, (int, float)) and not isinstance(hz, bool)
    if not (number and -1e300 < hz < 1e300 and hz > 0):  # a comparison with nan is false
        shown = f"{hz / MHZ!r} MHz" if number and -1e300 < hz < 1e300 else repr(hz)[:40]
        raise ConfigError(f"{param}: expected a positive frequency, got {shown}", param=param)


def _best(options) -> tuple[Fraction, Fraction, tuple]:
    """The highest output; among equal ones the lowest tie-break key, then the first in the tool's loop order."""
    best = None
    for option in options:
        if best is None or option[0] > best[0] or (option[0] == best[0] and option[1] < best[1]):
            best = option
    return best


@lru_cache(maxsize=64)
def _options(family: str, fin: Fraction) -> tuple[tuple[Fraction, Fraction, tuple], ...]:
    """Every legal configuration from ``fin`` as (output, tie-break key, params), in the tool's loop order."""
    search = {"ecp5": _ecp5_options, "ice40": _ice40_options, "gowin": _gowin_options}[family]
    return tuple(search(fin, LIMITS[family]))


def _ecp5_options(fin: Fraction, limits: Limits) -> Iterator[tuple[Fraction, Fraction, tuple]]:
    for clki_div in range(1, 129):
        pfd = fin / clki_div
        if pfd not in limits.pfd:
            continue
        for clkfb_div in range(1, 81):
            fout = pfd * clkfb_div
            clkop_div = _ecp5_output_divider(fout, limits.vco)
            if fout not in limits.fout or clkop_div is None:
                continue
            vco = fout * clkop_div
            yield fout, abs(vco - ECP5_VCO_TARGET), _ecp5_params(fin, clki_div, clkfb_div, clkop_div)


def _ecp5_output_divider(fout: Fraction, vco: Span) -> int | None:
    """The CLKOP_DIV in 1..128 that puts the VCO in range and nearest 600 MHz (the smaller on a tie)."""
    lowest, highest = max(1, math.ceil(vco.low / fout)), min(128, math.floor(vco.high / fout))
    if lowest > highest:
        return None
    near = ECP5_VCO_TARGET / fout
    candidates = {min(max(d, lowest), highest) for d in (math.floor(near), math.ceil(near))}
    return min(sorted(candidates), key=lambda d: abs(fout * d - ECP5_VCO_TARGET))


def _ecp5_params(fin: Fraction, clki_div: int, clkfb_div: int, clkop_div: int) -> tuple:
    return (("PLLRST_ENA", "DISABLED"), ("INTFB_WAKE", "DISABLED"), ("STDBY_ENABLE", "DISABLED"),
            ("DPHASE_SOURCE", "DISABLED"), ("OUTDIVIDER_MUXA", "DIVA"), ("OUTDIVIDER_MUXB", "DIVB"),
            ("OUTDIVIDER_MUXC", "DIVC"), ("OUTDIVIDER_MUXD", "DIVD"), ("CLKI_DIV", clki_div),
            ("CLKOP_ENABLE", "ENABLED"), ("CLKOP_DIV", clkop_div),
            ("CLKOP_CPHASE", _ecppll_cphase(float(fin) / MHZ, clki_div, clkfb_div, clkop_div)),
            ("CLKOP_FPHASE", 0), ("FEEDBK_PATH", "CLKOP"), ("CLKFB_DIV", clkfb_div))


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _ecppll_cphase(fin_mhz: float, clki_div: int, clkfb_div: int, clkop_div: int) -> int:
    """CLKOP_CPHASE exactly as ecppll computes it (half an output period in VCO cycles, "Lattice seems to do
    this"), in its single-precision arithmetic: 2 for CLKOP_DIV 6, not 3."""
    pfd = _f32(_f32(fin_mhz) / clki_div)
    vco = _f32(_f32(pfd * clkfb_div) * clkop_div)
    fout = _f32(vco / clkop_div)
    ns_phase = _f32(1 / (fout * 1e6) * 0.5)
    return int(ns_phase * (vco * 1e6))


def _ice40_options(fin: Fraction, limits: Limits) -> Iterator[tuple[Fraction, Fraction, tuple]]:
    for divr in range(16):
        pfd = fin / (divr + 1)
        if pfd not in limits.pfd:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if vco not in limits.vco:
                continue
            for divq in range(1, 7):
                fout = vco / 2 ** divq
                if fout in limits.fout:
                    yield fout, Fraction(0), (("FEEDBACK_PATH", "SIMPLE"), ("DIVR", divr), ("DIVF", divf),
                                              ("DIVQ", divq), ("FILTER_RANGE", _ice40_filter_range(pfd)))


def _ice40_filter_range(pfd: Fraction) -> int:
    """icepll's loop filter setting for the PFD frequency."""
    for setting, below_mhz in enumerate((17, 26, 44, 66, 101), start=1):
        if pfd < below_mhz * MHZ:
            return setting
    return 6


def _gowin_options(fin: Fraction, limits: Limits) -> Iterator[tuple[Fraction, Fraction, tuple]]:
    for idiv_sel in range(64):
        pfd = fin / (idiv_sel + 1)
        if pfd not in limits.pfd:
            continue
        for fbdiv_sel in range(64):
            fout = pfd * (fbdiv_sel + 1)
            odiv_sel = next((d for d in GOWIN_ODIVS if fout * d in limits.vco), None)
            if fout in limits.fout and odiv_sel is not None:
                yield fout, Fraction(0), _gowin_params(fin, idiv_sel, fbdiv_sel, odiv_sel)


def _gowin_params(fin: Fraction, idiv_sel: int, fbdiv_sel: int, odiv_sel: int) -> tuple:
    return (("FCLKIN", _mhz(fin)), ("DYN_IDIV_SEL", "false"), ("IDIV_SEL", idiv_sel), ("DYN_FBDIV_SEL", "false"),
            ("FBDIV_SEL", fbdiv_sel), ("DYN_ODIV_SEL", "false"), ("ODIV_SEL", odiv_sel),
            ("CLKFB_SEL", "internal"), ("DYN_SDIV_SEL", 2), ("CLKOUTD_SRC", "CLKOUT"), ("CLKOUTD3_SRC", "CLKOUT"),
            ("DEVICE", GOWIN_DEVICE))


def _mhz(hz) -> str:
    return f"{float(hz) / MHZ:.6f}".rstrip("0").rstrip(".")


# ------------------------------------------------------------------------------------------------- the module

def pll_verilog(pll: PLL, module: str = "onebit_pll", *, pad: bool = True, reference: bool = False) -> str:
    """A Verilog module ``module (input wire clk_in, output wire clk_out, output wire locked)`` instantiating
    the PLL primitive with ``pll.params`` (a pass-through with ``locked = 1`` when there are none).

    iCE40: ``pad`` (default) feeds the PLL from PACKAGEPIN, which must come straight from a PLL-capable pin
    (the iCEBreaker's 12 MHz pin 35 is one); that pin then drives nothing but the PLL (nextpnr: "can only drive
    PLL"), and SB_PLL40_CORE cannot be placed beside it on the UP5K either. ``pad=False``: SB_PLL40_CORE, fed
    from the fabric.

    ``reference``: the module also has ``output wire clk_ref``, the oscillator's clock for logic that runs from it
    (the host link): on iCE40 with ``pad`` it comes from SB_PLL40_2_PAD's PLLOUTGLOBALA (the only way to use
    the pad's clock beside the PLL), elsewhere it is ``clk_in``."""
    if IDENT.fullmatch(module) is None or module in KEYWORDS:
        raise ConfigError(f"module: expected a Verilog identifier, got {module!r}", param="module")
    ports = ["    input  wire clk_in", "    output wire clk_out", *(["    output wire clk_ref"] if reference else []),
             "    output wire locked"]
    header = f"module {module} (\n" + ",\n".join(ports) + "\n);"
    primitive = _primitive(pll, pad, reference)
    if not pll.params:
        body = ["    // the requested clock is the oscillator's: no PLL", "    assign clk_out = clk_in;",
                "    assign locked = 1'b1;"]
        summary = f"pass-through at {_mhz(pll.fin_hz)} MHz"
    else:
        body = {"ecp5": _ecp5_instance, "ice40": _ice40_instance, "gowin": _gowin_instance}[pll.family](pll, primitive)
        summary = f"{primitive} from {_mhz(pll.fin_hz)} MHz to {_mhz(pll.fout_hz)} MHz"
    if reference and primitive != "SB_PLL40_2_PAD":
        body.append("    assign clk_ref = clk_in;")
    return "\n".join([f"// Generated by onebit: {summary}", "`default_nettype none", header, *body, "endmodule",
                      "`default_nettype wire", ""])


def _primitive(pll: PLL, pad: bool, reference: bool) -> str | None:
    if not pll.params:
        return None
    if pll.family == "ice40":
        return ("SB_PLL40_2_PAD" if reference else "SB_PLL40_PAD") if pad else "SB_PLL40_CORE"
    return LIMITS[pll.family].primitive


def _parameters(pll: PLL) -> str:
    lines = [f"        .{name}({_param_value(pll.family, name, value)})" for name, value in pll.params]
    return ",\n".join(lines)


def _param_value(family: str, name: str, value) -> str:
    if IDENT.fullmatch(name) is None:
        raise ConfigError(f"PLL parameter name {name!r} is not a Verilog identifier")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"PLL parameter {name}: expected an integer or a string, got {value!r}")
    if isinstance(value, str):
        if not value or any(not (c.isascii() and (c.isalnum() or c in "_./-")) for c in value):
            raise ConfigError(f"PLL parameter {name}: {value!r} holds more than letters, digits and '_./-'")
        return f'"{value}"'
    if family == "ice40" and name in ICE40_BITS:
        width = ICE40_BITS[name]
        if not 0 <= value < 2 ** width:
            raise ConfigError(f"PLL parameter {name}: {value} does not fit {width} bits")
        return f"{width}'b{value:0{width}b}"
    return str(int(value))


def _ecp5_instance(pll: PLL, primitive: str) -> list[str]:
    attrs = (f'FREQUENCY_PIN_CLKI="{_mhz(pll.fin_hz)}"', f'FREQUENCY_PIN_CLKOP="{_mhz(pll.fout_hz)}"',
             'ICP_CURRENT="12"', 'LPF_RESISTOR="8"', 'MFG_ENABLE_FILTEROPAMP="1"', 'MFG_GMCREF_SEL="2"')
    return ["    " + " ".join(f"(* {a} *)" for a in attrs[:2]), "    " + " ".join(f"(* {a} *)" for a in attrs[2:]),
            f"    EHXPLLL #(\n{_parameters(pll)}\n    ) pll (",
            "        .RST(1'b0), .STDBY(1'b0), .CLKI(clk_in), .CLKOP(clk_out), .CLKFB(clk_out), .CLKINTFB(),",
            "        .PHASESEL0(1'b0), .PHASESEL1(1'b0), .PHASEDIR(1'b1), .PHASESTEP(1'b1), .PHASELOADREG(1'b1),",
            "        .PLLWAKESYNC(1'b0), .ENCLKOP(1'b0), .LOCK(locked)",
            "    );"]


def _ice40_instance(pll: PLL, primitive: str) -> list[str]:
    ports = {"SB_PLL40_PAD": ".PACKAGEPIN(clk_in), .PLLOUTCORE(clk_out)",
             "SB_PLL40_2_PAD": ".PACKAGEPIN(clk_in), .PLLOUTGLOBALA(clk_ref), .PLLOUTGLOBALB(clk_out)",
             "SB_PLL40_CORE": ".REFERENCECLK(clk_in), .PLLOUTCORE(clk_out)"}[primitive]
    return [f"    {primitive} #(\n{_parameters(pll)}\n    ) pll (",
            f"        {ports}, .LOCK(locked), .RESETB(1'b1), .BYPASS(1'b0)",
            "    );"]


def _gowin_instance(pll: PLL, primitive: str) -> list[str]:
    return [f"    rPLL #(\n{_parameters(pll)}\n    ) pll (",
            "        .CLKIN(clk_in), .CLKOUT(clk_out), .LOCK(locked), .CLKOUTP(), .CLKOUTD(), .CLKOUTD3(),",
            "        .RESET(1'b0), .RESET_P(1'b0), .CLKFB(1'b0), .FBDSEL(6'b0), .IDSEL(6'b0), .ODSEL(6'b0),",
            "        .PSDA(4'b0), .DUTYDA(4'b0), .FDLY(4'b0)",
            "    );"]
