"""Stages with input stamps: a stage runs only when what it depends on has changed.

Each stage names the configuration it depends on, the files it reads and the files it writes (paths inside the
run folder). Its key is a hash of those configuration values and of the contents of the files it reads. When it
finishes, ``.stamps/<stage>.json`` records the key, the hashes of what it wrote and its result (a small JSON
summary). The next run skips a stage whose key is unchanged and whose outputs are still the ones it wrote. A
stage that was interrupted has a stamp marked ``running``; when it runs again with the same key,
``Context.resuming`` is true, and a ``resumable`` stage (training) continues from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from onebit.atomic import make_folder, write_json
from onebit.errors import ConfigError, renamed

STAMPS = ".stamps"
LOCK = ".lock"


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[[Context], dict]
    config: tuple[str, ...] = ()  # "section" or "section.key"
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    summary: Callable[[dict], str] | None = None  # the log's line about a result
    resumable: bool = False  # continues its own partial work after an interruption (training)
    params: dict[str, str] = field(default_factory=dict)  # library parameter -> the config key it is given
    # onebit's own subpackages whose source (Python, Verilog, C++) is part of the key: a changed generator
    # rebuilds what it generates, even within one version
    code: tuple[str, ...] = ()


@dataclass
class Context:
    cfg: dict
    out: Path
    log: Callable[[str], None] = lambda s: None
    quiet: bool = False
    resuming: bool = False
    results: dict = field(default_factory=dict)  # stage name -> its result (this run's or the stamp's)
    _hashes: dict = field(default_factory=dict)

    def path(self, rel: str) -> Path:
        return self.out / rel

    def sublog(self, line: str) -> None:
        """A step inside a stage (indented; left out with ``quiet``)."""
        if not self.quiet:
            self.log("      " + line.strip())

    def file_hash(self, rel: str) -> str | None:
        """sha256 of a file in the run folder (None if missing); memoised by size and modification time."""
        p = self.path(rel)
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        memo = (rel, st.st_size, st.st_mtime_ns)
        if memo not in self._hashes:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            self._hashes[memo] = h.hexdigest()
        return self._hashes[memo]


def _pick(cfg: dict, item: str):
    section, _, key = item.partition(".")
    return cfg[section][key] if key else cfg[section]


CODE_SUFFIXES = (".py", ".v", ".sv", ".cpp", ".h")


@functools.lru_cache(maxsize=None)
def code_hash(subpackage: str) -> str:
    """A hash of the source files of one of onebit's subpackages (e.g. "hw", "export/dataflow")."""
    root = Path(__file__).resolve().parent.parent / subpackage
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.suffix in CODE_SUFFIXES and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def stage_key(stage: Stage, ctx: Context) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        onebit_version = version("onebit")
    except PackageNotFoundError:
        onebit_version = "unknown"
    parts = {"stage": stage.name, "onebit": onebit_version, "config": {c: _pick(ctx.cfg, c) for c in stage.config},
             "reads": {r: ctx.file_hash(r) for r in stage.reads}}
    if stage.code:
        parts["code"] = {c: code_hash(c) for c in stage.code}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def stamp_path(ctx: Context, name: str) -> Path:
    return ctx.path(STAMPS) / f"{name}.json"


def read_stamp(path: Path) -> dict | None:
    try:
        stamp = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _up_to_date(stamp: dict | None, key: str, stage: Stage, ctx: Context) -> bool:
    if not stamp or stamp.get("status") != "done" or stamp.get("key") != key:
        return False
    written = stamp.get("writes", {})
    return all(written.get(w) is not None and ctx.file_hash(w) == written.get(w) for w in stage.writes)


def run_stage(stage: Stage, ctx: Context, tag: str) -> dict:
    """Run one stage unless it is up to date; returns its status row (name, status, seconds)."""
    key = stage_key(stage, ctx)
    path = stamp_path(ctx, stage.name)
    stamp = read_stamp(path)
    if _up_to_date(stamp, key, stage, ctx):
        ctx.results[stage.name] = stamp.get("result", {})
        ctx.log(f"{tag}: skipped (inputs unchanged)")
        return {"stage": stage.name, "status": "skipped", "seconds": stamp.get("seconds")}
    ctx.resuming = bool(stamp and stamp.get("status") == "running" and stamp.get("key") == key)
    write_json(path, {"stage": stage.name, "key": key, "status": "running", "started": _now()})
    ctx.log(f"{tag}: {'resuming' if ctx.resuming and stage.resumable else 'running'}")
    t0 = time.perf_counter()
    with renamed(stage.params):  # an error about a library parameter names the config key it came from
        result = stage.fn(ctx)
    seconds = round(time.perf_counter() - t0, 2)
    writes = {w: ctx.file_hash(w) for w in stage.writes}
    missing = [w for w, h in writes.items() if h is None]
    if missing:
        raise RuntimeError(f"stage {stage.name} did not write {', '.join(missing)}")
    write_json(path, {"stage": stage.name, "key": key, "status": "done", "seconds": seconds, "finished": _now(),
                      "writes": writes, "result": result})
    ctx.results[stage.name] = result
    line = stage.summary(result) if stage.summary else ""
    ctx.log(f"{tag}: done in {seconds:.1f} s" + (f"; {line}" if line else ""))
    return {"stage": stage.name, "status": "ran", "seconds": seconds}


def run_stages(stages: list[Stage], ctx: Context, until: str | None = None) -> list[dict]:
    """Run ``stages`` in order (stopping after ``until``); returns one status row per stage reached."""
    rows = []
    for i, stage in enumerate(stages, 1):
        rows.append(run_stage(stage, ctx, f"[{i}/{len(stages)}] {stage.name}"))
        if stage.name == until:
            break
    return rows


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@contextlib.contextmanager
def locked(out: Path):
    """Hold ``out/.lock`` so that two runs never write the same folder at once."""
    make_folder(out)
    with open(out / LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"out {out}: another onebit run is using this folder", param="out") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
