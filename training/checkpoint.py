"""Run folders and checkpoints.

A run folder holds ``config.json`` (how it was trained), ``checkpoint.pt`` (the latest epoch: model,
optimizer, schedule position, RNG states, metrics; rewritten atomically every epoch), ``metrics.jsonl``,
``curves.png`` and, after ``onebit pack``, ``packed.npz``. Checkpoints contain only tensors and plain
Python values and are read with ``torch.load(weights_only=True)``: opening a file never runs its code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from onebit.atomic import write_bytes
from onebit.errors import CheckpointError, ConfigError
from onebit.training.config import ArchConfig
from onebit.training.model import WRN, build_model

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
CURVES = "curves.png"
PACKED = "packed.npz"


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; expected a file written by 'onebit train'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refused: the file holds objects other than tensors and plain values "
                              f"(a onebit checkpoint never does; it may run code when loaded)") from None
    except Exception as e:  # what torch raises on garbage bytes varies: zip, EOF, Key/Index errors ...
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable onebit checkpoint ({first})") from None
    if not isinstance(state, dict) or "model" not in state or "arch" not in state:
        raise CheckpointError(f"{path}: not a onebit checkpoint; expected keys 'model' and 'arch'")
    for key in ("arch", "model", "train"):
        if key in state and not isinstance(state[key], dict):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(state[key]).__name__}; expected a dict")
    return state


def resolve_checkpoint(run: str | Path) -> Path:
    """A run folder or a checkpoint file -> the checkpoint file."""
    run = Path(run)
    if run.is_dir():
        return run / CHECKPOINT
    if run.exists():
        return run
    raise CheckpointError(f"{run}: no such run folder or checkpoint")


def model_from_state(state: dict, source: Path | str = "checkpoint") -> WRN:
    """The WRN of a checkpoint's architecture with its weights; CheckpointError naming ``source`` and the first
    tensor that is missing, extra or of another shape."""
    try:
        arch = ArchConfig.from_dict(state["arch"])
    except ConfigError as e:
        raise CheckpointError(f"{source}: its architecture is not valid: {e}") from None
    model = build_model(arch)
    check_weights(state["model"], model.state_dict(), f"{source}: weights do not fit {arch.describe()}")
    model.load_state_dict(state["model"])
    return model.eval()


def check_weights(weights: dict, expected: dict, where: str) -> None:
    """``weights`` (a loaded state dict) has exactly the tensors of ``expected``, each of its shape."""
    if not isinstance(weights, dict):
        raise CheckpointError(f"{where}: the weights are a {type(weights).__name__}, expected a dict of tensors")
    for name, ref in expected.items():
        if name not in weights:
            raise CheckpointError(f"{where}: tensor {name!r} is missing")
        value = weights[name]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where}: {name!r} is a {type(value).__name__}, expected a tensor")
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(f"{where}: tensor {name!r} has shape {tuple(value.shape)}, expected "
                                  f"{tuple(ref.shape)}")
    extra = [name for name in weights if name not in expected]
    if extra:
        raise CheckpointError(f"{where}: unexpected tensor {str(extra[0])!r} ({len(extra)} in all)")


def load_trained(run: str | Path) -> tuple[WRN, dict]:
    """A run folder or checkpoint file -> (the trained WRN in eval mode, the checkpoint state). A run folder's
    ``config.json`` must be a valid run configuration of the checkpoint's architecture."""
    path = resolve_checkpoint(run)
    state = load_checkpoint(path)
    model = model_from_state(state, path)
    if Path(run).is_dir() and (Path(run) / CONFIG).exists():
        check_run_config(Path(run), state)
    return model, state


def check_run_config(run: Path, state: dict) -> None:
    """CheckpointError unless ``run/config.json`` is a valid run configuration whose architecture is the
    checkpoint's (a folder whose files come from different runs)."""
    import json

    from onebit.training.trainer import load_train_config

    load_train_config(run)  # its 'train' entry, checked as a fresh run's flags are
    path = run / CONFIG
    saved = json.loads(path.read_text(encoding="utf-8")).get("arch")
    if saved is None:
        return
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: entry 'arch' is a {type(saved).__name__}; expected a dict")
    try:
        arch = ArchConfig.from_dict(saved).to_dict()
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{path}: its architecture is not valid: {e}") from None
    ours = ArchConfig.from_dict(state["arch"]).to_dict()
    differ = [k for k in ours if arch.get(k) != ours[k]]
    if differ:
        k = differ[0]
        raise CheckpointError(f"{path}: architecture {k} = {arch.get(k)!r}, but {run / CHECKPOINT} holds weights "
                              f"of {k} = {ours[k]!r}: the files come from different runs")
