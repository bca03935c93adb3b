"""FMPadding: zero padding of an NHWC feature map's height and width, [top, left, bottom, right]."""

from __future__ import annotations

import numpy as np

from onebit.export.dataflow.base import HWOp, frames
from onebit.export.dataflow.layout import StepLayout, steps


class FMPadding(HWOp):
    op_type = "FMPadding"
    attrs = {
        "ImgDim": ("ints", True, []), "Padding": ("ints", True, [1, 1, 1, 1]), "NumChannels": ("i", True, 0),
        "SIMD": ("i", False, 1), "inputDataType": ("s", True, ""), "numInputVectors": ("i", False, 1),
    }

    positive = ("ImgDim", "NumChannels", "SIMD")
    nonnegative = ("Padding",)
    lengths = {"ImgDim": 2, "Padding": 4}
    divides = {"SIMD": "NumChannels"}

    def output_dtype(self):
        return self.input_dtype()

    def input_shapes(self):
        h, w = self.attr("ImgDim")
        return [(1, h, w, self.attr("NumChannels"))]

    def output_shape(self):
        h, w = self.attr("ImgDim")
        t, l, b, r = self.attr("Padding")
        return (1, h + t + b, w + l + r, self.attr("NumChannels"))

    def fold_of_output(self):
        return self.attr("SIMD")

    def folding(self):
        return {"SIMD": self.attr("NumChannels")}

    def resources(self):
        return {"LUT": 50 + self.attr("SIMD") * self.input_dtype().bitwidth(), "mem_bits": 0}

    def step_layout(self):
        """One step per output beat, each writing; the steps inside the image also read."""
        _, oh, ow, c = self.output_shape()
        h, w = self.attr("ImgDim")
        t, l, _, _ = self.attr("Padding")
        cf = c // self.attr("SIMD")

        def positions():
            pix = (steps(h, t)[:, None] * ow + steps(w, l)[None]).ravel()
            return [(pix[:, None] * cf + steps(cf)[None]).ravel()], steps(oh * ow * cf)
        return StepLayout(oh * ow * cf, positions)

    def execute(self, inputs):
        x = frames(inputs[0], self.input_shapes()[0])
        t, l, b, r = self.attr("Padding")
        return [np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))]
