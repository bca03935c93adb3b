"""Folding of a dataflow graph by hand: set PE/SIMD (and the memory styles) from a FINN-style folding config.

- **apply_folding**: set attributes from ``{node: {"PE": 4, "SIMD": 8}}``, checking that each value divides what
  it must (``HWOp.folding()``);
- **stream coupling** (as FINN): a sliding-window generator (ConvolutionInputGenerator, SWG) feeding an MVAU
  moves the MVAU's SIMD channels per cycle, and the FMPadding before it the same; when the MVAU's SIMD is larger
  than the channel count the SWG moves whole windows (``parallel_window=1``, SIMD = channels). A depthwise SWG
  feeding a Pool uses the Pool's PE. Other width mismatches are fixed by width converters (DWCs,
  :mod:`onebit.export.dataflow.insert`), which like the FIFOs depend on the folding: :func:`strip_stream_nodes`
  takes both out before a new one.

The report of a folding is :mod:`onebit.export.dataflow.folding_report`; the search for one (for a frame rate
or a LUT budget) is :mod:`onebit.export.dataflow.folding_search`.
"""

from __future__ import annotations

import math

from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import FoldingError
from onebit.export.dataflow.base import HWOp
from onebit.export.dataflow.graph import get_op
from onebit.export.dataflow.insert import RemoveStreamNodes

SWG = "ConvolutionInputGenerator"
#: non-folding attributes a folding config may set too (FINN's folding configs carry them)
EXTRA_ATTRS = ("parallel_window", "ram_style", "ram_style_thresholds", "resType", "mem_mode")


def divisors(n: int) -> list[int]:
    n = int(n)
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _fmt_divisors(n: int) -> str:
    ds = divisors(n)
    return ", ".join(map(str, ds)) if len(ds) <= 16 else ", ".join(map(str, ds[:8])) + ", ..., " + str(ds[-1])


def set_attr(op: HWOp, attr: str, value) -> None:
    """Set one folding attribute (ints as ints, the styles as strings)."""
    op.set_nodeattr(attr, int(value) if isinstance(value, int) else value)


def apply_folding(model: ModelWrapper, folding: dict, couple: bool = True) -> ModelWrapper:
    """Set folding attributes in place from ``{node name: {attr: value}}`` (a FINN folding config; a
    ``"Defaults"`` entry is ignored) and return the model.

    PE/SIMD must divide the bound the op names in ``folding()``; ``parallel_window`` (SWG) is 0 or 1 and needs
    SIMD = IFMChannels on a non-depthwise SWG; ``ram_style``, ``resType``, ``mem_mode`` are passed through.
    With ``couple``, an SWG (and the FMPadding before it) whose consumer was given here but which was not given
    itself follows its consumer: SIMD = the MVAU's SIMD, or the Pool's PE.
    """
    if not isinstance(folding, dict):
        raise FoldingError(f"folding: expected a mapping node name -> {{attribute: value}}, got "
                           f"{type(folding).__name__}")
    nodes = {n.name: n for n in model.graph.node}
    given: set[str] = set()
    for name, attrs in folding.items():
        if name == "Defaults":
            continue
        node = nodes.get(name)
        if node is None:
            raise FoldingError(f"folding: no node named {name!r} in the graph (it has {len(nodes)} nodes, e.g. "
                               f"{', '.join(list(nodes)[:4])})")
        if not isinstance(attrs, dict):
            raise FoldingError(f"folding: node {name}: expected {{attribute: value}}, got {attrs!r}")
        op = get_op(node)
        bounds = op.folding()
        types = op.get_nodeattr_types()
        for attr, value in attrs.items():
            if attr in bounds:
                bound = int(bounds[attr])
                if isinstance(value, bool) or not isinstance(value, int) or value < 1 or bound % value:
                    raise FoldingError(f"node {name} ({node.op_type}): {attr}={value!r} must divide {bound}; "
                                       f"allowed: {_fmt_divisors(bound)}")
                set_attr(op, attr, value)
            elif attr == "parallel_window" and node.op_type == SWG:
                if value not in (0, 1) or isinstance(value, bool):
                    raise FoldingError(f"node {name} ({SWG}): parallel_window={value!r}; expected 0 or 1")
                set_attr(op, attr, int(value))
            elif attr in EXTRA_ATTRS and attr in types and attr != "parallel_window":
                if not isinstance(value, str):
                    raise FoldingError(f"node {name} ({node.op_type}): {attr}={value!r}; expected a string")
                set_attr(op, attr, value)
            else:
                allowed = sorted(bounds) + [a for a in EXTRA_ATTRS if a in types]
                raise FoldingError(f"node {name} ({node.op_type}): no folding attribute {attr!r}; expected one of "
                                   f"{', '.join(allowed) or '(none: this layer has no folding)'}")
        if node.op_type == SWG and "SIMD" in attrs and "parallel_window" not in attrs \
                and op.attr("SIMD") != op.attr("IFMChannels"):
            set_attr(op, "parallel_window", 0)  # a partial SIMD given alone means the default (one window tap) style
        given.add(name)
    if couple:
        _couple(model, given)
    for node in model.graph.node:
        if node.op_type == SWG:
            check_parallel_window(get_op(node))
    return model


def check_parallel_window(op: HWOp) -> None:
    """FoldingError unless a whole-window SWG (``parallel_window=1``) is non-depthwise with SIMD = channels."""
    if op.attr("parallel_window") and (op.attr("depthwise") or op.attr("SIMD") != op.attr("IFMChannels")):
        raise FoldingError(f"node {op.name} ({SWG}): parallel_window=1 needs depthwise=0 and SIMD = IFMChannels "
                           f"({op.attr('IFMChannels')}), got depthwise={op.attr('depthwise')}, SIMD={op.attr('SIMD')}")


def _single_producer(model: ModelWrapper, node, op_type: str):
    """The producer of ``node``'s first input if it has type ``op_type`` and ``node`` is its only consumer."""
    prod = model.find_producer(node.input[0])
    if prod is None or prod.op_type != op_type:
        return None
    cons = model.find_consumers(prod.output[0]) or []
    return prod if len(prod.output) == 1 and len(cons) == 1 else None


def window_chain(model: ModelWrapper, node):
    """For an MVAU or Pool: its (SWG, FMPadding) feeding it, each None when absent or shared."""
    swg = _single_producer(model, node, SWG)
    if swg is None:
        return None, None
    depthwise = get_op(swg).attr("depthwise")
    if (node.op_type == "MVAU") == bool(depthwise):
        return None, None
    return swg, _single_producer(model, swg, "FMPadding")


def swg_settings_for(swg: HWOp, consumer_fold: int) -> tuple[int, int]:
    """(SWG SIMD, parallel_window) that best feeds a consumer reading ``consumer_fold`` elements per beat."""
    c = swg.attr("IFMChannels")
    if swg.attr("depthwise"):
        return math.gcd(consumer_fold, c), 0
    if c % consumer_fold == 0:
        return consumer_fold, 0
    return c, 1


def _couple(model: ModelWrapper, given: set[str]) -> None:
    for node in model.graph.node:
        if node.op_type not in ("MVAU", "Pool") or node.name not in given:
            continue
        swg, pad = window_chain(model, node)
        if swg is None:
            continue
        sop = get_op(swg)
        if swg.name not in given:
            fold = get_op(node).attr("SIMD" if node.op_type == "MVAU" else "PE")
            simd, pw = swg_settings_for(sop, fold)
            set_attr(sop, "SIMD", simd)
            set_attr(sop, "parallel_window", pw)
            given.add(swg.name)
        if pad is not None and pad.name not in given:
            set_attr(get_op(pad), "SIMD", sop.attr("SIMD"))



def strip_stream_nodes(model: ModelWrapper) -> int:
    """Remove DWCs and FIFOs in place (both depend on the folding); returns how many were removed."""
    t = RemoveStreamNodes()
    t.apply(model)
    return t.removed
