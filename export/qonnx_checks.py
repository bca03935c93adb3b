"""What a QONNX file's custom nodes say, checked against what qonnx declares for each op, before any of it runs.

onnx's checker knows the standard ops; QONNX's own (Quant, BipolarQuant, Trunc, MultiThreshold, ...) have no
schema there, and qonnx reads their attributes without checking them (a ``rounding_mode`` of 0 ends in an
``AttributeError`` deep in execution). Each op's ``get_nodeattr_types()`` is the declaration: every required
attribute present, every attribute of its declared type and in its declared set, and the values qonnx parses
(rounding modes, data type names) ones it knows.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import GraphError, UnsupportedError, one_line

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general")
#: onnx attribute type of each of qonnx's type letters
ATTRIBUTE_TYPES = {"i": onnx.AttributeProto.INT, "f": onnx.AttributeProto.FLOAT, "s": onnx.AttributeProto.STRING,
                   "t": onnx.AttributeProto.TENSOR, "ints": onnx.AttributeProto.INTS,
                   "floats": onnx.AttributeProto.FLOATS, "strings": onnx.AttributeProto.STRINGS}
#: rounding modes qonnx's quantizers implement
ROUNDING_MODES = {"ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN", "ROUND_TO_ZERO"}
#: attributes that name a qonnx DataType, and attributes that are flags
DTYPE_ATTRS = {"out_dtype"}
FLAG_ATTRS = {"signed", "narrow", "has_inf", "has_nan", "has_subnormal", "saturation"}


def check_qonnx_nodes(model: ModelWrapper, source: str | Path) -> None:
    """GraphError (UnsupportedError for an op qonnx does not have) naming ``source`` and the node for the first
    QONNX custom node whose attributes do not match qonnx's declaration."""
    for node in model.graph.node:
        if node.domain.startswith(QONNX_DOMAINS):
            check_node(node, source)


def declared_attributes(node, source) -> dict:
    from qonnx.custom_op.registry import getCustomOp

    try:
        return getCustomOp(node).get_nodeattr_types()
    except Exception:  # qonnx raises several kinds for an op type it does not register
        raise UnsupportedError(f"{source}: node {node.name} ({one_line(node.op_type)}, domain {node.domain}): "
                               f"not an op qonnx knows") from None


def check_node(node, source) -> None:
    declared = declared_attributes(node, source)
    where = f"{source}: node {node.name} ({node.op_type})"
    given = {a.name: a for a in node.attribute}
    for name, spec in declared.items():
        kind, required = spec[0], spec[1]
        if name not in given:
            if required:
                raise GraphError(f"{where}: attribute {name} is missing")
            continue
        attr = given[name]
        if attr.type != ATTRIBUTE_TYPES[kind]:
            type_name = onnx.AttributeProto.AttributeType.Name
            raise GraphError(f"{where}: attribute {name} must be {type_name(ATTRIBUTE_TYPES[kind])}, "
                             f"got {type_name(attr.type)}")
        value = helper.get_attribute_value(attr)
        value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        allowed = spec[3] if len(spec) > 3 else None
        if name in FLAG_ATTRS:
            allowed = {0, 1}
        if allowed is not None and value not in allowed:
            raise GraphError(f"{where}: attribute {name} must be one of {sorted(allowed)}, got {one_line(repr(value))}")
        if name == "rounding_mode" and value.upper() not in ROUNDING_MODES:
            raise GraphError(f"{where}: rounding_mode {one_line(repr(value))} is not one qonnx knows; expected one of "
                             f"{', '.join(sorted(ROUNDING_MODES))}")
        if name in DTYPE_ATTRS:
            try:
                DataType[value]
            except KeyError:
                raise GraphError(f"{where}: attribute {name} {one_line(repr(value))} is not a qonnx data "
                                 f"type") from None
