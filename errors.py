"""User-facing errors: one type per kind of mistake, each message names what is wrong and where.

The CLI prints ``error: <message>`` on one line and exits with status 2 for any of these.
"""

from __future__ import annotations

import math
from contextlib import contextmanager


class OnebitError(Exception):
    """Base class for mistakes a user can fix (bad path, flag, file); never a bug in onebit.

    ``param``: the library parameter or config key the message is about (``"clock_mhz"``,
    ``"fold.target_fps"``). Library code names it at the start of the message; a front end that took the
    value from somewhere else (a CLI flag) says so with :meth:`named`, so a user reads the name they typed."""

    def __init__(self, message: str = "", *, param: str | None = None):
        super().__init__(message)
        self.param = param

    def named(self, name: str) -> str:
        """The message with its parameter (if it starts the message) called ``name`` instead."""
        text = str(self)
        if self.param and text.startswith(self.param):
            return name + text[len(self.param):]
        return text

    def rename(self, name: str | None) -> OnebitError:
        """Call the parameter ``name`` from now on (in the message too); ``None``: it names no parameter any more.
        Returns the error, to re-raise it."""
        if name is not None:
            self.args = (self.named(name), *self.args[1:])
        self.param = name
        return self


@contextmanager
def renamed(names: dict[str, str]):
    """Re-raise an OnebitError about a parameter in ``names`` as being about ``names[param]``: a caller that
    passed its own setting (a config key) as a library parameter says which one it was."""
    try:
        yield
    except OnebitError as e:
        if e.param in names:
            e.rename(names[e.param])
        raise


class ConfigError(OnebitError):
    """An architecture name, flag or option value that is not valid."""


class DataError(OnebitError):
    """A dataset path that is missing, or a file that does not have the expected layout."""


class CheckpointError(OnebitError):
    """A run folder or checkpoint file that is missing, corrupt or does not match the model."""


class GraphError(OnebitError):
    """An ONNX/QONNX file that is missing, truncated or corrupt, or an input that does not fit the graph."""


class UnsupportedError(OnebitError):
    """A graph node that cannot be lowered; the message names the node and the reason."""


class FoldingError(OnebitError):
    """A folding (PE/SIMD) request or target that cannot be met."""


class ParityError(OnebitError):
    """Two stages of the pipeline disagree on the same inputs."""


class ToolError(OnebitError):
    """An external tool (Verilator, Yosys, nextpnr) is missing, failed or ran past its time limit."""


class FitError(OnebitError):
    """A design does not fit the chosen FPGA device."""


class OutputError(OnebitError):
    """An output path the system will not let onebit create or write (permissions, a full or read-only disk)."""


class CosimError(OnebitError):
    """The RTL's outputs or cycles differ from the reference executor's or the simulator's."""


def check_positive(param: str, value, *, integer: bool = False, error: type[OnebitError] = ConfigError):
    """``value`` if it is a finite number > 0 (and whole, with ``integer``); else ``error`` naming ``param``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok or (integer and int(value) != value):
        kind = "a positive integer" if integer else "a positive number"
        raise error(f"{param}: expected {kind}, got {value!r}", param=param)
    return value


def one_line(text: str) -> str:
    """``text`` on one line: every line break and other control character (a node name may hold any) written as
    its escape, so a message can neither span lines nor drive the terminal."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _is_number(value, integer: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and (not integer or int(value) == value)


def check_range(param: str, value, *, low=None, high=None, low_open: bool = False, high_open: bool = False,
                integer: bool = False, expected: str | None = None, error: type[OnebitError] = ConfigError):
    """``value`` if it is a finite number (whole, with ``integer``) within ``low``..``high`` (``None``: unbounded;
    ``*_open``: the bound itself excluded); else ``error`` naming ``param`` and the range expected (or
    ``expected``, the words for it)."""
    ok = _is_number(value, integer)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if expected is None:
            bounds = [f"{'>' if low_open else '>='} {low}" if low is not None else "",
                      f"{'<' if high_open else '<='} {high}" if high is not None else ""]
            bounds = " and ".join(b for b in bounds if b)
            expected = ("an integer" if integer else "a number") + (" " + bounds if bounds else "")
        raise error(f"{param}: expected {expected}, got {value!r}", param=param)
    return value


def machine_memory_bytes() -> int | None:
    """This machine's physical memory, or ``None`` where the system does not say."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_memory(param: str, count: int, bytes_each: int, what: str, *, error: type[OnebitError] = ConfigError):
    """Refuse ``count`` items of ``bytes_each`` bytes (``what``: ``"random frames of 8x8x1"``) when they alone would
    need more than this machine's memory; the error names ``param`` and both sizes."""
    have = machine_memory_bytes()
    need = int(count) * int(bytes_each)
    if have is not None and need > have:
        raise error(f"{param}: {count} {what} need {_size(need)}; this machine has {_size(have)}", param=param)
    return count


def _size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024:
            break
    return f"{n:.1f} {unit}"
