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
        return [(*self.a("numInputVectors"), self.a("NumChannels"))]

    def output_shape(self):
        return (*self.a("numInputVectors"), self.a("OutChannels"))

    def folding(self):
        return {"PE": math.gcd(self.a("NumChannels"), self.a("OutChannels"))}

    def exp_cycles(self):
        return int(np.prod(self.a("numInputVectors")) * self.a("OutChannels") // self.a("PE"))

    def resources(self):
        return {"LUT": 10 + self.a("PE") * self.input_dtype().bitwidth(), "mem_bits": 0}

    def execute(self, inputs):
        x = inputs[0].reshape(-1, *self.a("numInputVectors")[1:], self.a("NumChannels"))
        pad = [(0, 0)] * (x.ndim - 1) + [(0, self.a("OutChannels") - self.a("NumChannels"))]
        return [np.pad(x, pad)]
