"""FMPadding: zero padding of an NHWC feature map's height and width, [top, left, bottom, right]."""

from __future__ import annotations

import numpy as np

from onebit.export.dataflow.base import HWOp, frames


class FMPadding(HWOp):
    op_type = "FMPadding"
    attrs = {
        "ImgDim": ("ints", True, []), "Padding": ("ints", True, [1, 1, 1, 1]), "NumChannels": ("i", True, 0),
        "SIMD": ("i", False, 1), "inputDataType": ("s", True, ""), "numInputVectors": ("i", False, 1),
    }

    def output_dtype(self):
        return self.input_dtype()

    def input_shapes(self):
        h, w = self.a("ImgDim")
        return [(1, h, w, self.a("NumChannels"))]

    def output_shape(self):
        h, w = self.a("ImgDim")
        t, l, b, r = self.a("Padding")
        return (1, h + t + b, w + l + r, self.a("NumChannels"))

    def fold_of_output(self):
        return self.a("SIMD")

    def folding(self):
        return {"SIMD": self.a("NumChannels")}

    def exp_cycles(self):
        _, oh, ow, c = self.output_shape()
        return int(c // self.a("SIMD") * oh * ow)

    def resources(self):
        return {"LUT": 50 + self.a("SIMD") * self.input_dtype().bitwidth(), "mem_bits": 0}

    def execute(self, inputs):
        x = frames(inputs[0], self.input_shapes()[0])
        t, l, b, r = self.a("Padding")
        return [np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))]
