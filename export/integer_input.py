"""The accelerator's input: an integer stream, named by the user as ``float input = input_scale * code`` with the
code of an integer type (``input_type``, e.g. UINT8 with scale 1/255 for an image's pixels).

Given that, the graph input is an integer tensor like any other: the float ops between it and the first quantizer
(``x/255``, ``2x - 1``, mean/std normalisation) join its chain and the first quantizer's thresholds absorb them
(:mod:`onebit.export.integer_thresholds`). Layout ops right after the input (Reshape, Flatten, Transpose) only
reorder the codes: they are folded into the integer graph's input, whose layout is recorded in the metadata
``onebit.input_layout`` so the same codes can be fed to both graphs (:func:`integer_input_codes`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from onebit.errors import ConfigError, UnsupportedError
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

META_LAYOUT = "onebit.input_layout"
LAYOUT_OPS = ("Reshape", "Flatten", "Transpose")


@dataclass(frozen=True)
class InputSpec:
    """``float input = scale * code``, ``code`` of integer type ``dtype``."""

    dtype: DataType
    scale: np.float32

    @property
    def levels(self) -> tuple[int, int]:
        return int(self.dtype.min()), int(self.dtype.max())


def parse_input_type(value: str, param: str = "input_type") -> DataType:
    name = str(value).strip().upper()
    try:
        dt = DataType[name]
    except Exception:  # qonnx parses the name itself ("INT" -> ValueError, "FOO" -> KeyError)
        dt = None
    if dt is None or not dt.is_integer() or dt.name == "BIPOLAR" or dt.bitwidth() > 16:
        raise ConfigError(f"{param}: {value!r} is not an integer type; expected UINTk or INTk with k <= 16 "
                          f"(e.g. UINT8)", param=param)
    return dt


def parse_input_scale(value, param: str = "input_scale") -> np.float32:
    """A positive finite number, written as a float (``0.00392``) or a fraction (``1/255``)."""
    text = str(value).strip()
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            v = float(num) / float(den)
        else:
            v = float(text)
    except (ValueError, ZeroDivisionError):
        v = float("nan")
    if not (math.isfinite(v) and 0 < v <= float(np.finfo(np.float32).max) and np.float32(v) > 0):
        raise ConfigError(f"{param}: expected a positive number such as 1/255 or 0.5, got {value!r}", param=param)
    return np.float32(v)


def input_spec(input_type=None, input_scale=None) -> InputSpec | None:
    """The spec from the user's two settings (a scale without a type is a mistake; a type alone has scale 1)."""
    if input_type is None:
        if input_scale is not None:
            raise ConfigError("input_scale: given without an input type; expected both (e.g. UINT8 and 1/255)",
                              param="input_scale")
        return None
    dt = input_type if isinstance(input_type, DataType) else parse_input_type(input_type)
    return InputSpec(dt, parse_input_scale(1.0 if input_scale is None else input_scale))


def fold_front_layout(src: ModelWrapper) -> tuple[str, list[dict], set[str]]:
    """Follow the layout ops that read the graph input (one consumer each, batch kept first): the tensor the
    integer graph takes as its input, the steps from the source input to it, and the names of the folded nodes."""
    name = src.graph.input[0].name
    steps, folded = [], set()
    while True:
        consumers = src.find_consumers(name) or []
        if len(consumers) != 1 or consumers[0].op_type not in LAYOUT_OPS:
            return name, steps, folded
        node = consumers[0]
        out = node.output[0]
        shape = src.get_tensor_shape(out)
        if node.op_type == "Transpose":
            perm = [int(p) for p in helper.get_attribute_value(node.attribute[0])] if node.attribute else None
            if perm is None or perm[0] != 0:
                raise UnsupportedError(f"node {node.name} (Transpose): perm {perm} on the graph input; expected "
                                       f"the batch axis to stay first")
            steps.append({"op": "transpose", "perm": perm})
        else:
            if shape is None or shape[0] != 1:
                raise UnsupportedError(f"node {node.name} ({node.op_type}): reshapes the graph input to {shape}; "
                                       f"expected the batch axis to stay first")
            steps.append({"op": "reshape", "shape": [int(d) for d in shape[1:]]})
        folded.add(node.name)
        name = out


def record_layout(model: ModelWrapper, steps: list[dict]) -> None:
    model.set_metadata_prop(META_LAYOUT, json.dumps(steps))


def integer_input_codes(integer: ModelWrapper, codes: np.ndarray) -> np.ndarray:
    """The codes in the source graph's input layout -> the integer graph's input (the folded layout ops)."""
    raw = integer.get_metadata_prop(META_LAYOUT)
    for step in json.loads(raw) if raw else []:
        if step["op"] == "transpose":
            codes = codes.transpose(step["perm"])
        else:
            codes = codes.reshape(len(codes), *step["shape"])
    return np.ascontiguousarray(codes)
