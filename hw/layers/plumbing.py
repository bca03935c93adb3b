"""The stream plumbing layers: DuplicateStreams, ElementwiseAdd (AddStreams), ChannelPad, GlobalAccPool,
LabelSelect and StreamingDataWidthConverter. None has memories; each writes in the step itself (pipeline
depth 0), but the add, which registers its sums (depth 1)."""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType

from onebit.errors import UnsupportedError
from onebit.hw.layers.base import RTLLayer


def type_code(dt: DataType) -> int:
    """Element type parameter of the modules: 0 unsigned, 1 signed (two's complement), 2 BIPOLAR."""
    return 2 if dt.name == "BIPOLAR" else int(dt.signed())


def _check_range(layer: RTLLayer, lo: int, hi: int) -> None:
    odt = layer.op.output_dtype()
    if lo < odt.min() or hi > odt.max():
        raise UnsupportedError(f"node {layer.name} ({layer.op.onnx_node.op_type}): output type {odt.name} does not "
                               f"hold the exact range [{lo}, {hi}] of its results")


class DuplicateStreamsRTL(RTLLayer):
    module = "onebit_duplicate"
    files = ("onebit_duplicate.v",)

    def n_outputs(self) -> int:
        return int(self.op.attr("NumOutputStreams"))

    def params(self):
        if self.n_outputs() != 2:
            raise UnsupportedError(f"node {self.name} (DuplicateStreams): NumOutputStreams {self.n_outputs()}; the "
                                   f"RTL forks into 2 streams (chain forks for more)")
        return {"W": self.in_width()}


class ElementwiseAddRTL(RTLLayer):
    module = "onebit_add"
    files = ("onebit_add.v",)

    def params(self):
        op = self.op
        a, b = op.input_dtype(0), op.input_dtype(1)
        _check_range(self, int(a.min() + b.min()), int(a.max() + b.max()))
        return {"PE": op.attr("PE"), "AW": a.bitwidth(), "A_TYPE": type_code(a), "BW": b.bitwidth(),
                "B_TYPE": type_code(b), "OB": op.output_dtype().bitwidth()}


class ChannelPadRTL(RTLLayer):
    module = "onebit_channelpad"
    files = ("onebit_channelpad.v",)

    def params(self):
        op = self.op
        if op.input_dtype().name == "BIPOLAR":
            raise UnsupportedError(f"node {self.name} (ChannelPad): a BIPOLAR stream cannot hold the zero channels")
        pe = op.attr("PE")
        return {"W": self.in_width(), "CI": op.attr("NumChannels") // pe, "CO": op.attr("OutChannels") // pe}


class GlobalAccPoolRTL(RTLLayer):
    module = "onebit_globalaccpool"
    files = ("onebit_globalaccpool.v",)

    def params(self):
        op = self.op
        idt, odt = op.input_dtype(), op.output_dtype()
        cf = op.attr("NumChannels") // op.attr("PE")
        n_in, n_out = op.input_beats(), op.output_beats()
        passing = n_in == n_out  # no spatial axes: the simulator's pass-through layout
        n = 1 if passing else n_in // cf
        _check_range(self, n * int(idt.min()), n * int(idt.max()))
        in_type = 0 if odt.name == "BIPOLAR" else type_code(idt)  # BIPOLAR passed through as its bits
        return {"PE": op.attr("PE"), "CF": cf, "P": n_in // cf, "IW": idt.bitwidth(), "IN_TYPE": in_type,
                "OB": odt.bitwidth(), "PASS": int(passing)}


class LabelSelectRTL(RTLLayer):
    module = "onebit_labelselect"
    files = ("onebit_labelselect.v",)

    def params(self):
        op = self.op
        labels, pe, k = op.attr("Labels"), op.attr("PE"), op.attr("K")
        if not 1 <= k <= labels:
            raise UnsupportedError(f"node {self.name} (LabelSelect): K {k}; expected 1 <= K <= Labels ({labels})")
        _check_range(self, 0, labels - 1)
        idt = op.input_dtype()
        return {"PE": pe, "LF": labels // pe, "K": k, "IW": idt.bitwidth(), "IN_TYPE": type_code(idt),
                "LW": max(1, (labels - 1).bit_length()), "OB": op.output_dtype().bitwidth()}


class DataWidthConverterRTL(RTLLayer):
    module = "onebit_dwc"
    files = ("onebit_dwc.v",)

    def params(self):
        op = self.op
        iw, ow, b = op.attr("inWidth"), op.attr("outWidth"), op.input_dtype().bitwidth()
        bits = op.frame_bits()
        if iw % b or ow % b or op.input_beats() * iw != bits or op.output_beats() * ow != bits or \
                int(np.prod(op.attr("outShape"))) * b != bits:
            raise UnsupportedError(f"node {self.name} (StreamingDataWidthConverter): widths {iw} -> {ow} bits do not "
                                   f"split a frame of {bits // b} {op.input_dtype().name} elements into whole beats")
        return {"IW": iw, "OW": ow}
