"""One RTL class per dataflow layer: its Verilog module, parameters and memory files.

``RTL_LAYERS`` maps each op class (``onebit.export.dataflow.ops``) to the RTL layer that generates it; upstream
aliases (FINN's ``AddStreams``) share their op class, so they share its RTL too.
"""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import UnsupportedError
from onebit.export.dataflow import ops
from onebit.export.dataflow.base import HWOp
from onebit.hw.layers.base import RTLLayer
from onebit.hw.layers.fmpadding import FMPaddingRTL
from onebit.hw.layers.mvau import MVAURTL
from onebit.hw.layers.plumbing import (ChannelPadRTL, DataWidthConverterRTL, DuplicateStreamsRTL, ElementwiseAddRTL,
                                       GlobalAccPoolRTL, LabelSelectRTL)
from onebit.hw.layers.pool import PoolRTL
from onebit.hw.layers.swg import SWGRTL
from onebit.hw.layers.thresholding import ThresholdingRTL

RTL_LAYERS: dict[type[HWOp], type[RTLLayer]] = {
    ops.MVAU: MVAURTL, ops.Thresholding: ThresholdingRTL, ops.ConvolutionInputGenerator: SWGRTL,
    ops.FMPadding: FMPaddingRTL, ops.Pool: PoolRTL, ops.DuplicateStreams: DuplicateStreamsRTL,
    ops.ElementwiseAdd: ElementwiseAddRTL, ops.ChannelPad: ChannelPadRTL, ops.GlobalAccPool: GlobalAccPoolRTL,
    ops.LabelSelect: LabelSelectRTL, ops.StreamingDataWidthConverter: DataWidthConverterRTL,
}


def rtl_layer(op: HWOp, model: ModelWrapper, ident: str | None = None) -> RTLLayer:
    """The RTL layer that generates ``op`` (a node of ``model``), instance ``ident`` (default: from its name)."""
    cls = RTL_LAYERS.get(type(op))
    if cls is None:
        raise UnsupportedError(f"node {op.name}: no RTL for {op.onnx_node.op_type}; onebit's RTL covers "
                               f"{', '.join(sorted(c.op_type for c in RTL_LAYERS))}")
    return cls(op, model, ident)


__all__ = ["RTL_LAYERS", "RTLLayer", "rtl_layer"]
