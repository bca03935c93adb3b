"""The deployment checkpoint: one bit per binary weight (``np.packbits``) plus the few non-binary tensors.

Stored as an ``.npz`` (a zip of ``.npy`` arrays, read with ``allow_pickle=False``: no code runs on load):

- ``meta``: UTF-8 JSON (format, architecture, dataset, per-tensor shapes);
- ``bits/<conv>.weight``: packed sign bits (1 = +1, 0 = -1) of each binary conv, C order;
- ``float/<name>``: every other parameter and buffer (BN statistics, the input BN, float weights).

The forward pass depends on a binary weight only through its sign, so unpacking to ``+-1`` latent
weights reproduces the full checkpoint's predictions exactly.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from onebit.atomic import write_bytes
from onebit.errors import CheckpointError, ConfigError
from onebit.training.config import ArchConfig
from onebit.training.model import WRN, build_model

PACK_FORMAT = "onebit-packed-v1"


def pack_arrays(model: WRN, extra_meta: dict | None = None) -> dict[str, np.ndarray]:
    binary = {f"{name}.weight" for name, _ in model.binary_convs()}
    arrays: dict[str, np.ndarray] = {}
    shapes: dict[str, list[int]] = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        value = tensor.detach().cpu().numpy()
        shapes[name] = list(value.shape)
        if name in binary:
            arrays[f"bits/{name}"] = np.packbits((value >= 0).reshape(-1))
        else:
            arrays[f"float/{name}"] = np.ascontiguousarray(value, dtype=np.float32)
    meta = {"format": PACK_FORMAT, "arch": model.cfg.to_dict(), "shapes": shapes, **(extra_meta or {})}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return arrays


def packed_bytes(model: WRN, extra_meta: dict | None = None) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **pack_arrays(model, extra_meta))
    return buf.getvalue()


def save_packed(model: WRN, path: str | Path, extra_meta: dict | None = None) -> int:
    data = packed_bytes(model, extra_meta)
    write_bytes(path, data)
    return len(data)


def payload_bytes(model: WRN) -> dict:
    """Sizes without the container: bits of binary weights, bytes of float32 tensors."""
    binary = {f"{name}.weight" for name, _ in model.binary_convs()}
    bits = floats = 0
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if name in binary:
            bits += (tensor.numel() + 7) // 8 * 8
        else:
            floats += tensor.numel()
    return {"binary_bytes": bits // 8, "float_tensor_bytes": 4 * floats}


def float_bytes(model: WRN) -> int:
    """Bytes of the model's parameters and buffers stored as float32 (the unpacked checkpoint's weights)."""
    return 4 * sum(t.numel() for name, t in model.state_dict().items() if not name.endswith("num_batches_tracked"))


def load_packed(path: str | Path) -> tuple[WRN, dict]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such packed checkpoint; expected a file written by 'onebit pack'")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # zip, header and dtype errors all mean the same thing here
        raise CheckpointError(f"{path}: not a readable packed checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: no readable 'meta' entry; expected a file written by 'onebit pack'") from None
    if not isinstance(meta, dict) or meta.get("format") != PACK_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: format {found!r}, expected {PACK_FORMAT!r}")
    if not isinstance(meta.get("arch"), dict) or not isinstance(meta.get("shapes"), dict):
        raise CheckpointError(f"{path}: 'meta' lacks the architecture or the tensor shapes")
    try:
        model = build_model(ArchConfig.from_dict(meta["arch"]))
    except ConfigError as e:
        raise CheckpointError(f"{path}: its architecture is not valid: {e}") from None
    state = {}
    for name, ref in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = ref
            continue
        shape = meta["shapes"].get(name, [])
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise CheckpointError(f"{path}: 'meta' gives tensor {name!r} the shape {shape!r}; expected a list of "
                                  f"sizes")
        shape = tuple(shape)
        if f"bits/{name}" in arrays:
            n = int(np.prod(shape))
            bits = arrays[f"bits/{name}"]
            if bits.dtype != np.uint8 or bits.ndim != 1 or bits.size != (n + 7) // 8:
                raise CheckpointError(f"{path}: bits of {name!r} are {bits.size} {bits.dtype} values, expected "
                                      f"{(n + 7) // 8} uint8 bytes for {n} weights")
            signs = np.unpackbits(bits, count=n)
            state[name] = torch.from_numpy(np.where(signs == 1, 1.0, -1.0).astype(np.float32).reshape(shape))
        elif f"float/{name}" in arrays:
            floats = arrays[f"float/{name}"]
            if floats.dtype.kind != "f":
                raise CheckpointError(f"{path}: tensor {name!r} holds {floats.dtype} values, expected float32")
            state[name] = torch.from_numpy(np.asarray(floats, dtype=np.float32).copy())
        else:
            raise CheckpointError(f"{path}: tensor {name!r} is missing for {model.cfg.describe()}")
        if tuple(state[name].shape) != tuple(ref.shape):
            raise CheckpointError(f"{path}: tensor {name!r} has shape {tuple(state[name].shape)}, "
                                  f"expected {tuple(ref.shape)}")
    model.load_state_dict(state)
    return model.eval(), meta
