"""Helpers shared by the benchmark scripts: machine description and JSON output."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def command_line() -> str:
    """The exact command that produced a result (interpreter, script and arguments)."""
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def cpu_model() -> str:
    """The CPU's marketing name (``platform.processor()`` is often empty or just the ISA on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str | None = None) -> dict:
    """Everything about the machine a figure depends on."""
    import torch

    try:
        import onebit

        onebit_version = getattr(onebit, "__version__", None)
    except ImportError:  # pragma: no cover
        onebit_version = None
    try:
        import brevitas

        brevitas_version = brevitas.__version__
    except ImportError:  # pragma: no cover
        brevitas_version = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        affinity = None
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "brevitas": brevitas_version,
        "onebit": onebit_version,
        "cuda_available": torch.cuda.is_available(),
    }
    if device is not None:
        info["device"] = device
        if device.startswith("cuda") and torch.cuda.is_available():
            dev = torch.device(device)
            info["device_name"] = torch.cuda.get_device_name(dev)
            info["cuda"] = torch.version.cuda
            info["cudnn"] = torch.backends.cudnn.version()
            props = torch.cuda.get_device_properties(dev)
            info["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        else:
            info["device_name"] = cpu_model()
    return info


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def format_table(headers: list[str], rows: list[list], markdown: bool = False) -> str:
    """A plain-text (or GitHub markdown) table; numbers already formatted by the caller."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if markdown:
        out = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
               "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    else:
        out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
               "  ".join("-" * w for w in widths)]
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)
