"""What the command line front ends load the same way: ``.npy`` arrays, JSON objects (FIFO depths, folding configs),
and the flag that stands for a library parameter.

Errors raised here name the parameter (``OnebitError(param=...)``), as library errors do; ``onebit.cli.main``
prints them with the flag of the invoked command's option of that name (:func:`flag_of`).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from onebit.errors import ConfigError, GraphError, OnebitError



def load_npy(path: str | Path, param: str = "inputs"):
    """A ``.npy`` array, read without pickles."""
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise GraphError(f"{param} {path}: no such file", param=param) from None
    except (OSError, ValueError) as e:
        raise GraphError(f"{param} {path}: not a readable .npy array ({type(e).__name__}: {str(e)[:100]})",
                         param=param) from None


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
