"""Shared fixtures: the `onebit` command run as a real process, and one trained run reused by several files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch


def pytest_configure(config):
    """Under pytest-xdist, each worker's torch takes its share of the cores (the workers run side by side). The
    builds' tool-time history (``$ONEBIT_CACHE``) goes to a scratch folder, not the user's cache."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    if "ONEBIT_CACHE" not in os.environ:
        import tempfile

        os.environ["ONEBIT_CACHE"] = config._onebit_cache = tempfile.mkdtemp(prefix="onebit-test-cache-")


def pytest_unconfigure(config):
    cache = getattr(config, "_onebit_cache", None)
    if cache:
        import shutil

        shutil.rmtree(cache, ignore_errors=True)


def onebit_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "onebit", *map(str, args)]


@pytest.fixture(scope="session")
def run_onebit():
    """Run ``python -m onebit ARGS`` in a child process; returns the CompletedProcess (text mode)."""

    def run(*args: str, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(onebit_command(*args), cwd=cwd, capture_output=True, text=True)

    return run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, run_onebit):
    """The embedded default, exactly as a user runs it: ``onebit train`` (tiny, digits, 30 epochs).

    Returns ``(run folder, the --json summary)``. Trained once per session, in a child process so that the
    trainer's global settings (deterministic algorithms, the torch seed) stay out of this process; under
    pytest-xdist the workers share one run (the first to ask trains it, under a file lock).
    """
    from filelock import FileLock

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    root = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.mktemp("trained")
    out, summary = root / "trained" / "tiny-digits", root / "trained" / "summary.json"
    with FileLock(str(root / "trained.lock")):
        if not summary.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            proc = run_onebit("train", "--out", out, "--json", "-q", cwd=out.parent)
            assert proc.returncode == 0, proc.stderr
            summary.write_text(proc.stdout)
    return out, json.loads(summary.read_text())


@pytest.fixture
def keep_torch_globals():
    """For tests that construct a Trainer in this process: restore the global torch state it changes."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    rng = torch.get_rng_state()
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_rng_state(rng)
