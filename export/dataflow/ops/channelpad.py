"""ChannelPad (onebit's own; FINN has no op for it): appends ``OutChannels - NumChannels`` zero channels to
every pixel -- the downsampling shortcut's channel increase without a 1x1 conv (McDonnell's concatenate
with zeros). PE output channels per cycle; PE must divide both channel counts."""

from __future__ import annotations

import math

import numpy as np

from onebit.export.dataflow.base import ONEBIT_DOMAIN, HWOp
from onebit.export.dataflow.layout import StepLayout, steps


class ChannelPad(HWOp):
    op_type = "ChannelPad"
    domain = ONEBIT_DOMAIN
    attrs = {
        "NumChannels": ("i", True, 0), "OutChannels": ("i", True, 0), "PE": ("i", True, 1),
        "inputDataType": ("s", True, ""), "numInputVectors": ("ints", False, [1]),
    }

    positive = ("NumChannels", "OutChannels", "PE", "numInputVectors")
    divides = {"PE": "NumChannels and OutChannels (their gcd)"}

    def check_rules(self):
        if self.attr("OutChannels") < self.attr("NumChannels"):
            self.fail(f"OutChannels {self.attr('OutChannels')} is below NumChannels {self.attr('NumChannels')}; "
                      f"expected channels appended")

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

    def resources(self):
        return {"LUT": 10 + self.attr("PE") * self.input_dtype().bitwidth(), "mem_bits": 0}

    def step_layout(self):
        """Per pixel OutChannels/PE steps, each writing; the first NumChannels/PE also read."""
        p = int(np.prod(self.attr("numInputVectors")))
        pe = self.attr("PE")
        ci, co = self.attr("NumChannels") // pe, self.attr("OutChannels") // pe

        def positions():
            return [(steps(p)[:, None] * co + steps(ci)[None]).ravel()], steps(p * co)
        return StepLayout(p * co, positions)

    def execute(self, inputs):
        x = inputs[0].reshape(-1, *self.attr("numInputVectors")[1:], self.attr("NumChannels"))
        pad = [(0, 0)] * (x.ndim - 1) + [(0, self.attr("OutChannels") - self.attr("NumChannels"))]
        return [np.pad(x, pad)]
