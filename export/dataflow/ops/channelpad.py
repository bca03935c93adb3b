"""ChannelPad (onebit's own; FINN has no op for it): appends ``OutChannels - NumChannels`` zero channels to
every pixel -- the downsampling shortcut's channel increase without a 1x1 conv (McDonnell's concatenate
with zeros). PE output channels per cycle; PE must divide both channel counts."""

from __future__ import annotations

import math

import numpy as np

from onebit.export.dataflow.base import ONEBIT_DOMAIN, HWOp


class ChannelPad(HWOp):
    op_type = "ChannelPad"
    domain = ONEBIT_DOMAIN
    attrs = {
        "NumChannels": ("i", True, 0), "OutChannels": ("i", True, 0), "PE": ("i", True, 1),
        "inputDataType": ("s", True, ""), "numInputVectors": ("ints", False, [1]),
    }

    def get_nodeattr_types(self):
        types = super().get_nodeattr_types()
        types.pop("backend")  # a plain qonnx CustomOp: FINN's HW passes must not treat it as theirs
        return types

    def output_dtype(self):
        return self.input_dtype()

    def input_shapes(self):
        return [(*self.attr("numInputVectors"), self.attr("NumChannels"))]

    def output_shape(self):
        return (*self.attr("numInputVectors"), self.attr("OutChannels"))

    def folding(self):
        return {"PE": math.gcd(self.attr("NumChannels"), self.attr("OutChannels"))}

    def exp_cycles(self):
        return int(np.prod(self.attr("numInputVectors")) * self.attr("OutChannels") // self.attr("PE"))

    def resources(self):
        return {"LUT": 10 + self.attr("PE") * self.input_dtype().bitwidth(), "mem_bits": 0}

    def execute(self, inputs):
        x = inputs[0].reshape(-1, *self.attr("numInputVectors")[1:], self.attr("NumChannels"))
        pad = [(0, 0)] * (x.ndim - 1) + [(0, self.attr("OutChannels") - self.attr("NumChannels"))]
        return [np.pad(x, pad)]
