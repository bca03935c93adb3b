"""What the command line front ends load the same way: ``.npy`` arrays, JSON objects (FIFO depths, folding configs),
and the flag that stands for a library parameter.

Errors raised here name the parameter (``OnebitError(param=...)``), as library errors do; ``onebit.cli.main``
prints them with the flag of the invoked command's option of that name (:func:`flag_of`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from onebit.errors import ConfigError, GraphError, OnebitError


class FiniteFloat(click.FloatRange):
    """A float option that refuses ``nan`` and ``inf`` (which ``float()`` accepts). Optionally within a range
    (``click.FloatRange``'s ``min``, ``max``, ``min_open``, ``max_open``); the options of onebit's commands leave
    their ranges to the library's checks, so that a value from a configuration file meets the same ones."""

    name = "finite float"

    def convert(self, value, param, ctx):
        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):
            if param is None or param.name is None:
                self.fail(f"{value!r} is not a finite number", param, ctx)
            # as the library's checks word it, so ``onebit.cli.main`` prints it as one line naming the flag
            raise ConfigError(f"{param.name}: expected a finite number, got {value}", param=param.name)
        return super().convert(rv, param, ctx)

    def _describe_range(self) -> str:
        # click writes an open range as "x<=None"; an unbounded one says nothing
        if self.min is None and self.max is None:
            return ""
        return super()._describe_range()

    def get_metavar(self, param, ctx=None) -> str:
        return "FLOAT"


#: what an array of inputs may hold: integers and floats (no booleans, strings, bytes, complex or records)
NUMERIC_KINDS = {"i": "integers", "u": "unsigned integers", "f": "floats"}


def load_npy(path: str | Path, param: str = "inputs"):
    """A ``.npy`` array of real numbers (at least one element, every one finite), read without pickles."""
    import numpy as np

    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise GraphError(f"{param} {path}: no such file", param=param) from None
    except Exception as e:  # numpy's reader raises many kinds on a broken file (EOF, header tokens, sizes)
        raise GraphError(f"{param} {path}: not a readable .npy array ({type(e).__name__}: {str(e)[:100]})",
                         param=param) from None
    if not isinstance(x, np.ndarray):  # np.load returns an NpzFile for a .npz archive
        x.close()
        raise GraphError(f"{param} {path}: a .npz archive; expected one .npy array", param=param)
    if x.dtype.kind not in NUMERIC_KINDS:
        raise GraphError(f"{param} {path}: holds {x.dtype} values; expected real numbers "
                         f"({', '.join(NUMERIC_KINDS.values())})", param=param)
    if x.ndim == 0 or x.size == 0:
        raise GraphError(f"{param} {path}: an array of shape {x.shape}; expected frames (at least one value)",
                         param=param)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise GraphError(f"{param} {path}: value {x[first]} at index {first}; expected finite numbers", param=param)
    return x


def load_json_object(path: str | Path, param: str, what: str, *, error: type[OnebitError] = ConfigError) -> dict:
    """A JSON file holding an object; ``what`` says what it should be (``"a JSON folding config"``)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise error(f"{param} {path}: no such file", param=param) from None
    except (OSError, ValueError) as e:
        raise error(f"{param} {path}: not {what} ({type(e).__name__}: {str(e)[:100]})", param=param) from None
    if not isinstance(data, dict):
        raise error(f"{param} {path}: expected {what} (an object), got {type(data).__name__}", param=param)
    return data


def load_fifo_depths(path: str | Path, param: str = "fifo_depths") -> dict:
    """FIFO depths {tensor | FIFO name | "producer -> consumer" | "default": depth}; the ``fifo_depths`` entry of a
    simulator report (``.sim.json``) is accepted too."""
    data = load_json_object(path, param, "a JSON object of FIFO depths", error=GraphError)
    return data["fifo_depths"] if isinstance(data.get("fifo_depths"), dict) else data


def flag_of(command: click.Command, param: str | None) -> str | None:
    """The long flag of ``command``'s option whose parameter is ``param`` (``"clock_mhz"`` -> ``"--clock-mhz"``)."""
    for p in command.params:
        if isinstance(p, click.Option) and p.name == param:
            return max(p.opts, key=len)
    return None


def stderr_log(quiet: bool):
    """A progress log on stderr (stdout keeps the result), silent with ``quiet`` (e.g. ``--json``)."""
    return (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
