"""Shared fixtures: the `onebit` command run as a real process, and one trained run reused by several files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

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
    trainer's global settings (deterministic algorithms, the torch seed) stay out of this process.
    """
    root = tmp_path_factory.mktemp("trained")
    out = root / "tiny-digits"
    proc = run_onebit("train", "--out", out, "--json", "-q", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


@pytest.fixture
def keep_torch_globals():
    """For tests that construct a Trainer in this process: restore the global torch state it changes."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    rng = torch.get_rng_state()
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_rng_state(rng)
