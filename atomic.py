"""Atomic file writes: a reader never sees a half-written checkpoint, metrics file or plot."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``."""
    path = Path(path)
    with _writable(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes the file 0600; give it the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            with _writable(path):
                f.flush()
                os.fsync(f.fileno())
        with _writable(path):
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def make_folder(path: str | os.PathLike) -> Path:
    """``path`` as a folder (its parents too), or OutputError naming it if the system refuses."""
    path = Path(path)
    with _writable(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _writable(path: Path):
    """The system's refusal to create or write ``path`` (no permission, a read-only or full disk, a parent that
    cannot hold files) as the one-line error of an output the user can change."""
    from onebit.errors import OutputError

    try:
        yield
    except OSError as e:
        raise OutputError(f"{path}: cannot create or write it ({e.strerror or type(e).__name__})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def check_output(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (), param: str = "out",
                 folder: bool = False) -> Path:
    """Refuse an output ``path`` (a file, or with ``folder`` a folder) before anything is written: one that exists
    as the other kind, one under an existing file, or one that is one of the command's own ``inputs``.
    Raises ConfigError naming ``param``; returns the path."""
    from onebit.errors import ConfigError

    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        want, got = ("a folder", "a file") if folder else ("a file", "a folder")
        raise ConfigError(f"{param} {path}: is {got}; expected {want}", param=param)
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{param} {path}: {parent} is a file, not a folder", param=param)
    for source in inputs:
        if source is not None and Path(source).exists() and path.exists() and os.path.samefile(path, source):
            raise ConfigError(f"{param} {path}: is this command's input {source}; writing it would destroy it, "
                              f"choose another output", param=param)
    return path
