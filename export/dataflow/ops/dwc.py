"""StreamingDataWidthConverter: re-packs a stream from inWidth to outWidth bits per beat (values unchanged).
Inserted between layers whose folding gives different stream widths."""

from __future__ import annotations

import math

import numpy as np

from onebit.export.dataflow.base import HWOp
from onebit.export.dataflow.layout import StepLayout, steps


class StreamingDataWidthConverter(HWOp):
    op_type = "StreamingDataWidthConverter"
    attrs = {
        "inShape": ("ints", True, []), "outShape": ("ints", True, []), "inWidth": ("i", True, 0),
        "outWidth": ("i", True, 0), "dataType": ("s", True, ""),
    }

    positive = ("inShape", "outShape", "inWidth", "outWidth")

    def check_rules(self):
        bits = self.input_dtype().bitwidth()
        ins, outs = self.attr("inShape"), self.attr("outShape")
        if int(np.prod(ins)) != int(np.prod(outs)):
            self.fail(f"inShape {list(ins)} and outShape {list(outs)} hold different numbers of values")
        for side, width, shape in (("in", self.attr("inWidth"), ins), ("out", self.attr("outWidth"), outs)):
            if width % bits:
                self.fail(f"{side}Width {width} must be a multiple of the {bits} bits of dataType "
                          f"{self.attr('dataType')}")
            if shape[-1] % (width // bits):
                self.fail(f"{side}Width {width} moves {width // bits} values a beat, which must divide the "
                          f"{shape[-1]} channels of {side}Shape")

    def input_dtype(self, i=0):
        return self.attr_dtype("dataType")

    def output_dtype(self):
        return self.attr_dtype("dataType")

    def input_shapes(self):
        return [tuple(self.attr("inShape"))]

    def output_shape(self):
        return tuple(self.attr("outShape"))

    def fold_of_input(self, i=0):
        return self.attr("inWidth") // self.input_dtype().bitwidth()

    def fold_of_output(self):
        return self.attr("outWidth") // self.output_dtype().bitwidth()

    def frame_bits(self) -> int:
        return int(np.prod(self.attr("inShape"))) * self.input_dtype().bitwidth()

    def step_layout(self):
        """max(in beats, out beats) steps per frame: the narrow side moves one beat per step; the wide side's beat
        is read when its first part is needed (down-sizing) or written with its last part (up-sizing)."""
        bits = self.frame_bits()
        n_in, n_out = bits // self.attr("inWidth"), bits // self.attr("outWidth")
        if n_in == n_out:
            return StepLayout(n_in, lambda: ([steps(n_in)], steps(n_in)))
        if n_in > n_out:  # an output beat leaves in the step of its last part: ceil((j+1) * n_in / n_out) - 1
            return StepLayout(n_in, lambda: ([steps(n_in)], -((-(steps(n_out) + 1) * n_in) // n_out) - 1))
        return StepLayout(n_out, lambda: ([(steps(n_in) * n_out) // n_in], steps(n_out)))

    def resources(self):
        w = math.lcm(self.attr("inWidth"), self.attr("outWidth"))
        return {"LUT": w + 10, "mem_bits": 0}

    def execute(self, inputs):
        return [inputs[0]]
