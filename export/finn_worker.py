"""Running FINN+ on a dataflow graph, for cross-checks: in this process, or in another interpreter.

FINN+ (``pip install finn-plus``, checked against 1.6.1) is optional. Its pins conflict with onebit's
(torch 2.13 and brevitas 0.13.4), so it is installed with ``--no-deps`` (DEVELOPERS.md, "FINN+"), either
into onebit's own environment or into a separate one. This module therefore never imports ``finn`` at
module level:

- :func:`finn_execute` / :func:`finn_execute_tensors` run FINN+'s Python execution
  (``finn.core.onnx_exec.execute_onnx``) frame by frame; :func:`finn_exp_cycles` runs FINN+'s
  ``exp_cycles_per_layer`` on a ``SpecializeLayers`` copy. They hand FINN+ the graph as
  :func:`onebit.export.finn_handoff.prepare_for_finn` rewrites it, and run in this process if ``finn``
  imports here, else in the interpreter named by the environment variable ``ONEBIT_FINN_PYTHON`` (which wins
  when set), talking through temporary .onnx/.npy/.json files.

This file is also the worker run inside the FINN+ interpreter (``python -c <runpy> finn_worker.py ...``):
its top level imports only the standard library and numpy.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

#: The part of the ZCU104 (``finn_handoff.BOARDS``), the default for cycle estimates (SpecializeLayers'
#: choice of HLS or RTL depends on the part; the cycle formulas of the layers onebit uses do not).
DEFAULT_PART = "xczu7ev-ffvc1156-2-e"
ENV_PYTHON = "ONEBIT_FINN_PYTHON"
DEFAULT_TIMEOUT_S = 1800
_STDERR_LINES = 15

try:  # the worker runs this file without onebit on the path; there FinnError is a plain RuntimeError
    from onebit.errors import OnebitError, UnsupportedError
except ImportError:  # pragma: no cover - only inside a FINN+ interpreter without onebit
    OnebitError = UnsupportedError = RuntimeError  # type: ignore[misc,assignment]


class FinnError(OnebitError):
    """FINN+ is missing, or failed on a graph (the message carries FINN+'s last error lines)."""


_IN_PROCESS: bool | None = None


def _finn_in_process() -> bool:
    global _IN_PROCESS
    if _IN_PROCESS is None:
        try:
            if importlib.util.find_spec("finn") is None:
                _IN_PROCESS = False
            else:
                import finn.core.onnx_exec  # noqa: F401  (needs FINN+'s rich and termcolor too)
                import finn.transformation.fpgadataflow.specialize_layers  # noqa: F401

                _IN_PROCESS = True
        except Exception:
            _IN_PROCESS = False
    return _IN_PROCESS


def finn_python() -> str | None:
    """The interpreter that runs FINN+: ``None`` for this process, else the path from ``ONEBIT_FINN_PYTHON``.

    Raises FinnError when neither works.
    """
    env = os.environ.get(ENV_PYTHON, "").strip()
    if env:
        if not (Path(env).is_file() and os.access(env, os.X_OK)):
            raise FinnError(f"{ENV_PYTHON}={env}: not an executable Python interpreter")
        return env
    if _finn_in_process():
        return None
    raise FinnError(f"FINN+ not installed; see DEVELOPERS.md (install finn-plus here, or set {ENV_PYTHON} to "
                    f"the python of an environment that has it)")


def finn_available() -> tuple[bool, str]:
    """``(True, where)`` if FINN+ can run (in process or through ``ONEBIT_FINN_PYTHON``), else ``(False, why)``."""
    try:
        python = finn_python()
    except FinnError as e:
        return False, str(e)
    if python is None:
        return True, "in process"
    try:
        proc = subprocess.run([python, "-c", "import finn.core.onnx_exec"], capture_output=True, text=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{ENV_PYTHON}={python}: {e}"
    if proc.returncode != 0:
        return False, f"{ENV_PYTHON}={python} cannot import FINN+: {_tail(proc.stderr, 3)}"
    return True, python


def _tail(text: str, n: int = _STDERR_LINES) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) if lines else "(no output)"


_BOOT = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


def _run_worker(python: str | None, command: str, args: dict, timeout: float) -> None:
    if python is None:
        try:
            WORKERS[command](**args)
        except Exception as e:
            raise FinnError(f"FINN+ {command} failed: {type(e).__name__}: {str(e).strip()[:500]}") from e
        return
    workdir = Path(args["out_path"]).parent
    cmd = [python, "-c", _BOOT, str(Path(__file__).resolve()), command, json.dumps(args)]
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise FinnError(f"FINN+ ({python}) {command}: no result after {timeout:.0f} s; last output: "
                        f"{_tail(err)}") from None
    except OSError as e:
        raise FinnError(f"FINN+ ({python}) {command}: cannot start ({e})") from None
    if proc.returncode != 0:
        raise FinnError(f"FINN+ ({python}) {command} failed (exit {proc.returncode}): {_tail(proc.stderr)}")


def finn_execute_tensors(dataflow_path, frames: np.ndarray, names: list[str] | None = None, *,
                         channelpad: str = "mvau", timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, np.ndarray]:
    """FINN+'s Python execution of the graph on ``frames`` (N, H, W, C), one frame at a time (FINN's sliding
    window is batch 1). Returns ``{tensor: (N, ...)}`` for ``names`` (default: the graph outputs)."""
    from onebit.export.dataflow.graph import check_frames
    from onebit.export.finn_handoff import prepare_for_finn

    python = finn_python()
    model = prepare_for_finn(dataflow_path, channelpad=channelpad)
    x = check_frames(model, np.asarray(frames), source="frames")
    names = list(names) if names is not None else [o.name for o in model.graph.output]
    known = set(model.get_all_tensor_names())
    missing = [n for n in names if n not in known]
    if missing:
        raise UnsupportedError(f"names: no tensors {missing} in the graph", param="names")
    with tempfile.TemporaryDirectory(prefix="onebit-finn-") as tmp:
        tmp = Path(tmp)
        model.save(str(tmp / "model.onnx"))
        np.save(tmp / "frames.npy", x)
        _run_worker(python, "execute", {"model_path": str(tmp / "model.onnx"), "frames_path": str(tmp / "frames.npy"),
                                "names": names, "out_path": str(tmp / "out.npz")}, timeout)
        with np.load(tmp / "out.npz", allow_pickle=False) as data:
            return {name: data[f"t{i}"] for i, name in enumerate(names)}


def finn_execute(dataflow_path, frames: np.ndarray, *, channelpad: str = "mvau",
                 timeout: float = DEFAULT_TIMEOUT_S) -> np.ndarray:
    """FINN+'s Python execution of the graph's (first) output on ``frames`` (N, H, W, C): shape (N, ...)."""
    from onebit.export.graphs import load_onnx

    model = dataflow_path if hasattr(dataflow_path, "graph") else load_onnx(dataflow_path)
    name = model.graph.output[0].name
    return finn_execute_tensors(dataflow_path, frames, [name], channelpad=channelpad, timeout=timeout)[name]


def finn_exp_cycles(dataflow_path, fpga_part: str = DEFAULT_PART, *, channelpad: str = "mvau",
                    timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, dict]:
    """FINN+'s ``exp_cycles_per_layer`` on a ``SpecializeLayers(fpga_part)`` copy of the graph.

    Returns ``{onebit node name: {"finn_op": "MVAU_hls", "cycles": n}}``, matched through the nodes' output
    tensors (specialization renames the nodes). A ChannelPad appears as its MVAU substitute; with
    ``channelpad="keep"`` it is absent (FINN+ does not visit onebit's own ops).
    """
    from onebit.export.finn_handoff import prepare_for_finn

    python = finn_python()
    model = prepare_for_finn(dataflow_path, channelpad=channelpad)
    with tempfile.TemporaryDirectory(prefix="onebit-finn-") as tmp:
        tmp = Path(tmp)
        model.save(str(tmp / "model.onnx"))
        _run_worker(python, "exp_cycles", {"model_path": str(tmp / "model.onnx"), "fpga_part": fpga_part,
                                   "out_path": str(tmp / "out.json")}, timeout)
        return json.loads((tmp / "out.json").read_text())


# ----- the worker: runs where FINN+ is importable (this process or ONEBIT_FINN_PYTHON) -----------------------
def _require_onebit_ops(model) -> None:
    if any(n.domain.startswith("onebit.") for n in model.graph.node) and importlib.util.find_spec("onebit") is None:
        raise RuntimeError("the graph holds onebit's own ops (ChannelPad), but this FINN+ interpreter cannot "
                           "import onebit; use channelpad='mvau' or install onebit here")


def _worker_execute(model_path: str, frames_path: str, names: list[str], out_path: str) -> None:
    from finn.core.onnx_exec import execute_onnx
    from qonnx.core.modelwrapper import ModelWrapper

    model = ModelWrapper(model_path)
    _require_onebit_ops(model)
    frames = np.load(frames_path, allow_pickle=False)
    in_name = model.graph.input[0].name
    full = any(n not in [o.name for o in model.graph.output] for n in names)
    got: dict[str, list] = {n: [] for n in names}
    for frame in frames:  # FINN's ConvolutionInputGenerator is batch 1
        ctx = execute_onnx(model, {in_name: frame[None].astype(np.float32)}, return_full_exec_context=full)
        for n in names:
            got[n].append(np.asarray(ctx[n], np.float32))
    np.savez(out_path, **{f"t{i}": np.concatenate(got[n]) for i, n in enumerate(names)})


def _worker_exp_cycles(model_path: str, fpga_part: str, out_path: str) -> None:
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from qonnx.core.modelwrapper import ModelWrapper

    model = ModelWrapper(model_path)
    by_output = {n.output[0]: n.name for n in model.graph.node}
    special = model.transform(SpecializeLayers(fpga_part))
    cycles = special.analysis(exp_cycles_per_layer)
    result = {by_output[n.output[0]]: {"finn_op": n.op_type, "cycles": int(cycles[n.name])}
              for n in special.graph.node if n.name in cycles}
    Path(out_path).write_text(json.dumps(result, indent=1))


WORKERS = {"execute": _worker_execute, "exp_cycles": _worker_exp_cycles}


if __name__ == "__main__":  # the worker entry: finn_worker.py COMMAND JSON-ARGS
    WORKERS[sys.argv[1]](**json.loads(sys.argv[2]))
